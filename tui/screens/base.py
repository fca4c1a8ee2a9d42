"""What every screen of the app shares: the state it renders and how it shows an error."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.containers import Vertical

from tui.state import AppState, describe_error

if TYPE_CHECKING:
    from tui.app import CpeditApp


class Pane(Vertical):
    """A screen of the app (one tab): it renders :attr:`state` in :meth:`refresh_state`."""

    INITIAL_FOCUS: str | None = None
    """A selector of the widget to focus when the screen opens (default: its first focusable widget)."""

    @property
    def cpedit_app(self) -> CpeditApp:
        """The app (typed)."""
        return self.app  # type: ignore[return-value]

    @property
    def state(self) -> AppState:
        """The app's data model."""
        return self.cpedit_app.state

    def refresh_state(self) -> None:
        """Re-render from :attr:`state` (the app calls it on every screen after a change)."""

    def show_error(self, error: BaseException | str, *, title: str = "error") -> None:
        """Show an error as a notification (the app stays usable)."""
        text = error if isinstance(error, str) else describe_error(error)
        self.app.notify(text, title=title, severity="error", timeout=10)
