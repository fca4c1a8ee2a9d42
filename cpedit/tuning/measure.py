"""One measurement of an edit for ``cpedit sweep`` and ``cpedit tune``: erased and preserved, before/after.

A sweep point or a tune step is measured by the evaluation suite's own functions on a saved
output folder (so its numbers are those of ``cpedit eval BENCH DIR --base`` on that folder):

* the *erasure* benchmark gives ``erased`` (lower is better): ``shapes`` its erased accuracy,
  ``classify`` ``erased_accuracy``, ``nudity`` ``nudity_images`` (the share of images with an
  exposed part), ``attack`` ``attack_success_rate``;
* ``preserved`` (higher is better) comes from the same benchmark for ``shapes`` (mean
  attribute accuracy) and ``classify`` (``preserved_accuracy``), or from a preservation
  benchmark (``preserve="clip-score"``: the CLIP score on unrelated prompts; ``"fid"``: the FID
  against the base model's images, where ``drop`` is the FID itself).

``drop`` is the damage: ``preserved.before - preserved.after`` (for FID, the FID after).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError
from cpedit.progress import ProgressCallback

ERASURE_BENCHMARKS = ("shapes", "classify", "nudity", "attack")
PRESERVATION_BENCHMARKS = ("clip-score", "fid")
ERASED_METRIC = {
    "shapes": "erased",
    "classify": "erased_accuracy",
    "nudity": "nudity_images",
    "attack": "attack_success_rate",
}
PRESERVED_METRIC = {"shapes": "preserved", "classify": "preserved_accuracy", "clip-score": "clip_score", "fid": "fid"}

__all__ = ["ERASURE_BENCHMARKS", "PRESERVATION_BENCHMARKS", "EvaluationPlan", "Measurement", "measure"]


@dataclass(frozen=True)
class EvaluationPlan:
    """How every point is measured: the benchmark, its options, and the preservation measure.

    Attributes:
        benchmark: ``shapes``, ``classify``, ``nudity`` or ``attack``.
        options: Keyword arguments of the benchmark's evaluate function (``images``, ``seed``,
            ``steps``, ``prompts``, ``attack_set``, ...); prompt sets already loaded.
        preserve: ``clip-score`` or ``fid`` (needed for ``nudity`` and ``attack``, which measure
            no preservation themselves), or None.
        preserve_options: Keyword arguments of the preservation benchmark (``prompts``, ...).
        described: The plan as JSON (what ``sweep.json`` records and compares on a rerun).
    """

    benchmark: str
    options: dict[str, Any] = field(default_factory=dict)
    preserve: str | None = None
    preserve_options: dict[str, Any] = field(default_factory=dict)
    described: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.benchmark not in ERASURE_BENCHMARKS:
            raise CpeditError(
                f"unknown erasure benchmark {self.benchmark!r}; use one of {', '.join(ERASURE_BENCHMARKS)}",
                argument="eval",
            )
        if self.preserve is not None and self.preserve not in PRESERVATION_BENCHMARKS:
            raise CpeditError(
                f"unknown preservation benchmark {self.preserve!r}; use {' or '.join(PRESERVATION_BENCHMARKS)}",
                argument="preserve",
            )
        if self.preserve is None and self.benchmark in ("nudity", "attack"):
            raise CpeditError(
                f"the {self.benchmark} benchmark measures no preservation; add a preservation measure: "
                "clip-score (on a prompt set of unrelated prompts) or fid",
                argument="preserve",
            )

    @property
    def erased_metric(self) -> str:
        """The metric that measures erasure (lower is better)."""
        return ERASED_METRIC[self.benchmark]

    @property
    def preserved_metric(self) -> str:
        """The metric that measures preservation."""
        return PRESERVED_METRIC[self.preserve or self.benchmark]


@dataclass(frozen=True)
class Measurement:
    """What one edit measured: ``erased`` and ``preserved`` (``{"before", "after"}``), the drop, every metric."""

    erased: dict[str, float]
    preserved: dict[str, float]
    drop: float
    metrics: dict[str, dict[str, float]]


def _evaluate(
    benchmark: str,
    folder: Path,
    options: dict[str, Any],
    *,
    images_root: Path,
    device: str,
    pipeline_for: Callable[[str], Any] | None,
    on_progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> dict[str, dict[str, float]]:
    common = {
        "device": device,
        "images_dir": images_root / benchmark,
        "pipeline_for": pipeline_for,
        "on_progress": on_progress,
        "cancel": cancel,
    }
    if benchmark == "shapes":
        from cpedit.eval.shapes import evaluate_shapes

        result = evaluate_shapes(folder, **options, **common)
        return {
            "erased": {"before": result.erased_before, "after": result.erased_after},
            "preserved": {"before": result.preserved_before, "after": result.preserved_after},
        }
    if benchmark == "classify":
        from cpedit.eval.classify import evaluate_classify as evaluate
    elif benchmark == "nudity":
        from cpedit.eval.nudity import evaluate_nudity as evaluate
    elif benchmark == "attack":
        from cpedit.eval.attack import evaluate_attack as evaluate
    elif benchmark == "clip-score":
        from cpedit.eval.benchmarks import evaluate_clip_score as evaluate
    else:
        from cpedit.eval.benchmarks import evaluate_fid as evaluate
    base = {} if benchmark == "fid" and options.get("reference") is None else {"base": True}
    return dict(evaluate(folder, **options, **base, **common).metrics)


def measure(
    folder: str | os.PathLike[str],
    plan: EvaluationPlan,
    *,
    images_root: str | os.PathLike[str],
    device: str = "auto",
    pipeline_for: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Measurement:
    """Measure the cpedit output ``folder`` by ``plan``, before (its base) and after.

    Args:
        folder: A saved cpedit output (a sweep point's, or any ``cpedit prune`` output).
        plan: The benchmark(s) and their options.
        images_root: Where the images are kept (``images_root/BENCH``), shared by every point:
            the base model's images are made once and reused.
        device: Where to run.
        pipeline_for: The pipeline showing ``"edited"`` or ``"base"`` (an edit session in memory);
            None: the benchmarks load the output as ``cpedit eval`` does.
        on_progress: Receives the benchmarks' events.
        cancel: Stops at the next image batch with :class:`~cpedit.errors.Cancelled`.

    Raises:
        CpeditError: As the benchmarks' evaluate functions.
    """
    root = Path(images_root)
    kwargs = dict(images_root=root, device=device, pipeline_for=pipeline_for, on_progress=on_progress, cancel=cancel)
    metrics = _evaluate(plan.benchmark, Path(folder), plan.options, **kwargs)
    erased = dict(metrics[plan.erased_metric])
    if plan.preserve is not None:
        extra = _evaluate(plan.preserve, Path(folder), plan.preserve_options, **kwargs)
        metrics.update(extra)
    preserved = dict(metrics[plan.preserved_metric])
    if plan.preserve == "fid" and "before" not in preserved:
        drop = preserved["after"]  # the FID against the base model's own images: 0 for no change
    else:
        drop = preserved["before"] - preserved["after"]
    return Measurement(erased=erased, preserved=preserved, drop=drop, metrics=metrics)


def plan_evaluation(
    benchmark: str,
    *,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 16,
    images: int = 64,
    prompts: str | None = None,
    category: str | None = None,
    limit: int | None = None,
    images_per_prompt: int = 1,
    family: str | None = None,
    concepts: Sequence[str] | None = None,
    classifier: str = "clip",
    classifier_model: str | None = None,
    attack_set: str | None = None,
    threshold: float | None = None,
    preserve: str | None = None,
    preserve_prompts: str | None = None,
    preserve_limit: int | None = None,
    clip_model: str | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> EvaluationPlan:
    """The :class:`EvaluationPlan` of ``cpedit sweep`` / ``cpedit tune``'s evaluation options.

    Prompt sets (files or ``hub:`` datasets) are read once here, and the detectors and
    classifiers loaded once, so every point is measured on the same prompts with the same
    models. The plan's ``described`` form names them (set, revision, models) for ``sweep.json``.

    Args:
        benchmark: ``shapes``, ``classify``, ``nudity`` or ``attack``.
        seed, steps, guidance_scale, batch_size: Generation settings of every benchmark.
        images: Images per prompt set (``shapes``).
        prompts: The prompt set (``nudity``: default I2P; ``attack``: default the set's;
            ``classify``: templates).
        category, limit, images_per_prompt: As ``cpedit eval``.
        family, concepts, classifier, classifier_model: As ``cpedit eval classify``.
        attack_set: As ``cpedit eval attack --attack-set``.
        threshold: NudeNet's score threshold (``nudity``, ``attack``).
        preserve: ``clip-score`` or ``fid``, measured on ``preserve_prompts``.
        preserve_prompts, preserve_limit: The preservation benchmark's prompt set and limit.
        clip_model: The CLIP model of ``clip-score``.

    Raises:
        CpeditError: An unknown benchmark, a missing prompt set, or as loading the prompts.
    """
    from cpedit.eval.prompt_sets import load_prompt_set

    generation = {"seed": seed, "steps": steps, "guidance_scale": guidance_scale, "batch_size": batch_size}
    described: dict[str, Any] = {"benchmark": benchmark, **generation}
    options: dict[str, Any] = dict(generation)

    def prompt_set(ref: str, **kwargs: Any) -> Any:
        loaded = load_prompt_set(ref, on_progress=on_progress, cancel=cancel, **kwargs)
        about = {"prompts": loaded.name, "prompts_revision": loaded.revision, "prompt_count": len(loaded.prompts)}
        return loaded, about

    if benchmark == "shapes":
        options["images"] = images
        described["images"] = images
    elif benchmark == "classify":
        options.update(images_per_prompt=images_per_prompt, limit=limit, family=family, classifier=classifier)
        options.update(concepts=list(concepts) if concepts else None, classifier_model=classifier_model)
        described.update({k: v for k, v in options.items() if k not in generation})
        if prompts is not None:
            loaded, about = prompt_set(prompts)
            options.update(prompts=loaded.prompts, prompts_name=loaded.name)
            described.update(about)
    elif benchmark in ("nudity", "attack"):
        options.update(images_per_prompt=images_per_prompt)
        if threshold is not None:
            options["threshold"] = threshold
        if benchmark == "attack":
            options["attack_set"] = attack_set
            ref = prompts if prompts is not None else (f"attack:{attack_set}" if attack_set else None)
            if ref is None:
                raise CpeditError(
                    "the attack benchmark needs a known attack set or a prompt set",
                    reason="missing",
                    argument="prompts",
                )
        else:
            from cpedit.eval.nudity import DEFAULT_PROMPTS

            ref = prompts or DEFAULT_PROMPTS
        loaded, about = prompt_set(ref, limit=limit, category=category)
        options["prompts"] = loaded
        described.update(about, threshold=threshold, images_per_prompt=images_per_prompt, attack_set=attack_set)
    else:
        raise CpeditError(
            f"unknown erasure benchmark {benchmark!r}; use one of {', '.join(ERASURE_BENCHMARKS)}", argument="eval"
        )
    preserve_options: dict[str, Any] = {}
    if preserve is not None:
        if preserve_prompts is None:
            raise CpeditError(
                f"the {preserve} preservation measure needs a prompt set of its own (unrelated prompts, such as "
                "COCO captions)",
                argument="preserve_prompts",
            )
        loaded, about = prompt_set(preserve_prompts, limit=preserve_limit)
        preserve_options = {**generation, "prompts": loaded.prompts, "prompts_name": loaded.name}
        if preserve == "clip-score" and clip_model is not None:
            preserve_options["clip_model"] = clip_model
        described["preserve"] = {"benchmark": preserve, **about, "clip_model": clip_model}
    return EvaluationPlan(
        benchmark=benchmark,
        options=options,
        preserve=preserve,
        preserve_options=preserve_options,
        described=described,
    )
