"""Edit sessions: calibrate once, then select, apply, preview and restore as often as you like.

The pipeline stages of an edit, each in its own module:

    recipe (:mod:`cpedit.recipes.format`, :mod:`cpedit.recipes.sources`)
    -> load (:mod:`cpedit.models.loading`)
    -> calibrate (:mod:`cpedit.edit.calibration`)
    -> select (:mod:`cpedit.edit.selection`)
    -> apply / restore (:mod:`cpedit.edit.weights`)
    -> save (:mod:`cpedit.edit.preflight`, :mod:`cpedit.edit.report`, :mod:`cpedit.output.folder`,
       :mod:`cpedit.output.record`)
    -> card / push (:mod:`cpedit.publish`)

:class:`EditSession` holds a loaded pipeline and, after :meth:`EditSession.calibrate`, the
statistics of every recipe for every denoiser call up to the largest tau. Selecting skilled
weights from them makes no denoiser call (:meth:`EditSession.select`), so a front end can move
a skill-ratio slider and see at once what would be pruned. :meth:`EditSession.apply` zeroes a
selection in place and keeps only the pruned entries' values, so :meth:`EditSession.restore`
puts the base weights back bit for bit without a second copy of the model.

Progress and cancel are per call: every slow method takes ``on_progress`` and ``cancel`` for that
call only (as diffusers' pipelines take ``callback_on_step_end``), so a front end whose jobs run in
worker threads gives each job its own and never rewires a shared session.

Example:
    >>> import cpedit
    >>> compute = cpedit.ComputeOptions(device="cpu")
    >>> session = cpedit.EditSession.open("builtin:shapes", ["shapes-striped"], compute=compute)
    >>> session.calibrate()
    >>> for ratio in (0.05, 0.1, 0.2):
    ...     print(ratio, session.select(skill_ratio=ratio).pruned)
    >>> session.apply(session.select(skill_ratio=0.1))
    >>> images = session.sample(["a striped red star on a white background"], seed=0, steps=20)
    >>> saved = session.save("shapes-no-stripes")
    >>> saved.report.totals.pruned_weights
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cpedit.edit.calibration import (
    ConceptStats,
    calibrate,
    check_batch_size,
    check_calibration_fits,
    denoiser_calls,
    is_text_target,
)
from cpedit.edit.collapse import CollapseGuard
from cpedit.edit.conceal import concept_difference
from cpedit.edit.preflight import check_recipes, preflight
from cpedit.edit.report import build_report
from cpedit.edit.selection import Selection, layer_mask, union
from cpedit.edit.weights import AppliedSelection, apply_selection, base_weight, restore_weights
from cpedit.errors import CpeditError, UnsupportedModelError
from cpedit.models.architectures import check_targets_apply, find_target_layers, spec_for_pipeline
from cpedit.models.compute import ComputeOptions
from cpedit.models.ffn import FFNLayer, execution_device, get_denoiser
from cpedit.models.files import read_model_index
from cpedit.models.loading import ModelSource, check_offload, load_safety_checker, open_pipeline
from cpedit.models.sampling import SampleSettings, generate, image_grid, safety_checker_set
from cpedit.models.support import require_support
from cpedit.models.vocabulary import warn_unknown_words
from cpedit.output.collapse import CollapseCheck
from cpedit.output.folder import atomic_folder, weight_fills, write_pipeline_folder
from cpedit.output.preview import save_preview
from cpedit.output.record import RECORD_DIR, Report, write_record
from cpedit.output.weights_files import TensorFill
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.conceal import Conceal, make_conceal
from cpedit.recipes.format import PruneSettings, Recipe, prune_value_problems
from cpedit.recipes.writer import recipe_as_used

__all__ = ["OVERRIDABLE", "EditSession", "SaveResult", "Selection"]

OVERRIDABLE = ("skill_ratio", "timesteps", "select_ratio")
"""The prune settings :meth:`EditSession.select` can override."""


@dataclass(frozen=True)
class SaveResult:
    """What :meth:`EditSession.save` wrote.

    Attributes:
        path: The output folder.
        report: The run report written to ``OUT/conceptprune/report.json``.
    """

    path: Path
    report: Report


class EditSession:
    """A loaded pipeline being edited with one or more recipes. Build it with :meth:`open`.

    Attributes:
        pipeline: The loaded pipeline (edited in place by :meth:`apply`).
        recipes: The recipes, validated.
        source: Where the pipeline came from (None for a pipeline given in memory).
        layers: Per recipe name, the layers its target hooks.
        statistics: Per recipe name, the calibration statistics (after :meth:`calibrate`).
        timings: Seconds spent per step (``load``, ``calibrate``, ``score``, ``save``).
    """

    def __init__(
        self,
        pipeline: Any,
        recipes: Sequence[Recipe],
        *,
        source: ModelSource | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Wrap an already loaded pipeline (prefer :meth:`open`, which also loads it).

        Raises:
            UnsupportedModelError: The pipeline cannot be edited, or has no layers for a recipe's target.
            CpeditError: A recipe's tau exceeds the denoiser calls its steps make.

        Warns:
            CpeditWarning: A recipe's prompts have words the model's text encoder does not know
                (:mod:`cpedit.models.vocabulary`): its pruning may not erase its concept.
        """
        check_recipes(list(recipes))
        check_batch_size(batch_size)
        self.pipeline = pipeline
        self.recipes: tuple[Recipe, ...] = tuple(recipes)
        self.source = source
        self.batch_size = batch_size
        self.timings: dict[str, float] = {}
        self.statistics: dict[str, ConceptStats] = {}
        self._applied: AppliedSelection | None = None
        self._collapse: tuple[Selection, CollapseCheck] | None = None
        """The last collapse check and the selection it judged (the report records it while that is applied)."""
        self._safety_checker: Any = None
        """The model's safety checker once loaded for :meth:`sample` (pruning loads pipelines without it)."""
        spec = require_support(pipeline)
        self.layers: dict[str, list[FFNLayer]] = {}
        for recipe in self.recipes:  # every recipe, before the first one spends time calibrating
            found = find_target_layers(pipeline, spec, target=recipe.prune.target, stream=recipe.prune.stream)
            if not found:
                raise UnsupportedModelError(
                    f"{recipe.source}: {type(pipeline).__name__} has no layers for prune.target = "
                    f"{recipe.prune.target} (stream {recipe.prune.stream})",
                    path=recipe.source,
                    reason="no_layers",
                )
            self.layers[recipe.name] = found
            check_calibration_fits(pipeline, recipe)
        self._all_layers = list({layer.key: layer for found in self.layers.values() for layer in found}.values())
        self.denoiser_component = _component_name(pipeline)
        self.edited_weights = self._count_edited_weights()
        warn_unknown_words(pipeline, self.recipes)

    @classmethod
    def open(
        cls,
        model: str | os.PathLike[str] | Any,
        recipes: Sequence[str | os.PathLike[str] | Recipe],
        *,
        compute: ComputeOptions = ComputeOptions(),
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        before_load: Callable[[ModelSource], None] | None = None,
    ) -> EditSession:
        """Validate the recipes, then load the model (downloading it if needed) for editing.

        Every recipe is validated before anything loads, and checked against the pipeline
        (its target's layers, tau against the scheduler's calls) before anything calibrates.

        Args:
            model: A Hub id, a local diffusers pipeline folder, ``builtin:shapes``, or an already
                loaded pipeline (then ``compute`` keeps its defaults: move the pipeline yourself).
            recipes: Recipe files, names of shipped recipes, ``hub:`` references or :class:`Recipe` objects.
            compute: Where and how the model loads: device, dtype, model CPU offload (CUDA only:
                components wait in host memory) and Hub revision
                (:class:`~cpedit.models.compute.ComputeOptions`).
            batch_size: Prompts per calibration batch; None picks the largest that fits.
            on_progress: Receives a :class:`~cpedit.progress.ProgressEvent` for each step of the
                download and load (the later calls take their own).
            cancel: Set it (from another thread) to stop the download or load with
                :class:`~cpedit.errors.Cancelled`.
            before_load: Called with the model's source once its files are here, before it loads
                (see :func:`cpedit.models.loading.open_pipeline`); not called for a pipeline given in memory.

        Raises:
            RecipeError: A recipe is invalid (before loading).
            CpeditError: Bad arguments (batch size, compute options for a loaded pipeline, a device
                not available here, offload without CUDA or accelerate, duplicate names).
            ModelLoadError: The model cannot be found, downloaded or loaded.
            UnsupportedModelError: cpedit cannot edit the pipeline, or it has no layers of a recipe's target.
            Cancelled: ``cancel`` was set.

        Warns:
            CpeditWarning: A recipe's prompts have words the model does not know (see :meth:`__init__`).
        """
        started = time.perf_counter()
        loaded = preflight(model, recipes).recipes
        check_batch_size(batch_size)
        in_memory = not isinstance(model, (str, os.PathLike))
        if in_memory and compute != ComputeOptions():
            raise CpeditError(
                "device, dtype, revision and offload apply when cpedit loads the model; move the pipeline yourself",
                argument="model",
            )
        if compute.offload:
            check_offload(compute.device)
        name = type(model).__name__ if in_memory else os.fspath(model)
        emit(on_progress, ProgressEvent(stage="load", message=f"loading {name}"))
        source: ModelSource | None = None
        if in_memory:
            pipe = model
        else:

            def check_then(source: ModelSource) -> None:
                # a target the family does not have is refused before the weights load
                index = read_model_index(source.path / "model_index.json", shown_as=name)
                pipeline_class = index.get("_class_name")
                if isinstance(pipeline_class, str):
                    check_targets_apply(pipeline_class, [(r.name, r.prune.target) for r in loaded])
                if before_load is not None:
                    before_load(source)

            source, pipe = open_pipeline(
                model,
                compute=compute,
                on_progress=on_progress,
                cancel=cancel,
                before_load=check_then,
            )
        session = cls(pipe, loaded, source=source, batch_size=batch_size)
        session.timings["load"] = time.perf_counter() - started
        return session

    # --- calibrate ------------------------------------------------------------------------

    @property
    def calibrated_timesteps(self) -> dict[str, int]:
        """Per recipe name, the tau its statistics cover (empty before :meth:`calibrate`)."""
        return {name: stats.timesteps for name, stats in self.statistics.items()}

    def calibrate(
        self,
        *,
        timesteps: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Calibrate every recipe once (on the unpruned model) and keep the statistics.

        Args:
            timesteps: Calibrate for this many denoiser calls when a recipe asks for fewer, so
                :meth:`select` can later try any tau up to it (the statistics of the first calls
                do not depend on how many follow). Ignored by ``text-ffn`` recipes.
            on_progress: Receives a ``calibrate`` event per batch and denoiser call.
            cancel: Set it (from another thread) to stop; the session keeps its earlier statistics.

        Raises:
            CpeditError: ``timesteps`` exceeds the denoiser calls a recipe's steps make, or a
                selection is applied (calibration runs on the base weights: :meth:`restore` first).
            Cancelled: ``cancel`` was set.
        """
        if self._applied is not None:
            raise CpeditError("a selection is applied; restore() the base weights before calibrating again")
        if timesteps is not None:
            if timesteps < 1:
                raise CpeditError(f"timesteps must be at least 1, got {timesteps}", argument="timesteps")
            for recipe in self.recipes:
                available = denoiser_calls(self.pipeline, recipe.sampling.steps)
                if not is_text_target(recipe) and timesteps > available:
                    raise CpeditError(
                        f"{recipe.source}: timesteps = {timesteps} but {type(self.pipeline.scheduler).__name__} "
                        f"makes only {available} denoising steps for sampling.steps = {recipe.sampling.steps}",
                        path=recipe.source,
                        argument="timesteps",
                    )
        statistics: dict[str, ConceptStats] = {}
        for recipe in self.recipes:  # kept only when every recipe is done: a cancel leaves the session as it was
            tau = max(recipe.prune.timesteps, timesteps or 0)
            statistics[recipe.name] = calibrate(
                self.pipeline,
                recipe,
                self.layers[recipe.name],
                timesteps=tau,
                batch_size=self.batch_size,
                on_progress=on_progress,
                cancel=cancel,
            )
        self.statistics = statistics
        self.timings["calibrate"] = sum(s.seconds for s in statistics.values())

    # --- select ---------------------------------------------------------------------------

    def settings_for(
        self,
        *,
        skill_ratio: float | None = None,
        timesteps: int | None = None,
        select_ratio: float | None = None,
        per_recipe: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> dict[str, PruneSettings]:
        """Each recipe's prune settings with the given overrides (see :meth:`select`).

        Raises:
            CpeditError: An unknown recipe name or setting, a value out of range, or a tau beyond
                what was calibrated.
        """
        common = {"skill_ratio": skill_ratio, "timesteps": timesteps, "select_ratio": select_ratio}
        per_recipe = dict(per_recipe or {})
        names = {recipe.name for recipe in self.recipes}
        unknown = sorted(set(per_recipe) - names)
        if unknown:
            raise CpeditError(
                f"per_recipe names {', '.join(unknown)}, which is not a recipe of this session "
                f"({', '.join(sorted(names))})",
                argument="per_recipe",
            )
        chosen: dict[str, PruneSettings] = {}
        for recipe in self.recipes:
            own = dict(per_recipe.get(recipe.name, {}))
            bad = sorted(set(own) - set(OVERRIDABLE))
            if bad:
                raise CpeditError(
                    f"per_recipe[{recipe.name!r}]: unknown setting {', '.join(bad)}; use {', '.join(OVERRIDABLE)}",
                    argument="per_recipe",
                )
            values = {k: v for k, v in common.items() if v is not None} | {
                k: v for k, v in own.items() if v is not None
            }
            settings = dataclasses.replace(recipe.prune, **values)
            _check_settings(settings, recipe.name)
            if is_text_target(recipe):
                settings = dataclasses.replace(settings, timesteps=recipe.prune.timesteps)  # tau does not apply
            else:
                calibrated = self.calibrated_timesteps.get(recipe.name)
                if calibrated is not None and settings.timesteps > calibrated:
                    raise CpeditError(
                        f"{recipe.name}: timesteps = {settings.timesteps} but the session calibrated {calibrated} "
                        f"denoiser calls; calibrate(timesteps={settings.timesteps}) first",
                        argument="timesteps",
                    )
            chosen[recipe.name] = settings
        return chosen

    def select(
        self,
        *,
        skill_ratio: float | None = None,
        timesteps: int | None = None,
        select_ratio: float | None = None,
        per_recipe: Mapping[str, Mapping[str, Any]] | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Selection:
        """Select the skilled weights from the kept statistics; no denoiser call, no model change.

        Args:
            skill_ratio: Override every recipe's ``prune.skill_ratio``.
            timesteps: Override every recipe's tau (at most what was calibrated; ``text-ffn`` ignores it).
            select_ratio: Override every recipe's ``prune.select_ratio``.
            per_recipe: Overrides for single recipes, by name: ``{"van-gogh": {"skill_ratio": 0.02}}``
                (they win over the overrides for all).
            on_progress: Receives a ``score`` event per layer.
            cancel: Set it (from another thread) to stop before the next layer.

        Returns:
            A :class:`Selection`; the same masks ``cpedit.prune`` would prune with recipes that
            carry these settings.

        Raises:
            CpeditError: Not calibrated yet, or bad overrides (see :meth:`settings_for`).
            Cancelled: ``cancel`` was set.
        """
        if not self.statistics:
            raise CpeditError("calibrate() the session before selecting")
        started = time.perf_counter()
        chosen = self.settings_for(
            skill_ratio=skill_ratio, timesteps=timesteps, select_ratio=select_ratio, per_recipe=per_recipe
        )
        concept_masks: dict[str, dict[str, torch.Tensor]] = {}
        for recipe in self.recipes:
            stats = self.statistics[recipe.name]
            settings = chosen[recipe.name]
            if is_text_target(recipe):
                settings = dataclasses.replace(settings, timesteps=1)  # text encoders: one "timestep"
            layers = self.layers[recipe.name]
            masks = {}
            for index, layer in enumerate(layers):
                check_cancel(cancel, "while selecting")
                emit(
                    on_progress,
                    ProgressEvent(
                        stage="score",
                        message=f"scoring {recipe.name}",
                        concept=recipe.name,
                        completed=index,
                        total=len(layers),
                        unit="layers",
                    ),
                )
                masks[layer.key] = self._layer_mask(layer, stats.sums[layer.key], settings).cpu()
            emit(
                on_progress,
                ProgressEvent(
                    stage="score",
                    message=f"scored {recipe.name}",
                    concept=recipe.name,
                    completed=len(layers),
                    total=len(layers),
                    unit="layers",
                ),
            )
            concept_masks[recipe.name] = masks
        merged = union(list(concept_masks.values()))
        seconds = time.perf_counter() - started
        per_layer = {key: int(mask.sum()) for key, mask in merged.items()}
        pruned = sum(per_layer.values())
        return Selection(
            masks=merged,
            concept_masks=concept_masks,
            settings=chosen,
            pruned=pruned,
            fraction=pruned / self.edited_weights if self.edited_weights else 0.0,
            per_layer=per_layer,
            per_concept={name: sum(int(m.sum()) for m in masks.values()) for name, masks in concept_masks.items()},
            seconds=seconds,
        )

    def _layer_mask(self, layer: FFNLayer, sums: torch.Tensor, settings: PruneSettings) -> torch.Tensor:
        """The skilled-weight mask of a layer, scored on its base weights (also while a selection is applied)."""
        return layer_mask(layer, sums, settings, weight=base_weight(layer, self._applied, device=sums.device))

    # --- apply / restore ------------------------------------------------------------------

    @property
    def applied(self) -> Selection | None:
        """The selection zeroed in the pipeline now, or None."""
        return self._applied.selection if self._applied is not None else None

    @property
    def applied_conceal(self) -> Conceal | None:
        """How the applied selection's entries were filled (with the seed used), or None."""
        return self._applied.conceal if self._applied is not None else None

    def applied_fills(self) -> dict[str, torch.Tensor]:
        """The values written into the applied selection's entries, per layer key (copies; empty for zeros or none)."""
        return {key: values.clone() for key, values in self._applied.fills.items()} if self._applied is not None else {}

    def conceal_for(
        self, conceal: str | Conceal | None = None, *, scale: str | None = None, seed: int | None = None
    ) -> Conceal:
        """The conceal setting an :meth:`apply` with these arguments uses (not resolved yet: the seed may be None).

        Without ``conceal``, the recipes' ``prune.conceal`` and ``prune.conceal_scale`` (they must agree).

        Raises:
            CpeditError: Unknown mode or scale, a bad seed, or recipes that ask for different fills.
        """
        if conceal is None:
            asked = {(recipe.prune.conceal, recipe.prune.conceal_scale) for recipe in self.recipes}
            if len(asked) > 1:
                names = ", ".join(f"{r.name}: {r.prune.conceal}/{r.prune.conceal_scale}" for r in self.recipes)
                raise CpeditError(
                    f"the recipes ask for different prune.conceal settings ({names}); choose one for the edit",
                    argument="conceal",
                    reason="conflict",
                )
            mode, recipe_scale = asked.pop()
            conceal = Conceal(mode=mode, scale=recipe_scale)
        return make_conceal(conceal, scale=scale, seed=seed)

    def apply(
        self,
        selection: Selection,
        *,
        conceal: str | Conceal | None = None,
        conceal_scale: str | None = None,
        conceal_seed: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Prune the selection's weights in the pipeline, in place (replacing any earlier apply).

        Only the pruned entries' values are kept (flat indices and values per layer), enough for
        :meth:`restore` to put the base weights back bit for bit.

        Args:
            selection: What to prune (from :meth:`select`).
            conceal: How to fill the pruned entries: ``zero`` (the paper's) or ``gaussian``
                (draws that match the layer's own weights, see :mod:`cpedit.edit.conceal`), or a
                :class:`~cpedit.recipes.conceal.Conceal`; None: the recipes' ``prune.conceal``.
            conceal_scale: ``row`` or ``layer`` (``gaussian``); None: the recipes' (default ``row``).
            conceal_seed: Seeds the ``gaussian`` draws; None: a random seed (recorded in the local report).
            on_progress: Receives the ``restore`` (of an earlier selection) and ``prune`` events.
            cancel: Set it (from another thread) to stop before anything changes.

        Raises:
            CpeditError: The selection has layers this session does not hook, or a bad conceal setting.
            Cancelled: ``cancel`` was set (the model is left as it was).
        """
        by_key = {layer.key: layer for layer in self._all_layers}
        unknown = sorted(set(selection.masks) - set(by_key))
        if unknown:
            raise CpeditError(f"the selection has layers this session does not edit: {', '.join(unknown[:3])}")
        chosen = self.conceal_for(conceal, scale=conceal_scale, seed=conceal_seed).resolved()
        check_cancel(cancel, "before pruning")
        self._apply(selection, by_key, conceal=chosen, on_progress=on_progress)

    def _apply(
        self,
        selection: Selection,
        by_key: dict[str, FFNLayer],
        *,
        conceal: Conceal,
        fills: dict[str, torch.Tensor] | None = None,
        on_progress: ProgressCallback | None = None,
        quiet: bool = False,
    ) -> None:
        """Prune ``selection`` (after restoring any earlier one); ``quiet``: no events (a temporary swap).

        ``fills``: the values to write (a temporary swap puts back the same ones); None: made here.
        """
        self._restore(quiet=quiet, on_progress=on_progress)
        if not quiet:
            emit(on_progress, ProgressEvent(stage="prune", message=f"pruning {selection.pruned:,} weights"))
            self.timings["score"] = selection.seconds  # the report's scoring time is the applied selection's
            self.timings.pop("collapse_check", None)  # a check of an earlier selection is not this one's
        differences = self._concept_differences(selection) if conceal.conceals and fills is None else None
        self._applied = apply_selection(selection, by_key, conceal=conceal, fills=fills, differences=differences)

    def _concept_differences(self, selection: Selection) -> dict[str, torch.Tensor]:
        """Per edited layer, the concepts' :func:`~cpedit.edit.conceal.concept_difference` over the calls each
        recipe selected with (from the calibration statistics; a layer no statistics cover has none)."""
        found: dict[str, torch.Tensor] = {}
        for key in selection.masks:
            layer = next(layer for layer in self._all_layers if layer.key == key)
            sums = []
            for recipe in self.recipes:
                stats = self.statistics.get(recipe.name)
                if stats is None or key not in stats.sums:
                    continue
                calls = stats.sums[key].shape[0]
                settings = selection.settings.get(recipe.name)
                tau = settings.timesteps if settings is not None else calls
                sums.append(stats.sums[key][: max(1, min(tau, calls))])
            if sums:
                found[key] = concept_difference(sums, in_features=layer.shape[1], columns=layer.columns)
        return found

    def restore(self, *, on_progress: ProgressCallback | None = None) -> None:
        """Put back the base weights of an applied selection, bit for bit (a no-op when none is applied).

        Args:
            on_progress: Receives the ``restore`` event.
        """
        self._restore(quiet=False, on_progress=on_progress)

    def _restore(self, *, quiet: bool, on_progress: ProgressCallback | None = None) -> None:
        if self._applied is None:
            return
        if not quiet:
            emit(on_progress, ProgressEvent(stage="restore", message="restoring the base weights"))
        restore_weights(self._applied, {layer.key: layer for layer in self._all_layers})
        self._applied = None

    # --- sample ---------------------------------------------------------------------------

    def sample(
        self,
        prompts: Sequence[str],
        *,
        seed: int = 0,
        steps: int = 30,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        edited: bool = True,
        safety_checker: bool = True,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Any]:
        """Render one seeded image per prompt from the in-memory pipeline (PIL images).

        Args:
            prompts: The prompts.
            seed: Every image starts from a generator seeded with this.
            steps: Denoising steps.
            guidance_scale: Classifier-free guidance scale.
            height: Image height (None: the model's native size).
            width: Image width.
            edited: True renders the applied selection; False renders the base model (the
                selection is restored for the rendering and applied again after).
            safety_checker: Filter the images with the model's safety checker, if it has one
                (calibration leaves it out; it is loaded from the model folder on first use).
            on_progress: Receives a ``sample`` event per image and denoising step.
            cancel: Set it (from another thread) to stop before the next image or step.

        Raises:
            CpeditError: ``edited`` is True but no selection is applied, or no prompts.
            Cancelled: ``cancel`` was set (the applied selection stays applied).
        """
        if not prompts:
            raise CpeditError("give at least one prompt to sample", argument="prompts")
        if edited and self._applied is None:
            raise CpeditError("no selection is applied; apply() one first, or sample with edited=False")
        settings = SampleSettings(steps=steps, guidance_scale=guidance_scale, seed=seed, height=height, width=width)
        applied = None if edited else self.applied
        swapped = None if edited else self._applied
        with safety_checker_set(self.pipeline, self._checker_for(safety_checker)):
            try:
                if applied is not None:
                    self._restore(quiet=True)
                return generate(
                    self.pipeline,
                    list(prompts),
                    settings,
                    label="edited" if edited else "base",
                    on_progress=on_progress,
                    cancel=cancel,
                )
            finally:  # also after a cancel: the session stays as it was
                if applied is not None:
                    assert swapped is not None
                    self._apply(
                        applied,
                        {layer.key: layer for layer in self._all_layers},
                        conceal=swapped.conceal,
                        fills=swapped.fills,
                        quiet=True,
                    )

    def check_collapse(
        self,
        guard: CollapseGuard | None = None,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> CollapseCheck:
        """Check that the applied selection did not destroy generation (:mod:`cpedit.edit.collapse`).

        A few unrelated prompts are rendered with the base and the edited weights (same seed) and
        compared; :meth:`report` and :meth:`save` record the result while this selection stays applied.

        Args:
            guard: The prompts, steps, seed and threshold (None: the defaults of
                :class:`~cpedit.edit.collapse.CollapseGuard`); a guard kept across checks renders
                the base images once.
            on_progress: Receives the renders' ``sample`` events.
            cancel: Stops before the next image or step (the selection stays applied).

        Raises:
            CpeditError: No selection is applied, or the renders fail.
            Cancelled: ``cancel`` was set.
        """
        selection = self._require_applied()
        check = (guard or CollapseGuard()).check(self, on_progress=on_progress, cancel=cancel)
        self._collapse = (selection, check)
        self.timings["collapse_check"] = check.seconds
        return check

    def _checker_for(self, wanted: bool) -> Any:
        """The safety checker to sample with: None when not ``wanted``, else the pipeline's own, else the
        model's, loaded from its folder on first use (pruning loads the pipeline without it)."""
        pipe = self.pipeline
        if not wanted or not hasattr(pipe, "safety_checker"):
            return None
        if pipe.safety_checker is not None:
            return pipe.safety_checker
        if self._safety_checker is None and self.source is not None:
            self._safety_checker = load_safety_checker(self.source, device=execution_device(pipe), dtype=pipe.dtype)
        return self._safety_checker

    def preview_prompts(self) -> list[str]:
        """The recipes' preview prompts, in order."""
        return [prompt for recipe in self.recipes for prompt in recipe.preview_prompts]

    def render_preview(
        self,
        *,
        settings: SampleSettings | None = None,
        prompts: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """The before/after grid (base left, edited right) of ``prompts`` (default: the recipes' preview prompts).

        ``on_progress`` and ``cancel`` are as :meth:`sample`'s.

        Raises:
            CpeditError: No selection is applied, or there are no prompts.
        """
        settings = settings or SampleSettings()
        prompts = list(prompts or self.preview_prompts())
        if not prompts:
            raise CpeditError("none of the recipes has preview prompts; add `preview: {prompts: [...]}` to one")
        images = [
            self.sample(prompts, **dataclasses.asdict(settings), edited=edited, on_progress=on_progress, cancel=cancel)
            for edited in (True, False)  # edited first, as before: the base swap restores it after
        ]
        edited, base = images
        return image_grid([base, edited], column_labels=["base", "pruned"], row_labels=prompts)

    # --- save -----------------------------------------------------------------------------

    def report(self) -> Report:
        """The run report of the applied selection (what ``OUT/conceptprune/report.json`` records).

        Raises:
            CpeditError: No selection is applied.
        """
        return self._report(skipped_files=())

    def save(
        self,
        out: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        preview: bool = False,
        preview_settings: SampleSettings | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> SaveResult:
        """Write the applied selection as a pruned pipeline folder: the same folder ``cpedit prune`` writes.

        For a model loaded from a folder or the Hub, the base folder is copied byte for byte except
        the pruned weights of the edited components' safetensors files, which are filled in their
        own dtype; each byte is written once, and one weight at a time is held in memory; a
        pipeline given in memory is written with ``save_pretrained``. Beside it,
        ``conceptprune/`` records the positions, the recipes (with the settings chosen, when they
        differ from the recipe's own) and the report. Everything is written into a temporary
        folder that replaces ``out`` only at the end. The inputs are checked first by the same
        preflight as :func:`cpedit.prune`'s (:func:`cpedit.edit.preflight.preflight`).

        Args:
            out: The output folder.
            overwrite: Replace ``out`` if it exists.
            preview: Also render the before/after grid of the preview prompts (from the in-memory
                pipeline) into ``conceptprune/preview.png``.
            preview_settings: Steps, guidance, seed and size of the preview.
            on_progress: Receives the ``save`` events (each file copied) and the preview's ``sample`` events.
            cancel: Set it (from another thread) to stop; nothing is written.

        Returns:
            A :class:`SaveResult`: the output folder and the report written into it.

        Raises:
            CpeditError: No selection is applied, ``out`` is a file or the base model folder, or
                ``preview`` without preview prompts.
            OutputExistsError: ``out`` exists and ``overwrite`` is False.
            CpeditError: ``reason="no_space"``: less space is free than the output needs (checked
                first), or the disk filled up while saving; nothing is left behind.
            Cancelled: ``cancel`` was set; nothing is written.
        """
        selection = self._require_applied()
        base = self.source.path if self.source is not None else self.pipeline
        # Before the preview renders and anything is copied.
        checked = preflight(base, self.recipes, out=out, overwrite=overwrite, preview=preview)
        out_path, needed = checked.out, checked.needed
        assert out_path is not None
        check_cancel(cancel, "before saving")
        started = time.perf_counter()
        emit(on_progress, ProgressEvent(stage="save", message=f"writing {out_path}"))
        with atomic_folder(out_path, overwrite=overwrite, needed=needed) as tmp:
            skipped: list[str] = []
            digest: str | None = None
            if self.source is not None:
                written = write_pipeline_folder(
                    self.source.path, tmp, edits=self._weight_edits(selection), on_progress=on_progress, cancel=cancel
                )
                skipped, digest = written.skipped, written.base_weights_digest
                for file, reason in written.rewritten_whole.items():
                    emit(on_progress, ProgressEvent(stage="save", message=f"rewrote {file} whole: {reason}", file=file))
            else:
                self.pipeline.save_pretrained(tmp, safe_serialization=True)
            check_cancel(cancel, "while saving")
            self.timings["save"] = time.perf_counter() - started
            self.timings.pop("preview", None)
            if preview:
                mark = time.perf_counter()
                (tmp / RECORD_DIR).mkdir(exist_ok=True)
                grid = self.render_preview(settings=preview_settings, on_progress=on_progress, cancel=cancel)
                save_preview(tmp, grid)  # a video model's also as an animated preview.gif
                self.timings["preview"] = time.perf_counter() - mark
            report = self._report(skipped_files=tuple(skipped), base_weights_digest=digest)
            write_record(tmp, masks=selection.masks, recipes=self._recipes_as_selected(selection), report=report)
            check_cancel(cancel, "before moving the output into place")
        return SaveResult(path=out_path, report=report)

    def _weight_edits(self, selection: Selection) -> dict[str, dict[str, TensorFill]]:
        """Per edited component folder, what the save fills into its weight files."""
        fills = self._applied.fills if self._applied is not None else {}
        edits = {}
        for component in self._edited_components():
            layers = [layer for layer in self._all_layers if layer.component == component]
            masks = {layer.name: selection.masks[layer.key] for layer in layers if layer.key in selection.masks}
            # The same values as in memory (cast to each file's dtype); zero where nothing was filled in.
            values = {layer.name: fills[layer.key] for layer in layers if layer.key in fills}
            edits[component] = weight_fills(masks, values)
        return edits

    def _require_applied(self) -> Selection:
        if self._applied is None:
            raise CpeditError("no selection is applied; select() and apply() one first")
        return self._applied.selection

    def _recipes_as_selected(self, selection: Selection) -> list[Recipe]:
        conceal = self._applied.conceal if self._applied is not None else Conceal()
        scale = conceal.scale if conceal.conceals else None
        chosen = []
        for recipe in self.recipes:
            settings = selection.settings.get(recipe.name, recipe.prune)
            # The fill as it ran (a recipe without conceal settings that ran unconcealed stays verbatim).
            settings = dataclasses.replace(
                settings, conceal=conceal.mode, conceal_scale=scale or settings.conceal_scale
            )
            chosen.append(recipe_as_used(recipe, settings))
        return chosen

    def _edited_components(self) -> list[str]:
        return list(dict.fromkeys(layer.component for layer in self._all_layers))

    def _count_edited_weights(self) -> int:
        total = 0
        denoiser = get_denoiser(self.pipeline)
        for name in self._edited_components():
            module = denoiser if name == self.denoiser_component else getattr(self.pipeline, name)
            total += sum(p.numel() for p in module.parameters())
        return total

    def _report(self, *, skipped_files: tuple[str, ...], base_weights_digest: str | None = None) -> Report:
        """The report of the applied selection (:func:`cpedit.edit.report.build_report`)."""
        selection = self._require_applied()
        checked = self._collapse[1] if self._collapse is not None and self._collapse[0] is selection else None
        return build_report(
            pipeline=self.pipeline,
            source=self.source,
            recipes=self.recipes,
            layers=self.layers,
            statistics=self.statistics,
            selection=selection,
            conceal=self._applied.conceal if self._applied is not None else Conceal(),
            denoiser_component=self.denoiser_component,
            edited_weights=self.edited_weights,
            timings=self.timings,
            skipped_files=skipped_files,
            base_weights_digest=base_weights_digest,
            collapse_check=checked,
        )


def _check_settings(settings: PruneSettings, name: str) -> None:
    """The rules a recipe file's prune values are held to (:func:`cpedit.recipes.format.prune_value_problems`)."""
    problems = prune_value_problems(
        skill_ratio=settings.skill_ratio, timesteps=settings.timesteps, select_ratio=settings.select_ratio
    )
    if problems:
        raise CpeditError(f"{name}: " + "; ".join(f"{key} {message}" for key, message in problems), argument="select")


def _component_name(pipe: Any) -> str:
    spec = spec_for_pipeline(pipe)
    denoiser = get_denoiser(pipe)
    for name in ((spec.denoiser,) if spec is not None else ()) + ("unet", "transformer"):
        if getattr(pipe, name, None) is denoiser:
            return name
    raise CpeditError(f"cannot tell which component of {type(pipe).__name__} is the denoiser")
