"""The new-recipe form: compose a recipe from a few fields, validated as you type, saved as a YAML file.

Validation is the library's own (:func:`cpedit.recipes.compose_recipe` parses the YAML it would write), so
a file this form saves is one ``cpedit recipes validate`` accepts; each problem is shown under its
field. ``push_screen(NewRecipeScreen(folder), callback)`` calls back with the saved recipe (loaded
back from its file) or None when cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static, TextArea

import cpedit
import cpedit.recipes
from cpedit.errors import RecipeError
from cpedit.recipes import KINDS, Recipe

FIELDS = ("name", "concept", "kind", "target", "base", "subjects", "description")
"""The form's fields, in order (each has a widget ``#ID`` and a problem line ``#ID-problem``)."""
_PROBLEM_FIELD = {
    "name": "name",
    "concept": "concept",
    "kind": "kind",
    "description": "description",
    "prompts.subjects": "subjects",
    "prompts.target": "target",
    "prompts.base": "base",
    "prompts": "target",
}
"""A recipe problem's field (without list indexes) -> the form field it is shown under."""


def form_field(problem_field: str) -> str:
    """The form field a recipe problem belongs to (``general`` when none: it shows above the buttons)."""
    return _PROBLEM_FIELD.get(problem_field.split("[", 1)[0], "general")


def subjects_of(text: str) -> list[str]:
    """The subjects typed one per line (blank lines dropped, spaces trimmed)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


class NewRecipeScreen(ModalScreen["Recipe | None"]):
    """Write a new recipe: name, concept, kind, target and base templates, subjects and a description.

    Args:
        folder: Where the recipe file is saved (``FOLDER/NAME.yaml``; created if missing).
    """

    DEFAULT_CSS = """
    NewRecipeScreen { align: center middle; }
    NewRecipeScreen > #dialog {
        width: 96; max-width: 100%; height: 100%; max-height: 34;
        border: thick $accent; border-title-style: bold; background: $surface; padding: 0 1;
    }
    NewRecipeScreen #where { color: $text-muted; height: auto; padding: 0 0 1 0; }
    NewRecipeScreen #fields { height: 1fr; }
    NewRecipeScreen .field { height: auto; margin: 0 0 1 0; }
    NewRecipeScreen .field > Label { width: 13; padding: 0 1 0 0; text-align: right; color: $text-muted; }
    NewRecipeScreen .field > Vertical { height: auto; width: 1fr; }
    NewRecipeScreen .problem { color: $error; height: auto; padding: 0 1; display: none; }
    NewRecipeScreen .problem.-shown { display: block; }
    NewRecipeScreen .invalid { background: $error 25%; }
    NewRecipeScreen TextArea { background: $boost; }
    NewRecipeScreen #subjects { height: 5; }
    NewRecipeScreen #description { height: 3; }
    NewRecipeScreen #pairs { color: $success; height: auto; padding: 0 1 0 13; }
    NewRecipeScreen #general-problem { padding: 0 1 0 13; }
    NewRecipeScreen #buttons { height: auto; align-horizontal: right; padding: 1 0 0 0; }
    NewRecipeScreen #buttons Checkbox { width: 1fr; }
    NewRecipeScreen #buttons Button { margin: 0 0 0 2; }
    """
    BINDINGS = [
        Binding("ctrl+o", "save", "Save recipe", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.queue_after = True
        """Whether the opener should queue the saved recipe (the checkbox)."""
        self._touched: set[str] = set()
        self._all_shown = False

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as dialog:
            dialog.border_title = "New recipe"
            yield Static(Text(f"saved to {self.folder}/NAME.yaml"), id="where")
            with VerticalScroll(id="fields"):
                yield from self._field(
                    "name", "Name", Input(compact=True, placeholder="a slug, e.g. no-cats (the file name)")
                )
                yield from self._field(
                    "concept", "Concept", Input(compact=True, placeholder="what is erased, e.g. Van Gogh")
                )
                kinds = Select([(kind, kind) for kind in KINDS], value="style", allow_blank=False, compact=True)
                yield from self._field("kind", "Kind", kinds)
                target = Input(compact=True, placeholder="shows the concept, e.g. a {subject} in the style of Van Gogh")
                yield from self._field("target", "Target", target)
                yield from self._field(
                    "base", "Base", Input(compact=True, placeholder="the same without it: a photo of a {subject}")
                )
                subjects = TextArea(placeholder="one subject per line: cat, dog, house …", compact=True)
                yield from self._field("subjects", "Subjects", subjects)
                description = TextArea(placeholder="optional: one or two sentences for people", compact=True)
                yield from self._field("description", "Description", description)
                yield Static("", id="pairs")
                yield Static("", id="general-problem", classes="problem")
            with Horizontal(id="buttons"):
                yield Checkbox("queue it after saving", value=True, id="queue-after", compact=True)
                yield Button("Save ^o", variant="primary", id="save", compact=True)
                yield Button("Cancel esc", id="cancel", compact=True)
        yield Footer()

    @staticmethod
    def _field(field: str, title: str, widget: Any) -> ComposeResult:
        """A labelled row: the label, the widget and its problem line under it."""
        widget.id = field
        with Horizontal(classes="field"):
            yield Label(title)
            with Vertical():
                yield widget
                yield Static("", id=f"{field}-problem", classes="problem")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._validate()

    # --- values and validation ----------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """The form's fields as :func:`cpedit.recipes.compose_recipe` arguments."""
        kind = self.query_one("#kind", Select).value
        return {
            "name": self.query_one("#name", Input).value.strip(),
            "concept": self.query_one("#concept", Input).value.strip(),
            "kind": kind if isinstance(kind, str) else "custom",
            "target": self.query_one("#target", Input).value.strip(),
            "base": self.query_one("#base", Input).value.strip(),
            "subjects": subjects_of(self.query_one("#subjects", TextArea).text),
            "description": self.query_one("#description", TextArea).text.strip(),
        }

    def problems(self) -> tuple[Recipe | None, list[tuple[str, str]]]:
        """The recipe the fields make, or None and every problem as ``(form field, message)``."""
        values = self.values()
        found: list[tuple[str, str]] = []
        if not values["target"]:
            found.append(("target", "write the prompt that shows the concept, e.g. a {subject} in the style of X"))
        try:
            recipe = cpedit.recipes.compose_recipe(
                **values, source=str(self.folder / f"{values['name'] or 'NAME'}.yaml")
            )
        except RecipeError as exc:
            found += [(form_field(field), message) for field, message in exc.problems]
            recipe = None
        return (None if found else recipe), found

    def _validate(self) -> Recipe | None:
        """Show each problem under its field (the fields typed in so far, or all after a save attempt)."""
        recipe, found = self.problems()
        by_field: dict[str, list[str]] = {}
        for field, message in found:
            by_field.setdefault(field, []).append(message)
        for field in (*FIELDS, "general"):
            messages = by_field.get(field, []) if self._all_shown or field in self._touched else []
            line = self.query_one(f"#{field}-problem", Static)
            line.update(Text("\n".join(f"✗ {m}" for m in messages)))
            line.set_class(bool(messages), "-shown")
            if field != "general":
                self.query_one(f"#{field}").set_class(bool(messages), "invalid")
        self._show_pairs(recipe)
        return recipe

    def _show_pairs(self, recipe: Recipe | None) -> None:
        pairs = self.query_one("#pairs", Static)
        if recipe is None:
            pairs.update("")
            return
        first = recipe.pairs()[0]
        pairs.update(Text(f"✓ {len(recipe.targets)} prompt pair(s), e.g. “{first[0]}” ↔ “{first[1]}”"))

    def _touch(self, widget_id: str | None) -> None:
        if widget_id in FIELDS:
            self._touched.add(widget_id)
        self._validate()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.value:
            self._touch(event.input.id)

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        if event.text_area.text.strip():
            self._touch(event.text_area.id)

    def on_select_changed(self, event: Select.Changed) -> None:
        self._touch(event.select.id)

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.queue_after = event.value

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter moves to the next field."""
        event.stop()
        self.focus_next()

    # --- actions ------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    def action_save(self) -> None:
        """Write ``FOLDER/NAME.yaml`` and close with the recipe; with problems, show them all and stay."""
        self._all_shown = True
        recipe = self._validate()
        if recipe is None:
            self._focus_first_problem()
            return
        try:
            path = cpedit.recipes.write_recipe_file(recipe, self.folder)
            saved = cpedit.load_recipe(path)
        except RecipeError as exc:
            field = "name" if "exists" in str(exc) else "general"
            line = self.query_one(f"#{field}-problem", Static)
            line.update(Text("\n".join(f"✗ {m}" for _, m in exc.problems)))
            line.set_class(True, "-shown")
            return
        self.app.notify(f"saved {path}", title="new recipe", timeout=4)
        self.dismiss(saved)

    def _focus_first_problem(self) -> None:
        for field in FIELDS:
            if self.query_one(f"#{field}-problem", Static).has_class("-shown"):
                self.query_one(f"#{field}").focus()
                return

    def action_cancel(self) -> None:
        """Close without saving."""
        self.dismiss(None)
