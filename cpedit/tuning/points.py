"""Settings points and their measurement, shared by ``cpedit sweep`` and ``cpedit tune``.

A :class:`PointEvaluator` loads the model once, calibrates each hook target once (with the
largest tau any point will ask for: the statistics of the first tau calls do not depend on
how many follow), and measures a point by selecting from those statistics, applying the
selection in memory, measuring the edited pipeline itself with the evaluation suite
(:func:`cpedit.tuning.measure.measure` on an :class:`~cpedit.eval.driver.InMemoryEdit`: the
report and recipes a saved output would hold, the images rendered from the pipeline) and
restoring the base weights. A point therefore measures what ``cpedit prune`` with its settings
followed by ``cpedit eval`` measures, without writing a model: only the point's record (and
the evaluation images) reach the disk. The judges are loaded once per evaluator and the base
model is scored once (a :class:`~cpedit.eval.judges.JudgeCache`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpedit.errors import CpeditError, RecipeError
from cpedit.eval.intervals import Estimate
from cpedit.models.compute import ComputeOptions
from cpedit.output.collapse import CollapseCheck
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
    """A measured point: its settings, what it pruned, erased and preserved before/after, the drop.

    ``intervals`` holds the 95% intervals of ``erased`` (after) and ``drop`` where the benchmarks
    give them; ``images`` the images per model the erasure benchmark scored; ``collapse`` the
    collapse check of the point's edit (:mod:`cpedit.edit.collapse`; None: not checked). A
    collapsed point failed whatever it measured: it is never on the Pareto front nor chosen by tune.
    """

    settings: PointSettings
    pruned: int
    pruned_percent: float
    erased: dict[str, float]
    preserved: dict[str, float]
    drop: float
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    intervals: dict[str, Estimate] = field(default_factory=dict)
    images: int = 0
    collapse: CollapseCheck | None = None

    @property
    def collapsed(self) -> bool:
        """Whether the point's edit destroyed generation (its collapse check failed)."""
        return self.collapse is not None and self.collapse.collapsed

    def upper(self, what: str) -> float:
        """The interval's upper bound of ``erased`` (after) or ``drop`` (the value itself without one)."""
        value = self.erased["after"] if what == "erased" else self.drop
        found = self.intervals.get(what)
        return value if found is None else max(found.high, value)

    def lower(self, what: str) -> float:
        """The interval's lower bound of ``erased`` (after) or ``drop`` (the value itself without one)."""
        value = self.erased["after"] if what == "erased" else self.drop
        found = self.intervals.get(what)
        return value if found is None else min(found.low, value)

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
            "intervals": {name: e.to_dict() for name, e in self.intervals.items()},
            "images": self.images,
            **(
                {"collapsed": self.collapse.collapsed, "collapse_check": self.collapse.to_dict()}
                if self.collapse is not None
                else {}
            ),
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
            intervals={name: Estimate.from_dict(e) for name, e in data.get("intervals", {}).items()},
            images=int(data.get("images", 0)),
            collapse=CollapseCheck.from_dict(data["collapse_check"]) if data.get("collapse_check") else None,
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
        work: The folder for the images (``work/images``) and kept point models (``work/points/SLUG``).
        timesteps: Per hook target (None: the recipes' own), the largest tau its points ask for; the
            recipes are calibrated for exactly that many denoiser calls (at least, for the targets
            in ``own_timesteps``; missing: the recipes' own tau).
        own_timesteps: Hook targets some of whose points use the recipes' own tau.
        keep_models: Also save each point's pruned model in ``work/points/SLUG`` (by rank 0 of a
            launch); otherwise no model is written.
        compute, batch_size: As :meth:`cpedit.edit.session.EditSession.open` (``compute.device`` is
            the evaluation judges' device too).
        collapse_guard: Checks each point's edit for a collapse (:mod:`cpedit.edit.collapse`; its
            base images are rendered once); None: points are not checked.
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
        compute: ComputeOptions = ComputeOptions(),
        batch_size: int | None = None,
        collapse_guard: Any = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.model = model
        self.collapse_guard = collapse_guard
        self.recipes = list(recipes)
        self.plan = plan
        self.work = Path(work)
        self.timesteps = dict(timesteps or {})
        self.own_timesteps = set(own_timesteps)
        self.keep_models = keep_models
        self.compute = compute
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.cancel = cancel
        self.calibrations: list[dict[str, Any]] = []
        self._sessions: dict[str | None, Any] = {}
        for target in self.timesteps:
            self._recipes(target)  # a tau or target that does not suit a recipe: refused before any loading
        self._pipeline: Any = None
        self._source: Any = None
        from cpedit.eval.judges import JudgeCache

        self.judges = JudgeCache()
        """The judges and base scores every point shares."""

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
                compute=self.compute,
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

    def evaluate(self, settings: PointSettings, *, plan: EvaluationPlan | None = None) -> Point:
        """Select, apply, measure in memory and restore one point (by ``plan``, default the evaluator's;
        with ``keep_models``, also save it).

        Raises:
            CpeditError: Bad settings (a tau beyond what was calibrated, a ratio out of range), or
                as :func:`cpedit.tuning.measure.measure`.
            Cancelled: ``cancel`` was set; the base weights are back.
        """
        from cpedit.distributed import is_main_process
        from cpedit.eval.driver import InMemoryEdit
        from cpedit.eval.engine import model_identity
        from cpedit.output.record import OutputRecord

        started = time.perf_counter()
        session, selection = self._selected(settings)

        def pipeline_for(model: str) -> Any:
            if model == "edited" and session.applied is not selection:
                session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
            elif model == "base" and session.applied is not None:
                session.restore(on_progress=self.on_progress)
            return session.pipeline

        emit(self.on_progress, ProgressEvent(stage="evaluate", message=f"point {settings.label}"))
        try:
            session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
            collapse = None
            if self.collapse_guard is not None:
                collapse = session.check_collapse(self.collapse_guard, on_progress=self.on_progress, cancel=self.cancel)
            # What the saved output would record; its folder only names the point (nothing is written there).
            report, recipes = session.report(), list(session.recipes)
            record = OutputRecord(folder=self.point_folder(settings), report=report, recipes=recipes)
            identity = model_identity(record, "edited", positions_sha256=masks_sha256(selection.masks))
            measured = measure(
                InMemoryEdit(record=record, pipeline_for=pipeline_for, identity=identity),
                plan or self.plan,
                images_root=self.work / "images",
                compute=self.compute,
                judges=self.judges,
                on_progress=self.on_progress,
                cancel=self.cancel,
            )
            if self.keep_models and is_main_process():
                pipeline_for("edited")
                session.save(
                    self.point_folder(settings), overwrite=True, on_progress=self.on_progress, cancel=self.cancel
                )
        finally:
            if session.applied is not None:
                session.restore(on_progress=self.on_progress)
        return Point(
            settings=settings,
            pruned=selection.pruned,
            pruned_percent=100.0 * selection.fraction,
            erased=measured.erased,
            preserved=measured.preserved,
            drop=measured.drop,
            metrics=measured.metrics,
            seconds=time.perf_counter() - started,
            intervals=measured.intervals,
            images=measured.images,
            collapse=collapse,
        )

    def _selected(self, settings: PointSettings) -> tuple[Any, Any]:
        """The point's calibrated session (any other session's selection restored) and its selection."""
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
        return session, selection

    def save(self, settings: PointSettings, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Save a point's pruned model to ``out`` (the folder ``cpedit prune`` writes), then restore.

        Raises:
            CpeditError: As :meth:`cpedit.edit.session.EditSession.save` (``out`` exists without ``overwrite``, ...).
        """
        session, selection = self._selected(settings)
        session.apply(selection, on_progress=self.on_progress, cancel=self.cancel)
        try:
            return session.save(out, overwrite=overwrite, on_progress=self.on_progress, cancel=self.cancel).path
        finally:
            session.restore(on_progress=self.on_progress)

    def point_folder(self, settings: PointSettings) -> Path:
        """Where a point's model is saved with ``keep_models`` (and the name of the point's edit)."""
        return self.work / "points" / settings.slug

    def close(self) -> None:
        """Drop the sessions, the pipeline and the judges (their memory is freed)."""
        self._sessions.clear()
        self._pipeline = None
        self.judges.clear()
        if self.collapse_guard is not None:
            self.collapse_guard.forget()


def masks_sha256(masks: Mapping[str, Any]) -> str:
    """A digest of pruned positions (per layer key: shape and mask), naming an edit held in memory."""
    digest = hashlib.sha256()
    for key in sorted(masks):
        mask = masks[key].detach().to("cpu").bool().contiguous()
        digest.update(f"{key}:{list(mask.shape)}\n".encode())
        digest.update(mask.numpy().tobytes())
    return digest.hexdigest()


def check_grid(values: list[Any], name: str) -> None:
    """A grid axis must have at least one value and no repeats."""
    if not values:
        raise CpeditError(f"--{name.replace('_', '-')} needs at least one value", argument=name)
    if len(set(values)) != len(values):
        raise CpeditError(f"--{name.replace('_', '-')} repeats a value: {values}", argument=name)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The non-dominated points (lower erased after, lower drop), in order of drop.

    A point is dominated when another is at least as good on both and better on one. A collapsed
    point (:attr:`Point.collapsed`) failed: it is left out, and dominates nothing.
    """
    points = [p for p in points if not p.collapsed]

    def beats(a: Point, b: Point) -> bool:
        ea, eb = a.erased["after"], b.erased["after"]
        return ea <= eb and a.drop <= b.drop and (ea < eb or a.drop < b.drop)

    front = [p for p in points if not any(beats(q, p) for q in points if q is not p)]
    return sorted(front, key=lambda p: (p.drop, p.erased["after"]))
