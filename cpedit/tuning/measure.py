"""One measurement of an edit for ``cpedit sweep`` and ``cpedit tune``: erased and preserved, before/after.

A sweep point or a tune step is measured by the evaluation suite's one driver
(:func:`cpedit.eval.driver.evaluate`) on the edited pipeline in memory (an
:class:`~cpedit.eval.driver.InMemoryEdit`, nothing saved), so its numbers are those of
``cpedit eval BENCH DIR --base`` on the folder ``cpedit prune`` would write with its settings.
What is measured comes from the registry (:mod:`cpedit.eval.registry`), not from a table here:

* the *erasure* benchmark (role ``erasure``) gives ``erased`` (lower is better): its
  :attr:`~cpedit.eval.benchmark.Benchmark.erased_metric` (``shapes``: its erased accuracy,
  ``classify``: ``erased_accuracy``, ``nudity``: ``nudity_images``, ``attack``: ``attack_success_rate``);
* ``preserved`` comes from the same benchmark where it measures preservation too (its
  :attr:`~cpedit.eval.benchmark.Benchmark.preserved_metric`: ``shapes``, ``classify``), or from a
  preservation benchmark (``clip-score``: the CLIP score on unrelated prompts; ``fid``: the FID
  against the base model's images, where ``drop`` is the FID itself).

``drop`` is the damage: ``preserved.before - preserved.after`` (without a ``before``, as for the
FID against the base model's own images, the value after).

Each measurement keeps the 95% intervals of erased (after) and of the drop (the paired change,
:mod:`cpedit.eval.intervals`), which ``tune`` decides on; :meth:`EvaluationPlan.enlarged` is the
same plan on more images (``tune`` measures more only where an interval straddles its goal) and
:meth:`EvaluationPlan.reseeded` on other seeds (its held-out check).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpedit.errors import CpeditError
from cpedit.eval.benchmark import BenchmarkOptions
from cpedit.eval.intervals import Estimate
from cpedit.eval.options import ImageOptions
from cpedit.eval.registry import benchmark_names, get_benchmark
from cpedit.models.compute import ComputeOptions
from cpedit.progress import ProgressCallback

if TYPE_CHECKING:
    from cpedit.eval.driver import InMemoryEdit
    from cpedit.eval.judges import JudgeCache

DEFAULT_IMAGES = ImageOptions(steps=25, batch_size=16)
"""The image options of a plan when none are given (every point is measured: fewer steps than ``eval``)."""

__all__ = ["DEFAULT_IMAGES", "EvaluationPlan", "Measurement", "measure", "plan_evaluation"]


@dataclass(frozen=True)
class EvaluationPlan:
    """How every point is measured: the benchmark, its typed options, and the preservation measure.

    Attributes:
        benchmark: A registered erasure benchmark (``shapes``, ``classify``, ``nudity``, ``attack``, ...).
        options: Its typed options (prompt sets already loaded).
        images: How the images are made.
        preserve: A registered preservation benchmark (``clip-score``, ``fid``; needed by an erasure
            benchmark that measures no preservation itself, such as ``nudity``), or None.
        preserve_options: Its typed options (its prompt set loaded).
        described: The plan as JSON (what ``sweep.json`` records and compares on a rerun).
    """

    benchmark: str
    options: BenchmarkOptions
    images: ImageOptions = DEFAULT_IMAGES
    preserve: str | None = None
    preserve_options: BenchmarkOptions | None = None
    described: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_roles(self.benchmark, self.preserve)

    @property
    def erased_metric(self) -> str:
        """The metric that measures erasure (lower is better)."""
        return str(get_benchmark(self.benchmark).erased_metric)

    @property
    def preserved_metric(self) -> str:
        """The metric that measures preservation."""
        return str(get_benchmark(self.preserve or self.benchmark).preserved_metric)

    @property
    def preserve_images(self) -> ImageOptions:
        """The preservation benchmark's image options: the plan's, one image per prompt."""
        return replace(self.images, images_per_prompt=1)

    def enlarged(self, factor: int) -> EvaluationPlan:
        """The plan with ``factor`` times the erasure benchmark's images (see :meth:`Benchmark.enlarge`).

        The images already made stay valid: they are a part of the larger sample, reused.
        """
        options, images = get_benchmark(self.benchmark).enlarge(self.options, self.images, factor)
        return replace(self, options=options, images=images)

    def reseeded(self, seed: int) -> EvaluationPlan:
        """The plan with another first seed (a held-out check: images the plan's seed never made)."""
        return replace(self, images=replace(self.images, seed=seed))


def _check_roles(benchmark: str, preserve: str | None) -> None:
    """Refuse a benchmark that is not an erasure one, a preservation measure that is not one, or a missing one."""
    erasure = benchmark_names("erasure")
    if benchmark not in erasure:
        raise CpeditError(
            f"unknown erasure benchmark {benchmark!r}; use one of {', '.join(erasure)}", argument="benchmark"
        )
    preservation = benchmark_names("preservation")
    if preserve is not None and preserve not in preservation:
        raise CpeditError(
            f"unknown preservation benchmark {preserve!r}; use {' or '.join(preservation)}", argument="preserve"
        )
    if preserve is None and get_benchmark(benchmark).preserved_metric is None:
        raise CpeditError(
            f"the {benchmark} benchmark measures no preservation; add a preservation measure: "
            "clip-score (on a prompt set of unrelated prompts) or fid",
            argument="preserve",
        )


@dataclass(frozen=True)
class Measurement:
    """What one edit measured: ``erased`` and ``preserved`` (``{"before", "after"}``), the drop, every metric."""

    erased: dict[str, float]
    preserved: dict[str, float]
    drop: float
    metrics: dict[str, dict[str, float]]
    intervals: dict[str, Estimate] = field(default_factory=dict)
    """``erased`` (after) and ``drop``: their 95% intervals, where the benchmarks give them."""
    images: int = 0
    """Images per model the erasure benchmark scored."""


def measure(
    edited: str | os.PathLike[str] | InMemoryEdit,
    plan: EvaluationPlan,
    *,
    images_root: str | os.PathLike[str],
    compute: ComputeOptions = ComputeOptions(),
    judges: JudgeCache | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Measurement:
    """Measure an edit by ``plan``, before (its base) and after.

    Args:
        edited: The edit in memory (a sweep point's: :class:`~cpedit.eval.driver.InMemoryEdit`),
            or a saved cpedit output (the benchmarks load it as ``cpedit eval`` does).
        plan: The benchmark(s) and their options.
        images_root: Where the images are kept (``images_root/BENCH``), shared by every point:
            the base model's images are made once and reused.
        compute: Where the judges run (its device) and how an output folder loads (as
            :func:`cpedit.eval.driver.evaluate`).
        judges: Judges and base scores kept across the run's measurements (each judge loaded once,
            the base model scored once); None: loaded for this measurement only.
        on_progress: Receives the benchmarks' events.
        cancel: Stops at the next image batch with :class:`~cpedit.errors.Cancelled`.

    Raises:
        CpeditError: As :func:`cpedit.eval.driver.evaluate`.
    """
    from cpedit.eval.driver import evaluate

    root = Path(images_root)

    found: dict[str, dict[str, Estimate]] = {}
    counted: list[int] = []

    def run(name: str, options: BenchmarkOptions | None, images: ImageOptions) -> dict[str, dict[str, float]]:
        result = evaluate(
            name,
            edited,
            options,
            images=images,
            base=True,
            images_dir=root / name,
            compute=compute,
            judges=judges,
            on_progress=on_progress,
            cancel=cancel,
        )
        found.update(result.intervals)
        counted.append(int(result.protocol.get("images", 0)))
        return dict(result.metrics)

    metrics = run(plan.benchmark, plan.options, plan.images)
    erased = dict(metrics[plan.erased_metric])
    if plan.preserve is not None:
        metrics.update(run(plan.preserve, plan.preserve_options, plan.preserve_images))
    preserved = dict(metrics[plan.preserved_metric])
    drop = preserved["before"] - preserved["after"] if "before" in preserved else preserved["after"]
    intervals: dict[str, Estimate] = {}
    if "after" in found.get(plan.erased_metric, {}):
        intervals["erased"] = found[plan.erased_metric]["after"]
    kept = found.get(plan.preserved_metric, {})
    if "before" in preserved and "change" in kept:  # the drop is minus the paired change
        change = kept["change"]
        intervals["drop"] = Estimate(drop, -change.high, -change.low, change.method, change.n)
    elif "before" not in preserved and "after" in kept:
        intervals["drop"] = kept["after"]
    return Measurement(
        erased=erased, preserved=preserved, drop=drop, metrics=metrics, intervals=intervals, images=counted[0]
    )


def plan_evaluation(
    benchmark: str,
    options: BenchmarkOptions | None = None,
    *,
    images: ImageOptions | None = None,
    preserve: str | None = None,
    preserve_options: BenchmarkOptions | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> EvaluationPlan:
    """The :class:`EvaluationPlan` of ``cpedit sweep`` / ``cpedit tune``: typed options, prompt sets loaded once.

    Prompt sets (files or ``hub:`` datasets) are read once here, so every point is measured
    on the same prompts. The plan's ``described`` form names them (set, revision, models)
    for ``sweep.json``.

    Args:
        benchmark: A registered erasure benchmark (:func:`cpedit.eval.registry.benchmark_names`).
        options: Its typed options (``ShapesOptions(images=64)``, ``NudityOptions(category="sexual")``;
            None: its defaults).
        images: How every benchmark's images are made (default :data:`DEFAULT_IMAGES`).
        preserve: A registered preservation benchmark (``clip-score``, ``fid``), measured on
            ``preserve_options``' prompts (with one image per prompt).
        preserve_options: Its typed options, with the prompt set of unrelated prompts.

    Raises:
        CpeditError: An unknown benchmark, a benchmark that needs a preservation measure, a
            missing prompt set, or as loading the prompts.
    """
    _check_roles(benchmark, preserve)
    bench = get_benchmark(benchmark)
    chosen = bench.check_options(options)
    images = images if images is not None else DEFAULT_IMAGES
    resolved, about = bench.resolve(chosen, on_progress=on_progress, cancel=cancel)
    described: dict[str, Any] = {"benchmark": benchmark, **images.generation(), **bench.describe(resolved, images)}
    described.update(about)
    resolved_preserve: BenchmarkOptions | None = None
    if preserve is not None:
        keeper = get_benchmark(preserve)
        wanted = keeper.check_options(preserve_options)
        if getattr(wanted, "prompts", None) is None:
            raise CpeditError(
                f"the {preserve} preservation measure needs a prompt set of its own (unrelated prompts, such as "
                "COCO captions)",
                argument="preserve_prompts",
            )
        resolved_preserve, kept = keeper.resolve(wanted, on_progress=on_progress, cancel=cancel)
        described["preserve"] = {"benchmark": preserve, **kept, **keeper.describe(resolved_preserve, images)}
    return EvaluationPlan(
        benchmark=benchmark,
        options=resolved,
        images=images,
        preserve=preserve,
        preserve_options=resolved_preserve,
        described=described,
    )
