"""The one-call entry point: :func:`prune` a pipeline with one or more recipes.

:func:`prune` is a thin composition of an :class:`~cpedit.edit.session.EditSession`: the one
preflight (:func:`cpedit.edit.preflight.preflight`: recipes, conceal, preview, output folder, before
anything loads), open (load the model), calibrate, select each recipe's own settings, apply, save.

Example:
    >>> import cpedit
    >>> result = cpedit.prune(
    ...     "CompVis/stable-diffusion-v1-4",
    ...     ["van-gogh", "recipes/artists/monet.yaml"],
    ...     out="sd14-no-van-gogh-monet",
    ...     on_progress=lambda event: print(event.message),
    ... )
    >>> result.report.totals.pruned_fraction
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cpedit import distributed
from cpedit.edit.collapse import CollapseGuard
from cpedit.edit.memory import estimate_memory, refuse_if_it_cannot_fit
from cpedit.edit.preflight import preflight
from cpedit.edit.session import EditSession
from cpedit.errors import CpeditWarning
from cpedit.models.compute import ComputeOptions
from cpedit.models.loading import ModelSource
from cpedit.models.sampling import SampleSettings, warn_truncated
from cpedit.output.folder import check_free_space, output_size
from cpedit.output.record import Report
from cpedit.progress import ProgressCallback, ProgressEvent, emit
from cpedit.recipes.conceal import Conceal
from cpedit.recipes.format import Recipe


@dataclass
class PruneResult:
    """What :func:`prune` did.

    Attributes:
        pipeline: The pruned pipeline, still in memory (on the compute device).
        masks: The pruned weights: per hooked layer (its :attr:`~cpedit.models.ffn.FFNLayer.key`:
            the module name for denoiser layers, ``component/name`` for text encoder
            layers), a bool CPU tensor shaped like the whole weight (True = zeroed); the
            union over all recipes.
        concept_masks: The same, per recipe name, before the union.
        report: The run :class:`~cpedit.output.record.Report` (also written to
            ``OUT/conceptprune/report.json``; :meth:`~cpedit.output.record.Report.to_dict` is its JSON).
        output: The output folder, or None when ``out`` was not given.
        session: The edit session behind the run (select, apply and restore again without recalibrating).
    """

    pipeline: Any
    masks: dict[str, torch.Tensor]
    concept_masks: dict[str, dict[str, torch.Tensor]]
    report: Report
    output: Path | None
    session: EditSession | None = None


def prune(
    model: str | os.PathLike[str] | Any,
    recipes: Sequence[str | os.PathLike[str] | Recipe],
    *,
    out: str | os.PathLike[str] | None = None,
    compute: ComputeOptions = ComputeOptions(),
    batch_size: int | None = None,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    preview: bool = False,
    preview_settings: SampleSettings | None = None,
    conceal: str | Conceal | None = None,
    conceal_scale: str | None = None,
    conceal_seed: int | None = None,
    memory_check: bool = True,
    collapse_check: bool | CollapseGuard = False,
) -> PruneResult:
    """Erase the recipes' concepts from a pipeline by pruning skilled weights.

    Every recipe is validated before the model loads. Each recipe is calibrated once on
    the unpruned model; the union of their skilled sets is pruned (multi-concept erasure).
    Recipes may use different hook targets (``prune.target``) or streams: each is
    calibrated on its own layers, and the union is taken per layer.

    Args:
        model: A Hub id, a local diffusers pipeline folder, ``builtin:shapes``, or an already
            loaded pipeline (then ``compute`` keeps its defaults and the output
            is written with ``save_pretrained``).
        recipes: Recipe files, names of shipped recipes, ``hub:`` references or :class:`Recipe` objects.
        out: Where to write the pruned pipeline folder; None keeps it in memory only.
        compute: Where and how the model loads (:class:`~cpedit.models.compute.ComputeOptions`):
            device, dtype, Hub revision, and model CPU offload (components wait in host memory and
            move to the GPU one at a time, so large models such as FLUX calibrate on a small GPU;
            CUDA only, refused elsewhere).
        batch_size: Prompts per calibration batch; None picks the largest that fits.
        overwrite: Replace ``out`` if it exists.
        on_progress: Receives a :class:`~cpedit.progress.ProgressEvent` per step.
        cancel: Set it (from another thread) to stop at the next check (every download chunk,
            denoiser call, scored layer, copied file); nothing is written.
        preview: Also render the before/after grid of the recipes' preview prompts into
            ``OUT/conceptprune/preview.png`` (from the in-memory pipeline, before the output is
            moved into place); needs ``out``.
        preview_settings: Steps, guidance, seed and size of the preview (default
            :class:`~cpedit.models.sampling.SampleSettings`).
        conceal: How the pruned entries are filled: ``zero`` (the paper's) or ``gaussian``
            (draws matching the layer's own weights, so exact zeros do not mark the edit; see
            :mod:`cpedit.edit.conceal`); None: the recipes' ``prune.conceal`` (default ``zero``).
            Checked before the model loads.
        conceal_scale: ``row`` or ``layer``: where ``gaussian`` measures its spread; None: the recipes'.
        conceal_seed: Seeds the ``gaussian`` draws; None: a random seed, recorded in the local report.
        memory_check: Before the model loads (once its files are here), estimate the memory the run
            needs (:func:`cpedit.edit.memory.estimate_memory`; reported as a ``load`` event) and
            refuse a run that will not fit; False reports the estimate and goes ahead anyway.
        collapse_check: After the edit is applied, render a few unrelated prompts with the base and
            the edited weights and check that generation still works (:mod:`cpedit.edit.collapse`;
            8 small renders by default). True uses the default :class:`~cpedit.edit.collapse.CollapseGuard`;
            a guard, its prompts, steps and threshold. The result is the report's ``collapse_check``
            (``result.report.collapse_check.collapsed``); a collapse does not stop the run.

    Returns:
        A :class:`PruneResult`.

    Raises:
        CpeditError: Bad arguments (batch size, a device not available here; ``out`` would replace the
            base model), or a recipe's tau exceeds the scheduler's denoiser calls.
        RecipeError: A recipe is invalid (raised before loading the model).
        ModelLoadError: The model cannot be found or loaded.
        UnsupportedModelError: The pipeline class is not supported (the message names what
            is missing), or it has no layers of a recipe's target.
        OutputExistsError: ``out`` exists and ``overwrite`` is False.
        CpeditError: ``reason="out_of_memory"``: the estimate says the run will not fit in the
            device's or the host's free memory (the message gives the numbers and what to change).
        CpeditError: ``reason="no_space"``: the output's disk has less space free than the output
            needs (checked before loading a local base, after downloading a Hub one, again before
            saving), or it filled up while saving (nothing is left behind); ``unwritable``: the
            output's nearest existing parent folder is not writable (checked before loading;
            missing parent folders are created).
        Cancelled: ``cancel`` was set.

    Warns:
        CpeditWarning: A prompt is longer than the text encoder reads (only its start is used),
            has words the model's text encoder does not know (:mod:`cpedit.models.vocabulary`), or no
            weight was pruned (the output equals the base model).
    """
    checked = preflight(
        model,
        recipes,
        out=out,
        overwrite=overwrite,
        preview=preview,
        conceal=conceal,
        conceal_scale=conceal_scale,
        conceal_seed=conceal_seed,
    )
    loaded, out_path = checked.recipes, checked.out

    def estimate(source: ModelSource) -> None:
        found = estimate_memory(source.path, loaded, compute=compute, batch_size=batch_size)
        emit(on_progress, ProgressEvent(stage="load", message=found.describe()))
        if memory_check:
            refuse_if_it_cannot_fit(found)

    session = EditSession.open(
        model,
        loaded,
        compute=compute,
        batch_size=batch_size,
        on_progress=on_progress,
        cancel=cancel,
        before_load=estimate,
    )
    warn_truncated(session.pipeline, [p for recipe in loaded for pair in recipe.pairs() for p in pair])
    try:
        if out_path is not None and session.source is not None:
            check_free_space(out_path, output_size(session.source.path))  # a Hub download: before calibrating
        session.calibrate(on_progress=on_progress, cancel=cancel)
        selection = session.select(on_progress=on_progress, cancel=cancel)
        if selection.pruned == 0:
            warnings.warn(
                CpeditWarning(
                    "no weight was pruned: the recipes' target and base prompts activate the same weights; "
                    "the output equals the base model. Check the prompt pairs, or raise prune.skill_ratio"
                ),
                stacklevel=2,
            )
        session.apply(
            selection,
            conceal=conceal,
            conceal_scale=conceal_scale,
            conceal_seed=conceal_seed,
            on_progress=on_progress,
            cancel=cancel,
        )
        if collapse_check is not False:
            guard = collapse_check if isinstance(collapse_check, CollapseGuard) else None
            session.check_collapse(guard, on_progress=on_progress, cancel=cancel)
        if out_path is not None:
            target = out_path

            def save() -> Report:
                return session.save(
                    target,
                    overwrite=overwrite,
                    preview=preview,
                    preview_settings=preview_settings,
                    on_progress=on_progress,
                    cancel=cancel,
                ).report

            # Under a multi-process launch every rank calibrated its share and holds the same edit:
            # rank 0 alone writes the folder, the others wait for it and return its report.
            report = distributed.main_first(save)
        else:
            report = session.report()
    except BaseException:
        # A pipeline given in memory is left as it came (a loaded one is dropped anyway).
        session.restore(on_progress=on_progress)
        raise
    emit(on_progress, ProgressEvent(stage="done", message="done"))
    return PruneResult(
        pipeline=session.pipeline,
        masks=selection.masks,
        concept_masks=selection.concept_masks,
        report=report,
        output=out_path,
        session=session,
    )
