"""The public entry point: :func:`prune` a pipeline with one or more recipes.

Example:
    >>> import cpedit
    >>> result = cpedit.prune(
    ...     "CompVis/stable-diffusion-v1-4",
    ...     ["van-gogh", "recipes/artists/monet.yaml"],
    ...     out="sd14-no-van-gogh-monet",
    ...     on_progress=lambda event: print(event.message),
    ... )
    >>> result.report["totals"]["pruned_fraction"]
"""

from __future__ import annotations

import dataclasses
import os
import platform
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from cpedit.architectures import find_target_layers, require_support
from cpedit.calibration import ConceptStats, calibrate, check_batch_size, check_calibration_fits, is_text_target
from cpedit.errors import CpeditError, PruneCancelled, UnsupportedModelError
from cpedit.ffn import FFNLayer, execution_device, get_denoiser
from cpedit.loading import ModelSource, check_offload, open_pipeline
from cpedit.output import (
    atomic_folder,
    check_not_inside,
    check_output_target,
    copy_pipeline_folder,
    write_record,
    zero_weights_in_files,
)
from cpedit.progress import ProgressCallback, ProgressEvent, emit
from cpedit.recipes import SLUG, Recipe, resolve_recipe
from cpedit.sampling import SampleSettings, render_preview
from cpedit.selection import count_pruned, layer_mask, union

REPORT_VERSION = 1


@dataclass
class PruneResult:
    """What :func:`prune` did.

    Attributes:
        pipeline: The pruned pipeline, still in memory (on the compute device).
        masks: The pruned weights: per hooked layer (its :attr:`~cpedit.ffn.FFNLayer.key`:
            the module name for denoiser layers, ``component/name`` for text encoder
            layers), a bool CPU tensor shaped like the whole weight (True = zeroed); the
            union over all recipes.
        concept_masks: The same, per recipe name, before the union.
        report: The run report (also written to ``OUT/conceptprune/report.json``).
        output: The output folder, or None when ``out`` was not given.
    """

    pipeline: Any
    masks: dict[str, torch.Tensor]
    concept_masks: dict[str, dict[str, torch.Tensor]]
    report: dict[str, Any]
    output: Path | None


def prune(
    model: str | os.PathLike[str] | Any,
    recipes: Sequence[str | os.PathLike[str] | Recipe],
    *,
    out: str | os.PathLike[str] | None = None,
    revision: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    batch_size: int | None = None,
    overwrite: bool = False,
    offload: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    preview: bool = False,
    preview_settings: SampleSettings | None = None,
) -> PruneResult:
    """Erase the recipes' concepts from a pipeline by pruning skilled FFN weights.

    Every recipe is validated before the model loads. Each recipe is calibrated once on
    the unpruned model; the union of their skilled sets is pruned (multi-concept erasure).
    Recipes may use different hook targets (``prune.target``) or streams: each is
    calibrated on its own layers, and the union is taken per layer.

    Args:
        model: A Hub id, a local diffusers pipeline folder, or an already loaded pipeline
            (then ``device``/``dtype``/``revision`` are not used and the output is written
            with ``save_pretrained``).
        recipes: Recipe files, names of shipped recipes, or :class:`Recipe` objects.
        out: Where to write the pruned pipeline folder; None keeps it in memory only.
        revision: Hub branch, tag or commit.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        dtype: ``float32``, ``float16`` or ``bfloat16``; default float16 on CUDA, else float32.
        batch_size: Prompts per calibration batch; None picks the largest that fits.
        overwrite: Replace ``out`` if it exists.
        offload: Model CPU offload (``enable_model_cpu_offload``): components wait in host
            memory and move to the GPU one at a time, so large models (FLUX) calibrate on a
            small GPU. CUDA only; refused elsewhere.
        on_progress: Receives a :class:`~cpedit.progress.ProgressEvent` per step.
        cancel: Set it (from another thread) to stop at the next denoiser call, or before
            saving; nothing is written.
        preview: Also render the before/after grid of the recipes' preview prompts into
            ``OUT/conceptprune/preview.png`` (before the output is moved into place), as
            ``cpedit sample OUT --compare`` renders it; needs ``out`` and a model id or folder.
        preview_settings: Steps, guidance, seed and size of the preview (default
            :class:`~cpedit.sampling.SampleSettings`).

    Returns:
        A :class:`PruneResult`.

    Raises:
        CpeditError: Bad arguments (batch size, device, dtype; ``out`` would replace the
            base model), or a recipe's tau exceeds the scheduler's denoiser calls.
        RecipeError: A recipe is invalid (raised before loading the model).
        ModelLoadError: The model cannot be found or loaded.
        UnsupportedModelError: The pipeline class is not supported (the message names what
            is missing), or it has no layers of a recipe's target.
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        PruneCancelled: ``cancel`` was set.
    """
    started = time.perf_counter()
    loaded = [resolve_recipe(r) for r in recipes]
    _check_recipes(loaded)
    check_batch_size(batch_size)
    in_memory = not isinstance(model, (str, os.PathLike))
    if in_memory and (device != "auto" or dtype is not None or revision is not None or offload):
        raise CpeditError(
            "device, dtype, revision and offload apply when cpedit loads the model; move the pipeline yourself"
        )
    if offload:
        check_offload(device)
    if preview:
        _check_preview(loaded, out=out, in_memory=in_memory)
    out_path = check_output_target(out, overwrite=overwrite) if out is not None else None
    if out_path is not None and not in_memory:
        check_not_inside(out_path, model)

    name = type(model).__name__ if in_memory else os.fspath(model)
    emit(on_progress, ProgressEvent(stage="load", message=f"loading {name}"))
    source: ModelSource | None = None
    if in_memory:
        pipe = model
    else:
        source, pipe = open_pipeline(model, revision=revision, device=device, dtype=dtype, offload=offload)
    spec = require_support(pipe)
    denoiser = get_denoiser(pipe)
    recipe_layers: dict[str, list[FFNLayer]] = {}
    for recipe in loaded:  # every recipe, before the first one spends time calibrating
        found = find_target_layers(pipe, spec, target=recipe.prune.target, stream=recipe.prune.stream)
        if not found:
            raise UnsupportedModelError(
                f"{recipe.source}: {type(pipe).__name__} has no layers for prune.target = {recipe.prune.target} "
                f"(stream {recipe.prune.stream})"
            )
        recipe_layers[recipe.name] = found
        check_calibration_fits(pipe, recipe)
    layers = list({layer.key: layer for found in recipe_layers.values() for layer in found}.values())
    timings = {"load": time.perf_counter() - started}

    stats: list[ConceptStats] = []
    for recipe in loaded:
        stats.append(
            calibrate(
                pipe,
                recipe,
                recipe_layers[recipe.name],
                batch_size=batch_size,
                on_progress=on_progress,
                cancel=cancel,
            )
        )
    timings["calibrate"] = sum(s.seconds for s in stats)

    mark = time.perf_counter()
    concept_masks: dict[str, dict[str, torch.Tensor]] = {}
    for concept in stats:
        emit(
            on_progress,
            ProgressEvent(stage="score", message=f"scoring {concept.recipe.name}", concept=concept.recipe.name),
        )
        settings = concept.recipe.prune
        if is_text_target(concept.recipe):
            settings = dataclasses.replace(settings, timesteps=1)  # one forward per prompt: one "timestep"
        concept_masks[concept.recipe.name] = {
            layer.key: layer_mask(layer, concept.sums[layer.key], settings).cpu()
            for layer in recipe_layers[concept.recipe.name]
        }
        concept.sums = {}  # free the accumulators as soon as they are scored
    masks = union(list(concept_masks.values()))
    emit(on_progress, ProgressEvent(stage="prune", message=f"pruning {count_pruned(masks):,} weights"))
    apply_masks(layers, masks)
    timings["score"] = time.perf_counter() - mark

    component = _component_name(pipe, denoiser)
    report = build_report(
        source=source,
        component=component,
        denoiser=denoiser,
        layers=layers,
        masks=masks,
        concept_masks=concept_masks,
        stats=stats,
        timings=timings,
        pipe=pipe,
        recipe_layers=recipe_layers,
    )
    if out_path is not None:
        if cancel is not None and cancel.is_set():
            raise PruneCancelled("cancelled before saving; nothing was written")
        mark = time.perf_counter()
        emit(on_progress, ProgressEvent(stage="save", message=f"writing {out_path}"))
        with atomic_folder(out_path, overwrite=overwrite) as tmp:
            if source is not None:
                report["skipped_files"] = copy_pipeline_folder(source.path, tmp)  # written below, with the record
                for edited in report["edited_components"]:
                    zero_weights_in_files(
                        tmp / edited, {layer.name: masks[layer.key] for layer in layers if layer.component == edited}
                    )
            else:
                pipe.save_pretrained(tmp, safe_serialization=True)
            timings["save"] = time.perf_counter() - mark
            timings["total"] = time.perf_counter() - started
            write_record(tmp, masks=masks, recipes=loaded, report=report, denoiser=component)
            if preview:
                if cancel is not None and cancel.is_set():
                    raise PruneCancelled("cancelled before the preview; nothing was written")
                render_preview(tmp, settings=preview_settings, device=device, dtype=dtype, on_progress=on_progress)
    else:
        timings["total"] = time.perf_counter() - started
    emit(on_progress, ProgressEvent(stage="done", message="done"))
    return PruneResult(pipeline=pipe, masks=masks, concept_masks=concept_masks, report=report, output=out_path)


def apply_masks(layers: Sequence[FFNLayer], masks: dict[str, torch.Tensor]) -> None:
    """Zero the masked weights of the layers in place (on their device)."""
    with torch.no_grad():
        for layer in layers:
            mask = masks.get(layer.key)
            if mask is not None and bool(mask.any()):
                layer.module.weight[mask.to(layer.module.weight.device)] = 0


def _check_recipes(recipes: list[Recipe]) -> None:
    if not recipes:
        raise CpeditError("give at least one recipe (a file or a shipped recipe name; see `cpedit recipes list`)")
    seen: dict[str, str] = {}
    for recipe in recipes:
        if not SLUG.match(recipe.name):  # a Recipe built in code skips the file validation; the name is a file name
            raise CpeditError(f"recipe name {recipe.name!r} is not a slug (lowercase letters, digits, hyphens)")
        if recipe.name in seen:
            raise CpeditError(
                f"two recipes are named {recipe.name!r} ({seen[recipe.name]} and {recipe.source}); names must differ"
            )
        seen[recipe.name] = recipe.source


def _check_preview(recipes: list[Recipe], *, out: object, in_memory: bool) -> None:
    if out is None:
        raise CpeditError("preview needs an output folder (out): the grid is saved in OUT/conceptprune/preview.png")
    if in_memory:
        raise CpeditError("preview needs a model id or folder (it renders the base model beside the pruned one)")
    if not any(recipe.preview_prompts for recipe in recipes):
        raise CpeditError("preview: none of the recipes has preview prompts; add `preview: {prompts: [...]}` to one")


def _component_name(pipe: Any, denoiser: torch.nn.Module) -> str:
    for name in ("unet", "transformer"):
        if getattr(pipe, name, None) is denoiser:
            return name
    raise CpeditError(f"cannot tell which component of {type(pipe).__name__} is the denoiser")


def library_versions() -> dict[str, str]:
    """Versions of cpedit and the libraries that determine its results."""
    versions = {"python": platform.python_version()}
    for package in ("cpedit", "torch", "diffusers", "transformers", "huggingface_hub", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def build_report(
    *,
    source: ModelSource | None,
    component: str,
    denoiser: torch.nn.Module,
    layers: Sequence[FFNLayer],
    masks: dict[str, torch.Tensor],
    concept_masks: dict[str, dict[str, torch.Tensor]],
    stats: Sequence[ConceptStats],
    timings: dict[str, float],
    pipe: Any = None,
    recipe_layers: dict[str, list[FFNLayer]] | None = None,
) -> dict[str, Any]:
    """The JSON-ready run report (``conceptprune/report.json``).

    ``timings`` is referenced, not copied, so times filled in later (save, total) appear.
    ``totals.pruned_fraction`` is relative to the weights of the components edited (the
    denoiser, and the text encoders for ``text-ffn``); ``ffn_weights`` counts the hooked
    layers' weights.
    """
    unet_weights = sum(p.numel() for p in denoiser.parameters())
    ffn_weights = sum(layer.module.weight.numel() for layer in layers)
    edited = list(dict.fromkeys(layer.component for layer in layers))
    edited_weights = 0
    for name in edited:
        module = denoiser if name == component or pipe is None else getattr(pipe, name)
        edited_weights += sum(p.numel() for p in module.parameters())
    targets = {
        layer.key: s.recipe.prune.target for s in stats for layer in (recipe_layers or {}).get(s.recipe.name, [])
    }
    pruned = count_pruned(masks)
    parameter = next(denoiser.parameters())
    return {
        "report_version": REPORT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": {
            "id": source.ref if source is not None else None,
            "local": source.is_local if source is not None else None,
            "path": str(source.path) if source is not None and source.is_local else None,
            "revision": source.revision if source is not None else None,
            "commit": source.commit if source is not None else None,
        },
        "denoiser": {"component": component, "class": type(denoiser).__name__},
        "pipeline": type(pipe).__name__ if pipe is not None else None,
        "edited_components": edited,
        "compute": {
            "device": str(execution_device(pipe) if pipe is not None else parameter.device),
            "dtype": str(parameter.dtype).removeprefix("torch."),
        },
        "offload": getattr(denoiser, "_hf_hook", None) is not None,
        "concepts": [
            {
                "name": s.recipe.name,
                "concept": s.recipe.concept,
                "kind": s.recipe.kind,
                "recipe": f"conceptprune/recipes/{s.recipe.name}.yaml",
                "prompt_pairs": len(s.recipe.targets),
                "skill_ratio": s.recipe.prune.skill_ratio,
                "timesteps": s.recipe.prune.timesteps,
                "select_ratio": s.recipe.prune.select_ratio,
                "target": s.recipe.prune.target,
                "stream": s.recipe.prune.stream,
                **(
                    {"timesteps_note": "ignored: text-ffn runs one text-encoder forward per prompt, no timesteps"}
                    if is_text_target(s.recipe)
                    else {}
                ),
                "steps": s.recipe.sampling.steps,
                "guidance_scale": s.recipe.sampling.guidance_scale,
                "seed": s.recipe.sampling.seed,
                "batch_size": s.batch_size,
                "batches": s.batches,
                "unet_calls": s.unet_calls,
                "calibrate_seconds": round(s.seconds, 3),
                "accumulator_bytes": s.accumulator_bytes,
                "pruned_weights": count_pruned(concept_masks[s.recipe.name]),
            }
            for s in stats
        ],
        "layers": [
            {
                "name": layer.key,
                "shape": list(layer.shape),
                "pruned": int(masks[layer.key].sum()),
                "component": layer.component,
                "target": targets.get(layer.key, "ffn"),
                **({"columns": list(layer.columns)} if layer.columns is not None else {}),
            }
            for layer in layers
        ],
        "totals": {
            "pruned_weights": pruned,
            "ffn_weights": ffn_weights,
            "unet_weights": unet_weights,
            "edited_weights": edited_weights,
            "pruned_fraction": pruned / edited_weights,
            "pruned_fraction_of_ffn": pruned / ffn_weights,
        },
        "unet_calls": sum(s.unet_calls for s in stats),
        "skipped_files": [],
        "versions": library_versions(),
        "timings_s": timings,
    }
