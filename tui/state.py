"""What the terminal app is editing: the model, the queue, the session and the selection, as plain objects.

The screens render an :class:`AppState`; only the UI thread changes it. Slow work runs in thread
workers on values taken from the state on the UI thread (a :class:`RunPlan`, the tune values, the
:class:`~tui.session_jobs.SessionJobs` of the session) and returns its result, which the UI thread
takes in (:meth:`AppState.finish_run`, :meth:`AppState.accept`, :meth:`AppState.finish_save`, ...) only
while it still matches what the screen asks for. Nothing here imports Textual (the state is tested
without a UI), and nothing imports torch before a run starts: cpedit's public API loads it on first use.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cpedit
import cpedit.edit
import cpedit.models
import cpedit.output
import cpedit.recipes
import cpedit.tuning
from cpedit import ComputeOptions
from cpedit.errors import Cancelled, CpeditError
from cpedit.progress import ProgressCallback, ProgressEvent
from cpedit.recipes import Recipe
from tui.session_jobs import (
    Saved,
    SessionJobs,
    Tuned,
    TuneSet,
    TuneValues,
    per_recipe,
    recipe_values,
    tune_set,
)

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

    def end(self, outcome: Literal["cancelled", "failed"], message: str) -> None:
        """The work stopped before its end: say so (no bar, no ETA left running)."""
        self.stage, self.message = outcome, message
        self.batch = self.batches = self.timestep = self.timesteps = None
        self.completed = self.total = self.unit = None

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
    memory: str | None = None
    """The memory estimate's line (:meth:`cpedit.edit.MemoryEstimate.describe`): what ``cpedit prune`` reports."""


def describe_local_model(
    folder: str, *, recipes: Sequence[Recipe] = (), compute: ComputeOptions = ComputeOptions()
) -> LocalModel:
    """Say whether cpedit can edit a local folder, checked as a run checks it before loading
    (:func:`cpedit.models.check_model_folder`: the reason is the one ``cpedit prune`` gives), and the memory a
    run of ``recipes`` with ``compute`` needs (:func:`cpedit.edit.estimate_memory`). No weights are read."""
    root = Path(folder).expanduser()
    try:
        support = cpedit.models.check_model_folder(folder)
    except CpeditError as exc:
        return LocalModel(folder, None, False, str(exc), 0)
    size = sum(p.stat().st_size for p in root.rglob("*.safetensors") if p.is_file() and not p.is_symlink())
    try:
        memory = cpedit.edit.estimate_memory(root, recipes, compute=compute).describe()
    except CpeditError as exc:
        memory = f"memory: unknown ({exc})"
    return LocalModel(folder, support.pipeline_class, True, support.how, size, memory)


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


def erasure_benchmarks() -> tuple[str, ...]:
    """The erasure benchmarks a tune can measure with, from the registry (``shapes`` works offline)."""
    from cpedit.eval.registry import benchmark_names

    return benchmark_names("erasure")


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
    erased_interval: tuple[float, float] | None = None
    """The 95% interval of erased after (low, high), where the point has one."""
    drop_interval: tuple[float, float] | None = None
    """The 95% interval of the drop (low, high)."""
    collapsed: bool = False
    """The point's edit destroyed generation (its collapse check failed): it failed, whatever it measured."""

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


def _bounds(point: dict[str, Any], name: str) -> tuple[float, float] | None:
    """A point's 95% interval of ``erased`` or ``drop`` (from its ``intervals``), or None."""
    found = point.get("intervals", {}).get(name)
    return None if found is None else (float(found["low"]), float(found["high"]))


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
                erased_interval=_bounds(data, "erased"),
                drop_interval=_bounds(data, "drop"),
                collapsed=data.get("collapsed") is True,
            )
        )
    if not all("pareto" in data for data in points):
        out = mark_pareto(out)
    return out


def mark_pareto(points: list[SweepPoint]) -> list[SweepPoint]:
    """``points`` with ``pareto`` set on the non-dominated ones (lower erased after, lower drop: as
    :func:`cpedit.tuning.pareto_front`; a collapsed point is never on it and dominates nothing)."""

    def beats(a: SweepPoint, b: SweepPoint) -> bool:
        return (
            not a.collapsed
            and not b.collapsed
            and a.erased_after <= b.erased_after
            and a.drop <= b.drop
            and (a.erased_after < b.erased_after or a.drop < b.drop)
        )

    return [
        dataclasses.replace(p, pareto=not p.collapsed and not any(beats(q, p) for q in points if q is not p))
        for p in points
    ]


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


@dataclass(frozen=True)
class RunPlan:
    """What a run loads and calibrates, taken from the state when it starts (the worker reads nothing else)."""

    model: str
    recipes: tuple[Recipe, ...]
    compute: ComputeOptions
    calibrate_timesteps: int | None


def calibrate(
    plan: RunPlan,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    on_open: Callable[[Any], None] | None = None,
) -> Tuned:
    """Load the model, calibrate every recipe and select with their own settings (blocking: a worker's job).

    Args:
        plan: What to run (from :meth:`AppState.start_run`).
        on_progress: Receives every progress event (download, load, calibrate, ...).
        cancel: Set it to stop with :class:`cpedit.Cancelled`.
        on_open: Called with the session once the model is loaded, before calibrating.

    Raises:
        CpeditError: Whatever :meth:`cpedit.EditSession.open` or ``calibrate`` raises.
    """
    session = cpedit.EditSession.open(
        plan.model, list(plan.recipes), compute=plan.compute, on_progress=on_progress, cancel=cancel
    )
    if on_open is not None:
        on_open(session)
    session.calibrate(timesteps=plan.calibrate_timesteps, on_progress=on_progress, cancel=cancel)
    return SessionJobs(session).select(recipe_values(session), cancel=cancel)


def read_points(folder: str | os.PathLike[str]) -> PointsView:
    """The points of ``folder/sweep.json`` (written by ``cpedit sweep``) as the Tune screen shows them.

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
    return PointsView(title=f"sweep {folder} · {benchmark} · {len(points)} point(s)", points=points, concepts=concepts)


@dataclass(frozen=True)
class TuneJob:
    """What an auto-tune runs, taken from the state when it starts."""

    goal: TuneGoal
    model: str
    recipe: Recipe
    folder: Path
    compute: ComputeOptions


def run_tune(
    job: TuneJob,
    *,
    on_point: Callable[[Any], None] | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Any:
    """Run :func:`cpedit.tune` (blocking: a worker's job); it loads and calibrates its own copy of the model.

    Raises:
        CpeditError: As :func:`cpedit.tuning.plan_evaluation` and :func:`cpedit.tune`.
        Cancelled: ``cancel`` was set.
    """
    from cpedit.eval import ImageOptions, get_benchmark
    from cpedit.tuning.measure import DEFAULT_IMAGES

    goal = job.goal
    plan = cpedit.tuning.plan_evaluation(
        goal.benchmark,
        get_benchmark(goal.benchmark).options({"images": goal.images}),
        images=ImageOptions(seed=goal.seed, steps=goal.steps, batch_size=DEFAULT_IMAGES.batch_size),
        on_progress=on_progress,
        cancel=cancel,
    )
    return cpedit.tune(
        job.model,
        job.recipe,
        plan=plan,
        erased_at_most=goal.erased_at_most,
        max_drop=goal.max_drop,
        out=job.folder,
        timesteps=list(goal.timesteps) or None,
        max_skill_ratio=goal.max_skill_ratio,
        tolerance=goal.tolerance,
        compute=job.compute,
        on_point=on_point,
        on_progress=on_progress,
        cancel=cancel,
    )


def render_saved_preview(
    saved: Saved, *, jobs: SessionJobs | None, compute: ComputeOptions, cancel: threading.Event | None = None
) -> Path:
    """Render a saved output's before/after preview into it (blocking: a worker's job): from the session
    when ``jobs`` is the one it was saved from (the model is in memory), else from the folder."""
    if jobs is not None and saved.tuned.jobs is jobs:
        return jobs.render_preview_into(saved, cancel=cancel)
    return cpedit.output.render_preview(saved.path, compute=compute, cancel=cancel)


class AppState:
    """The app's data model: the base model, the queue, the session, the tuned selection and the output.

    Only the UI thread changes it; workers get what they need when they start and return results.

    Args:
        model: A Hub id, a local folder or ``builtin:shapes``.
        out: The output folder (default: :func:`output_name` in the working folder).
        compute: Where and how runs load the model (device, dtype, offload, revision).
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
        compute: ComputeOptions = ComputeOptions(),
        recipe_folders: tuple[str, ...] = (),
        calibrate_timesteps: int | None = None,
    ) -> None:
        self.model = model
        self.out = out
        self.compute = compute
        self.recipe_folders = recipe_folders
        self.calibrate_timesteps = calibrate_timesteps
        self.queue: list[QueueItem] = []
        self.jobs: SessionJobs | None = None
        """The calibrated session, shared by the workers (None: nothing is calibrated)."""
        self.tune: dict[str, TuneValues] = {}
        """Each calibrated concept's tune values: what the Tune screen's fields hold."""
        self.tuned: Tuned | None = None
        """The selection on screen and the values it was computed for (it lags :attr:`tune` while selecting)."""
        self.last_save: Saved | None = None
        self.running = False
        self.progress = RunProgress()
        self.log: list[str] = []
        self.points_view: PointsView | None = None
        """The sweep or tune points the Tune screen plots."""
        self.tuning: TuneGoal | None = None
        """The tune in progress (None: none)."""
        self.tuning_folder: Path | None = None
        """Where the tune going writes (fixed when it starts: a later change of the output folder does not move it)."""
        self.tune_progress = RunProgress()

    # --- what the screens read ------------------------------------------------------------

    @property
    def session(self) -> Any | None:
        """The calibrated :class:`cpedit.EditSession` (None: nothing is calibrated)."""
        return self.jobs.session if self.jobs is not None else None

    @property
    def selection(self) -> Any | None:
        """The selection on screen (:attr:`tuned`'s)."""
        return self.tuned.selection if self.tuned is not None else None

    @property
    def values(self) -> TuneSet:
        """The tune values now (what a selection, a preview or a save must be computed for)."""
        return tune_set(self.tune)

    def current_tuned(self) -> Tuned | None:
        """:attr:`tuned` when it is for the tune values now, else None (a selection for them is on its way)."""
        return self.tuned if self.tuned is not None and self._is_current(self.tuned) else None

    def _is_current(self, tuned: Tuned) -> bool:
        return tuned.jobs is self.jobs and tuned.values == self.values

    @property
    def saved(self) -> Path | None:
        """The output folder written last (None: nothing saved yet)."""
        return self.last_save.path if self.last_save is not None else None

    def saved_is_current(self) -> bool:
        """Whether the last save holds the selection of the tune values now."""
        return self.last_save is not None and self._is_current(self.last_save.tuned)

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
        """Where a save writes."""
        return Path(self.out or output_name(self.model, [item.name for item in self.queue])).expanduser()

    def _drop_session(self) -> None:
        if self.jobs is not None:
            self.jobs.close()  # its model is freed once the job using it (if any) ends
        self.jobs = None
        self.tuned = None
        self.tune = {}
        for item in self.queue:
            if item.status == "done":
                item.status = "queued"

    # --- run ----------------------------------------------------------------------------

    def start_run(self) -> RunPlan:
        """Mark a run as started; returns what to run.

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
        self.progress = RunProgress(concepts=len(self.queue), device=self.compute.device)
        self.progress.update(
            ProgressEvent(
                stage="load", message=f"starting: {self.model}, then calibrating {len(self.queue)} concept(s)"
            )
        )
        self.log.append(f"run: {', '.join(item.name for item in self.queue)} on {self.model}")
        return RunPlan(self.model, tuple(self.recipes()), self.compute, self.calibrate_timesteps)

    def apply_event(self, event: ProgressEvent) -> None:
        """Take in a progress event of a run: statuses, progress and log."""
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

    def finish_run(self, calibrated: Tuned) -> str:
        """A run ended well: keep its session, tune from each recipe's own settings; returns what to do next."""
        self.running = False
        self.jobs = calibrated.jobs
        self.tune = dict(calibrated.values)
        self.tuned = calibrated
        for item in self.queue:
            item.status, item.error = "done", None
        seconds = calibrated.jobs.session.timings.get("calibrate", 0.0)
        message = f"calibrated {len(self.queue)} concept(s) in {seconds:.1f} s"
        after = self.next_steps()
        self.progress.update(ProgressEvent(stage="done", message=f"{message} · {after}"))
        self.log += [message, after]
        return after

    def next_steps(self) -> str:
        """What to do after a run: tune, preview, and where ctrl+s saves."""
        return f"next: tune on screen 4 (p previews there), ctrl+s saves to {self.output_folder()}"

    def fail_run(self, error: BaseException) -> None:
        """A run ended with an error or a cancel: the concept it was on shows why; the rest go back to queued."""
        self.running = False
        self._drop_session()
        cancelled = isinstance(error, Cancelled)
        message = "cancelled: nothing was written" if cancelled else str(error)
        culprit = self._culprit(error)
        for item in self.queue:
            if not cancelled and item.name == culprit:
                item.status, item.error = "failed", message
            else:
                item.status, item.error = "queued", None
        self.progress.end("cancelled" if cancelled else "failed", message)
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

    # --- tune ---------------------------------------------------------------------------

    def set_tune(self, name: str, **values: Any) -> bool:
        """Change one concept's tune values (checked at once; selecting is a worker's job).

        Returns:
            Whether the values changed (then a selection for :attr:`values` is needed).

        Raises:
            CpeditError: No session yet, an unknown name or setting, or a value out of range
                (the session's own checks); the old values stay.
        """
        if name not in self.tune:
            raise CpeditError(f"{name} has not been calibrated; run the queue first")
        unknown = sorted(set(values) - set(TUNABLE))
        if unknown:
            raise CpeditError(f"unknown setting {', '.join(unknown)}; use {', '.join(TUNABLE)}")
        new = dataclasses.replace(self.tune[name], **values)
        return self._set_values({**self.tune, name: new})

    def reset_tune(self) -> bool:
        """Put every concept back to its recipe's own settings; returns whether the values changed."""
        if self.session is None:
            return False
        return self._set_values(dict(recipe_values(self.session)))

    def _set_values(self, tune: dict[str, TuneValues]) -> bool:
        """Make ``tune`` the tune values when the session accepts them (its checks; nothing is selected)."""
        if self.session is None:
            raise CpeditError("run the queue first: tuning works on a calibrated session")
        if tune == self.tune:
            return False
        self.session.settings_for(per_recipe=per_recipe(tune_set(tune)))
        self.tune = tune
        return True

    def accept(self, tuned: Tuned) -> bool:
        """Show ``tuned`` if it is for the tune values now (on this session); an older answer is dropped."""
        if not self._is_current(tuned):
            return False
        self.tuned = tuned
        return True

    def select_now(self) -> Any:
        """Select for the tune values now, on this thread (blocking: for scripts and tests; the app selects in
        a worker)."""
        if self.jobs is None:
            raise CpeditError("run the queue first: tuning works on a calibrated session")
        self.accept(self.jobs.select(self.values))
        return self.selection

    # --- sweep plot and auto-tune -------------------------------------------------------

    def show_points(self, view: PointsView, folder: str | os.PathLike[str]) -> None:
        """Plot a sweep's points (from :func:`read_points`) on the Tune screen."""
        self.points_view = view
        self.log.append(f"sweep plot: {folder} ({len(view.points)} points)")

    def point_targets(self) -> list[str]:
        """The calibrated concepts a point of the panel applies to: those it was measured for (all when
        the points do not say)."""
        concepts = self.points_view.concepts if self.points_view is not None else ()
        return [name for name in concepts if name in self.tune] if concepts else list(self.tune)

    def apply_point(self, point: SweepPoint, names: list[str] | None = None) -> bool:
        """Set a point's settings as the tune values of ``names`` (default :meth:`point_targets`).

        Returns:
            Whether the values changed (then a selection for them is needed).

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
        own = dict(recipe_values(self.session))
        return self._set_values({**self.tune, **{name: point_values(point, own[name]) for name in names}})

    def tune_folder(self, name: str) -> Path:
        """Where a tune of ``name`` writes (``tune.json``, the tuned recipe, its images): beside the output.

        Raises:
            CpeditError: The output folder has no name of its own (``.``, ``..``, ``/``), so nothing can
                be beside it (``argument="out"``).
        """
        output = self.output_folder()
        if output.name in ("", ".", ".."):
            raise CpeditError(
                f"the output folder {str(output)!r} has no name of its own, so the tune has no folder beside it; "
                "set an output folder name",
                reason="current_folder",
                argument="out",
            )
        return output.with_name(f"{output.name}-tune") / name

    def start_tune(self, goal: TuneGoal) -> TuneJob:
        """Mark a tune as started (its points replace the panel's); returns what to run.

        Raises:
            CpeditError: A tune is already going, or the recipe is not queued.
        """
        if self.tuning is not None:
            raise CpeditError("a tune is already going (ctrl+x cancels it)")
        recipe = self.item(goal.recipe).recipe
        folder = self.tune_folder(goal.recipe)  # may refuse: before the tune is marked as going
        self.tuning, self.tuning_folder = goal, folder
        self.tune_progress = RunProgress(device=self.compute.device)
        self.points_view = PointsView(
            title=f"tune {goal.recipe} · {goal.benchmark}", points=[], concepts=(goal.recipe,)
        )
        self.log.append(
            f"tune: {goal.recipe} on {self.model}, erased <= {goal.erased_at_most:g}, drop <= {goal.max_drop:g}"
        )
        return TuneJob(goal, self.model, recipe, folder, self.compute)

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
        if getattr(result, "base_meets", False):
            verdict += " (the base already meets it before any pruning: set a lower goal)"
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

    def require_jobs(self) -> SessionJobs:
        """The calibrated session's jobs.

        Raises:
            CpeditError: Nothing is calibrated yet.
        """
        if self.jobs is None:
            raise CpeditError("run the queue first (ctrl+r): nothing is calibrated yet")
        return self.jobs

    def sample_pair(self, prompt: str, *, seed: int, steps: int = PREVIEW_STEPS) -> tuple[Any, Any]:
        """Render ``prompt`` with the base model and with the tune values now (blocking, on this thread: for
        scripts and tests; the Preview screen renders in a worker)."""
        rendered = self.require_jobs().sample_pair(self.values, self.current_tuned(), prompt, seed=seed, steps=steps)
        self.accept(rendered.tuned)
        return rendered.base, rendered.edited

    def finish_save(self, saved: Saved) -> None:
        """A save ended well: remember what it holds (and show its selection if it is for the values now)."""
        self.last_save = saved
        self.accept(saved.tuned)
        self.log.append(f"saved {saved.path} ({saved.tuned.selection.pruned:,} weights pruned)")
        if saved.collapsed:
            self.log.append(f"warning: {self.collapse_warning()}")

    def collapse_warning(self) -> str | None:
        """What to tell the user when the last save's edit destroyed generation (None: it did not, or no save)."""
        saved = self.last_save
        if saved is None or not saved.collapsed:
            return None
        return (
            f"the edit destroyed generation, not just the concept ({saved.collapse.reason}); "
            "lower the skill ratio, or check the recipe's target and prompts"
        )

    def save(self, *, overwrite: bool = False) -> Path:
        """Write the tune values now to :meth:`output_folder` (blocking, on this thread: for scripts and tests;
        the Tune screen saves in a worker); the recipe copies and the report record them.

        Raises:
            CpeditError: No session, or what :meth:`cpedit.EditSession.save` raises.
        """
        saved = self.require_jobs().save(self.values, self.current_tuned(), self.output_folder(), overwrite=overwrite)
        self.finish_save(saved)
        return saved.path


def build_card(saved: Path, *, repo_id: str | None, edit_only: bool = False) -> str:
    """The model card a push of the saved output publishes (may ask the Hub for the base model's license).

    ``edit_only``: the card of the edit published without its weights.
    """
    from cpedit.publish import build_model_card

    return build_model_card(saved, repo_id=repo_id, edit_only=edit_only)


def push_output(
    saved: Path,
    *,
    repo_id: str,
    private: bool = False,
    branch: str | None = None,
    create_pr: bool = False,
    edit_only: bool = False,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Any:
    """Publish a saved output (blocking: a worker's job); returns :class:`cpedit.hub.PushResult`.

    ``edit_only`` publishes the edit without its weights (:func:`cpedit.publish.push.push_edit`).
    """
    from cpedit.publish import push_edit, push_model

    return (push_edit if edit_only else push_model)(
        saved,
        repo_id=repo_id,
        private=private,
        branch=branch or None,
        create_pr=create_pr,
        on_progress=on_progress,
        cancel=cancel,
    )


def describe_error(error: BaseException) -> str:
    """The one-message form of an error for the app: cpedit's own message (a recipe error lists its
    problems), else the exception's type and text (something unexpected: say what it was)."""
    if isinstance(error, CpeditError):
        return str(error)
    return f"{type(error).__name__}: {error}"
