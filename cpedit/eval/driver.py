"""The one evaluation driver: any registered benchmark, on a cpedit output, before and after.

:func:`evaluate` owns what every benchmark shares: the output is read once, the benchmark
prepares its prompts and judge, the images of the edited model (and the base's) are rendered
or reused by :func:`cpedit.eval.engine.render_images`, each phase is scored with a cancel
check and an ``evaluate`` event, then the protocol and the :class:`~cpedit.eval.benchmark.BenchmarkResult`
are built, every metric with its 95% interval (:meth:`~cpedit.eval.benchmark.Benchmark.intervals`).
:func:`record_result` keeps it in ``EDITED/conceptprune/eval/BENCH.json``.

The edited model is a saved output folder, or an :class:`InMemoryEdit`: a pipeline already
loaded and edited in memory (a sweep point), measured without writing a model anywhere. A
:class:`~cpedit.eval.judges.JudgeCache` shared by many evaluations loads each judge once and
scores the base model once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.durable import write_each, write_error
from cpedit.errors import CpeditError
from cpedit.eval.benchmark import Benchmark, BenchmarkOptions, BenchmarkResult, BenchmarkRun, Phase
from cpedit.eval.judges import JudgeCache
from cpedit.eval.options import ImageOptions
from cpedit.eval.registry import get_benchmark
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import (
    OutputRecord,
    check_outside_record,
    evaluation_path,
    output_identity,
    read_output,
    write_evaluation,
    write_json_atomically,
)
from cpedit.progress import ProgressCallback, check_cancel, emit

__all__ = ["InMemoryEdit", "evaluate", "record_result"]


@dataclass(frozen=True)
class InMemoryEdit:
    """An edited pipeline held in memory, measured as its saved output would be, without saving it.

    Attributes:
        record: What the saved output would record (its report and recipes); its ``folder`` only
            names the edit in messages: nothing is read from or written there.
        pipeline_for: Gives the pipeline showing ``"edited"`` (the selection applied) or
            ``"base"`` (the base weights restored), called before that model's first missing
            image batch (an edit session applies or restores its selection here).
        identity: What names the edited model in the image cache (as
            :func:`cpedit.eval.engine.model_identity` for a saved output; its pruned positions'
            digest, so two points share images only when they prune the same weights).
    """

    record: OutputRecord
    pipeline_for: Callable[[str], Any]
    identity: dict[str, Any] = field(default_factory=dict)


def evaluate(
    benchmark: str | Benchmark,
    edited: str | os.PathLike[str] | InMemoryEdit,
    options: BenchmarkOptions | None = None,
    *,
    images: ImageOptions | None = None,
    base: bool = False,
    images_dir: str | os.PathLike[str] | None = None,
    compute: ComputeOptions = ComputeOptions(),
    judges: JudgeCache | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BenchmarkResult:
    """Measure the cpedit output ``edited`` with a benchmark (and its base model, with ``base``).

    The result is not written; see :func:`record_result`.

    Args:
        benchmark: A registered benchmark's name (:func:`cpedit.eval.registry.benchmark_names`) or one.
        edited: A cpedit output folder, or an :class:`InMemoryEdit` (then ``images_dir`` is needed).
        options: The benchmark's typed options (``NudityOptions(...)``; None: its defaults).
        images: How the images are made (None: the benchmark's defaults).
        base: Also the base model's images, for before/after (some benchmarks always need them).
        images_dir: Where the images are kept (default ``EDITED/conceptprune/eval/images/BENCH``);
            reused by later runs.
        compute: The device (of the models and the judge) and dtype (of the models); see
            :func:`cpedit.eval.engine.render_images` for what does not apply to an output folder.
        judges: Judges and base scores shared with the run's other evaluations (a sweep's points):
            each judge is loaded once and the base model's images are scored once.
        on_progress: Receives ``load``, ``sample``, ``evaluate`` and ``done`` events.
        cancel: Stops at the next image batch or phase with :class:`~cpedit.errors.Cancelled`
            (the images made so far are kept for the next run).

    Raises:
        CpeditError: ``edited`` is not a cpedit output, an unknown benchmark, bad options, a
            judge that cannot be loaded, an :class:`InMemoryEdit` without ``images_dir``.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.eval.engine import default_images_dir, render_images

    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    in_memory = edited if isinstance(edited, InMemoryEdit) else None
    if in_memory is not None and images_dir is None:
        raise CpeditError("an edit measured in memory needs a folder for its images", argument="images_dir")
    record = in_memory.record if in_memory is not None else read_output(edited)  # type: ignore[arg-type]
    identity = output_identity(record.folder) if in_memory is None else None
    run = BenchmarkRun(
        edited=record.folder,
        record=record,
        options=bench.check_options(options),
        images=bench.image_options(images if images is not None else bench.default_images),
        compute=compute,
        on_progress=on_progress,
        cancel=cancel,
        result_name=bench.name,
        judges=judges,
    )
    bench.prepare(run)
    folder = Path(images_dir) if images_dir is not None else default_images_dir(record.folder, bench.images_folder)
    try:
        rendered = render_images(
            run.record,
            run.prompts,
            folder=folder,
            base=base or run.needs_base,
            compute=compute,
            pipeline_for=in_memory.pipeline_for if in_memory is not None else None,
            edited_identity=in_memory.identity if in_memory is not None else None,
            on_progress=on_progress,
            cancel=cancel,
            **run.images.render_arguments(),
        )
    except OSError as exc:  # a full disk or a read-only place: the message names the path, not a traceback
        raise write_error(
            exc,
            folder,
            what="the evaluation images in",
            argument="images_dir",  # the way out: a folder on another disk
            written="the images written so far are kept for the next run",
        ) from None
    measured: dict[str, Any] = {}
    phases: tuple[tuple[Phase, list[Any]], ...] = (("before", rendered.base), ("after", rendered.edited))
    for phase, entries in phases:
        if not entries:
            continue
        check_cancel(cancel, "during the evaluation")
        measured[phase] = _score(bench, run, phase, entries, rendered.folder)
    metrics = bench.metrics(run, measured)
    intervals = bench.intervals(run, measured)
    if in_memory is None:
        _check_still_there(record.folder, identity)
    emit(on_progress, bench.done(run, rendered))
    result_protocol = bench.protocol(run, measured, rendered)
    return BenchmarkResult(
        benchmark=run.result_name,
        metrics=metrics,
        protocol=result_protocol,
        images=rendered,
        evaluation=bench.evaluation(run, metrics, result_protocol),
        intervals=intervals,
    )


def _score(bench: Benchmark, run: BenchmarkRun, phase: Phase, entries: Sequence[Any], folder: Path) -> Any:
    """One phase's measurement; the base model's (``before``) once per judge cache, images and options."""
    if run.judges is None or phase != "before":
        return bench.score(run, phase, entries, folder)
    options = hashlib.sha256(repr(run.options).encode()).hexdigest()
    key = (run.result_name, run.metric_model, str(folder), options, tuple(entry.key for entry in entries))
    return run.judges.base_score(key, lambda: bench.score(run, phase, entries, folder))


def _check_still_there(edited: Path, identity: tuple[int, ...] | None) -> None:
    """Refuse a result whose output was replaced while it was measured (another run's overwrite)."""
    if output_identity(edited) != identity:
        raise CpeditError(
            f"{edited} was replaced or changed while it was evaluated (by another run?), so the result "
            "describes a model that is no longer there; it was not kept: evaluate again",
            path=str(edited),
            reason="mismatch",
        )


def record_result(
    edited: str | os.PathLike[str], result: BenchmarkResult, *, json_file: str | os.PathLike[str] | None = None
) -> Path:
    """Keep the result in ``EDITED/conceptprune/eval/BENCH.json`` (and ``json_file``), atomically.

    Both are attempted: when one cannot be written (a full disk, a read-only output) the other
    still is, and then the error says what failed and what was written.

    Under a multi-process launch every rank holds the same result, and only rank 0 writes it
    (one writer per file); the other ranks get the path without writing anything.
    """
    from cpedit.distributed import is_main_process

    if not is_main_process():
        return evaluation_path(edited, result.benchmark)
    if json_file is not None:
        check_outside_record(json_file, argument="json_file")
    writes = [lambda: write_evaluation(edited, result.to_evaluation())]
    if json_file is not None:
        target = Path(json_file)
        writes.append(lambda: write_json_atomically(target, result.to_json(), what="the result", argument="json_file"))
    return write_each(writes)[0]
