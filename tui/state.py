"""What the terminal app is editing: the model, the queue, the session and the selection, as plain objects.

The screens render an :class:`AppState` and call its methods; the slow ones (:meth:`AppState.open_session`,
:meth:`AppState.save`, :meth:`AppState.sample_pair`, :meth:`AppState.push`) block, so the app runs them in
thread workers and feeds the progress events they emit back through :meth:`AppState.apply_event` on the UI
thread. Nothing here imports Textual (the state is tested without a UI), and nothing imports torch before
a run starts: cpedit's public API loads it on first use.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cpedit
import cpedit.models
import cpedit.output
import cpedit.recipes
import cpedit.tuning
from cpedit.errors import Cancelled, CpeditError
from cpedit.progress import ProgressCallback, ProgressEvent
from cpedit.recipes.format import Recipe

BUILTIN_MODEL = "builtin:shapes"
Status = Literal["queued", "calibrating", "done", "failed"]
TUNABLE = ("skill_ratio", "timesteps", "select_ratio")
"""The prune settings the Tune screen changes (what :meth:`cpedit.EditSession.select` overrides)."""
PREVIEW_STEPS = 20
"""Denoising steps of the in-app before/after preview (quick; the saved preview uses the library's default)."""


@dataclass
class QueueItem:
    """One queued concept: a copy of a recipe (its settings may be edited in the app) and its run status."""

    recipe: Recipe
    origin: str
    """What it was added from: a file path, a shipped name or a ``hub:`` reference."""
    status: Status = "queued"
    error: str | None = None

    @property
    def name(self) -> str:
        """The recipe name (unique in a queue)."""
        return self.recipe.name


@dataclass(frozen=True)
class TuneValues:
    """One concept's prune settings on the Tune screen."""

    skill_ratio: float
    timesteps: int
    select_ratio: float


@dataclass
class RunProgress:
    """The nested progress of a run (concept, prompt batch, denoiser call), built from progress events."""

    stage: str = ""
    message: str = ""
    concept: str | None = None
    concept_index: int = 0
    concepts: int = 0
    batch: int | None = None
    batches: int | None = None
    timestep: int | None = None
    timesteps: int | None = None
    completed: int | None = None
    total: int | None = None
    unit: str | None = None
    device: str = ""
    memory_bytes: int | None = None
    started: float = field(default_factory=time.monotonic)
    step_started: float = field(default_factory=time.monotonic)

    def update(self, event: ProgressEvent, *, now: float | None = None) -> None:
        """Take in one event (a new stage or concept restarts the ETA clock)."""
        now = time.monotonic() if now is None else now
        if event.stage != self.stage or event.concept != self.concept:
            self.step_started = now
        self.stage = event.stage
        self.message = event.message
        if event.concept is not None and event.concept != self.concept and event.stage == "calibrate":
            self.concept_index += 1
        self.concept = event.concept
        self.batch, self.batches = event.batch, event.batches
        self.timestep, self.timesteps = event.timestep, event.timesteps
        self.completed, self.total, self.unit = event.completed, event.total, event.unit

    @property
    def fraction(self) -> float | None:
        """Share of the current step done, when it counts."""
        if self.completed is None or not self.total:
            return None
        return min(1.0, self.completed / self.total)

    def eta_seconds(self, *, now: float | None = None) -> float | None:
        """Seconds left in the current step, from its pace so far (None until something is done)."""
        now = time.monotonic() if now is None else now
        fraction = self.fraction
        if not fraction:
            return None
        elapsed = now - self.step_started
        return elapsed * (1 - fraction) / fraction


@dataclass(frozen=True)
class LocalModel:
    """What the Model screen says about a local pipeline folder (read from its files, nothing loaded)."""

    path: str
    pipeline_class: str | None
    editable: bool
    reason: str
    safetensors_bytes: int


def describe_local_model(folder: str | os.PathLike[str]) -> LocalModel:
    """Read a local folder's ``model_index.json`` and say whether cpedit can edit it (no weights loaded)."""
    root = Path(folder).expanduser()
    index_file = root / "model_index.json"
    if not index_file.is_file():
        return LocalModel(str(root), None, False, "not a diffusers pipeline folder (no model_index.json)", 0)
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
        class_name = str(index.get("_class_name"))
    except (OSError, ValueError, AttributeError) as exc:
        return LocalModel(str(root), None, False, f"model_index.json cannot be read ({exc})", 0)
    support = cpedit.models.describe_support(class_name)
    size = sum(p.stat().st_size for p in root.rglob("*.safetensors") if p.is_file() and not p.is_symlink())
    reason = support.how if support.supported else (support.missing or f"{class_name} is not supported")
    return LocalModel(str(root), class_name, support.supported, reason, size)


def memory_in_use(device: str) -> int | None:
    """Bytes in use on ``device``: CUDA's allocated memory, else this process's resident memory (Linux)."""
    if device.startswith("cuda") and "torch" in sys.modules:
        torch = sys.modules["torch"]
        try:
            return int(torch.cuda.memory_allocated(torch.device(device)))
        except Exception:  # noqa: BLE001 - a display value: never fail a run for it
            return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def output_name(model: str, names: list[str]) -> str:
    """The default output folder name: ``<model>-no-<concepts>`` (``shapes-no-shapes-striped``)."""
    model_part = model.removeprefix("builtin:").rstrip("/").split("/")[-1] or "model"
    slug = re.sub(r"[^a-z0-9]+", "-", model_part.lower()).strip("-") or "model"
    return f"{slug}-no-{'-'.join(names) or 'concepts'}"


BENCHMARKS = ("shapes", "classify", "nudity", "attack")
"""The erasure benchmarks a tune can measure with (``shapes`` works offline on the built-in model)."""


@dataclass(frozen=True)
class SweepPoint:
    """One measured point as the Tune screen's plot and list show it (from ``sweep.json`` or a tune).

    ``timesteps`` and ``select_ratio`` are None where the point kept each recipe's own value.
    """

    skill_ratio: float
    timesteps: int | None
    select_ratio: float | None
    target: str | None
    pruned_percent: float
    erased_after: float
    drop: float
    pareto: bool = False
    chosen: bool = False

    @property
    def label(self) -> str:
        """``sr 0.02, tau 10`` (as the library labels a point)."""
        parts = [f"sr {self.skill_ratio:g}"]
        if self.timesteps is not None:
            parts.append(f"tau {self.timesteps}")
        if self.select_ratio is not None:
            parts.append(f"sel {self.select_ratio:g}")
        if self.target is not None:
            parts.append(self.target)
        return ", ".join(parts)


def sweep_points(points: list[dict[str, Any]], *, chosen: dict[str, Any] | None = None) -> list[SweepPoint]:
    """Points from their ``sweep.json`` form (a :meth:`cpedit.tuning.Point.to_dict`), the Pareto front marked.

    The file's ``pareto`` marks are kept when every point has one; otherwise they are computed
    (:func:`mark_pareto`). ``chosen`` (a point's ``settings``) marks the point a tune chose.
    """
    out = []
    for data in points:
        settings = data["settings"]
        out.append(
            SweepPoint(
                skill_ratio=float(settings["skill_ratio"]),
                timesteps=None if settings.get("timesteps") is None else int(settings["timesteps"]),
                select_ratio=None if settings.get("select_ratio") is None else float(settings["select_ratio"]),
                target=settings.get("target"),
                pruned_percent=float(data["pruned_percent"]),
                erased_after=float(data["erased"]["after"]),
                drop=float(data["drop"]),
                pareto=bool(data.get("pareto", False)),
                chosen=chosen is not None and settings == chosen,
            )
        )
    if not all("pareto" in data for data in points):
        out = mark_pareto(out)
    return out


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """``points`` with ``pareto`` set on the non-dominated ones (lower erased after, lower drop: as
    :func:`cpedit.tuning.pareto_front`)."""

    def beats(a: SweepPoint, b: SweepPoint) -> bool:
        return (
            a.erased_after <= b.erased_after
            and a.drop <= b.drop
            and (a.erased_after < b.erased_after or a.drop < b.drop)
        )

    return [dataclasses.replace(p, pareto=not any(beats(q, p) for q in points if q is not p)) for p in points]


def point_values(point: SweepPoint, own: TuneValues) -> TuneValues:
    """The tune values a point stands for: its settings, ``own`` (the recipe's) where it kept the recipe's."""
    return TuneValues(
        skill_ratio=point.skill_ratio,
        timesteps=own.timesteps if point.timesteps is None else point.timesteps,
        select_ratio=own.select_ratio if point.select_ratio is None else point.select_ratio,
    )


@dataclass
class PointsView:
    """What the Tune screen's sweep panel shows: measured points, where they come from, whom they apply to."""

    title: str
    points: list[SweepPoint]
    concepts: tuple[str, ...]
    """The recipes the points were measured for (a point is applied to those that are calibrated)."""
    note: str = ""


@dataclass(frozen=True)
class TuneGoal:
    """What a tune on the Tune screen searches for (:func:`cpedit.tune`'s goal, search and evaluation)."""

    recipe: str
    erased_at_most: float
    max_drop: float
    benchmark: str = "shapes"
    images: int = 32
    seed: int = 0
    steps: int = 25
    timesteps: tuple[int, ...] = ()
    """The taus to search (empty: the recipe's own)."""
    max_skill_ratio: float = 0.3
    tolerance: float = 1.25


class AppState:
    """The app's data model: the base model, the queue, the session, the tuned selection and the output.

    Args:
        model: A Hub id, a local folder or ``builtin:shapes``.
        out: The output folder (default: :func:`output_name` in the working folder).
        device: Where the run computes (``auto``, ``cpu``, ``cuda:N``, ...).
        recipe_folders: Extra recipe folders the Recipes screen lists (the shipped ones and the
            user folder are always listed).
        calibrate_timesteps: Calibrate for this many denoiser calls so Tune can try any tau up to
            it (default: each recipe's own tau).
    """

    def __init__(
        self,
        *,
        model: str = BUILTIN_MODEL,
        out: str | None = None,
        device: str = "auto",
        recipe_folders: tuple[str, ...] = (),
        calibrate_timesteps: int | None = None,
    ) -> None:
        self.model = model
        self.out = out
        self.device = device
        self.recipe_folders = recipe_folders
        self.calibrate_timesteps = calibrate_timesteps
        self.queue: list[QueueItem] = []
        self.session: Any | None = None
        self.selection: Any | None = None
        self.tune: dict[str, TuneValues] = {}
        self.saved: Path | None = None
        self.saved_selection: Any | None = None
        self.running = False
        self.progress = RunProgress()
        self.log: list[str] = []
        self.points_view: PointsView | None = None
        """The sweep or tune points the Tune screen plots."""
        self.tuning: TuneGoal | None = None
        """The tune in progress (None: none)."""
        self.tune_progress = RunProgress()
        self._on_progress: ProgressCallback | None = None
        self._cancel: threading.Event | None = None
        """Where the session's later work reports and what stops it (:meth:`route_events`), passed per call."""

    # --- model and queue ----------------------------------------------------------------

    def choose_model(self, model: str) -> None:
        """Use another base model (a finished session for the old one is dropped)."""
        model = model.strip()
        if not model:
            raise CpeditError("give a model: a Hub id, a local folder or builtin:shapes", argument="model")
        if self.running:
            raise CpeditError("a run is going; cancel it before choosing another model")
        if model != self.model:
            self.model = model
            self._drop_session()

    def queue_recipe(self, recipe: Recipe, *, origin: str) -> QueueItem:
        """Add a copy of ``recipe`` to the queue.

        Raises:
            CpeditError: A run is going, or a queued recipe has the same name.
        """
        if self.running:
            raise CpeditError("a run is going; queue more recipes when it ends")
        if any(item.name == recipe.name for item in self.queue):
            raise CpeditError(f"{recipe.name} is already queued", argument="recipes")
        item = QueueItem(recipe=recipe, origin=origin)
        self.queue.append(item)
        self._drop_session()
        return item

    def unqueue(self, name: str) -> None:
        """Remove a concept from the queue."""
        if self.running:
            raise CpeditError("a run is going; remove recipes when it ends")
        self.queue = [item for item in self.queue if item.name != name]
        self._drop_session()

    def item(self, name: str) -> QueueItem:
        """The queued item named ``name``."""
        for item in self.queue:
            if item.name == name:
                return item
        raise CpeditError(f"{name} is not queued", argument="recipes")

    def edit_queued(
        self, name: str, *, prune: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None
    ) -> QueueItem:
        """Change the prune and sampling settings of a queued copy (validated like a recipe file).

        Raises:
            RecipeError: A value is invalid (each problem with its field).
            CpeditError: A run is going, or ``name`` is not queued.
        """
        if self.running:
            raise CpeditError("a run is going; edit settings when it ends")
        item = self.item(name)
        item.recipe = cpedit.recipes.with_settings(
            item.recipe, prune=prune, sampling=sampling, note=f"A copy of {item.origin} edited in cpedit tui"
        )
        item.status, item.error = "queued", None
        self._drop_session()
        return item

    def recipes(self) -> list[Recipe]:
        """The queued recipes, in order."""
        return [item.recipe for item in self.queue]

    def output_folder(self) -> Path:
        """Where :meth:`save` writes."""
        return Path(self.out or output_name(self.model, [item.name for item in self.queue])).expanduser()

    def _drop_session(self) -> None:
        self.session = None
        self.selection = None
        self.tune = {}
        for item in self.queue:
            if item.status == "done":
                item.status = "queued"

    # --- run ----------------------------------------------------------------------------

    def start_run(self) -> list[Recipe]:
        """Mark a run as started; returns the recipes to run.

        Raises:
            CpeditError: The queue is empty or a run is already going.
        """
        if self.running:
            raise CpeditError("a run is already going")
        if not self.queue:
            raise CpeditError("the queue is empty: add recipes on the Recipes screen first", argument="recipes")
        # An output folder that could never be written is refused now, not after calibrating (replacing
        # an earlier cpedit output is asked about when saving).
        cpedit.output.check_output_target(self.output_folder(), overwrite=True)
        self._drop_session()
        for item in self.queue:
            item.status, item.error = "queued", None
        self.running = True
        self.progress = RunProgress(concepts=len(self.queue), device=self.device)
        self.log.append(f"run: {', '.join(item.name for item in self.queue)} on {self.model}")
        return self.recipes()

    def open_session(
        self,
        recipes: list[Recipe],
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        on_open: Callable[[Any], None] | None = None,
    ) -> Any:
        """Load the model and calibrate every recipe (blocking: call it from a worker thread).

        Args:
            recipes: The recipes (from :meth:`start_run`).
            on_progress: Receives every progress event (download, load, calibrate, ...).
            cancel: Set it to stop with :class:`cpedit.Cancelled`.
            on_open: Called with the session once the model is loaded, before calibrating.

        Raises:
            CpeditError: Whatever :meth:`cpedit.EditSession.open` or ``calibrate`` raises.
        """
        session = cpedit.EditSession.open(
            self.model, recipes, device=self.device, on_progress=on_progress, cancel=cancel
        )
        if on_open is not None:
            on_open(session)
        session.calibrate(timesteps=self.calibrate_timesteps, on_progress=on_progress, cancel=cancel)
        return session

    def apply_event(self, event: ProgressEvent) -> None:
        """Take in a progress event of a run: statuses, progress and log (call it on the UI thread)."""
        previous = (self.progress.stage, self.progress.concept)
        self.progress.update(event)
        if event.stage == "calibrate" and event.concept:
            for item in self.queue:
                if item.name == event.concept and item.status == "queued":
                    item.status = "calibrating"
                elif item.status == "calibrating" and item.name != event.concept:
                    item.status = "done"
        if (event.stage, event.concept) != previous:
            self.log.append(event.message)

    def note_device(self, device: str, memory: int | None) -> None:
        """Record where the run computes and the memory in use (shown beside the progress)."""
        self.progress.device = device
        self.progress.memory_bytes = memory

    def finish_run(self, session: Any) -> Any:
        """A run ended well: keep the session, tune from each recipe's own settings, select once."""
        self.running = False
        self.session = session
        self._on_progress = self._cancel = None  # selecting again is instant; later work routes its own events
        for item in self.queue:
            item.status, item.error = "done", None
        self.tune = {
            recipe.name: TuneValues(recipe.prune.skill_ratio, recipe.prune.timesteps, recipe.prune.select_ratio)
            for recipe in session.recipes
        }
        message = f"calibrated {len(self.queue)} concept(s) in {session.timings.get('calibrate', 0.0):.1f} s"
        self.progress.update(ProgressEvent(stage="done", message=message))
        self.log.append(message)
        return self.reselect()

    def fail_run(self, error: BaseException) -> None:
        """A run ended with an error or a cancel: the concept it was on shows why; the rest go back to queued."""
        self.running = False
        self.session = None
        self.selection = None
        cancelled = isinstance(error, Cancelled)
        message = "cancelled: nothing was written" if cancelled else str(error)
        culprit = self._culprit(error)
        for item in self.queue:
            if not cancelled and item.name == culprit:
                item.status, item.error = "failed", message
            else:
                item.status, item.error = "queued", None
        self.log.append(message if cancelled else f"failed: {message}")

    def _culprit(self, error: BaseException) -> str | None:
        """The queued concept an error is about: the recipe file it names, else the one calibrating."""
        path = getattr(error, "path", None)
        for item in self.queue:
            if path and path in (item.recipe.source, item.origin):
                return item.name
        for item in self.queue:
            if item.status == "calibrating":
                return item.name
        return self.queue[0].name if self.queue else None

    def route_events(self, *, on_progress: ProgressCallback | None, cancel: threading.Event | None) -> None:
        """Send the session's later progress events to ``on_progress`` and let ``cancel`` stop its next slow step.

        The session's select, apply, save, sample and preview calls get them (per call); each screen
        that starts such work routes them to itself first.
        """
        self._on_progress, self._cancel = on_progress, cancel

    # --- tune ---------------------------------------------------------------------------

    def set_tune(self, name: str, **values: Any) -> Any:
        """Change one concept's tuned settings and select again (no denoiser call).

        Raises:
            CpeditError: No session yet, an unknown name or setting, or a value out of range
                (the session's own checks); the old values stay.
        """
        if name not in self.tune:
            raise CpeditError(f"{name} has not been calibrated; run the queue first")
        unknown = sorted(set(values) - set(TUNABLE))
        if unknown:
            raise CpeditError(f"unknown setting {', '.join(unknown)}; use {', '.join(TUNABLE)}")
        old = self.tune[name]
        self.tune[name] = dataclasses.replace(old, **values)
        try:
            return self.reselect()
        except CpeditError:
            self.tune[name] = old
            raise

    def reselect(self) -> Any:
        """Select with the tuned settings (what save and preview use)."""
        if self.session is None:
            raise CpeditError("run the queue first: tuning works on a calibrated session")
        self.selection = self.session.select(
            per_recipe={name: dataclasses.asdict(values) for name, values in self.tune.items()},
            on_progress=self._on_progress,
            cancel=self._cancel,
        )
        return self.selection

    def _applied_selection(self) -> Any:
        if self.session is None or self.selection is None:
            raise CpeditError("run the queue first: nothing is calibrated yet")
        if self.session.applied is not self.selection:
            self.session.apply(self.selection, on_progress=self._on_progress, cancel=self._cancel)
        return self.selection

    # --- sweep plot and auto-tune -------------------------------------------------------

    def load_sweep(self, folder: str | os.PathLike[str]) -> PointsView:
        """Show the points of ``folder/sweep.json`` (written by ``cpedit sweep``) on the Tune screen.

        Raises:
            CpeditError: There is no ``sweep.json`` in ``folder``, or it is malformed.
        """
        folder = Path(folder).expanduser()
        data = cpedit.tuning.read_sweep(folder)
        if data is None:
            raise CpeditError(f"no sweep.json in {folder}: cpedit sweep --out {folder} writes one", argument="folder")
        benchmark = (data.get("evaluation") or {}).get("benchmark", "?")
        concepts = tuple(str(r["name"]) for r in data.get("recipes", []) if isinstance(r, dict) and "name" in r)
        points = sweep_points(data["points"])
        self.points_view = PointsView(
            title=f"sweep {folder} · {benchmark} · {len(points)} point(s)", points=points, concepts=concepts
        )
        self.log.append(f"sweep plot: {folder} ({len(points)} points)")
        return self.points_view

    def point_targets(self) -> list[str]:
        """The calibrated concepts a point of the panel applies to: those it was measured for (all when
        the points do not say)."""
        concepts = self.points_view.concepts if self.points_view is not None else ()
        return [name for name in concepts if name in self.tune] if concepts else list(self.tune)

    def apply_point(self, point: SweepPoint, names: list[str] | None = None) -> Any:
        """Set a point's settings as the tune values of ``names`` (default :meth:`point_targets`), select once.

        Raises:
            CpeditError: Nothing is calibrated, or the session refuses the values (a tau beyond
                what was calibrated, ...); the old values stay.
        """
        if self.session is None:
            raise CpeditError("run the queue first (ctrl+r): a point's settings tune a calibrated session")
        names = self.point_targets() if names is None else names
        if not names:
            concepts = ", ".join(self.points_view.concepts) if self.points_view else "?"
            raise CpeditError(f"the points were measured for {concepts}, which is not calibrated: queue and run it")
        own = {recipe.name: recipe.prune for recipe in self.session.recipes}
        old = dict(self.tune)
        for name in names:
            prune = own[name]
            self.tune[name] = point_values(point, TuneValues(prune.skill_ratio, prune.timesteps, prune.select_ratio))
        try:
            return self.reselect()
        except CpeditError:
            self.tune = old
            raise

    def tune_folder(self, name: str) -> Path:
        """Where a tune of ``name`` writes (``tune.json``, the tuned recipe, its images): beside the output."""
        output = self.output_folder()
        return output.with_name(f"{output.name}-tune") / name

    def start_tune(self, goal: TuneGoal) -> Path:
        """Mark a tune as started (its points replace the panel's); returns its folder.

        Raises:
            CpeditError: A tune is already going, or the recipe is not queued.
        """
        if self.tuning is not None:
            raise CpeditError("a tune is already going (ctrl+x cancels it)")
        self.item(goal.recipe)
        self.tuning = goal
        self.tune_progress = RunProgress(device=self.device)
        folder = self.tune_folder(goal.recipe)
        self.points_view = PointsView(
            title=f"tune {goal.recipe} · {goal.benchmark}", points=[], concepts=(goal.recipe,)
        )
        self.log.append(
            f"tune: {goal.recipe} on {self.model}, erased <= {goal.erased_at_most:g}, drop <= {goal.max_drop:g}"
        )
        return folder

    def run_tune(
        self,
        goal: TuneGoal,
        *,
        on_point: Callable[[Any], None] | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """Run :func:`cpedit.tune` on the app's model (blocking: call it from a worker thread).

        The tune loads and calibrates its own copy of the model; the session is not touched.

        Raises:
            CpeditError: As :func:`cpedit.tuning.plan_evaluation` and :func:`cpedit.tune`.
            Cancelled: ``cancel`` was set.
        """
        plan = cpedit.tuning.plan_evaluation(
            goal.benchmark, seed=goal.seed, steps=goal.steps, images=goal.images, on_progress=on_progress, cancel=cancel
        )
        return cpedit.tune(
            self.model,
            self.item(goal.recipe).recipe,
            plan=plan,
            erased_at_most=goal.erased_at_most,
            max_drop=goal.max_drop,
            out=self.tune_folder(goal.recipe),
            timesteps=list(goal.timesteps) or None,
            max_skill_ratio=goal.max_skill_ratio,
            tolerance=goal.tolerance,
            device=self.device,
            on_point=on_point,
            on_progress=on_progress,
            cancel=cancel,
        )

    def add_tune_point(self, data: dict[str, Any]) -> None:
        """Show a point the tune in progress measured (its ``to_dict`` form)."""
        if self.points_view is not None and self.tuning is not None:
            self.points_view.points = mark_pareto([*self.points_view.points, *sweep_points([data])])

    def finish_tune(self, result: Any) -> SweepPoint:
        """A tune ended: its points (the chosen one marked) replace the panel's; returns the point to apply
        (the chosen one, else the best trade-off measured)."""
        goal, self.tuning = self.tuning, None
        name = goal.recipe if goal is not None else "?"
        best = result.best.settings.to_dict()
        points = sweep_points([p.to_dict() for p in result.points], chosen=best)
        verdict = "goal met" if result.met else "goal not met: the best trade-off measured"
        note = f"{verdict}: {result.best.settings.label}"
        note += f" · tuned recipe {result.recipe_file}" if result.recipe_file else f" · {result.file}"
        self.points_view = PointsView(
            title=f"tune {name} · {len(points)} point(s) in {result.file.parent if result.file else '?'}",
            points=points,
            concepts=(name,),
            note=note,
        )
        self.tune_progress.update(ProgressEvent(stage="done", message=note))
        self.log.append(f"tune {name}: {note}")
        return next(p for p in points if p.chosen)

    def fail_tune(self, error: BaseException) -> str:
        """A tune ended with an error or a cancel: nothing is applied (the points measured stay shown)."""
        self.tuning = None
        message = "tune cancelled: nothing applied" if isinstance(error, Cancelled) else f"tune failed: {error}"
        if self.points_view is not None:
            self.points_view.note = message
        self.tune_progress = RunProgress()
        self.log.append(message)
        return message

    # --- preview, save, push ------------------------------------------------------------

    def preview_prompts(self) -> list[str]:
        """The queued recipes' preview prompts (else their first target prompts)."""
        if self.session is not None and self.session.preview_prompts():
            return list(self.session.preview_prompts())
        return [recipe.targets[0] for recipe in self.recipes()]

    def sample_pair(self, prompt: str, *, seed: int, steps: int = PREVIEW_STEPS) -> tuple[Any, Any]:
        """Render ``prompt`` with the base model and with the tuned selection (blocking; PIL images)."""
        self._applied_selection()
        session = self.session
        events = {"on_progress": self._on_progress, "cancel": self._cancel}
        base = session.sample([prompt], seed=seed, steps=steps, edited=False, **events)[0]
        edited = session.sample([prompt], seed=seed, steps=steps, edited=True, **events)[0]
        return base, edited

    def save(self, *, overwrite: bool = False, preview: bool = False) -> Path:
        """Write the tuned selection to :meth:`output_folder` (blocking); the recipe copies record the settings.

        Raises:
            CpeditError: No session, or what :meth:`cpedit.EditSession.save` raises.
        """
        selection = self._applied_selection()
        events = {"on_progress": self._on_progress, "cancel": self._cancel}
        path = self.session.save(self.output_folder(), overwrite=overwrite, preview=preview, **events).path
        self.saved = Path(path)
        self.saved_selection = selection
        self.log.append(f"saved {path} ({selection.pruned:,} weights pruned)")
        return self.saved

    def render_saved_preview(self) -> Path:
        """Render the saved output's before/after preview into it (from the session when it still holds it)."""
        if self.saved is None:
            raise CpeditError("save the output first")
        if self.session is not None and self.saved_selection is self.selection:
            self._applied_selection()
            grid = self.session.render_preview(on_progress=self._on_progress, cancel=self._cancel)
            return cpedit.output.save_preview(self.saved, grid)
        return cpedit.output.render_preview(self.saved, device=self.device)

    def card(self, *, repo_id: str | None) -> str:
        """The model card a push of the saved output publishes."""
        from cpedit.publish import build_model_card

        if self.saved is None:
            raise CpeditError("save the output first (Tune screen, ctrl+s)")
        return build_model_card(self.saved, repo_id=repo_id)

    def push(
        self,
        *,
        repo_id: str,
        private: bool = False,
        branch: str | None = None,
        create_pr: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Any:
        """Publish the saved output (blocking); returns :class:`cpedit.publish.PushResult`."""
        from cpedit.publish import push_model

        if self.saved is None:
            raise CpeditError("save the output first (Tune screen, ctrl+s)")
        result = push_model(
            self.saved,
            repo_id=repo_id,
            private=private,
            branch=branch or None,
            create_pr=create_pr,
            on_progress=on_progress,
            cancel=cancel,
        )
        self.log.append(f"pushed {result.repo_id}: {result.pr_url or result.commit_url}")
        return result


def describe_error(error: BaseException) -> str:
    """The one-message form of an error for the app: cpedit's own message (a recipe error lists its
    problems), else the exception's type and text (something unexpected: say what it was)."""
    if isinstance(error, CpeditError):
        return str(error)
    return f"{type(error).__name__}: {error}"
