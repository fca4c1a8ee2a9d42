"""Edit a queued copy's prune and sampling settings (the recipe file is not touched).

Opened from the Recipes and the Queue screens: ``push_screen(QueuedSettingsScreen(name), callback)``.
Values are checked as you type by the library's own rules (:func:`cpedit.recipes.with_settings`); Save
applies them with :meth:`tui.state.AppState.edit_queued` and closes with the changed values
(``{"prune": {...}, "sampling": {...}}``), or stays open showing each problem under its field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

import cpedit
import cpedit.recipes
from cpedit.errors import CpeditError, RecipeError
from cpedit.recipes import TARGETS, Recipe

if TYPE_CHECKING:
    from tui.state import AppState

PRUNE_FIELDS: dict[str, type] = {"skill_ratio": float, "timesteps": int, "select_ratio": float}
"""The prune settings typed as numbers, with their type (``target`` is a choice)."""
SAMPLING_FIELDS: dict[str, type] = {"steps": int, "guidance_scale": float, "seed": int}
"""The sampling settings, with their type."""
HINTS = {
    "skill_ratio": "(0, 1]; the paper uses 0.01 to 0.02",
    "timesteps": "tau: the first tau denoiser calls",
    "select_ratio": "[0, 1); 0 keeps a weight marked at any timestep",
    "target": "which layers are pruned",
    "steps": "denoising steps of calibration",
    "guidance_scale": "classifier-free guidance",
    "seed": "reset before every prompt",
}


def parse_number(text: str, kind: type) -> Any:
    """``text`` as an int or float; text that is not one stays text, so the library's message names it."""
    text = text.strip()
    try:
        return kind(text)
    except ValueError:
        if kind is int:
            try:
                number = float(text)
            except ValueError:
                return text
            return int(number) if number.is_integer() else number
        return text


def format_number(value: Any) -> str:
    """A setting as the user would type it (``0.01``, not ``0.010000``)."""
    return repr(value) if isinstance(value, float) else str(value)


class SettingsChanges(TypedDict):
    """The settings the dialog changes, by section (the keyword arguments of ``with_settings``)."""

    prune: dict[str, Any]
    sampling: dict[str, Any]


class QueuedSettingsScreen(ModalScreen["SettingsChanges | None"]):
    """The prune (skill_ratio, timesteps, select_ratio, target) and sampling (steps, guidance_scale, seed) of a copy.

    Args:
        name: The queued recipe's name (the app's ``state.queue`` holds it).
    """

    DEFAULT_CSS = """
    QueuedSettingsScreen { align: center middle; }
    QueuedSettingsScreen > #dialog {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; border-title-style: bold; background: $surface; padding: 0 1;
    }
    QueuedSettingsScreen #origin { color: $text-muted; height: auto; }
    QueuedSettingsScreen #fields { height: auto; max-height: 1fr; }
    QueuedSettingsScreen .section { text-style: bold; color: $accent; padding: 1 0 0 0; }
    QueuedSettingsScreen .row { height: auto; }
    QueuedSettingsScreen .row > Label { width: 16; text-align: right; padding: 0 1 0 0; }
    QueuedSettingsScreen .row Input, QueuedSettingsScreen .row Select { width: 16; }
    QueuedSettingsScreen .row .hint { width: 1fr; color: $text-muted; padding: 0 0 0 1; }
    QueuedSettingsScreen .problem { color: $error; height: auto; padding: 0 0 0 17; display: none; }
    QueuedSettingsScreen .problem.-shown { display: block; }
    QueuedSettingsScreen .invalid { background: $error 30%; }
    QueuedSettingsScreen #general-problem { padding: 0; }
    QueuedSettingsScreen #buttons { height: auto; align-horizontal: right; padding: 1 0 0 0; }
    QueuedSettingsScreen #buttons Button { margin: 0 0 0 2; }
    """
    BINDINGS = [
        Binding("ctrl+o", "save", "Save settings", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.recipe_name = name

    @property
    def state(self) -> AppState:
        """The app's state (the Recipes and Queue screens share it)."""
        return self.app.state  # type: ignore[attr-defined]

    @property
    def recipe(self) -> Recipe:
        """The queued copy as it is now."""
        return self.state.item(self.recipe_name).recipe

    def compose(self) -> ComposeResult:
        item = self.state.item(self.recipe_name)
        recipe = item.recipe
        with Vertical(id="dialog") as dialog:
            dialog.border_title = f"Settings of the queued {recipe.name}"
            yield Static(Text(f"a copy of {item.origin}; the file is not changed"), id="origin")
            with VerticalScroll(id="fields"):
                yield Static("Prune", classes="section")
                for key in PRUNE_FIELDS:
                    yield from self._row(key, Input(format_number(getattr(recipe.prune, key)), compact=True))
                targets = Select([(t, t) for t in TARGETS], value=recipe.prune.target, allow_blank=False, compact=True)
                yield from self._row("target", targets)
                yield Static("Sampling", classes="section")
                for key in SAMPLING_FIELDS:
                    yield from self._row(key, Input(format_number(getattr(recipe.sampling, key)), compact=True))
                yield Static("", id="general-problem", classes="problem")
            with Horizontal(id="buttons"):
                yield Button("Save ^o", variant="primary", id="save", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)
        yield Footer()

    @staticmethod
    def _row(key: str, widget: Any) -> ComposeResult:
        widget.id = key
        with Horizontal(classes="row"):
            yield Label(key)
            yield widget
            yield Static(HINTS[key], classes="hint")
        yield Static("", id=f"{key}-problem", classes="problem")

    def on_mount(self) -> None:
        self.query_one("#skill_ratio", Input).focus()

    # --- values and validation ----------------------------------------------------------

    def changes(self) -> SettingsChanges:
        """The settings that differ from the queued copy: ``{"prune": {...}, "sampling": {...}}``."""
        recipe = self.recipe
        prune: dict[str, Any] = {}
        for key, kind in PRUNE_FIELDS.items():
            value = parse_number(self.query_one(f"#{key}", Input).value, kind)
            if value != getattr(recipe.prune, key):
                prune[key] = value
        target = self.query_one("#target", Select).value
        if isinstance(target, str) and target != recipe.prune.target:
            prune["target"] = target
        sampling: dict[str, Any] = {}
        for key, kind in SAMPLING_FIELDS.items():
            value = parse_number(self.query_one(f"#{key}", Input).value, kind)
            if value != getattr(recipe.sampling, key):
                sampling[key] = value
        return {"prune": prune, "sampling": sampling}

    def _show(self, problems: list[tuple[str, str]]) -> None:
        """Each problem under its field (``prune.skill_ratio`` under skill_ratio); the rest above the buttons."""
        by_key: dict[str, list[str]] = {}
        for field, message in problems:
            key = field.split(".", 1)[1] if field.startswith(("prune.", "sampling.")) else "general"
            if key not in HINTS:
                key, message = "general", f"{field}: {message}" if field else message
            by_key.setdefault(key, []).append(message)
        for key in (*HINTS, "general"):
            messages = by_key.get(key, [])
            line = self.query_one(f"#{key}-problem", Static)
            line.update(Text("\n".join(f"✗ {m}" for m in messages)))
            line.set_class(bool(messages), "-shown")
            if key != "general":
                self.query_one(f"#{key}").set_class(bool(messages), "invalid")

    def check(self) -> list[tuple[str, str]]:
        """What is wrong with the typed values (the library's rules; nothing is changed)."""
        changes = self.changes()
        empty = [
            (f"{section}.{key}", "give a value")
            for section, fields in (("prune", PRUNE_FIELDS), ("sampling", SAMPLING_FIELDS))
            for key in fields
            if not self.query_one(f"#{key}", Input).value.strip()
        ]
        if empty:
            return empty
        try:
            cpedit.recipes.with_settings(self.recipe, **changes)
        except RecipeError as exc:
            return list(exc.problems)
        return []

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.is_mounted:
            self._show(self.check())

    def on_select_changed(self, event: Select.Changed) -> None:
        if self.is_mounted:
            self._show(self.check())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter saves."""
        event.stop()
        self.action_save()

    # --- actions ------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        """Apply the changed values to the queued copy and close; with problems, show them and stay open."""
        problems = self.check()
        if problems:
            self._show(problems)
            return
        changes = self.changes()
        if not changes["prune"] and not changes["sampling"]:
            self.dismiss(None)
            return
        try:
            self.state.edit_queued(self.recipe_name, **changes)
        except RecipeError as exc:
            self._show(list(exc.problems))
            return
        except CpeditError as exc:
            self._show([("", str(exc))])
            return
        refresh = getattr(self.app, "refresh_panes", None)
        if callable(refresh):
            refresh()
        self.dismiss(changes)

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
