"""The cpedit terminal app: six screens in tabs over one :class:`~tui.state.AppState`.

Model (choose the base model) -> Recipes (queue concepts) -> Queue (run, with live progress)
-> Tune (re-select from the session's statistics) -> Preview (before/after images) -> Push.
Global keys work everywhere (footer, ``?`` for help, ``ctrl+p`` for the command palette);
each screen adds its own. The first screen paints before torch or diffusers is imported: the
library loads them in the first worker that needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.keys import format_key
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane, TextArea

from cpedit import ComputeOptions
from tui.screens.base import CANCELLABLE, AppShell, Pane
from tui.screens.confirm import ConfirmScreen
from tui.screens.help import HelpScreen
from tui.screens.model import ModelPane
from tui.screens.preview import PreviewPane
from tui.screens.push import PushPane
from tui.screens.queue import QueuePane
from tui.screens.recipes import RecipesPane
from tui.screens.tune import TunePane
from tui.session_jobs import Tuned
from tui.state import AppState

HERE = Path(__file__).resolve().parent
TABS = (
    ("model", "1 Model"),
    ("recipes", "2 Recipes"),
    ("queue", "3 Queue"),
    ("tune", "4 Tune"),
    ("preview", "5 Preview"),
    ("push", "6 Push"),
)
"""Tab id -> label (the digit is its key)."""
ImageMode = str
"""``auto`` (Kitty/Sixel where the terminal has it, else half-blocks) or ``halfcell`` (always half-blocks)."""
KEY_WORDS = {"enter": "enter", "escape": "esc", "delete": "del", "space": "space", "tab": "tab"}
"""Keys the help spells out (the rest as :func:`textual.keys.format_key` shows them: ``?``, ``/``, ``+``)."""


def key_label(binding: Binding) -> str:
    """How the help shows a binding's key: ``ctrl+r``, ``?``, ``/``, ``del`` (never ``question_mark``)."""
    if binding.key_display:
        return binding.key_display
    modifiers, key = binding.parse_key()
    return "+".join([*modifiers, KEY_WORDS.get(key, format_key(key))])


def field_owner(widget: object) -> Pane | None:
    """The screen (tab) a text field belongs to, or None when ``widget`` is no text field of a screen."""
    if not isinstance(widget, (Input, TextArea)):
        return None
    return next((node for node in widget.ancestors if isinstance(node, Pane)), None)


class MainScreen(Screen[None]):
    """The screen under the tabs: when a dialog closes, the focus goes back to the tab, not into a text field
    (so the next key is a screen key, such as a digit that switches screens).

    No widget is focused automatically: the app puts the focus on the tab shown (an automatic focus
    landing late in another tab would switch back to that tab).
    """

    AUTO_FOCUS = None

    def on_screen_resume(self, _event: events.ScreenResume) -> None:
        pane = field_owner(self.focused)
        if pane is not None:
            pane.home().focus()
        elif self.focused is None:
            app = self.app
            if isinstance(app, CpeditApp):
                app.call_after_refresh(app.focus_tab)


class CpeditApp(App[None]):
    """Edit a diffusion model interactively: the whole cpedit job in one terminal app.

    Args:
        state: What to edit (model, output folder, compute options, recipe folders).
        image_mode: ``auto`` or ``halfcell`` (stable output for tests and snapshots).
        initial_recipes: Recipe references to queue at start (files, shipped names, ``hub:`` refs).
    """

    TITLE = "cpedit"
    SUB_TITLE = "erase concepts by pruning skilled neurons"
    CSS_PATH = [
        HERE / "app.tcss",
        HERE / "screens" / "model.tcss",
        HERE / "screens" / "recipes.tcss",
        HERE / "screens" / "queue.tcss",
        HERE / "screens" / "tune.tcss",
        HERE / "screens" / "preview.tcss",
        HERE / "screens" / "push.tcss",
    ]
    BINDINGS = [
        Binding("ctrl+r", "run", "Run", priority=True),
        Binding("ctrl+x", "cancel_work", "Cancel", priority=True),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False),
        Binding("escape", "leave_field", "Leave the field", show=False),
        *(
            Binding(str(i), f"show_tab('{tab}')", f"Show {label[2:]}", show=False)
            for i, (tab, label) in enumerate(TABS, 1)
        ),
    ]

    def __init__(
        self,
        state: AppState | None = None,
        *,
        image_mode: ImageMode = "auto",
        initial_recipes: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.state = state or AppState()
        self.image_mode = image_mode
        self.initial_recipes = tuple(initial_recipes)

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(id="_default")

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(id="tabs", initial="model"):
            with TabPane(TABS[0][1], id="model"):
                yield ModelPane()
            with TabPane(TABS[1][1], id="recipes"):
                yield RecipesPane()
            with TabPane(TABS[2][1], id="queue"):
                yield QueuePane()
            with TabPane(TABS[3][1], id="tune"):
                yield TunePane()
            with TabPane(TABS[4][1], id="preview"):
                yield PreviewPane()
            with TabPane(TABS[5][1], id="push"):
                yield PushPane()
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_screen, "model")
        if self.initial_recipes:
            self.query_one(RecipesPane).queue_refs(self.initial_recipes)

    # --- shared -------------------------------------------------------------------------

    def refresh_panes(self) -> None:
        """Re-render every screen from the state (after any change)."""
        for pane in (ModelPane, RecipesPane, QueuePane, TunePane, PreviewPane, PushPane):
            for widget in self.query(pane):
                widget.refresh_state()

    def take(self, tuned: Tuned) -> None:
        """Show a selection a job computed, if it is for the values in the Tune screen's fields now (else it is
        dropped: a newer request is on its way)."""
        if self.state.accept(tuned):
            self.refresh_panes()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys that act on the main screens (run, save, switching screens) wait while a dialog is open."""
        if action in ("run", "save", "show_tab") and isinstance(self.screen, ModalScreen):
            return False
        return True

    # --- actions ------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        """Switch to a screen and put the focus in it (so its keys work at once)."""
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active == tab:
            return
        # Unfocus first: a focused widget hidden with its tab would hand the focus to a sibling in
        # the same (hidden) tab, and TabbedContent would switch back to the tab that holds the focus.
        self.screen.set_focus(None)
        tabs.active = tab
        self.call_after_refresh(self._focus_screen, tab)

    def _focus_screen(self, tab: str) -> None:
        if self.query_one("#tabs", TabbedContent).active != tab:
            return  # another screen was chosen meanwhile
        for pane in self.query_one(f"TabPane#{tab}", TabPane).query(Pane):
            pane.home().focus()

    def focus_tab(self) -> None:
        """Put the focus where it rests on the screen shown (its keys work at once)."""
        self._focus_screen(self.query_one("#tabs", TabbedContent).active)

    def action_leave_field(self) -> None:
        """Leave a text field for its screen, so that the screen's keys (1-6, p, ctrl+z, ...) work again."""
        pane = field_owner(self.focused)
        if pane is not None:
            pane.home().focus()

    def action_run(self) -> None:
        """Run the queue: load the model and calibrate every queued concept (one job); asks before replacing
        a finished calibration."""
        if self.state.session is None or self.state.running:
            self._run()
            return
        unsaved = "" if self.state.saved_is_current() else " and the tuning not saved yet"
        question = f"The queue is calibrated. Run it again? This replaces the calibration{unsaved}."

        def answer(again: bool | None) -> None:
            if again:
                self._run()

        self.push_screen(ConfirmScreen(question, yes="Run again", no="Keep it"), answer)

    def _run(self) -> None:
        self.action_show_tab("queue")
        self.query_one(QueuePane).start_run()

    def running_jobs(self) -> list[Any]:
        """The slow jobs in progress that ctrl+x cancels (run, tune, save, preview, push), not cancelled yet."""
        return [
            worker
            for worker in self.workers
            if worker.group in CANCELLABLE and not worker.is_finished and not worker.cancelled_event.is_set()
        ]

    def action_cancel_work(self) -> None:
        """Cancel the run, tune, save, preview or push in progress, each through its own cancel flag
        (nothing half-written is left).

        Only the flag is set: the job stops at its next check and still posts how it ended (a worker
        cancelled through Textual before its thread started would never say so).
        """
        jobs = self.running_jobs()
        if not jobs:
            self.notify("nothing is running", timeout=3)
            return
        for worker in jobs:
            worker.cancelled_event.set()
        self.notify("cancelling…", timeout=3)

    def action_save(self) -> None:
        """Save the tuned selection as a pruned pipeline folder."""
        self.action_show_tab("tune")
        self.query_one(TunePane).save()

    def action_help(self) -> None:
        """Show every key binding."""
        self.push_screen(HelpScreen(self._binding_rows()))

    def action_toggle_theme(self) -> None:
        """Switch between the dark and the light theme."""
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    async def action_quit(self) -> None:
        """Quit (asking first while a run or a tune is going)."""
        if not self.state.running and self.state.tuning is None:
            self.exit()
            return

        def answer(quit_now: bool | None) -> None:
            if quit_now:
                self.workers.cancel_all()
                self.exit()

        what = "A run" if self.state.running else "A tune"
        self.push_screen(ConfirmScreen(f"{what} is going. Cancel it and quit?", yes="Quit", no="Keep running"), answer)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p): the app's actions beside Textual's own."""
        yield from super().get_system_commands(screen)
        for tab, label in TABS:
            yield SystemCommand(
                f"Go to {label[2:]}",
                f"Show the {label[2:]} screen (key {label[0]})",
                lambda tab=tab: self.action_show_tab(tab),
            )
        yield SystemCommand(
            "Run the queue", "Load the model and calibrate the queued concepts (ctrl+r)", self.action_run
        )
        yield SystemCommand("Cancel", "Cancel the work in progress (ctrl+x)", self.action_cancel_work)
        yield SystemCommand(
            "Save the output", "Write the tuned selection as a pipeline folder (ctrl+s)", self.action_save
        )
        yield SystemCommand(
            "Load a sweep", "Plot a `cpedit sweep` folder on the Tune screen (w)", self._tune_action("load_sweep")
        )
        yield SystemCommand(
            "Auto-tune a concept",
            "Find the least pruning that meets a goal (t, on the Tune screen)",
            self._tune_action("auto_tune"),
        )
        yield SystemCommand("Toggle theme", "Switch between dark and light (ctrl+t)", self.action_toggle_theme)
        yield SystemCommand("Key bindings", "Show every key (?)", self.action_help)

    def _tune_action(self, name: str) -> Callable[[], None]:
        """A Tune screen action for the palette: show the Tune tab, then run it there."""

        def run() -> None:
            self.action_show_tab("tune")
            getattr(self.query_one(TunePane), f"action_{name}")()

        return run

    def _binding_rows(self) -> list[tuple[str, str, str]]:
        """(where, key, what) for the help screen: the global keys, then each screen's, each row once."""
        rows = [("everywhere", key_label(b), b.description) for b in self._bindings_of(type(self))]
        for pane, (_, label) in zip(
            (ModelPane, RecipesPane, QueuePane, TunePane, PreviewPane, PushPane), TABS, strict=True
        ):
            rows += [(label[2:], key_label(b), b.description) for b in self._bindings_of(pane)]
        return list(dict.fromkeys(rows))

    @staticmethod
    def _bindings_of(kind: type) -> list[Binding]:
        out = []
        for item in getattr(kind, "BINDINGS", []):
            binding = item if isinstance(item, Binding) else Binding(*item)
            if binding.description:
                out.append(binding)
        return out


def run_app(
    *,
    model: str | None = None,
    recipes: Iterable[str] = (),
    out: str | None = None,
    compute: ComputeOptions = ComputeOptions(),
    recipe_folders: Iterable[str] = (),
    calibrate_timesteps: int | None = None,
    image_mode: ImageMode = "auto",
) -> None:
    """Start the app in this terminal (blocks until it quits)."""
    if image_mode == "auto":
        import textual_image.widget  # noqa: F401 - queries the terminal's graphics support before Textual starts

    state = AppState(
        model=model or "builtin:shapes",
        out=out,
        compute=compute,
        recipe_folders=tuple(recipe_folders),
        calibrate_timesteps=calibrate_timesteps,
    )
    CpeditApp(state, image_mode=image_mode, initial_recipes=recipes).run()


def _screens_see_the_app(app: CpeditApp) -> AppShell:
    """The type checker's proof that the app is what its screens expect (:class:`tui.screens.base.AppShell`)."""
    return app
