"""Edit sessions: calibrate once, then select, apply, preview and restore as often as you like.

The pipeline stages of an edit, each in its own module:

    recipe (:mod:`cpedit.recipes.format`, :mod:`cpedit.recipes.sources`)
    -> load (:mod:`cpedit.models.loading`)
    -> calibrate (:mod:`cpedit.edit.calibration`)
    -> select (:mod:`cpedit.edit.selection`)
    -> apply / restore (this module)
    -> save (:mod:`cpedit.output.folder`, :mod:`cpedit.output.record`)
    -> card / push (:mod:`cpedit.hub`)

:class:`EditSession` holds a loaded pipeline and, after :meth:`EditSession.calibrate`, the
statistics of every recipe for every denoiser call up to the largest tau. Selecting skilled
weights from them makes no denoiser call (:meth:`EditSession.select`), so a front end can move
a skill-ratio slider and see at once what would be pruned. :meth:`EditSession.apply` zeroes a
selection in place and keeps only the pruned entries' values, so :meth:`EditSession.restore`
puts the base weights back bit for bit without a second copy of the model.

Example:
    >>> import cpedit
    >>> session = cpedit.EditSession.open("builtin:shapes", ["shapes-striped"], device="cpu")
    >>> session.calibrate()
    >>> for ratio in (0.05, 0.1, 0.2):
    ...     print(ratio, session.select(skill_ratio=ratio).pruned)
    >>> session.apply(session.select(skill_ratio=0.1))
    >>> images = session.sample(["a striped red star on a white background"], seed=0, steps=20)
    >>> session.save("shapes-no-stripes")
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
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
from cpedit.edit.conceal import fill_values
from cpedit.edit.selection import layer_mask, union
from cpedit.errors import CpeditError, RecipeError, UnsupportedModelError
from cpedit.models.architectures import find_target_layers, spec_for_pipeline
from cpedit.models.ffn import FFNLayer, execution_device, get_denoiser
from cpedit.models.loading import ModelSource, check_offload, load_safety_checker, open_pipeline
from cpedit.models.sampling import SampleSettings, generate, image_grid, save_png
from cpedit.models.support import require_support
from cpedit.models.vocabulary import warn_unknown_words
from cpedit.output.folder import (
    atomic_folder,
    check_free_space,
    check_not_inside,
    check_output_target,
    copy_pipeline_folder,
    fill_weights_in_files,
    output_size,
)
from cpedit.output.record import (
    PREVIEW_FILE,
    RECORD_DIR,
    BaseModelInfo,
    ConceptRecord,
    LayerRecord,
    Report,
    Totals,
    write_record,
)
from cpedit.progress import ProgressCallback, ProgressEvent, check_cancel, emit
from cpedit.recipes.conceal import Conceal, make_conceal
from cpedit.recipes.format import SLUG, PruneSettings, Recipe, parse_recipe, prune_value_problems
from cpedit.recipes.sources import resolve_recipe
from cpedit.recipes.writer import dump_recipe, recipe_data

OVERRIDABLE = ("skill_ratio", "timesteps", "select_ratio")
"""The prune settings :meth:`EditSession.select` can override."""


@dataclass(frozen=True)
class Selection:
    """What a selection would prune; making one changes nothing in the model.

    Attributes:
        masks: Per hooked layer (its :attr:`~cpedit.models.ffn.FFNLayer.key`), a bool CPU tensor shaped
            like the whole weight (True = pruned): the union over the recipes.
        concept_masks: The same per recipe name, before the union.
        settings: The prune settings each recipe was selected with (its own, or the overrides).
        pruned: Weights pruned in all (the union).
        fraction: ``pruned`` over the weights of the edited components.
        per_layer: Pruned weights per layer key (the union).
        per_concept: Pruned weights per recipe name (each recipe alone).
        seconds: How long the selection took.
    """

    masks: dict[str, torch.Tensor]
    concept_masks: dict[str, dict[str, torch.Tensor]]
    settings: dict[str, PruneSettings]
    pruned: int
    fraction: float
    per_layer: dict[str, int]
    per_concept: dict[str, int]
    seconds: float = 0.0


@dataclass
class _Applied:
    """An applied selection and what restoring it needs: per layer, flat indices and original values.

    ``conceal`` is how its entries were filled (resolved: with its seed); ``fills`` the values
    written in, per layer (float32 on the CPU; absent for ``zero``), which :meth:`EditSession.save`
    writes into the files and a temporary swap puts back.
    """

    selection: Selection
    saved: dict[str, tuple[torch.Tensor, torch.Tensor]]
    conceal: Conceal = dataclasses.field(default_factory=Conceal)
    fills: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


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
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Wrap an already loaded pipeline (prefer :meth:`open`, which also loads it).

        Raises:
            UnsupportedModelError: The pipeline cannot be edited, or has no layers for a recipe's target.
            CpeditError: A recipe's tau exceeds the denoiser calls its steps make.

        Warns:
            CpeditWarning: A recipe's prompts have words the model's text encoder does not know
                (:mod:`cpedit.models.vocabulary`): its pruning may not erase its concept.
        """
        _check_recipes(list(recipes))
        check_batch_size(batch_size)
        self.pipeline = pipeline
        self.recipes: tuple[Recipe, ...] = tuple(recipes)
        self.source = source
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.cancel = cancel
        self.timings: dict[str, float] = {}
        self.statistics: dict[str, ConceptStats] = {}
        self._applied: _Applied | None = None
        self.last_report: Report | None = None
        """The report of the last :meth:`save`."""
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
        revision: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        offload: bool = False,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> EditSession:
        """Validate the recipes, then load the model (downloading it if needed) for editing.

        Every recipe is validated before anything loads, and checked against the pipeline
        (its target's layers, tau against the scheduler's calls) before anything calibrates.

        Args:
            model: A Hub id, a local diffusers pipeline folder, ``builtin:shapes``, or an already
                loaded pipeline (then ``revision``, ``device``, ``dtype`` and ``offload`` do not apply).
            recipes: Recipe files, names of shipped recipes, ``hub:`` references or :class:`Recipe` objects.
            revision: Hub branch, tag or commit.
            device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
            dtype: ``float32``, ``float16`` or ``bfloat16`` (short: fp32, fp16, bf16); default
                float16 on CUDA, else float32.
            offload: Model CPU offload (CUDA only): components wait in host memory.
            batch_size: Prompts per calibration batch; None picks the largest that fits.
            on_progress: Receives a :class:`~cpedit.progress.ProgressEvent` for every step of
                every later call of the session too (download, load, calibrate, score, ...).
            cancel: Set it (from another thread) to stop the current slow step with
                :class:`~cpedit.errors.Cancelled`; nothing is written.

        Raises:
            RecipeError: A recipe is invalid (before loading).
            CpeditError: Bad arguments (batch size, device, dtype, offload without CUDA, duplicate names).
            ModelLoadError: The model cannot be found, downloaded or loaded.
            UnsupportedModelError: cpedit cannot edit the pipeline, or it has no layers of a recipe's target.
            Cancelled: ``cancel`` was set.

        Warns:
            CpeditWarning: A recipe's prompts have words the model does not know (see :meth:`__init__`).
        """
        started = time.perf_counter()
        loaded = [resolve_recipe(r) for r in recipes]
        _check_recipes(loaded)
        check_batch_size(batch_size)
        in_memory = not isinstance(model, (str, os.PathLike))
        if in_memory and (device != "auto" or dtype is not None or revision is not None or offload):
            raise CpeditError(
                "device, dtype, revision and offload apply when cpedit loads the model; move the pipeline yourself",
                argument="model",
            )
        if offload:
            check_offload(device)
        name = type(model).__name__ if in_memory else os.fspath(model)
        emit(on_progress, ProgressEvent(stage="load", message=f"loading {name}"))
        source: ModelSource | None = None
        if in_memory:
            pipe = model
        else:
            source, pipe = open_pipeline(
                model,
                revision=revision,
                device=device,
                dtype=dtype,
                offload=offload,
                on_progress=on_progress,
                cancel=cancel,
            )
        session = cls(pipe, loaded, source=source, batch_size=batch_size, on_progress=on_progress, cancel=cancel)
        session.timings["load"] = time.perf_counter() - started
        return session

    # --- calibrate ------------------------------------------------------------------------

    @property
    def calibrated_timesteps(self) -> dict[str, int]:
        """Per recipe name, the tau its statistics cover (empty before :meth:`calibrate`)."""
        return {name: stats.timesteps for name, stats in self.statistics.items()}

    def calibrate(self, *, timesteps: int | None = None) -> None:
        """Calibrate every recipe once (on the unpruned model) and keep the statistics.

        Args:
            timesteps: Calibrate for this many denoiser calls when a recipe asks for fewer, so
                :meth:`select` can later try any tau up to it (the statistics of the first calls
                do not depend on how many follow). Ignored by ``text-ffn`` recipes.

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
                        f"makes only {available} denoiser calls for sampling.steps = {recipe.sampling.steps}",
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
                on_progress=self.on_progress,
                cancel=self.cancel,
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
    ) -> Selection:
        """Select the skilled weights from the kept statistics; no denoiser call, no model change.

        Args:
            skill_ratio: Override every recipe's ``prune.skill_ratio``.
            timesteps: Override every recipe's tau (at most what was calibrated; ``text-ffn`` ignores it).
            select_ratio: Override every recipe's ``prune.select_ratio``.
            per_recipe: Overrides for single recipes, by name: ``{"van-gogh": {"skill_ratio": 0.02}}``
                (they win over the overrides for all).

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
                check_cancel(self.cancel, "while selecting")
                emit(
                    self.on_progress,
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
                self.on_progress,
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
        return layer_mask(layer, sums, settings, weight=self._base_weight(layer, device=sums.device))

    def _base_weight(self, layer: FFNLayer, *, device: torch.device) -> torch.Tensor:
        weight = layer.module.weight.detach()
        saved = self._applied.saved.get(layer.key) if self._applied is not None else None
        if saved is None:
            return weight.to(device)
        indices, values = saved
        base = weight.to(device, copy=True)
        base.view(-1)[indices.to(device)] = values.to(device)
        return base

    # --- apply / restore ------------------------------------------------------------------

    @property
    def applied(self) -> Selection | None:
        """The selection zeroed in the pipeline now, or None."""
        return self._applied.selection if self._applied is not None else None

    @property
    def applied_conceal(self) -> Conceal | None:
        """How the applied selection's entries were filled (with the seed used), or None."""
        return self._applied.conceal if self._applied is not None else None

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

        Raises:
            CpeditError: The selection has layers this session does not hook, or a bad conceal setting.
            Cancelled: ``cancel`` was set (the model is left as it was).
        """
        by_key = {layer.key: layer for layer in self._all_layers}
        unknown = sorted(set(selection.masks) - set(by_key))
        if unknown:
            raise CpeditError(f"the selection has layers this session does not edit: {', '.join(unknown[:3])}")
        chosen = self.conceal_for(conceal, scale=conceal_scale, seed=conceal_seed).resolved()
        check_cancel(self.cancel, "before pruning")
        self._apply(selection, by_key, conceal=chosen)

    def _apply(
        self,
        selection: Selection,
        by_key: dict[str, FFNLayer],
        *,
        conceal: Conceal,
        fills: dict[str, torch.Tensor] | None = None,
        quiet: bool = False,
    ) -> None:
        """Prune ``selection`` (after restoring any earlier one); ``quiet``: no events (a temporary swap).

        ``fills``: the values to write (a temporary swap puts back the same ones); None: made here.
        """
        self._restore(quiet=quiet)
        if not quiet:
            emit(self.on_progress, ProgressEvent(stage="prune", message=f"pruning {selection.pruned:,} weights"))
            self.timings["score"] = selection.seconds  # the report's scoring time is the applied selection's
        saved: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        made: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for key, mask in selection.masks.items():
                weight = by_key[key].module.weight
                flat = weight.view(-1)
                # Kept on the CPU: with model offload the weight moves between devices between calls.
                indices = mask.reshape(-1).nonzero().squeeze(1)
                if indices.numel() == 0:
                    continue
                on_device = indices.to(flat.device)
                saved[key] = (indices, flat[on_device].cpu())
                if not conceal.conceals:
                    flat[on_device] = 0
                    continue
                values = fills[key] if fills is not None else fill_values(weight, indices, conceal=conceal, name=key)
                made[key] = values
                flat[on_device] = values.to(flat.device, flat.dtype)
        self._applied = _Applied(selection=selection, saved=saved, conceal=conceal, fills=made)

    def restore(self) -> None:
        """Put back the base weights of an applied selection, bit for bit (a no-op when none is applied)."""
        self._restore(quiet=False)

    def _restore(self, *, quiet: bool) -> None:
        if self._applied is None:
            return
        by_key = {layer.key: layer for layer in self._all_layers}
        if not quiet:
            emit(self.on_progress, ProgressEvent(stage="restore", message="restoring the base weights"))
        with torch.no_grad():
            for key, (indices, values) in self._applied.saved.items():
                flat = by_key[key].module.weight.view(-1)  # wherever the weight is now
                flat[indices.to(flat.device)] = values.to(flat.device)
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

        Raises:
            CpeditError: ``edited`` is True but no selection is applied, or no prompts.
            Cancelled: ``cancel`` was set (the applied selection stays applied).
        """
        if not prompts:
            raise CpeditError("give at least one prompt to sample", argument="prompts")
        if edited and self._applied is None:
            raise CpeditError("no selection is applied; apply() one first, or sample with edited=False")
        settings = SampleSettings(steps=steps, guidance_scale=guidance_scale, seed=seed, height=height, width=width)
        pipe = self.pipeline
        checker = getattr(pipe, "safety_checker", None)
        self._use_safety_checker(safety_checker)
        applied = None if edited else self.applied
        swapped = None if edited else self._applied
        try:
            if applied is not None:
                self._restore(quiet=True)
            return self._generate(prompts, settings, label="edited" if edited else "base")
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
            if hasattr(pipe, "safety_checker"):
                pipe.safety_checker = checker  # the pipeline a later save() writes keeps its own components

    def _use_safety_checker(self, wanted: bool) -> None:
        """Load the model's safety checker on first use (pruning loads the pipeline without it), or put it aside."""
        pipe = self.pipeline
        if not hasattr(pipe, "safety_checker"):
            return
        if not wanted:
            if pipe.safety_checker is not None:
                self._safety_checker = pipe.safety_checker
                pipe.safety_checker = None
            return
        if pipe.safety_checker is not None:
            return
        if getattr(self, "_safety_checker", None) is None and self.source is not None:
            self._safety_checker = load_safety_checker(self.source, device=execution_device(pipe), dtype=pipe.dtype)
        if getattr(self, "_safety_checker", None) is not None:
            pipe.safety_checker = self._safety_checker

    def _generate(self, prompts: Sequence[str], settings: SampleSettings, *, label: str) -> list[Any]:
        return generate(
            self.pipeline, list(prompts), settings, label=label, on_progress=self.on_progress, cancel=self.cancel
        )

    def preview_prompts(self) -> list[str]:
        """The recipes' preview prompts, in order."""
        return [prompt for recipe in self.recipes for prompt in recipe.preview_prompts]

    def render_preview(self, *, settings: SampleSettings | None = None, prompts: Sequence[str] | None = None) -> Any:
        """The before/after grid (base left, edited right) of ``prompts`` (default: the recipes' preview prompts).

        Raises:
            CpeditError: No selection is applied, or there are no prompts.
        """
        settings = settings or SampleSettings()
        prompts = list(prompts or self.preview_prompts())
        if not prompts:
            raise CpeditError("none of the recipes has preview prompts; add `preview: {prompts: [...]}` to one")
        edited = self.sample(prompts, **dataclasses.asdict(settings), edited=True)
        base = self.sample(prompts, **dataclasses.asdict(settings), edited=False)
        return image_grid([base, edited], column_labels=["base", "pruned"], row_labels=prompts)

    # --- save -----------------------------------------------------------------------------

    def report(self) -> Report:
        """The run report of the applied selection (what ``OUT/conceptprune/report.json`` records).

        Raises:
            CpeditError: No selection is applied.
        """
        selection = self._require_applied()
        return self._build_report(selection, skipped_files=())

    def save(
        self,
        out: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        preview: bool = False,
        preview_settings: SampleSettings | None = None,
    ) -> Path:
        """Write the applied selection as a pruned pipeline folder: the same folder ``cpedit prune`` writes.

        For a model loaded from a folder or the Hub, the base folder is copied byte for byte except
        the edited components' safetensors files, whose pruned weights are zeroed in their own
        dtype; a pipeline given in memory is written with ``save_pretrained``. Beside it,
        ``conceptprune/`` records the positions, the recipes (with the settings chosen, when they
        differ from the recipe's own) and the report. Everything is written into a temporary
        folder that replaces ``out`` only at the end.

        Args:
            out: The output folder.
            overwrite: Replace ``out`` if it exists.
            preview: Also render the before/after grid of the preview prompts (from the in-memory
                pipeline) into ``conceptprune/preview.png``.
            preview_settings: Steps, guidance, seed and size of the preview.

        Returns:
            The output folder.

        Raises:
            CpeditError: No selection is applied, ``out`` is a file or the base model folder, or
                ``preview`` without preview prompts.
            OutputExistsError: ``out`` exists and ``overwrite`` is False.
            CpeditError: ``reason="no_space"``: less space is free than the output needs (checked
                first), or the disk filled up while saving; nothing is left behind.
            Cancelled: ``cancel`` was set; nothing is written.
        """
        selection = self._require_applied()
        if self.source is not None:
            check_not_inside(Path(out), self.source.path)  # first: the most specific reason to refuse
        out_path = check_output_target(out, overwrite=overwrite)
        if preview and not self.preview_prompts():
            raise CpeditError(
                "preview: none of the recipes has preview prompts; add `preview: {prompts: [...]}` to one",
                argument="preview",
            )
        needed = output_size(self.source.path) if self.source is not None else _in_memory_size(self.pipeline)
        check_free_space(out_path, needed)  # before the preview renders and anything is copied
        check_cancel(self.cancel, "before saving")
        started = time.perf_counter()
        emit(self.on_progress, ProgressEvent(stage="save", message=f"writing {out_path}"))
        with atomic_folder(out_path, overwrite=overwrite, needed=needed) as tmp:
            skipped: list[str] = []
            if self.source is not None:
                skipped = copy_pipeline_folder(self.source.path, tmp, on_progress=self.on_progress, cancel=self.cancel)
                fills = self._applied.fills if self._applied is not None else {}
                for component in self._edited_components():
                    layers = [layer for layer in self._all_layers if layer.component == component]
                    masks = {layer.name: selection.masks[layer.key] for layer in layers if layer.key in selection.masks}
                    # The same values as in memory (cast to each file's dtype); zero where nothing was filled in.
                    values = {layer.name: fills[layer.key] for layer in layers if layer.key in fills}
                    fill_weights_in_files(tmp / component, masks, values=values or None, cancel=self.cancel)
            else:
                self.pipeline.save_pretrained(tmp, safe_serialization=True)
            check_cancel(self.cancel, "while saving")
            self.timings["save"] = time.perf_counter() - started
            self.timings.pop("preview", None)
            if preview:
                mark = time.perf_counter()
                (tmp / RECORD_DIR).mkdir(exist_ok=True)
                save_png(self.render_preview(settings=preview_settings), tmp / RECORD_DIR / PREVIEW_FILE)
                self.timings["preview"] = time.perf_counter() - mark
            report = self._build_report(selection, skipped_files=tuple(skipped))
            write_record(tmp, masks=selection.masks, recipes=self._recipes_as_selected(selection), report=report)
            check_cancel(self.cancel, "before moving the output into place")
        self.last_report = report
        return out_path

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
            chosen.append(_recipe_with_settings(recipe, settings))
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

    def _build_report(self, selection: Selection, *, skipped_files: tuple[str, ...]) -> Report:
        from cpedit.versions import library_versions

        pipe = self.pipeline
        denoiser = get_denoiser(pipe)
        source = self.source
        targets = {layer.key: recipe.prune.target for recipe in self.recipes for layer in self.layers[recipe.name]}
        ffn_weights = sum(layer.module.weight.numel() for layer in self._all_layers)
        parameter = next(denoiser.parameters())
        concepts = []
        for recipe in self.recipes:
            stats = self.statistics[recipe.name]
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
                )
            )
        timings = dict(self.timings)
        timings["total"] = sum(timings.get(k, 0.0) for k in ("load", "calibrate", "score", "save", "preview"))
        return Report(
            base_model=BaseModelInfo(
                id=source.ref if source is not None else None,
                local=source.is_local if source is not None else None,
                path=str(source.path) if source is not None and source.is_local else None,
                revision=source.revision if source is not None else None,
                commit=source.commit if source is not None else None,
                repo_id=source.repo_id if source is not None else None,
            ),
            denoiser_component=self.denoiser_component,
            denoiser_class=type(denoiser).__name__,
            pipeline=type(pipe).__name__,
            edited_components=tuple(self._edited_components()),
            compute_device=str(execution_device(pipe)),
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
                )
                for layer in self._all_layers
            ),
            totals=Totals(
                pruned_weights=selection.pruned,
                ffn_weights=ffn_weights,
                denoiser_weights=sum(p.numel() for p in denoiser.parameters()),
                edited_weights=self.edited_weights,
                pruned_fraction=selection.fraction,
                pruned_fraction_of_ffn=selection.pruned / ffn_weights if ffn_weights else 0.0,
            ),
            denoiser_calls=sum(s.denoiser_calls for s in self.statistics.values()),
            skipped_files=skipped_files,
            versions=library_versions(),
            timings_s=timings,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            conceal=self._applied.conceal if self._applied is not None else Conceal(),
        )


def _in_memory_size(pipe: Any) -> int:
    """About the bytes ``save_pretrained`` writes for a pipeline: its modules' parameters and buffers."""
    total = 0
    for value in vars(pipe).values():
        if isinstance(value, torch.nn.Module):
            for tensor in [*value.parameters(), *value.buffers()]:
                total += tensor.numel() * tensor.element_size()
    return total + 2**20


def _check_settings(settings: PruneSettings, name: str) -> None:
    """The rules a recipe file's prune values are held to (:func:`cpedit.recipes.format.prune_value_problems`)."""
    problems = prune_value_problems(
        skill_ratio=settings.skill_ratio, timesteps=settings.timesteps, select_ratio=settings.select_ratio
    )
    if problems:
        raise CpeditError(f"{name}: " + "; ".join(f"{key} {message}" for key, message in problems), argument="select")


def _recipe_with_settings(recipe: Recipe, settings: PruneSettings) -> Recipe:
    """The recipe as it was used, for ``conceptprune/recipes/``: its text verbatim when that is what ran.

    Otherwise (settings chosen in the session, or a :class:`Recipe` changed or built in code) a
    copy that says so in a comment: the file's own text with its whole ``prune`` section replaced
    when only the prune settings differ, else YAML written from the recipe object itself.
    """
    import yaml

    used = dataclasses.replace(recipe, prune=settings)
    try:
        written = parse_recipe(recipe.text, source=recipe.source) if recipe.text.strip() else None
    except RecipeError:
        written = None
    if written is not None and dataclasses.replace(written, text=recipe.text) == used:
        return recipe
    prune = {f.name: getattr(settings, f.name) for f in dataclasses.fields(PruneSettings)}
    if written is not None and dataclasses.replace(written, prune=settings, text=recipe.text) == used:
        data = yaml.safe_load(recipe.text)
        data["prune"] = prune
        was = ", ".join(f"{f.name} {getattr(written.prune, f.name)}" for f in dataclasses.fields(PruneSettings))
        note = f"Prune settings chosen in a cpedit edit session; the recipe file ({recipe.source}) had: {was}"
    else:
        data = recipe_data(used)
        note = f"Written by cpedit from the recipe as it ran (built or changed in code; source: {recipe.source})"
    return parse_recipe(dump_recipe(data, note=note), source=recipe.source)


def _check_recipes(recipes: list[Recipe]) -> None:
    if not recipes:
        raise CpeditError(
            "give at least one recipe (a file or a shipped recipe name; see `cpedit recipes list`)",
            argument="recipes",
        )
    seen: dict[str, str] = {}
    for recipe in recipes:
        if not SLUG.match(recipe.name):  # a Recipe built in code skips the file validation; the name is a file name
            raise CpeditError(
                f"recipe name {recipe.name!r} is not a slug (lowercase letters, digits, hyphens)", argument="recipes"
            )
        if recipe.name in seen:
            raise CpeditError(
                f"two recipes are named {recipe.name!r} ({seen[recipe.name]} and {recipe.source}); names must differ",
                argument="recipes",
            )
        seen[recipe.name] = recipe.source


def _component_name(pipe: Any) -> str:
    spec = spec_for_pipeline(pipe)
    denoiser = get_denoiser(pipe)
    for name in ((spec.denoiser,) if spec is not None else ()) + ("unet", "transformer"):
        if getattr(pipe, name, None) is denoiser:
            return name
    raise CpeditError(f"cannot tell which component of {type(pipe).__name__} is the denoiser")
