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
from cpedit.errors import Cancelled, CpeditError
from cpedit.progress import ProgressCallback, ProgressEvent
from cpedit.recipes import Recipe

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
    support = cpedit.describe_support(class_name)
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
        item.recipe = cpedit.with_settings(
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
        cpedit.check_output_target(self.output_folder(), overwrite=True)
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
        session.calibrate(timesteps=self.calibrate_timesteps)
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
        session.on_progress = None  # selecting again is instant; later work routes its own events
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

        The session reports save, sample and preview work through the callback and cancel flag it
        holds; each screen that starts such work routes them to itself first.
        """
        if self.session is not None:
            self.session.on_progress = on_progress
            self.session.cancel = cancel

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
            per_recipe={name: dataclasses.asdict(values) for name, values in self.tune.items()}
        )
        return self.selection

    def _applied_selection(self) -> Any:
        if self.session is None or self.selection is None:
            raise CpeditError("run the queue first: nothing is calibrated yet")
        if self.session.applied is not self.selection:
            self.session.apply(self.selection)
        return self.selection

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
        base = session.sample([prompt], seed=seed, steps=steps, edited=False)[0]
        edited = session.sample([prompt], seed=seed, steps=steps, edited=True)[0]
        return base, edited

    def save(self, *, overwrite: bool = False, preview: bool = False) -> Path:
        """Write the tuned selection to :meth:`output_folder` (blocking); the recipe copies record the settings.

        Raises:
            CpeditError: No session, or what :meth:`cpedit.EditSession.save` raises.
        """
        selection = self._applied_selection()
        path = self.session.save(self.output_folder(), overwrite=overwrite, preview=preview)
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
            return cpedit.save_preview(self.saved, self.session.render_preview())
        return cpedit.render_preview(self.saved, device=self.device)

    def card(self, *, repo_id: str | None) -> str:
        """The model card a push of the saved output publishes."""
        from cpedit.hub import build_model_card

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
        """Publish the saved output (blocking); returns :class:`cpedit.hub.PushResult`."""
        from cpedit.hub import push_model

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
