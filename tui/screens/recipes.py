"""The Recipes screen: browse recipe folders, check a recipe, queue it, edit a queued copy, write a new one.

Left: a tree of recipe sources (the shipped recipes, the user's folder, the folders given on the
command line, and the references loaded here, such as ``hub:`` refs), a line to load a reference,
and the queue. Right: the highlighted recipe (its settings and its validation: every problem with
its field, and the YAML with the offending lines marked). Listing local folders is quick, so it
runs on the UI thread; a ``hub:`` reference downloads, so it resolves in a thread worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.color import Color
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.theme import Theme
from textual.widgets import Input, OptionList, Static, Tree
from textual.widgets.option_list import Option
from textual.widgets.tree import TreeNode

import cpedit
import cpedit.recipes
import cpedit.text
from cpedit.errors import CpeditError, RecipeError
from cpedit.recipes import Recipe, read_recipe_text
from tui.messages import RecipeLoaded, RecipesResolved
from tui.screens.base import Pane
from tui.screens.recipe_form import NewRecipeScreen
from tui.screens.settings_form import QueuedSettingsScreen, SettingsChanges

HUB_GROUP = "recipe-hub"
"""Worker group of a reference typed on this screen (one at a time: a new one replaces the old)."""
REFS_GROUP = "recipe-refs"
"""Worker group of the ``--recipe`` references queued at start."""
"""Control and bidi characters: a recipe file comes from a stranger, and its text reaches the terminal."""
_AT_LINE = re.compile(r"\bat line (\d+)")


@dataclass(frozen=True)
class Shown:
    """One thing the detail panel can show: a recipe file (valid or not), a loaded reference, or a queued copy.

    Attributes:
        name: What the tree and the title call it.
        origin: What it is queued from (a shipped name, a file path or a ``hub:`` reference).
        recipe: The validated recipe, or None when invalid.
        error: Why it is invalid, or None.
        path: The file, when there is one (to show an invalid file's text).
        queued_copy: Whether this is the queue's (maybe edited) copy rather than the file.
    """

    name: str
    origin: str
    recipe: Recipe | None = None
    error: RecipeError | None = None
    path: Path | None = None
    queued_copy: bool = False

    @property
    def key(self) -> str:
        """Identifies the entry across reloads (to keep the cursor on it)."""
        return f"{'queue' if self.queued_copy else 'src'}:{self.path or self.origin}"

    def text(self) -> tuple[str, str | None]:
        """The YAML text, and why it cannot be shown (None when it can)."""
        if self.recipe is not None and self.recipe.text:
            return self.recipe.text, None
        if self.path is None:
            return "", "no text to show (the reference could not be read)"
        try:
            return read_recipe_text(self.path), None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            return "", f"cannot show the file ({exc})"


@dataclass(frozen=True)
class Folder:
    """A source folder node of the tree (what the detail panel says about it)."""

    title: str
    path: Path | None
    count: int
    invalid: int
    note: str = ""


@dataclass(frozen=True)
class Palette:
    """Solid colours of the current theme, for Rich renderables (they follow dark and light themes)."""

    error: str
    error_bg: str
    success: str
    accent: str
    warning: str
    muted: str
    dark: bool


# --- pure helpers (no UI) ---------------------------------------------------------------


def clean(text: str) -> str:
    """``text`` without control or bidi characters (newlines and tabs kept): cpedit's own rule."""
    return cpedit.text.strip_unsafe(text, keep_newlines=True)


def display_path(path: Path) -> str:
    """A recipe file as its user knows it: ``shipped: artists/monet.yaml``, ``~/...``, else the path itself."""
    resolved = path.resolve()
    for root, label in ((cpedit.recipes.builtin_recipes_dir(), "shipped: "), (Path.home(), "~/")):
        try:
            return label + resolved.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def field_path(field: str) -> list[str | int]:
    """A problem's dotted field as keys and list indexes: ``prompts.target[0]`` -> ``["prompts", "target", 0]``."""
    parts: list[str | int] = []
    for piece in field.split("."):
        match = re.fullmatch(r"(.*?)((?:\[\d+\])*)", piece)
        head, indexes = (match.group(1), match.group(2)) if match else (piece, "")
        if head:
            parts.append(head)
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", indexes))
    return parts


def problem_lines(text: str, problems: Iterable[tuple[str, str]]) -> dict[int, list[str]]:
    """Which lines (0-based) of a recipe's YAML each problem is about: the line of its (nested) key.

    A field whose key is missing marks its deepest key that is there (``prune.timesteps`` missing
    marks ``prune:``); a top-level key that is missing marks nothing; a YAML syntax error marks
    the line its message names.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader) if text.strip() else None
    except (yaml.YAMLError, RecursionError, ValueError):
        root = None
    marked: dict[int, list[str]] = {}
    for field, message in problems:
        line = _line_of(root, field_path(field)) if field else None
        if line is None and not field:
            found = _AT_LINE.search(message)
            line = int(found.group(1)) - 1 if found else None
        if line is not None:
            marked.setdefault(line, []).append(field or "file")
    return marked


def _line_of(root: yaml.Node | None, path: list[str | int]) -> int | None:
    """The line of the deepest node of ``path`` that exists under ``root``."""
    node, line = root, None
    for part in path:
        if isinstance(part, str) and isinstance(node, yaml.MappingNode):
            match = next((pair for pair in node.value if getattr(pair[0], "value", None) == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line, match[1]
        elif isinstance(part, int) and isinstance(node, yaml.SequenceNode) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line
        else:
            break
    return line


def settings_line(recipe: Recipe) -> tuple[str, str]:
    """The prune and the sampling settings, one line each."""
    p, s = recipe.prune, recipe.sampling
    prune = f"skill_ratio {p.skill_ratio:g} · timesteps {p.timesteps} · select_ratio {p.select_ratio:g} · {p.target}"
    if p.stream != "image":
        prune += f" ({p.stream} stream)"
    seed = f"seed per pair ({len(s.pair_seeds)})" if s.pair_seeds is not None else f"seed {s.seed}"
    sampling = f"steps {s.steps} · guidance {s.guidance_scale:g} · {seed}"
    if s.height and s.width:
        sampling += f" · {s.width}×{s.height}"
    return prune, sampling


# --- the screen ---------------------------------------------------------------------------


class RecipesPane(Pane):
    """Browse recipe folders, see a recipe's settings and validation, and queue, edit or write recipes."""

    INITIAL_FOCUS = "#recipe-tree"
    BINDINGS = [
        Binding("a", "add", "Add to queue"),
        Binding("e", "edit", "Edit queued"),
        Binding("n", "new", "New recipe"),
        Binding("delete", "unqueue", "Remove", key_display="del"),
        Binding("r", "reload", "Reload"),
        Binding("l", "focus_ref", "Load ref"),
    ]

    def __init__(self, *, new_recipe_folder: Path | None = None) -> None:
        super().__init__()
        self.new_recipe_folder = new_recipe_folder
        """Where the new-recipe form saves (default: :func:`cpedit.recipes.user_recipes_dir`, read when it opens)."""
        self._loaded: dict[str, Shown] = {}
        self._shown: Shown | Folder | None = None
        self._pending_ref: str | None = None
        self._palette_cache: tuple[str, Palette] | None = None

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="recipes-body"):
            with Vertical(id="recipes-left"):
                tree: Tree[Shown | Folder] = Tree("sources", id="recipe-tree")
                tree.show_root = False
                tree.guide_depth = 3
                tree.border_title = "Sources"
                yield tree
                ref = Input(placeholder="hub:NAMESPACE/NAME/path.yaml ⏎", id="recipe-ref", compact=True)
                ref.tooltip = "Load a recipe by reference: hub:NAMESPACE/NAME/path.yaml[@REV], a file or a shipped name"
                yield ref
                yield Static("", id="recipe-ref-status", classes="muted")
                queue = OptionList(id="recipe-queue")
                queue.border_title = "Queue"
                yield queue
            with VerticalScroll(id="recipe-view") as view:
                view.border_title = "Recipe"
                yield Static("", id="recipe-detail")
                yield Static("", id="recipe-yaml")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._on_theme)
        self.reload()

    def _on_theme(self, _theme: Theme) -> None:
        """Re-colour the Rich parts (tree marks, problems, YAML) for the new theme."""
        self._relabel()
        self._render_shown()

    # --- public -------------------------------------------------------------------------

    def refresh_state(self) -> None:
        """Re-render the queued marks, the queue list and the shown recipe from the queue."""
        if not self.is_mounted:
            return
        self._relabel()
        self._fill_queue()
        self._render_shown()
        self.refresh_bindings()

    def queue_refs(self, refs: Iterable[str]) -> None:
        """Resolve and queue recipe references (files, shipped names, ``hub:`` refs) in a worker; errors are shown."""
        refs = tuple(str(ref) for ref in refs)
        if refs:
            self._resolve_refs(refs)

    def reload(self) -> None:
        """List every source folder again (keeping the cursor on the same recipe when it is still there)."""
        tree = self.query_one("#recipe-tree", Tree)
        keep = self._shown.key if isinstance(self._shown, Shown) and not self._shown.queued_copy else None
        tree.clear()
        first: TreeNode[Shown | Folder] | None = None
        for title, folder, shipped in self._sources():
            node = self._add_folder(tree.root, title, folder, shipped=shipped)
            first = first or next(self._leaves(node), None)
        if self._loaded:
            node = tree.root.add(
                Text("loaded refs"), data=Folder("loaded refs", None, len(self._loaded), 0), expand=True
            )
            for shown in self._loaded.values():
                node.add_leaf(self._label(shown), data=shown)
        target = self._find(keep) if keep else None
        self._fill_queue()
        self._move_to(target or first)

    def select_recipe(self, key: str) -> bool:
        """Move the tree's cursor to the entry with this :attr:`Shown.key` (False when absent)."""
        node = self._find(key)
        if node is not None:
            self._move_to(node)
        return node is not None

    # --- sources ------------------------------------------------------------------------

    def _sources(self) -> list[tuple[str, Path, bool]]:
        """(title, folder, shipped) of each source: shipped, yours, then the command line's folders (by name)."""
        sources = [
            ("shipped", cpedit.recipes.builtin_recipes_dir(), True),
            ("yours", cpedit.recipes.user_recipes_dir(), False),
        ]
        sources += [
            (Path(folder).expanduser().name or str(folder), Path(folder).expanduser(), False)
            for folder in self.state.recipe_folders
        ]
        return sources

    def _add_folder(
        self, root: TreeNode[Shown | Folder], title: str, folder: Path, *, shipped: bool
    ) -> TreeNode[Shown | Folder]:
        """One source folder's node, with a leaf per recipe file (grouped by subfolder)."""
        note, entries = "", []
        if folder.exists() or title != "yours":
            try:
                entries = cpedit.list_recipes([folder])
            except CpeditError as exc:
                note = str(exc)
        if title == "yours" and not entries and not note:
            note = "empty: n writes one here"  # missing or empty, the same hint
        invalid = sum(not entry.valid for entry in entries)
        info = Folder(title, folder, len(entries), invalid, note)
        node = root.add(self._folder_label(info), data=info, expand=True)
        groups: dict[str, TreeNode[Shown | Folder]] = {}
        for entry in entries:
            parent = node
            try:
                rel = entry.path.parent.relative_to(folder).as_posix()
            except ValueError:
                rel = "."
            if rel != ".":
                if rel not in groups:
                    groups[rel] = node.add(Text(clean(rel), style="bold"), data=Folder(rel, entry.path.parent, 0, 0))
                    groups[rel].expand()
                parent = groups[rel]
            shown = Shown(
                name=clean(entry.name),
                origin=entry.name if shipped else str(entry.path),
                recipe=entry.recipe,
                error=entry.error,
                path=entry.path,
            )
            parent.add_leaf(self._label(shown), data=shown)
        if note:
            node.add_leaf(Text(clean(note), style="italic"), data=info)
        return node

    # --- tree helpers ---------------------------------------------------------------------

    def _palette(self) -> Palette:
        """The theme's colours as solid hex values (worked out once per theme)."""
        theme = self.app.theme
        if self._palette_cache is None or self._palette_cache[0] != theme:
            self._palette_cache = (theme, self._make_palette())
        return self._palette_cache[1]

    def _make_palette(self) -> Palette:
        variables = self.app.get_css_variables()
        background = Color.parse(variables.get("background", "#000000"))

        def solid(name: str, fallback: str) -> str:
            try:
                return (background + Color.parse(variables.get(name, fallback))).hex
            except Exception:  # noqa: BLE001 - a colour that does not parse: use the plain one
                return fallback

        error = solid("error", "#ff0000")
        return Palette(
            error=error,
            error_bg=background.blend(Color.parse(error), 0.28).hex,
            success=solid("success", "#00aa00"),
            accent=solid("accent", "#ffaa00"),
            warning=solid("warning", "#ffaa00"),
            muted=solid("text-muted", "#888888"),
            dark=self.app.current_theme.dark,
        )

    def _queued_names(self) -> set[str]:
        return {item.name for item in self.state.queue}

    def _label(self, shown: Shown) -> Text:
        """A leaf's label: ``✗`` for an invalid file, ``●`` for a queued recipe."""
        palette = self._palette()
        if shown.error is not None:
            return Text.assemble(("✗ ", f"bold {palette.error}"), (shown.name, palette.error))
        if shown.recipe is not None and shown.recipe.name in self._queued_names():
            return Text.assemble(("● ", f"bold {palette.accent}"), shown.name)
        return Text.assemble("  ", shown.name)

    def _folder_label(self, folder: Folder) -> Text:
        palette = self._palette()
        text = Text.assemble((clean(folder.title), "bold"), "  ", (str(folder.count), palette.muted))
        if folder.invalid:
            text.append("  ")
            text.append(f"✗ {folder.invalid}", style=palette.error)
        return text

    def _tree_nodes(self) -> Iterator[TreeNode[Shown | Folder]]:
        tree = self.query_one("#recipe-tree", Tree)
        stack = list(reversed(tree.root.children))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    @staticmethod
    def _leaves(node: TreeNode[Shown | Folder]) -> Iterator[TreeNode[Shown | Folder]]:
        stack = list(reversed(node.children))
        while stack:
            child = stack.pop()
            if isinstance(child.data, Shown):
                yield child
            stack.extend(reversed(child.children))

    def _find(self, key: str) -> TreeNode[Shown | Folder] | None:
        return next((n for n in self._tree_nodes() if isinstance(n.data, Shown) and n.data.key == key), None)

    def _relabel(self) -> None:
        """Redraw each leaf's marks (queued, invalid) and each folder's counts."""
        for node in self._tree_nodes():
            if isinstance(node.data, Shown):
                node.set_label(self._label(node.data))
            elif isinstance(node.data, Folder) and node.parent is not None and node.parent.is_root:
                if node.data.title != "loaded refs":
                    node.set_label(self._folder_label(node.data))

    def _move_to(self, node: TreeNode[Shown | Folder] | None) -> None:
        """Put the tree's cursor on ``node`` (after the tree has laid out its lines) and show it."""
        if node is None:
            self._show(None)
            return
        tree = self.query_one("#recipe-tree", Tree)

        def move() -> None:
            tree.move_cursor(node)
            self._show(node.data)

        tree.call_after_refresh(move)

    # --- queue list -----------------------------------------------------------------------

    def _fill_queue(self) -> None:
        """The queue list: one line per queued copy with its status and prune settings."""
        queue = self.query_one("#recipe-queue", OptionList)
        highlighted = queue.highlighted_option.id if queue.highlighted_option else None
        queue.clear_options()
        queue.border_subtitle = f"{len(self.state.queue)}" if self.state.queue else ""
        if not self.state.queue:
            queue.add_option(Option(Text("nothing queued: a adds a recipe", style="italic"), disabled=True))
            return
        palette = self._palette()
        for item in self.state.queue:
            p = item.recipe.prune
            status = "" if item.status == "queued" else f" {item.status}"
            style = palette.error if item.status == "failed" else palette.muted
            label = Text.assemble(
                ("● ", palette.accent), item.name, "  ", (f"{p.skill_ratio:g}/{p.timesteps}{status}", style)
            )
            queue.add_option(Option(label, id=item.name))
        names = [item.name for item in self.state.queue]
        queue.highlighted = names.index(highlighted) if highlighted in names else 0

    def _queued_shown(self, name: str) -> Shown | None:
        for item in self.state.queue:
            if item.name == name:
                return Shown(name=item.name, origin=item.origin, recipe=item.recipe, queued_copy=True)
        return None

    # --- the detail panel -----------------------------------------------------------------

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted[Shown | Folder]) -> None:
        self._show(event.node.data)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "recipe-queue" and event.option.id and event.option_list.has_focus:
            self._show(self._queued_shown(event.option.id))

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Show what the focused list points at (the tree's recipe or the queue's copy)."""
        widget = event.widget
        if isinstance(widget, OptionList) and widget.id == "recipe-queue":
            option = widget.highlighted_option
            if option is not None and option.id:
                self._show(self._queued_shown(option.id))
        elif isinstance(widget, Tree) and widget.cursor_node is not None:
            self._show(widget.cursor_node.data)

    def _show(self, shown: Shown | Folder | None) -> None:
        self._shown = shown
        self._render_shown()
        self.refresh_bindings()

    def _render_shown(self) -> None:
        """Render :attr:`_shown` into the detail and YAML views."""
        if not self.is_mounted:
            return
        detail = self.query_one("#recipe-detail", Static)
        yaml_view = self.query_one("#recipe-yaml", Static)
        view = self.query_one("#recipe-view", VerticalScroll)
        shown, palette = self._shown, self._palette()
        if isinstance(shown, Shown) and shown.queued_copy and shown.name not in self._queued_names():
            shown = self._shown = None
        if shown is None:
            view.border_title = "Recipe"
            detail.update(Text("Highlight a recipe on the left.", style="italic"))
            yaml_view.update("")
            return
        if isinstance(shown, Folder):
            view.border_title = clean(shown.title)
            detail.update(self._folder_detail(shown, palette))
            yaml_view.update("")
            return
        view.border_title = f"{shown.name} (queued copy)" if shown.queued_copy else shown.name
        detail.update(self._recipe_detail(shown, palette))
        yaml_view.update(self._yaml_detail(shown, palette))

    def _folder_detail(self, folder: Folder, palette: Palette) -> RenderableType:
        lines = [Text(clean(str(folder.path or "")), style=palette.muted)]
        if folder.count or not folder.note:
            invalid = f", {folder.invalid} invalid" if folder.invalid else ""
            lines.append(Text(f"{folder.count} recipe file(s){invalid}"))
        if folder.note:
            lines.append(Text(clean(folder.note), style=palette.warning))
        return Group(*lines)

    def _recipe_detail(self, shown: Shown, palette: Palette) -> RenderableType:
        """Title badges, the settings table and the validation verdict."""
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style=f"bold {palette.muted}", no_wrap=True)
        grid.add_column(ratio=1)
        recipe = shown.recipe
        where = shown.origin if shown.queued_copy or shown.path is None else display_path(shown.path)
        grid.add_row("from", Text(clean(where), style=palette.muted, overflow="fold"))
        if recipe is not None:
            self._recipe_rows(grid, recipe, shown, palette)
        verdict = self._verdict(shown, palette)
        return Group(grid, Text(""), verdict)

    def _recipe_rows(self, grid: Table, recipe: Recipe, shown: Shown, palette: Palette) -> None:
        prune, sampling = settings_line(recipe)
        pairs = recipe.pairs()
        example = f" e.g. “{pairs[0][0]}” ↔ “{pairs[0][1]}”" if pairs else ""
        grid.add_row("concept", Text(clean(recipe.concept), style="bold"))
        grid.add_row("kind", recipe.kind)
        grid.add_row("pairs", Text(clean(f"{len(pairs)}{example}")))
        grid.add_row("prune", prune)
        grid.add_row("sampling", sampling)
        if recipe.preview_prompts:
            grid.add_row("preview", f"{len(recipe.preview_prompts)} prompt(s)")
        if recipe.description:
            grid.add_row("about", Text(clean(recipe.description)))
        if recipe.name in self._queued_names():
            item = self.state.item(recipe.name)
            note = "queued"
            if not shown.queued_copy and (item.recipe.prune, item.recipe.sampling) != (recipe.prune, recipe.sampling):
                note += " (copy edited: " + " · ".join(settings_line(item.recipe)) + ")"
            note += "; e edits its settings, del removes it"
            grid.add_row("queue", Text(note, style=palette.accent))

    def _verdict(self, shown: Shown, palette: Palette) -> RenderableType:
        """``✓ valid``, or the headline and each problem with its field highlighted."""
        if shown.error is None:
            hint = "" if shown.queued_copy or shown.recipe is None else "  a adds it to the queue"
            return Text.assemble(("✓ valid recipe", f"bold {palette.success}"), (hint, palette.muted))
        error = shown.error
        count = len(error.problems)
        lines: list[RenderableType] = [
            Text(f"✗ {error.headline} ({count} problem{'s' if count != 1 else ''})", style=f"bold {palette.error}")
        ]
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(ratio=1)
        for field, message in error.problems:
            table.add_row(
                Text(clean(field or "file"), style=f"bold {palette.error} on {palette.error_bg}"),
                Text(clean(message)),
            )
        lines.append(table)
        return Group(*lines)

    def _yaml_detail(self, shown: Shown, palette: Palette) -> RenderableType:
        """The YAML with line numbers; lines of the problems' keys are marked ``✗`` on the error colour."""
        text, why_not = shown.text()
        if why_not:
            return Text(why_not, style=f"italic {palette.muted}")
        text = clean(text).expandtabs(4)
        marked = problem_lines(text, shown.error.problems) if shown.error else {}
        syntax = Syntax("", "yaml", theme="ansi_dark" if palette.dark else "ansi_light", background_color="default")
        lines = list(syntax.highlight(text).split("\n", allow_blank=True))
        if lines and not lines[-1].plain:
            lines = lines[:-1]
        width = len(str(len(lines)))
        rows = []
        for number, line in enumerate(lines):
            bad = number in marked
            gutter_style = f"bold {palette.error}" if bad else palette.muted
            row = Text.assemble(("✗" if bad else " ", gutter_style), (f"{number + 1:>{width}} │ ", gutter_style))
            if bad:
                line.stylize(f"on {palette.error_bg}")
            row.append_text(line)
            rows.append(row)
        title = Text("YAML", style=f"bold {palette.accent}")
        return Group(title, Text("\n").join(rows))

    # --- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim the keys that do nothing now (footer): add needs a recipe file, edit and remove a queued copy."""
        if action == "add":
            shown = self._shown
            return True if isinstance(shown, Shown) and not shown.queued_copy else None
        if action in ("edit", "unqueue"):
            return True if self.state.queue else None
        return True

    def action_add(self) -> None:
        """Queue a copy of the highlighted recipe."""
        shown = self._shown
        if not isinstance(shown, Shown) or shown.queued_copy:
            self.show_error("highlight a recipe in the tree first")
            return
        if shown.recipe is None:
            self.show_error(f"{shown.name} is not a valid recipe: fix the problems shown first")
            return
        self._queue(shown.recipe, shown.origin)

    def _queue(self, recipe: Recipe, origin: str) -> bool:
        """Queue ``recipe``; an error (already queued, a run going) is shown. Returns whether it was queued."""
        try:
            self.state.queue_recipe(recipe, origin=origin)
        except CpeditError as exc:
            self.show_error(exc)
            return False
        self.app.notify(f"queued {recipe.name} ({len(self.state.queue)} in the queue)", timeout=3)
        self.cpedit_app.refresh_panes()
        return True

    def _target_name(self) -> str | None:
        """The queued copy an edit or remove is about: the queue list's, the tree's if queued, or the only one."""
        queue = self.query_one("#recipe-queue", OptionList)
        names = self._queued_names()
        if queue.has_focus and queue.highlighted_option is not None and queue.highlighted_option.id in names:
            return queue.highlighted_option.id
        shown = self._shown
        if isinstance(shown, Shown) and shown.recipe is not None and shown.recipe.name in names:
            return shown.recipe.name
        if len(self.state.queue) == 1:
            return self.state.queue[0].name
        return None

    def action_edit(self) -> None:
        """Edit the prune and sampling settings of a queued copy (a dialog)."""
        name = self._target_name()
        if name is None:
            self.show_error("highlight a queued recipe (in the tree or the queue list) to edit its copy")
            return

        def done(changed: SettingsChanges | None) -> None:
            if changed:
                self.app.notify(f"{name}: settings changed", timeout=3)
            self.cpedit_app.refresh_panes()

        self.app.push_screen(QueuedSettingsScreen(name), done)

    def action_unqueue(self) -> None:
        """Remove a recipe from the queue."""
        name = self._target_name()
        if name is None:
            self.show_error("highlight a queued recipe (in the tree or the queue list) to remove it")
            return
        try:
            self.state.unqueue(name)
        except CpeditError as exc:
            self.show_error(exc)
            return
        self.app.notify(f"removed {name} from the queue", timeout=3)
        self.cpedit_app.refresh_panes()

    def action_new(self) -> None:
        """Write a new recipe from a form; it is saved to your folder, listed under "yours" and queued."""
        folder = self.new_recipe_folder or cpedit.recipes.user_recipes_dir()
        screen = NewRecipeScreen(folder)

        def done(recipe: Recipe | None) -> None:
            if recipe is None:
                return
            self.reload()
            self.select_recipe(f"src:{recipe.source}")
            if screen.queue_after:
                self._queue(recipe, recipe.source)

        self.app.push_screen(screen, done)

    def action_reload(self) -> None:
        """Read the recipe folders again (after editing files outside the app)."""
        self.reload()
        self.app.notify("recipe folders reloaded", timeout=2)

    def action_focus_ref(self) -> None:
        """Focus the reference line (type a ``hub:`` ref, a file or a shipped name, then enter)."""
        self.query_one("#recipe-ref", Input).focus()

    # --- references (workers) -------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "recipe-ref":
            return
        event.stop()
        ref = event.value.strip()
        if not ref:
            self.show_error("type a reference: hub:NAMESPACE/NAME/path.yaml, a file or a shipped name")
            return
        self._pending_ref = ref
        self.query_one("#recipe-ref-status", Static).update(Text(f"loading {clean(ref)}…"))
        self._load_ref(ref)

    @work(thread=True, exclusive=True, exit_on_error=False, group=HUB_GROUP)
    def _load_ref(self, ref: str) -> None:
        """Resolve a reference (a ``hub:`` ref downloads) off the UI thread."""
        self.post_message(RecipeLoaded.of(lambda: cpedit.resolve_recipe(ref), ref=ref))

    @work(thread=True, exit_on_error=False, group=REFS_GROUP)
    def _resolve_refs(self, refs: tuple[str, ...]) -> None:
        """Resolve each start-up reference off the UI thread; each error is kept, not raised."""

        def resolve_all() -> list[tuple[str, Recipe | BaseException]]:
            out: list[tuple[str, Recipe | BaseException]] = []
            for ref in refs:
                try:
                    out.append((ref, cpedit.resolve_recipe(ref)))
                except Exception as exc:  # noqa: BLE001 - shown in the app, per reference
                    out.append((ref, exc))
            return out

        self.post_message(RecipesResolved.of(resolve_all))

    def on_recipe_loaded(self, message: RecipeLoaded) -> None:
        message.stop()
        if message.ref != self._pending_ref:
            return  # another reference was asked for meanwhile
        status = self.query_one("#recipe-ref-status", Static)
        if message.result is None:
            status.update(Text(f"✗ {clean(message.ref)}", style=self._palette().error))
            self.show_error(message.error, title="cannot load the recipe")  # type: ignore[arg-type]
            return
        ref = message.ref
        shown = Shown(name=clean(ref), origin=ref, recipe=message.result)
        self._loaded[ref] = shown
        status.update(Text(f"✓ loaded {clean(ref)}: a adds it", style=self._palette().success))
        self.reload()
        self.select_recipe(shown.key)
        self.query_one("#recipe-tree", Tree).focus()

    def on_recipes_resolved(self, message: RecipesResolved) -> None:
        message.stop()
        if message.result is None:
            self.show_error(message.error)  # type: ignore[arg-type]
            return
        for ref, outcome in message.result:
            if isinstance(outcome, BaseException):
                self.show_error(outcome, title=f"cannot queue {clean(ref)}")
                continue
            try:
                self.state.queue_recipe(outcome, origin=ref)
            except CpeditError as exc:
                self.show_error(exc)
        self.cpedit_app.refresh_panes()
