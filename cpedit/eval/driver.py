"""The one evaluation driver: any registered benchmark, on a cpedit output, before and after.

:func:`evaluate` owns what every benchmark shares: the output is read once, the benchmark
prepares its prompts and judge, the images of the edited model (and the base's) are rendered
or reused by :func:`cpedit.eval.engine.render_images`, each phase is scored with a cancel
check and an ``evaluate`` event, then the protocol and the :class:`~cpedit.eval.benchmark.BenchmarkResult`
are built. :func:`record_result` keeps it in ``EDITED/conceptprune/eval/BENCH.json``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cpedit.durable import write_each, write_error
from cpedit.errors import CpeditError
from cpedit.eval.benchmark import Benchmark, BenchmarkOptions, BenchmarkResult, BenchmarkRun, Phase
from cpedit.eval.options import ImageOptions
from cpedit.eval.registry import get_benchmark
from cpedit.output.record import (
    check_outside_record,
    evaluation_path,
    output_identity,
    read_output,
    write_evaluation,
    write_json_atomically,
)
from cpedit.progress import ProgressCallback, check_cancel, emit

__all__ = ["evaluate", "record_result"]


def evaluate(
    benchmark: str | Benchmark,
    edited: str | os.PathLike[str],
    options: BenchmarkOptions | None = None,
    *,
    images: ImageOptions | None = None,
    base: bool = False,
    images_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dtype: str | None = None,
    pipeline_for: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BenchmarkResult:
    """Measure the cpedit output ``edited`` with a benchmark (and its base model, with ``base``).

    The result is not written; see :func:`record_result`.

    Args:
        benchmark: A registered benchmark's name (:func:`cpedit.eval.registry.benchmark_names`) or one.
        edited: A cpedit output folder.
        options: The benchmark's typed options (``NudityOptions(...)``; None: its defaults).
        images: How the images are made (None: the benchmark's defaults).
        base: Also the base model's images, for before/after (some benchmarks always need them).
        images_dir: Where the images are kept (default ``EDITED/conceptprune/eval/images/BENCH``);
            reused by later runs.
        device: Where to run.
        dtype: Compute dtype (default float16 on CUDA, else float32).
        pipeline_for: Gives the pipeline that shows ``"edited"`` or ``"base"`` (an edit session in memory).
        on_progress: Receives ``load``, ``sample``, ``evaluate`` and ``done`` events.
        cancel: Stops at the next image batch or phase with :class:`~cpedit.errors.Cancelled`
            (the images made so far are kept for the next run).

    Raises:
        CpeditError: ``edited`` is not a cpedit output, an unknown benchmark, bad options, a
            judge that cannot be loaded.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.eval.engine import default_images_dir, render_images

    bench = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    identity = output_identity(edited)
    run = BenchmarkRun(
        edited=Path(edited),
        record=read_output(edited),
        options=bench.check_options(options),
        images=bench.image_options(images if images is not None else bench.default_images),
        device=device,
        on_progress=on_progress,
        cancel=cancel,
        result_name=bench.name,
    )
    bench.prepare(run)
    folder = Path(images_dir) if images_dir is not None else default_images_dir(edited, bench.images_folder)
    try:
        rendered = render_images(
            run.record,
            run.prompts,
            folder=folder,
            base=base or run.needs_base,
            dtype=dtype,
            device=device,
            pipeline_for=pipeline_for,
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
        measured[phase] = bench.score(run, phase, entries, rendered.folder)
    metrics = bench.metrics(run, measured)
    _check_still_there(Path(edited), identity)
    emit(on_progress, bench.done(run, rendered))
    result_protocol = bench.protocol(run, measured, rendered)
    return BenchmarkResult(
        benchmark=run.result_name,
        metrics=metrics,
        protocol=result_protocol,
        images=rendered,
        evaluation=bench.evaluation(run, metrics, result_protocol),
    )


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
    from cpedit.eval.distributed import is_main_process

    if not is_main_process():
        return evaluation_path(edited, result.benchmark)
    if json_file is not None:
        check_outside_record(json_file, argument="json_file")
    writes = [lambda: write_evaluation(edited, result.to_evaluation())]
    if json_file is not None:
        target = Path(json_file)
        writes.append(lambda: write_json_atomically(target, result.to_json(), what="the result", argument="json_file"))
    return write_each(writes)[0]
