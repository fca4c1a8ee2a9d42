"""Looking at an output: its base and edited models side by side, and the preview grid in its record.

Sampling itself (seeded images, grids) is :mod:`cpedit.models.sampling`; this module knows the output
folder: which base model it records, which components it edited, where the preview goes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from cpedit.errors import CpeditError, ModelLoadError
from cpedit.models import loading
from cpedit.models.compute import ComputeOptions
from cpedit.models.sampling import (
    SampleSettings,
    animation_path,
    check_sample_settings,
    clip_frames,
    generate,
    image_grid,
    save_animation,
    save_png,
)
from cpedit.output.record import PREVIEW_FILE, RECORD_DIR, REPORT_FILE, read_output
from cpedit.progress import ProgressCallback


def compare_samples(
    edited: str,
    *,
    settings: SampleSettings,
    prompts: Sequence[str] | None = None,
    compute: ComputeOptions = ComputeOptions(),
    safety_checker: bool = True,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Image.Image:
    """Render the base model and a cpedit output side by side, with the same seeds.

    The base model is the one recorded in ``EDITED/conceptprune/report.json``; only the
    components the run edited (its denoiser, or text encoders) are loaded (everything else is
    identical by construction).

    Args:
        edited: A cpedit output folder.
        settings: Steps, guidance, seed and size, the same for both models.
        prompts: Prompts to render; default: the preview prompts of the recipes used.
        compute: The device and dtype to render with. No revision (the base model's comes from
            the report) and no offload (the base's components are swapped into the loaded pipeline).
        safety_checker: Keep the model's safety checker, if it has one (both columns).
        on_progress: Receives one ``sample`` event per image.
        cancel: Stops the rendering with :class:`~cpedit.errors.Cancelled`.

    Raises:
        CpeditError: ``edited`` is not a cpedit output, no prompts are available, or ``compute`` asks
            for offload.
        ModelLoadError: The edited folder or the base model cannot be loaded (or ``compute`` names a revision).
    """
    check_sample_settings(settings)
    compute.refuse_offload("the base model's components are swapped into the loaded pipeline")
    record = read_output(edited)  # the one checked reader: types, recipe paths, links, completeness
    report = record.report
    if not prompts:
        prompts = []
        for recipe in record.recipes:
            prompts += list(recipe.preview_prompts)
        if not prompts:
            raise CpeditError(
                f"{edited}: its recipes have no preview prompts; give prompts", path=str(edited), argument="prompts"
            )
    base = report.base_model
    if not report.base_ref:
        raise CpeditError(
            f"{edited}: the report does not record a base model to compare with", path=str(edited), reason="no_base"
        )
    try:
        source = loading.resolve_source(
            report.base_ref,
            revision=None if base.local else (base.commit or base.revision),
            on_progress=on_progress,
            cancel=cancel,
        )
    except ModelLoadError as exc:
        field_name = "base_model.path" if base.path else "base_model.id"
        raise ModelLoadError(
            f"{edited}/{RECORD_DIR}/{REPORT_FILE}: the base model it records ({field_name}) cannot be used: {exc}",
            path=str(Path(edited) / RECORD_DIR / REPORT_FILE),
            repo_id=exc.repo_id,
            reason=exc.reason,
        ) from None
    _, pipe = loading.open_pipeline(
        edited, compute=compute, safety_checker=safety_checker, on_progress=on_progress, cancel=cancel
    )
    pruned_images = generate(pipe, prompts, settings, label="pruned", on_progress=on_progress, cancel=cancel)

    # Swap back every component the run edited (the denoiser; the text encoders for text-ffn).
    loading.load_base_components(pipe, source.path, report.edited_components, cancel=cancel)
    base_images = generate(pipe, prompts, settings, label="base", on_progress=on_progress, cancel=cancel)
    return image_grid([base_images, pruned_images], column_labels=["base", "pruned"], row_labels=list(prompts))


def save_preview(edited: str | os.PathLike[str], grid: Image.Image) -> Path:
    """Write a before/after grid as the output's preview (``EDITED/conceptprune/preview.png``), atomically.

    The model card embeds it and ``cpedit push`` uploads it. For a video model the PNG is the
    grid of frame strips and ``preview.gif`` beside it the animated grid (:func:`save_animation`).
    """
    written = save_png(grid, Path(edited) / RECORD_DIR / PREVIEW_FILE, what="the preview")
    if clip_frames(grid):
        save_animation(grid, animation_path(written), what="the animated preview")
    return written


def render_preview(
    edited: str | os.PathLike[str],
    *,
    settings: SampleSettings | None = None,
    compute: ComputeOptions = ComputeOptions(),
    safety_checker: bool = True,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Render the before/after grid of the recipes' preview prompts into the output folder.

    The same rendering as :func:`compare_samples` (base and pruned, same seeds, the model's
    safety checker on unless ``safety_checker`` is False, ``compute`` as there), saved with
    :func:`save_preview`.

    Raises:
        CpeditError: ``edited`` is not a cpedit output, its recipes have no preview prompts, or
            ``compute`` asks for offload.
        ModelLoadError: A model cannot be loaded.
    """
    grid = compare_samples(
        os.fspath(edited),
        settings=settings or SampleSettings(),
        compute=compute,
        safety_checker=safety_checker,
        on_progress=on_progress,
        cancel=cancel,
    )
    return save_preview(edited, grid)
