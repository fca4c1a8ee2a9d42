"""What every screen of the app shares: the state it renders, where its focus rests, how it shows an error,
and the cancel flag of the job a worker runs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from textual.containers import Vertical
from textual.widget import Widget
from textual.worker import get_current_worker

from tui.state import AppState, describe_error

if TYPE_CHECKING:
    from tui.app import CpeditApp

CANCELLABLE = frozenset({"run", "tune", "save", "preview", "render-preview", "push"})
"""Worker groups of the slow jobs ctrl+x cancels (each through its own worker's cancel flag)."""


def job_cancel() -> threading.Event:
    """The cancel flag of the job this worker runs (its worker's own: set by ctrl+x, or when a newer job of its
    kind replaces it); pass it to the library as ``cancel=``."""
    return get_current_worker().cancelled_event


class Pane(Vertical):
    """A screen of the app (one tab): it renders :attr:`state` in :meth:`refresh_state`.

    The pane itself can hold the focus, so that its keys work while no field is being edited.
    """

    can_focus = True
    INITIAL_FOCUS: str | None = None
    """A selector of the widget to focus when the screen opens (default: the screen itself)."""

    @property
    def cpedit_app(self) -> CpeditApp:
        """The app (typed)."""
        return self.app  # type: ignore[return-value]

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
