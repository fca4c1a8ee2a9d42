"""The run report of an edit: what ``OUT/conceptprune/report.json`` records, built from the session's state.

The schema, its JSON and its one reader are :mod:`cpedit.output.record`'s; this module maps an
edit (the pipeline, the recipes' layers and calibration statistics, the applied selection, the
timings) onto it. It lives in the edit layer because it reads the edit's own types
(:class:`~cpedit.edit.calibration.ConceptStats`, :class:`~cpedit.edit.selection.Selection`),
which the output layer below does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from cpedit.edit.calibration import ConceptStats, is_text_target
from cpedit.edit.selection import Selection
from cpedit.models.ffn import FFNLayer, execution_device, get_denoiser
from cpedit.models.loading import ModelSource
from cpedit.output.collapse import CollapseCheck
from cpedit.output.record import RECORD_DIR, BaseModelInfo, ConceptRecord, LayerRecord, Report, Totals
from cpedit.recipes.conceal import Conceal
from cpedit.recipes.format import Recipe

TIMED_STEPS = ("load", "calibrate", "score", "collapse_check", "save", "preview")
"""The steps whose seconds add up to the report's ``timings_s.total``."""


def build_report(
    *,
    pipeline: Any,
    source: ModelSource | None,
    recipes: Sequence[Recipe],
    layers: Mapping[str, Sequence[FFNLayer]],
    statistics: Mapping[str, ConceptStats],
    selection: Selection,
    conceal: Conceal,
    denoiser_component: str,
    edited_weights: int,
    timings: Mapping[str, float],
    skipped_files: tuple[str, ...] = (),
    base_weights_digest: str | None = None,
    collapse_check: CollapseCheck | None = None,
) -> Report:
    """The :class:`~cpedit.output.record.Report` of an applied selection.

    Args:
        pipeline: The edited pipeline.
        source: Where it came from (None for a pipeline given in memory).
        recipes: The recipes, in order.
        layers: Per recipe name, the layers its target hooks.
        statistics: Per recipe name, its calibration statistics.
        selection: The applied selection (its settings are the ones recorded).
        conceal: How its entries were filled.
        denoiser_component: The denoiser's component name (``unet``, ``transformer``).
        edited_weights: Weights of the edited components (what the pruned fraction is of).
        timings: Seconds per step (``load``, ``calibrate``, ``score``, ``save``, ``preview``).
        skipped_files: Files of the base folder not copied into the output.
        base_weights_digest: The digest of the pruned weights as the base folder holds them
            (:attr:`cpedit.output.folder.WrittenFolder.base_weights_digest`), when the edit was saved.
        collapse_check: The collapse check of this selection (:mod:`cpedit.edit.collapse`), if one was run.
    """
    from cpedit.versions import library_versions

    denoiser = get_denoiser(pipeline)
    all_layers = list({layer.key: layer for found in layers.values() for layer in found}.values())
    targets = {layer.key: recipe.prune.target for recipe in recipes for layer in layers[recipe.name]}
    ffn_weights = sum(layer.weight.numel() for layer in all_layers)
    parameter = next(denoiser.parameters())
    concepts = []
    for recipe in recipes:
        stats = statistics[recipe.name]
        settings = selection.settings.get(recipe.name, recipe.prune)
        text = is_text_target(recipe)
        concepts.append(
            ConceptRecord(
                name=recipe.name,
                concept=recipe.concept,
                kind=recipe.kind,
                recipe=f"{RECORD_DIR}/recipes/{recipe.name}.yaml",
                prompt_pairs=len(recipe.targets),
                skill_ratio=settings.skill_ratio,
                timesteps=settings.timesteps,
                select_ratio=settings.select_ratio,
                target=recipe.prune.target,
                stream=recipe.prune.stream,
                timesteps_note="ignored: text-ffn hooks the text encoders, which run before the first timestep"
                if text
                else None,
                steps=recipe.sampling.steps,
                guidance_scale=recipe.sampling.guidance_scale,
                seed=recipe.sampling.seed,
                pair_seeds=recipe.sampling.pair_seeds,
                batch_size=stats.batch_size,
                batches=stats.batches,
                denoiser_calls=stats.denoiser_calls,
                calibrate_seconds=round(stats.seconds, 3),
                accumulator_bytes=stats.accumulator_bytes,
                pruned_weights=selection.per_concept.get(recipe.name, 0),
                image_size=stats.image_size,
            )
        )
    timings_s = dict(timings)
    timings_s["total"] = sum(timings_s.get(k, 0.0) for k in TIMED_STEPS)
    return Report(
        base_model=BaseModelInfo(
            id=source.ref if source is not None else None,
            local=source.is_local if source is not None else None,
            path=str(source.path) if source is not None and source.is_local else None,
            revision=source.revision if source is not None else None,
            commit=source.commit if source is not None else None,
            repo_id=source.repo_id if source is not None else None,
            weights_digest=base_weights_digest,
        ),
        denoiser_component=denoiser_component,
        denoiser_class=type(denoiser).__name__,
        pipeline=type(pipeline).__name__,
        edited_components=tuple(dict.fromkeys(layer.component for layer in all_layers)),
        compute_device=str(execution_device(pipeline)),
        compute_dtype=str(parameter.dtype).removeprefix("torch."),
        offload=getattr(denoiser, "_hf_hook", None) is not None,
        concepts=tuple(concepts),
        layers=tuple(
            LayerRecord(
                name=layer.key,
                shape=layer.shape,
                pruned=selection.per_layer.get(layer.key, 0),
                component=layer.component,
                target=targets.get(layer.key, "ffn"),
                columns=layer.columns,
                rows=layer.rows,
            )
            for layer in all_layers
        ),
        totals=Totals(
            pruned_weights=selection.pruned,
            ffn_weights=ffn_weights,
            denoiser_weights=sum(p.numel() for p in denoiser.parameters()),
            edited_weights=edited_weights,
            pruned_fraction=selection.fraction,
            pruned_fraction_of_ffn=selection.pruned / ffn_weights if ffn_weights else 0.0,
        ),
        denoiser_calls=sum(s.denoiser_calls for s in statistics.values()),
        skipped_files=skipped_files,
        versions=library_versions(),
        timings_s=timings_s,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        conceal=conceal,
        collapse_check=collapse_check,
    )
