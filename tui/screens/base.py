"""What every screen of the app shares: the state it renders, where its focus rests, how it shows an error,
and the cancel flag of the job a worker runs."""

from __future__ import annotations

import threading
from typing import Protocol, cast

from textual.containers import Vertical
from textual.widget import Widget
from textual.worker import get_current_worker

from tui.session_jobs import Tuned
from tui.state import AppState, describe_error

CANCELLABLE = frozenset({"run", "tune", "save", "preview", "render-preview", "push"})
"""Worker groups of the slow jobs ctrl+x cancels (each through its own worker's cancel flag)."""


def job_cancel() -> threading.Event:
    """The cancel flag of the job this worker runs (its worker's own: set by ctrl+x, or when a newer job of its
    kind replaces it); pass it to the library as ``cancel=``."""
    return get_current_worker().cancelled_event


class AppShell(Protocol):
    """What a screen needs of the app (implemented by :class:`tui.app.CpeditApp`).

    Screens sit below the app: they name this protocol, not the app's class, so that the app
    imports its screens and no screen imports the app.
    """

    state: AppState
    image_mode: str

    def refresh_panes(self) -> None:
        """Re-render every screen from the state."""

    def take(self, tuned: Tuned) -> None:
        """Show a selection a job computed, if it is still for the values in the Tune screen's fields."""

    def action_show_tab(self, tab: str) -> None:
        """Switch to a screen's tab."""


class Pane(Vertical):
    """A screen of the app (one tab): it renders :attr:`state` in :meth:`refresh_state`.

    The pane itself can hold the focus, so that its keys work while no field is being edited.
    """

    can_focus = True
    INITIAL_FOCUS: str | None = None
    """A selector of the widget to focus when the screen opens (default: the screen itself)."""

    @property
    def cpedit_app(self) -> AppShell:
        """The app, as the screens see it."""
        return cast(AppShell, self.app)  # textual types it as an App; cpedit's app is an AppShell

    @property
    def state(self) -> AppState:
        """The app's data model."""
        return self.cpedit_app.state

    def home(self) -> Widget:
        """Where the focus rests on this screen: :attr:`INITIAL_FOCUS`, else the screen itself."""
        return self.query_one(self.INITIAL_FOCUS) if self.INITIAL_FOCUS else self

    def refresh_state(self) -> None:
        """Re-render from :attr:`state` (the app calls it on every screen after a change)."""

    def show_error(self, error: BaseException | str, *, title: str = "error") -> None:
        """Show an error as a notification (the app stays usable)."""
        text = error if isinstance(error, str) else describe_error(error)
        self.app.notify(text, title=title, severity="error", timeout=10)
