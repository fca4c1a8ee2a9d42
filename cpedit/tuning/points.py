"""Settings points and their measurement, shared by ``cpedit sweep`` and ``cpedit tune``.

A :class:`PointEvaluator` loads the model once, calibrates each hook target once (with the
largest tau any point will ask for: the statistics of the first tau calls do not depend on
how many follow), and measures a point by selecting from those statistics, applying the
selection in memory, saving it as an ordinary cpedit output folder, measuring that folder
with the evaluation suite (:func:`cpedit.tuning.measure.measure`, images rendered from the
in-memory pipeline) and restoring the base weights. A point therefore measures what
``cpedit prune`` with its settings followed by ``cpedit eval`` measures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError, RecipeError
from cpedit.progress import ProgressCallback, ProgressEvent, emit
from cpedit.recipes.format import Recipe
from cpedit.tuning.measure import EvaluationPlan, measure

__all__ = ["Point", "PointEvaluator", "PointSettings"]


@dataclass(frozen=True)
class PointSettings:
    """The prune settings of one point; None keeps each recipe's own value."""

    skill_ratio: float
    timesteps: int | None = None
    select_ratio: float | None = None
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"skill_ratio", "timesteps", "select_ratio", "target"}`` (None: the recipe's own)."""
        return {
            "skill_ratio": self.skill_ratio,
            "timesteps": self.timesteps,
            "select_ratio": self.select_ratio,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PointSettings:
        """The settings from :meth:`to_dict`'s form."""
        return cls(
            skill_ratio=float(data["skill_ratio"]),
            timesteps=None if data.get("timesteps") is None else int(data["timesteps"]),
            select_ratio=None if data.get("select_ratio") is None else float(data["select_ratio"]),
            target=data.get("target"),
        )

    @property
    def slug(self) -> str:
        """A file-name-safe name: ``sr0.02-tau10-sel0-ffn`` (``own`` for a recipe's own value)."""

        def part(value: Any) -> str:
            return "own" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

        return f"sr{part(self.skill_ratio)}-tau{part(self.timesteps)}-sel{part(self.select_ratio)}-{part(self.target)}"

    @property
    def label(self) -> str:
        """A short label for tables and plots: ``sr 0.02, tau 10``."""
        parts = [f"sr {self.skill_ratio:g}"]
        if self.timesteps is not None:
            parts.append(f"tau {self.timesteps}")
        if self.select_ratio is not None:
            parts.append(f"sel {self.select_ratio:g}")
        if self.target is not None:
            parts.append(self.target)
        return ", ".join(parts)


@dataclass(frozen=True)
class Point:
    """A measured point: its settings, what it pruned, erased and preserved before/after, the drop."""

    settings: PointSettings
    pruned: int
    pruned_percent: float
    erased: dict[str, float]
    preserved: dict[str, float]
    drop: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The point as ``sweep.json`` keeps it."""
        return {
            "settings": self.settings.to_dict(),
            "pruned": self.pruned,
            "pruned_percent": self.pruned_percent,
            "erased": dict(self.erased),
            "preserved": dict(self.preserved),
            "drop": self.drop,
            "metrics": {name: dict(values) for name, values in self.metrics.items()},
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Point:
        """A point from :meth:`to_dict`'s form (a rerun's finished points)."""
        return cls(
            settings=PointSettings.from_dict(data["settings"]),
            pruned=int(data["pruned"]),
            pruned_percent=float(data["pruned_percent"]),
            erased={k: float(v) for k, v in data["erased"].items()},
            preserved={k: float(v) for k, v in data["preserved"].items()},
            drop=float(data["drop"]),
            metrics={n: {k: float(v) for k, v in vs.items()} for n, vs in data.get("metrics", {}).items()},
            seconds=float(data.get("seconds", 0.0)),
        )


def with_target(recipe: Recipe, target: str | None) -> Recipe:
    """``recipe`` with another hook target (a validated copy, its text changed too), or itself."""
    if target is None or target == recipe.prune.target:
        return recipe
    return _with_prune(recipe, "target", target, note=f"{recipe.name}, prune.target {target} (cpedit sweep)")


def with_tau(recipe: Recipe, tau: int, *, note: str) -> Recipe:
    """``recipe`` calibrated for ``tau`` denoiser calls (a validated copy)."""
    return _with_prune(recipe, "timesteps", tau, note=f"{recipe.name}, prune.timesteps {tau} ({note})")


def _with_prune(recipe: Recipe, field: str, value: object, *, note: str) -> Recipe:
    """``recipe`` with ``prune.FIELD`` set; a value the recipe cannot take is the fault of ``field``, not the recipe."""
    from cpedit.recipes.writer import with_settings

    try:
        return with_settings(recipe, prune={field: value}, note=note)
    except RecipeError as exc:
        exc.argument = field  # the setting asked for (a tau beyond the recipe's steps), not the recipe, is at fault
        raise


class PointEvaluator:
    """Measures points on one loaded model (see the module docstring); :meth:`close` frees it.

    Args:
        model: A Hub id, a pipeline folder or ``builtin:shapes``.
        recipes: The recipes (loaded), all erased together at every point.
        plan: How points are measured.
        work: The folder for point outputs (``work/points/SLUG``) and images (``work/images``).
        timesteps: Per hook target (None: the recipes' own), the largest tau its points ask for; the
            recipes are calibrated for exactly that many denoiser calls (at least, for the targets
            in ``own_timesteps``; missing: the recipes' own tau).
        own_timesteps: Hook targets some of whose points use the recipes' own tau.
        keep_models: Keep each point's saved output folder (else removed once measured).
        revision, device, dtype, batch_size: As :meth:`cpedit.edit.session.EditSession.open`.
        on_progress: Receives the load, calibrate, score, save and evaluation events.
        cancel: Checked by every slow step.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        recipes: list[Recipe],
        *,
        plan: EvaluationPlan,
        work: str | os.PathLike[str],
        timesteps: dict[str | None, int] | None = None,
        own_timesteps: set[str | None] | frozenset[str | None] = frozenset(),
        keep_models: bool = False,
        revision: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        batch_size: int | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.recipes = list(recipes)
        self.plan = plan
        self.work = Path(work)
        self.timesteps = dict(timesteps or {})
        self.own_timesteps = set(own_timesteps)
        self.keep_models = keep_models
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.cancel = cancel
        self.calibrations: list[dict[str, Any]] = []
        self._sessions: dict[str | None, Any] = {}
        for target in self.timesteps:
            self._recipes(target)  # a tau or target that does not suit a recipe: refused before any loading
        self._pipeline: Any = None
        self._source: Any = None

    def _recipes(self, target: str | None) -> list[Recipe]:
        """The recipes as a hook target's session calibrates them (its target, the tau its points use).

        Raises:
            RecipeError: The target or tau does not suit a recipe (``argument`` ``target``/``timesteps``).
        """
        from cpedit.edit.calibration import is_text_target

        tau = self.timesteps.get(target)
        recipes = [with_target(recipe, target) for recipe in self.recipes]
        if tau is not None and target not in self.own_timesteps:  # exactly the calls the points use
            recipes = [
                r if is_text_target(r) or r.prune.timesteps == tau else with_tau(r, tau, note="cpedit sweep")
                for r in recipes
            ]
        return recipes

    def _session(self, target: str | None) -> Any:
        """The calibrated session of a hook target (made on first use, the pipeline loaded once)."""
        from cpedit.edit.session import EditSession

        if target in self._sessions:
            return self._sessions[target]
        recipes = self._recipes(target)
        if self._pipeline is None:
            session = EditSession.open(
                self.model,
                recipes,
                revision=self.revision,
                device=self.device,
                dtype=self.dtype,
                batch_size=self.batch_size,
                on_progress=self.on_progress,
                cancel=self.cancel,
            )
            self._pipeline, self._source = session.pipeline, session.source
        else:
            session = EditSession(self._pipeline, recipes, source=self._source, batch_size=self.batch_size)
        session.calibrate(timesteps=self.timesteps.get(target), on_progress=self.on_progress, cancel=self.cancel)
        for name, stats in session.statistics.items():
            self.calibrations.append(
                {
                    "recipe": name,
                    "target": next(r.prune.target for r in recipes if r.name == name),
                    "timesteps": stats.timesteps,
                    "seconds": round(stats.seconds, 3),
                }
            )
        self._sessions[target] = session
        return session

    def evaluate(self, settings: PointSettings) -> Point:
        """Select, apply, save, measure and restore one point.

        Raises:
            CpeditError: Bad settings (a tau beyond what was calibrated, a ratio out of range), or
                as :func:`cpedit.tuning.measure.measure`.
            Cancelled: ``cancel`` was set; the base weights are back and no point folder is left.
        """
        started = time.perf_counter()
        for other in self._sessions.values():  # one session's selection in the pipeline at a time
            if other.applied is not None:
                other.restore(on_progress=self.on_progress)
        session = self._session(settings.target)
        selection = session.select(
            skill_ratio=settings.skill_ratio,
            timesteps=settings.timesteps,
            select_ratio=settings.select_ratio,
            on_progress=self.on_progress,
            cancel=self.cancel,
        )
        folder = self.work / "points" / settings.slug

        def pipeline_for(model: str) -> Any:
            if model == "edited" and session.applied is not selection:
                session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
            elif model == "base" and session.applied is not None:
                session.restore(on_progress=self.on_progress)
            return session.pipeline

        emit(self.on_progress, ProgressEvent(stage="evaluate", message=f"point {settings.label}"))
        saved = False
        try:
            session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
            session.save(folder, overwrite=True, on_progress=self.on_progress, cancel=self.cancel)
            saved = True
            measured = measure(
                folder,
                self.plan,
                images_root=self.work / "images",
                device=self.device,
                pipeline_for=pipeline_for,
                on_progress=self.on_progress,
                cancel=self.cancel,
            )
        finally:
            if session.applied is not None:
                session.restore(on_progress=self.on_progress)
            if saved and not self.keep_models:  # what save refused (a user's folder) is never removed
                from cpedit.output.folder import remove_output_folder

                remove_output_folder(folder, argument="out")
        return Point(
            settings=settings,
            pruned=selection.pruned,
            pruned_percent=100.0 * selection.fraction,
            erased=measured.erased,
            preserved=measured.preserved,
            drop=measured.drop,
            metrics=measured.metrics,
            seconds=time.perf_counter() - started,
        )

    def save(self, settings: PointSettings, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save a point's pruned model to ``out`` (the folder ``cpedit prune`` writes), then restore.

        Raises:
            CpeditError: As :meth:`cpedit.edit.session.EditSession.save` (``out`` exists without ``overwrite``, ...).
        """
        for other in self._sessions.values():
            if other.applied is not None:
                other.restore(on_progress=self.on_progress)
        session = self._session(settings.target)
        selection = session.select(
            skill_ratio=settings.skill_ratio,
            timesteps=settings.timesteps,
            select_ratio=settings.select_ratio,
            on_progress=self.on_progress,
            cancel=self.cancel,
        )
        session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
        try:
            return session.save(out, overwrite=overwrite, on_progress=self.on_progress, cancel=self.cancel).path
        finally:
            session.restore(on_progress=self.on_progress)

    def point_folder(self, settings: PointSettings) -> Path:
        """Where a point's output is saved (kept with ``keep_models``)."""
        return self.work / "points" / settings.slug

    def close(self) -> None:
        """Drop the sessions and the pipeline (their memory is freed)."""
        self._sessions.clear()
        self._pipeline = None


def check_grid(values: list[Any], name: str) -> None:
    """A grid axis must have at least one value and no repeats."""
    if not values:
        raise CpeditError(f"--{name.replace('_', '-')} needs at least one value", argument=name)
    if len(set(values)) != len(values):
        raise CpeditError(f"--{name.replace('_', '-')} repeats a value: {values}", argument=name)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points (lower erased after, lower drop), in order of drop.

    A point is dominated when another is at least as good on both and better on one.
    """

    def beats(a: Point, b: Point) -> bool:
        ea, eb = a.erased["after"], b.erased["after"]
        return ea <= eb and a.drop <= b.drop and (ea < eb or a.drop < b.drop)

    front = [p for p in points if not any(beats(q, p) for q in points if q is not p)]
    return sorted(front, key=lambda p: (p.drop, p.erased["after"]))
