"""The blocking work the app's thread workers do on a calibrated session, one job at a time.

A calibrated :class:`cpedit.EditSession` holds one copy of the model, and selecting, pruning,
sampling and saving all read or change its weights, so two of them must never overlap:
:class:`SessionJobs` lets one job in at a time; the job passes its own progress callback and
cancel flag to each session call it makes (a job waiting for its turn that is cancelled
meanwhile stops before it starts). Nothing here touches the app's state: a job returns what it
computed, with the tune values it was computed for, and the UI thread decides whether that
still applies.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cpedit
import cpedit.output
from cpedit.errors import CpeditError
from cpedit.progress import ProgressCallback, check_cancel


@dataclass(frozen=True)
class TuneValues:
    """One concept's prune settings on the Tune screen."""

    skill_ratio: float
    timesteps: int
    select_ratio: float


TuneSet = tuple[tuple[str, TuneValues], ...]
"""Every calibrated concept's tune values, frozen and comparable: what a selection is computed for."""


def tune_set(tune: Mapping[str, TuneValues]) -> TuneSet:
    """The frozen form of ``{concept: values}`` (in the queue's order)."""
    return tuple(tune.items())


def per_recipe(values: TuneSet) -> dict[str, dict[str, Any]]:
    """``values`` as :meth:`cpedit.EditSession.select`'s ``per_recipe`` overrides."""
    return {name: dataclasses.asdict(settings) for name, settings in values}


def recipe_values(session: Any) -> TuneSet:
    """The tune values of each recipe's own prune settings."""
    return tuple(
        (recipe.name, TuneValues(recipe.prune.skill_ratio, recipe.prune.timesteps, recipe.prune.select_ratio))
        for recipe in session.recipes
    )


@dataclass(frozen=True)
class Tuned:
    """A selection and the tune values it was computed for (on the session of :attr:`jobs`)."""

    jobs: SessionJobs
    values: TuneSet
    selection: Any


@dataclass(frozen=True)
class Rendered:
    """One before/after render: the selection it shows and the two PIL images."""

    tuned: Tuned
    prompt: str
    seed: int
    base: Any
    edited: Any


@dataclass(frozen=True)
class Saved:
    """A written output, the selection it holds and its collapse check (recorded in its report)."""

    path: Path
    tuned: Tuned
    collapse: Any = None
    """The :class:`cpedit.output.collapse.CollapseCheck` of the saved edit, or None when none ran."""

    @property
    def collapsed(self) -> bool:
        """Whether the saved edit destroyed generation (its collapse check failed)."""
        return self.collapse is not None and bool(self.collapse.collapsed)


class SessionJobs:
    """A calibrated session shared by the app's workers (call every method from a worker thread).

    Args:
        session: The calibrated :class:`cpedit.EditSession`.
    """

    def __init__(self, session: Any) -> None:
        from cpedit.edit import CollapseGuard

        self.session = session
        self.collapse_guard = CollapseGuard()
        """Checks each save for a collapse; it keeps the base images, so later saves render only the edited ones."""
        self._turn = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """The app dropped this session: later jobs are refused, and the model is let go once no job holds it."""
        self._closed = True
        if self._turn.acquire(blocking=False):
            self.session = None
            self._turn.release()

    @contextmanager
    def turn(self, *, cancel: threading.Event | None = None) -> Iterator[Any]:
        """Wait for the session, then hold it (the job passes its own callback and cancel flag to each call).

        Raises:
            Cancelled: ``cancel`` was set while the job waited.
            CpeditError: The app dropped the session meanwhile (:meth:`close`).
        """
        with self._turn:
            check_cancel(cancel, "before it started")
            session = self.session
            if self._closed or session is None:
                raise CpeditError("the calibrated session was replaced: run the queue again (ctrl+r)")
            try:
                yield session
            finally:
                if self._closed:
                    self.session = None

    def select(self, values: TuneSet, *, cancel: threading.Event | None = None) -> Tuned:
        """Select with ``values`` (no denoiser call, no weight changed).

        Raises:
            CpeditError: A value the session refuses.
            Cancelled: ``cancel`` was set.
        """
        with self.turn(cancel=cancel) as session:
            return Tuned(self, values, session.select(per_recipe=per_recipe(values), cancel=cancel))

    def _applied(
        self,
        session: Any,
        values: TuneSet,
        tuned: Tuned | None,
        *,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Tuned:
        """``tuned`` when it is for ``values`` on this session, else a new selection; pruned in the model."""
        if tuned is None or tuned.jobs is not self or tuned.values != values:
            selection = session.select(per_recipe=per_recipe(values), on_progress=on_progress, cancel=cancel)
            tuned = Tuned(self, values, selection)
        if session.applied is not tuned.selection:
            session.apply(tuned.selection, on_progress=on_progress, cancel=cancel)
        return tuned

    def sample_pair(
        self,
        values: TuneSet,
        tuned: Tuned | None,
        prompt: str,
        *,
        seed: int,
        steps: int,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Rendered:
        """Render ``prompt`` with the base model and with the selection for ``values`` (``tuned`` when it is that).

        Raises:
            Cancelled: ``cancel`` was set (the session stays as it was).
        """
        calls: dict[str, Any] = {"on_progress": on_progress, "cancel": cancel}
        with self.turn(cancel=cancel) as session:
            tuned = self._applied(session, values, tuned, **calls)
            base = session.sample([prompt], seed=seed, steps=steps, edited=False, **calls)[0]
            edited = session.sample([prompt], seed=seed, steps=steps, edited=True, **calls)[0]
        return Rendered(tuned, prompt, seed, base, edited)

    def save(
        self,
        values: TuneSet,
        tuned: Tuned | None,
        out: Path,
        *,
        overwrite: bool = False,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Saved:
        """Write the selection for ``values`` (``tuned`` when it is that) to ``out``; the recipe copies and the
        report record those values, and the collapse check run before the save (:mod:`cpedit.edit.collapse`).

        Raises:
            CpeditError: What :meth:`cpedit.EditSession.save` raises.
            Cancelled: ``cancel`` was set; nothing is written.
        """
        with self.turn(cancel=cancel) as session:
            tuned = self._applied(session, values, tuned, on_progress=on_progress, cancel=cancel)
            collapse = session.check_collapse(self.collapse_guard, on_progress=on_progress, cancel=cancel)
            saved = session.save(out, overwrite=overwrite, on_progress=on_progress, cancel=cancel)
        return Saved(saved.path, tuned, collapse)

    def render_preview_into(self, saved: Saved, *, cancel: threading.Event | None = None) -> Path:
        """Render the before/after preview of a saved output into it, from the session (its model is in memory).

        Raises:
            Cancelled: ``cancel`` was set.
        """
        with self.turn(cancel=cancel) as session:
            self._applied(session, saved.tuned.values, saved.tuned, cancel=cancel)
            return cpedit.output.save_preview(saved.path, session.render_preview(cancel=cancel))
