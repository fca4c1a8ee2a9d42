"""``cpedit eval shapes``: measure erasure and preservation on the built-in shapes world.

For an edited model (a cpedit output of a shapes-world model) and its base (recorded in
``conceptprune/report.json``), images are generated from prompts of the world, with the
same seeds for both models, and judged by the attribute classifier:

* **erased accuracy** (lower is better): over prompts that ask for an erased concept, the
  fraction of images that still show it;
* **preservation** (higher is better): over prompts that ask for no erased concept, the
  per-attribute accuracy (shape, colour, texture, background; their mean).

Prompts are full captions of scenes drawn with ``seed``, never one of the recipes'
calibration prompts.  A concept is erasable here if the recipe's ``concept`` is a value
of the world (``"striped"``, ``"star"``, ``"red"``, ...).

Example:
    >>> from cpedit.eval import ShapesOptions, evaluate
    >>> result = evaluate("shapes", "shapes-no-stripes", ShapesOptions(images=64))
    >>> result.metrics["erased"]["after"] < result.metrics["erased"]["before"]
    True
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpedit.errors import CpeditError
from cpedit.eval.benchmark import Benchmark, BenchmarkOptions, BenchmarkRun, Phase
from cpedit.eval.engine import ImageEntry, RenderedImages
from cpedit.eval.intervals import Kind, Sample, describe_method
from cpedit.eval.options import ImageOptions
from cpedit.output.record import Evaluation, Report, read_output
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit, step_events
from cpedit.recipes.format import Recipe
from cpedit.shapes import world
from cpedit.shapes.classifier import classify, load_classifier

BENCHMARK = "shapes"
"""Results are also kept in ``EDITED/conceptprune/eval/shapes.json`` (model cards read them)."""

__all__ = ["MAX_SHAPES_IMAGES", "ShapesBenchmark", "ShapesOptions"]


MAX_SHAPES_IMAGES = 10_000
"""Images per prompt set (erased and preserved), per model, at most."""


@dataclass(frozen=True, kw_only=True)
class ShapesOptions(BenchmarkOptions):
    """Options of ``shapes``.

    Attributes:
        images: Images per prompt set (erased and preserved), per model. The image options'
            seed also draws the prompts.
    """

    images: int = 128

    def __post_init__(self) -> None:
        if not isinstance(self.images, int) or isinstance(self.images, bool) or self.images < 1:
            raise CpeditError(f"images must be at least 1, got {self.images}", argument="images")
        if self.images > MAX_SHAPES_IMAGES:
            raise CpeditError(
                f"{self.images} images per prompt set is more than {MAX_SHAPES_IMAGES}, the most the shapes "
                "benchmark renders (128 already tells erasure apart)",
                reason="too_large",
                argument="images",
            )


def erased_values(report: Report, edited: Path) -> dict[str, tuple[str, str]]:
    """Map each erased concept to the (attribute, value) of the world it names.

    Raises:
        CpeditError: a concept is not a value of the shapes world.
    """
    found: dict[str, tuple[str, str]] = {}
    for concept in report.concepts:
        name = concept.concept.strip().lower()
        attributes = world.BUILTIN.attributes
        match = [(attribute, name) for attribute, values in attributes.items() if name in values]
        if not match:
            values = ", ".join(v for vs in attributes.values() for v in vs if v not in world.UNSAID)
            raise CpeditError(
                f"{edited}: recipe {concept.name!r} erases {concept.concept!r}, which is not an attribute "
                f"value of the shapes world; `cpedit eval shapes` measures only these concepts: {values}"
            )
        found[concept.name] = match[0]
    return found


def calibration_prompts(report: Report, edited: Path) -> set[str]:
    """Every target and base prompt the edited model's recipes calibrated on.

    The recipes are read through :func:`cpedit.output.record.read_output` (the one checked reader of
    an output folder): a report that points elsewhere is refused, never followed.
    """
    del report  # the checked record below carries the same report
    return _calibration_prompts(read_output(edited).recipes)


def _calibration_prompts(recipes: Sequence[Recipe]) -> set[str]:
    prompts: set[str] = set()
    for recipe in recipes:
        for target, base in recipe.pairs():
            prompts.update((target.strip().lower(), base.strip().lower()))
    return prompts


def evaluation_prompts(
    erased: list[tuple[str, str]],
    *,
    images: int,
    seed: int,
    exclude: set[str],
    vocabulary: world.Vocabulary = world.BUILTIN,
) -> tuple[list[world.Scene], list[world.Scene]]:
    """``images`` scenes that ask for an erased value, and ``images`` that ask for none.

    Scenes are drawn from every combination of ``vocabulary`` (default: the built-in model's,
    :data:`cpedit.shapes.world.BUILTIN`) with ``seed``; scenes whose caption was a calibration
    prompt are skipped.
    """
    asks = [s for s in world.all_scenes(vocabulary=vocabulary) if world.caption(s) not in exclude]
    with_concept = [s for s in asks if any(s.value(a) == v for a, v in erased)]
    without = [s for s in asks if not any(s.value(a) == v for a, v in erased)]
    if not with_concept or not without:
        raise CpeditError("the erased concepts leave no prompts to evaluate with; erase fewer values")
    rng = np.random.default_rng(seed)
    pick = lambda pool: [pool[int(i)] for i in rng.integers(0, len(pool), size=images)]  # noqa: E731
    return pick(with_concept), pick(without)


def generate_images(
    pipe: Any,
    prompts: list[str],
    *,
    seed: int,
    steps: int,
    guidance_scale: float,
    batch_size: int,
    label: str,
    on_progress: ProgressCallback | None,
    done: int,
    total: int,
    cancel: threading.Event | None = None,
    concept: str | None = None,
) -> np.ndarray:
    """uint8 images for ``prompts``; image ``i`` starts from a generator seeded ``seed + i``.

    ``done`` and ``total`` place these images in the whole run's progress (``sample`` events,
    counting images, each batch also its denoising steps); ``label`` starts their messages and
    ``concept`` names the run's images (default ``label``); ``cancel`` is checked before every
    batch and after every step.
    """
    from cpedit.models.sampling import step_callback

    device = pipe.device if pipe.device.type != "mps" else torch.device("cpu")
    chunks = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        check_cancel(cancel, "during the evaluation")
        started = ProgressEvent(
            stage="sample",
            message=f"{label}: images {start + 1}-{start + len(chunk)} of {len(prompts)}",
            concept=concept or label,
            batch=start // batch_size + 1,
            batches=-(-len(prompts) // batch_size),
            batch_size=len(chunk),
            completed=done + start,
            total=total,
            unit="images",
        )
        emit(on_progress, started)
        generators = [torch.Generator(device=device).manual_seed(seed + start + i) for i in range(len(chunk))]
        result = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            generator=generators,
            output_type="np",
            **step_callback(pipe, cancel, on_step=step_events(on_progress, started, steps=steps)),
        )
        check_cancel(cancel, "during the evaluation")
        chunks.append(np.clip(np.round(result.images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(chunks)


def score_images(
    classifier: Any,
    shown: np.ndarray | torch.Tensor,
    asked: list[world.Scene],
    erased: list[tuple[str, str]],
    *,
    mode: str,
) -> tuple[float, dict[str, float]]:
    """Judge ``shown`` images (anything :func:`classify` reads) against the scenes their prompts ``asked`` for.

    ``mode="erased"``: the fraction still showing an erased value the prompt asked for.
    ``mode="preserved"``: the mean per-attribute accuracy, and the accuracy per attribute.
    """
    values, per_attribute = image_scores(classifier, shown, asked, erased, mode=mode)
    return float(np.mean(values)), per_attribute


def image_scores(
    classifier: Any,
    shown: np.ndarray | torch.Tensor,
    asked: list[world.Scene],
    erased: list[tuple[str, str]],
    *,
    mode: str,
) -> tuple[list[float], dict[str, float]]:
    """:func:`score_images` per image: 1/0 (``erased``: still shows it) or the share of attributes right.

    Their mean is :func:`score_images`' score; the accuracy per attribute comes with them.
    """
    predictions = classify(classifier, shown)
    pairs = list(zip(predictions, asked, strict=True))
    if mode == "erased":
        return [float(any(scene.value(a) == v and p[a] == v for a, v in erased)) for p, scene in pairs], {}
    heads = tuple(classifier.attributes)
    right = np.array([[p[name] == scene.value(name) for name in heads] for p, scene in pairs], dtype=np.float64)
    per_attribute = {name: float(np.mean(right[:, i])) for i, name in enumerate(heads)}
    return [float(v) for v in right.mean(axis=1)], per_attribute


class ShapesBenchmark(Benchmark):
    """Erasure and preservation on the built-in shapes world, judged by the attribute classifier.

    Image ``i`` of the erased set is seeded ``seed + i``, of the preserved set
    ``seed + 1_000_000 + i``, the same for both models; the base model is always rendered.
    The result keeps ``shapes.json``'s own form (``concepts``, ``images``, ``erased``,
    ``preserved``, ``pruned_fraction``); the protocol holds those and the preservation per
    attribute (``preserved_by_attribute``: ``{"before": {"shape": ..}, "after": {..}}``).
    """

    name = BENCHMARK
    role = "erasure"
    options_type = ShapesOptions
    erased_metric = "erased"
    preserved_metric = "preserved"
    default_images = ImageOptions(steps=25, batch_size=64)

    def describe(self, options: Any, images: ImageOptions) -> dict[str, Any]:
        """The images per set."""
        return {"images": options.images}

    def enlarge(self, options: Any, images: ImageOptions, factor: int) -> tuple[Any, ImageOptions]:
        """``factor`` times the scenes per set (more prompts, each one image)."""
        return replace(options, images=options.images * factor), images

    def image_options(self, images: ImageOptions) -> ImageOptions:
        """One image per prompt at the model's size: the prompts are the images."""
        return replace(images, images_per_prompt=1, height=None, width=None)

    def prepare(self, run: BenchmarkRun) -> None:
        """The erased values, the held-out scenes and their seeds, and the classifier.

        Raises:
            CpeditError: The base is not recorded, or a concept is not a value of the shapes world.
        """
        from cpedit.eval.engine import PromptSpec

        report = run.record.report
        erased = sorted(set(erased_values(report, run.edited).values()))
        if not report.base_ref:
            raise CpeditError(f"{run.edited}: the report does not record a base model to compare with")
        seed = run.images.seed
        with_concept, without = evaluation_prompts(
            erased, images=run.options.images, seed=seed, exclude=_calibration_prompts(run.record.recipes)
        )
        sets = (("erased", with_concept), ("preserved", without))
        run.prompts = [
            PromptSpec(world.caption(scene), seed=seed + 1_000_000 * offset + i)
            for offset, (_, scenes) in enumerate(sets)
            for i, scene in enumerate(scenes)
        ]
        run.needs_base = True
        run.judge = run.load_judge(("shapes",), load_classifier)
        run.state.update(erased=erased, sets=sets)

    def score(self, run: BenchmarkRun, phase: Phase, entries: Sequence[ImageEntry], folder: Path) -> dict[str, Any]:
        """Per set (``erased``, ``preserved``): its score and the preservation per attribute."""
        images = run.options.images
        measured: dict[str, Any] = {}
        for offset, (mode, scenes) in enumerate(run.state["sets"]):
            check_cancel(run.cancel, "during the evaluation")
            run.emit(ProgressEvent(stage="evaluate", message=f"{phase}: judging {len(scenes)} {mode} images"))
            chosen = entries[offset * images : (offset + 1) * images]
            shown = np.stack([_read_png(entry.path(folder)) for entry in chosen])
            values, per_attribute = image_scores(run.judge, shown, scenes, run.state["erased"], mode=mode)
            kind: Kind = "proportion" if mode == "erased" else "mean"
            measured[mode] = (Sample.of(values, range(len(values)), kind), per_attribute)
        return measured

    def metrics(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, float]]:
        """``erased`` and ``preserved``, before and after."""
        return {
            mode: {phase: measured[phase][mode][0].value for phase in ("before", "after")}
            for mode in ("erased", "preserved")
        }

    def samples(self, run: BenchmarkRun, measured: dict[str, Any]) -> dict[str, dict[str, Sample]]:
        """``erased`` (a proportion: Wilson) and ``preserved`` (per image, the share of attributes right: a mean)."""
        return {mode: {phase: measured[phase][mode][0] for phase in measured} for mode in ("erased", "preserved")}

    def protocol(self, run: BenchmarkRun, measured: dict[str, Any], rendered: RenderedImages) -> dict[str, Any]:
        """The erased values, images per set, pruned fraction, generation and the preservation per attribute."""
        totals = run.record.report.totals
        return {
            "benchmark": BENCHMARK,
            "concepts": [v for _, v in run.state["erased"]],
            "images": run.options.images,
            "pruned_fraction": totals.pruned_weights / totals.denoiser_weights,
            "seed": run.images.seed,
            "steps": run.images.steps,
            "guidance_scale": run.images.guidance_scale,
            "preserved_by_attribute": {phase: measured[phase]["preserved"][1] for phase in ("before", "after")},
            "intervals": describe_method(),
        }

    def evaluation(
        self, run: BenchmarkRun, metrics: dict[str, dict[str, float]], protocol: dict[str, Any]
    ) -> Evaluation:
        """``shapes.json``'s own form: exactly the documented keys."""
        return Evaluation(
            benchmark=BENCHMARK,
            concepts=tuple(protocol["concepts"]),
            images=protocol["images"],
            erased=dict(metrics["erased"]),
            preserved=dict(metrics["preserved"]),
            pruned_fraction=protocol["pruned_fraction"],
        )

    def done(self, run: BenchmarkRun, rendered: RenderedImages) -> ProgressEvent:
        """Done, with every image of the run counted."""
        total = 4 * run.options.images
        return ProgressEvent(stage="done", message="evaluation done", completed=total, total=total)


def _read_png(path: Path) -> np.ndarray:
    """An image of the engine's folder as the uint8 HxWx3 array :func:`generate_images` returns."""
    from cpedit.eval.image_files import read_rgb

    return np.asarray(read_rgb(path), dtype=np.uint8)
