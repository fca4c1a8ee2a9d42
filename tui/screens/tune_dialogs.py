"""The Tune screen's dialogs: the sweep folder to plot (``w``) and the goal of an auto-tune (``t``)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from tui.state import TuneGoal, erasure_benchmarks

DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{
    width: 72; max-width: 100%; height: auto; max-height: 100%;
    border: thick $accent; border-title-style: bold; background: $surface; padding: 0 1;
}}
{name} .row {{ height: 1; }}
{name} .row > Label {{ width: 18; text-align: right; padding: 0 1 0 0; }}
{name} .row Input, {name} .row Select {{ width: 1fr; }}
{name} .hint {{ color: $text-muted; height: auto; }}
{name} #problem {{ color: $error; height: auto; }}
{name} #buttons {{ height: auto; align-horizontal: right; }}
{name} #buttons Button {{ margin: 0 0 0 2; min-width: 10; }}
"""


class SweepFolderScreen(ModalScreen["Path | None"]):
    """Ask for a sweep folder (holding the ``sweep.json`` of ``cpedit sweep``); returns it, or None."""

    DEFAULT_CSS = DIALOG_CSS.format(name="SweepFolderScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, folder: str = "") -> None:
        super().__init__()
        self.folder = folder

    def compose(self) -> ComposeResult:
        with Vertical() as dialog:
            dialog.border_title = "Plot a sweep"
            yield Static("the folder cpedit sweep --out wrote (it holds sweep.json)", classes="hint")
            with Horizontal(classes="row"):
                yield Label("sweep folder")
                yield Input(self.folder, id="sweep-folder", compact=True)
            with Horizontal(id="buttons"):
                yield Button("Plot", id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_input_submitted(self) -> None:
        self._done()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._done()
        else:
            self.dismiss(None)

    def _done(self) -> None:
        text = self.query_one("#sweep-folder", Input).value.strip()
        self.dismiss(Path(text).expanduser() if text else None)

    def action_cancel(self) -> None:
        """Close without a folder."""
        self.dismiss(None)


NUMBERS = {
    "erased_at_most": ("erased at most", float, "goal: the erased value after the edit"),
    "max_drop": ("max drop", float, "budget: the preservation drop"),
    "images": ("images", int, "shapes: images per set"),
    "steps": ("steps", int, "denoising steps of the evaluation"),
    "seed": ("seed", int, ""),
    "max_skill_ratio": ("max skill ratio", float, "the search's largest"),
    "tolerance": ("tolerance", float, "stop bisecting below this factor"),
}
"""The goal's number fields: label, type, placeholder."""


def parse_goal(recipe: str, benchmark: str, values: dict[str, str], timesteps: str) -> TuneGoal:
    """The goal typed in the dialog.

    Raises:
        ValueError: A field is not a number (the message names it).
    """
    parsed: dict[str, float | int] = {}
    for key, (label, kind, _) in NUMBERS.items():
        try:
            parsed[key] = kind(values[key].strip())
        except ValueError:
            raise ValueError(f"{label}: type a{'n integer' if kind is int else ' number'}") from None
    try:
        taus = tuple(int(t) for t in timesteps.replace(" ", "").split(",") if t)
    except ValueError:
        raise ValueError("taus: integers separated by commas, or empty for the recipe's own") from None
    return TuneGoal(recipe=recipe, benchmark=benchmark, timesteps=taus, **parsed)  # type: ignore[arg-type]


class TuneGoalScreen(ModalScreen["TuneGoal | None"]):
    """Ask for the goal, the evaluation and the recipe of a tune; returns a :class:`~tui.state.TuneGoal`, or None.

    Args:
        recipes: The queued concepts (one is tuned).
        goal: The values to start from (the last goal, else the defaults).
    """

    DEFAULT_CSS = DIALOG_CSS.format(name="TuneGoalScreen")
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+o", "tune", "Tune", priority=True)]

    def __init__(self, recipes: list[str], goal: TuneGoal | None = None) -> None:
        super().__init__()
        self.recipes = recipes
        self.goal = goal or TuneGoal(recipe=recipes[0], erased_at_most=0.1, max_drop=0.05)

    def compose(self) -> ComposeResult:
        goal = self.goal
        with Vertical() as dialog:
            dialog.border_title = "Auto-tune a concept (cpedit tune)"
            with Horizontal(classes="row"):
                yield Label("recipe")
                recipe = goal.recipe if goal.recipe in self.recipes else self.recipes[0]
                yield Select([(r, r) for r in self.recipes], value=recipe, allow_blank=False, compact=True, id="recipe")
            with Horizontal(classes="row"):
                yield Label("benchmark")
                yield Select(
                    [(b, b) for b in erasure_benchmarks()],
                    value=goal.benchmark,
                    allow_blank=False,
                    compact=True,
                    id="benchmark",
                )
            for key, (label, _, hint) in NUMBERS.items():
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(f"{getattr(goal, key):g}", id=key, placeholder=hint, compact=True, tooltip=hint or None)
            with Horizontal(classes="row"):
                yield Label("taus")
                taus = ",".join(str(t) for t in goal.timesteps)
                yield Input(taus, id="timesteps", placeholder="e.g. 5,10 (empty: the recipe's own)", compact=True)
            yield Static(id="problem", markup=False)
            yield Static(Text("the tune loads its own copy of the model; ctrl+x cancels it"), classes="hint")
            with Horizontal(id="buttons"):
                yield Button("Tune", id="ok", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_input_submitted(self) -> None:
        self.action_tune()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_tune()
        else:
            self.dismiss(None)

    def action_tune(self) -> None:
        """Start the tune with the values typed (or say which field is wrong)."""
        try:
            goal = parse_goal(
                str(self.query_one("#recipe", Select).value),
                str(self.query_one("#benchmark", Select).value),
                {key: self.query_one(f"#{key}", Input).value for key in NUMBERS},
                self.query_one("#timesteps", Input).value,
            )
        except ValueError as exc:
            self.query_one("#problem", Static).update(str(exc))
            return
        self.dismiss(goal)

    def action_cancel(self) -> None:
        """Close without tuning."""
        self.dismiss(None)
