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
    >>> from cpedit.eval.shapes import evaluate_shapes
    >>> result = evaluate_shapes("shapes-no-stripes", images=64)
    >>> result.erased_after < result.erased_before
    True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpedit.errors import CpeditError
from cpedit.output.record import Evaluation, Report, read_output, write_evaluation
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit, step_events
from cpedit.recipes.format import Recipe
from cpedit.shapes import world
from cpedit.shapes.classifier import HEADS, classify, load_classifier

BENCHMARK = "shapes"
"""Results are also kept in ``EDITED/conceptprune/eval/shapes.json`` (model cards read them)."""

__all__ = ["ShapesEvaluation", "evaluate_shapes", "record_result"]


@dataclass(frozen=True)
class ShapesEvaluation:
    """What ``cpedit eval shapes`` measured (fractions in [0, 1])."""

    concepts: list[str]
    images: int
    erased_before: float
    erased_after: float
    preserved_before: float
    preserved_after: float
    pruned_fraction: float
    preserved_by_attribute: dict[str, dict[str, float]] = field(default_factory=dict)
    """``{"before": {"shape": ..}, "after": {..}}``: the preservation per attribute."""

    def to_json(self) -> dict[str, Any]:
        """The benchmark's JSON: exactly the documented keys."""
        return {
            "concepts": list(self.concepts),
            "images": self.images,
            "erased": {"before": self.erased_before, "after": self.erased_after},
            "preserved": {"before": self.preserved_before, "after": self.preserved_after},
            "pruned_fraction": self.pruned_fraction,
        }

    def to_evaluation(self) -> Evaluation:
        """The result as the output record keeps it (``conceptprune/eval/shapes.json``)."""
        return Evaluation.from_dict(BENCHMARK, self.to_json(), source=f"{BENCHMARK} benchmark")


def erased_values(report: Report, edited: Path) -> dict[str, tuple[str, str]]:
    """Map each erased concept to the (attribute, value) of the world it names.

    Raises:
        CpeditError: a concept is not a value of the shapes world.
    """
    found: dict[str, tuple[str, str]] = {}
    for concept in report.concepts:
        name = concept.concept.strip().lower()
        match = [(attribute, name) for attribute, values in world.ATTRIBUTES.items() if name in values]
        if not match:
            values = ", ".join(v for vs in world.ATTRIBUTES.values() for v in vs)
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
    erased: list[tuple[str, str]], *, images: int, seed: int, exclude: set[str]
) -> tuple[list[world.Scene], list[world.Scene]]:
    """``images`` scenes that ask for an erased value, and ``images`` that ask for none.

    Scenes are drawn from every combination of the world with ``seed``; scenes whose
    caption was a calibration prompt are skipped.
    """
    asks = [s for s in world.all_scenes() if world.caption(s) not in exclude]
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
    predictions = classify(classifier, shown)
    if mode == "erased":
        still = [
            any(scene.value(a) == v and p[a] == v for a, v in erased)
            for p, scene in zip(predictions, asked, strict=True)
        ]
        return float(np.mean(still)), {}
    per_attribute = {
        name: float(np.mean([p[name] == scene.value(name) for p, scene in zip(predictions, asked, strict=True)]))
        for name in HEADS
    }
    return float(np.mean(list(per_attribute.values()))), per_attribute


def evaluate_shapes(
    edited: str | os.PathLike[str],
    *,
    images: int = 128,
    seed: int = 0,
    steps: int = 25,
    guidance_scale: float = 7.5,
    batch_size: int = 64,
    device: str = "auto",
    images_dir: str | os.PathLike[str] | None = None,
    pipeline_for: Callable[[str], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ShapesEvaluation:
    """Compare an edited shapes model with its base on erasure and preservation.

    The images are made by the evaluation engine (:func:`cpedit.eval.engine.render_images`):
    kept as PNG files with a ``manifest.jsonl`` in ``images_dir``, reused by a later or
    interrupted run, the base model's images cached. Image ``i`` of the erased set is seeded
    ``seed + i``, of the preserved set ``seed + 1_000_000 + i``, the same for both models.

    Args:
        edited: A cpedit output folder whose base is a shapes-world model (normally
            ``builtin:shapes``) and whose recipes erase values of the world.
        images: Images per prompt set (erased and preserved), per model.
        seed: Draws the prompts and seeds the images (the same for both models).
        steps: Denoising steps per image.
        guidance_scale: Classifier-free guidance scale.
        batch_size: Images generated at once.
        device: Where to run (``auto``: CUDA if available, else CPU).
        images_dir: Where the images are kept (default ``EDITED/conceptprune/eval/images/shapes``).
        on_progress: Receives ``load``, ``sample`` (images of the run) and ``evaluate`` events.
        cancel: Stops the evaluation at the next image batch with :class:`~cpedit.errors.Cancelled`
            (the images made so far are kept for the next run).

    Returns:
        The measurements; :meth:`ShapesEvaluation.to_json` is the benchmark's JSON.

    Raises:
        CpeditError: ``edited`` is not a cpedit output, its base is not recorded, or a
            concept is not a value of the shapes world.
        ModelLoadError: a model cannot be loaded.
    """
    from cpedit.eval.engine import PromptSpec, default_images_dir, render_images

    if images < 1:
        raise CpeditError(f"images must be at least 1, got {images}", argument="images")
    folder = Path(edited)
    record = read_output(folder)  # the one checked reader: types, recipe paths, links, completeness
    report = record.report
    erased_by_recipe = erased_values(report, folder)
    erased = sorted(set(erased_by_recipe.values()))
    if not report.base_ref:
        raise CpeditError(f"{folder}: the report does not record a base model to compare with")
    with_concept, without = evaluation_prompts(
        erased, images=images, seed=seed, exclude=_calibration_prompts(record.recipes)
    )
    sets = (("erased", with_concept), ("preserved", without))
    specs = [
        PromptSpec(world.caption(scene), seed=seed + 1_000_000 * offset + i)
        for offset, (_, scenes) in enumerate(sets)
        for i, scene in enumerate(scenes)
    ]
    rendered = render_images(
        record,
        specs,
        folder=images_dir if images_dir is not None else default_images_dir(folder, BENCHMARK),
        base=True,
        seed=seed,
        steps=steps,
        guidance_scale=guidance_scale,
        batch_size=batch_size,
        device=device,
        pipeline_for=pipeline_for,
        on_progress=on_progress,
        cancel=cancel,
    )
    classifier = load_classifier()
    results: dict[str, dict[str, Any]] = {}
    for phase, entries in (("before", rendered.base), ("after", rendered.edited)):
        measured: dict[str, Any] = {}
        for offset, (mode, scenes) in enumerate(sets):
            check_cancel(cancel, "during the evaluation")
            emit(on_progress, ProgressEvent(stage="evaluate", message=f"{phase}: judging {len(scenes)} {mode} images"))
            chosen = entries[offset * images : (offset + 1) * images]
            shown = np.stack([_read_png(entry.path(rendered.folder)) for entry in chosen])
            measured[mode] = score_images(classifier, shown, scenes, erased, mode=mode)
        results[phase] = measured
    total = 4 * images
    emit(on_progress, ProgressEvent(stage="done", message="evaluation done", completed=total, total=total))
    totals = report.totals
    return ShapesEvaluation(
        concepts=[v for _, v in erased],
        images=images,
        erased_before=results["before"]["erased"][0],
        erased_after=results["after"]["erased"][0],
        preserved_before=results["before"]["preserved"][0],
        preserved_after=results["after"]["preserved"][0],
        pruned_fraction=totals.pruned_weights / totals.denoiser_weights,
        preserved_by_attribute={phase: results[phase]["preserved"][1] for phase in ("before", "after")},
    )


def _read_png(path: Path) -> np.ndarray:
    """An image of the engine's folder as the uint8 HxWx3 array :func:`generate_images` returns."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def record_result(edited: str | os.PathLike[str], evaluation: ShapesEvaluation) -> Path:
    """Keep the result in ``EDITED/conceptprune/eval/shapes.json`` (read by model cards)."""
    return write_evaluation(edited, evaluation.to_evaluation())
