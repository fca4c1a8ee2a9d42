"""The Model screen: search the Hub as you type, see whether cpedit can edit a model, choose it.

The built-in model (or the MODEL given on the command line) is chosen at start. Typing searches
the Hub after a short pause, in a worker (a new search cancels the old one); a path
(``/``, ``.``, ``~``) describes a local pipeline folder instead. Highlighting a result fetches
its details (pipeline class, editable or not and why, license, download size); enter chooses
it, unless cpedit cannot edit it: then the choice is refused with the reason a run would give
(a local folder is checked as ``cpedit prune`` checks it before loading). Offline, gated,
401/404 and network errors show here and never stop the app.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from cpedit import ComputeOptions
from tui.messages import ModelDescribed, SearchDone
from tui.screens.base import Pane
from tui.state import BUILTIN_MODEL, LocalModel, describe_error, describe_local_model
from tui.widgets.run_progress import format_bytes

SEARCH_DELAY = 0.4
"""Seconds of no typing before a search starts."""
BUILTIN_DETAILS = (
    "[b]builtin:shapes[/b] · cpedit's built-in model\n"
    "A small text-to-image model of coloured, textured shapes that ships with cpedit (no download). "
    "It is editable: its UNet has feed-forward and cross-attention layers to prune (each recipe names its "
    "target). Use it to try cpedit in seconds "
    "with the shipped shapes-* recipes."
)


def looks_like_path(text: str) -> bool:
    """Whether the query is a local folder rather than a Hub search."""
    return text.startswith(("/", ".", "~"))


def details_markup(details: Any) -> str:
    """The details panel of a Hub model (:class:`cpedit.models.ModelDetails`); Hub text is escaped, never markup."""
    verdict = "[green]✓ cpedit can edit it[/]" if details.editable else "[red]✗ cpedit cannot edit it[/]"
    lines = [
        f"[b]{escape(details.id)}[/b]",
        f"{verdict}: {escape(details.reason)}",
        escape(f"pipeline: {details.pipeline_class or '?'} · denoiser: {details.denoiser_class or '?'}"),
        escape(
            f"license: {details.license or 'not given'} · gated: {details.gated or 'no'}"
            + (" · private" if details.private else "")
        ),
        f"download: {format_bytes(details.safetensors_bytes)} in {details.safetensors_files} safetensors file(s)",
    ]
    if details.ffn_layers:
        lines.append(f"FFN layers: {details.ffn_layers} ({details.ffn_weights:,} prunable weights)")
    return "\n".join(lines)


def local_markup(model: LocalModel) -> str:
    """The details panel of a local folder (its path and class escaped)."""
    verdict = "[green]✓ cpedit can edit it[/]" if model.editable else "[red]✗ cpedit cannot edit it[/]"
    text = f"[b]{escape(model.path)}[/b] · local folder\n{verdict}: {escape(model.reason)}"
    if model.editable:
        text += (
            f"\npipeline: {escape(model.pipeline_class or '?')} · weights: {format_bytes(model.safetensors_bytes)}\n"
            + (f"{escape(model.memory)}\n" if model.memory else "")
            + "enter chooses it"
        )
    return text


def error_markup(error: BaseException | None) -> str:
    """An error in red, its text escaped (messages quote paths and values, which may hold brackets)."""
    return f"[red]{escape(describe_error(error))}[/]" if error is not None else ""


class ModelPane(Pane):
    """Choose the base model: the built-in one, a Hub model, or a local folder."""

    INITIAL_FOCUS = "#model-results"
    BINDINGS = [
        Binding("enter", "choose", "Choose model", show=True),
        Binding("slash", "focus_search", "Search"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._search_timer: Timer | None = None
        self._rows: dict[str, Any] = {}
        self._searched: str | None = None
        """The query searched last (results for another one are dropped)."""
        self._described = ""
        """The model whose details were asked for last (an answer about another one is dropped)."""
        self._verdicts: dict[str, tuple[bool, str]] = {}
        """Hub id -> (editable, why), from its details."""

    def compose(self) -> ComposeResult:
        yield Static(id="model-chosen")
        yield Input(placeholder="/ to search the Hub as you type, or type a folder path (/ . ~)", id="model-search")
        with Horizontal(id="model-body"):
            yield DataTable(id="model-results", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="model-details-box"):
                yield Static(BUILTIN_DETAILS, id="model-details")
        yield Static("", id="model-status", classes="muted")

    def on_mount(self) -> None:
        table = self.query_one("#model-results", DataTable)
        table.add_columns("model", "downloads", "likes", "gated")
        self._show_results([])
        self.refresh_state()

    def refresh_state(self) -> None:
        self.query_one("#model-chosen", Static).update(
            f"base model: [b]{escape(self.state.model)}[/b]  ·  enter on a row chooses another"
        )

    # --- search -------------------------------------------------------------------------

    @on(Input.Changed, "#model-search")
    def _query_changed(self, event: Input.Changed) -> None:
        if self._search_timer is not None:
            self._search_timer.stop()
        query = event.value.strip()
        self._search_timer = self.set_timer(SEARCH_DELAY, lambda: self.search(query))

    @on(Input.Submitted, "#model-search")
    def _query_submitted(self, event: Input.Submitted) -> None:
        query = event.value.strip()
        if looks_like_path(query):
            self.choose(query)
        else:
            self.search(query)
            self.query_one("#model-results", DataTable).focus()

    def search(self, query: str) -> None:
        """Search the Hub for ``query`` (or describe a local folder) in a worker."""
        status = self.query_one("#model-status", Static)
        if looks_like_path(query):
            status.update(f"local folder {escape(query)}")
            self._describe(query)
            return
        status.update(escape(f"searching the Hub for {query!r}…") if query else "searching the Hub…")
        self._searched = query
        self._search(query)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-search")
    def _search(self, query: str) -> None:
        from cpedit.hub import search_models

        self.post_message(SearchDone.of(lambda: search_models(query=query or None, limit=30), query=query))

    def on_search_done(self, message: SearchDone) -> None:
        message.stop()
        if message.query != self._searched:
            return  # a newer query is on its way
        status = self.query_one("#model-status", Static)
        if message.result is None:
            status.update(f"[red]search failed:[/] {escape(describe_error(message.error))}")  # type: ignore[arg-type]
            return
        self._show_results(message.result)
        status.update(
            f"{len(message.result)} text-to-image diffusers model(s) on the Hub"
            + escape(f" for {message.query!r}" if message.query else "")
        )

    def _describe(self, model: str, *, choose: bool = False) -> None:
        """Describe a Hub model or a local folder in a worker (``choose``: then choose it if cpedit can edit it)."""
        self._described = model
        # read here, on the UI thread: the worker gets its own copies (the memory estimate is for the queue)
        recipes = tuple(item.recipe for item in self.state.queue)
        self._describe_worker(model, choose, recipes, self.state.compute)

    @work(thread=True, exclusive=True, exit_on_error=False, group="model-details")
    def _describe_worker(self, model: str, choose: bool, recipes: tuple[Any, ...], compute: ComputeOptions) -> None:
        from cpedit.models import model_details

        def local() -> Any:
            return describe_local_model(model, recipes=recipes, compute=compute)

        describe = local if looks_like_path(model) else (lambda: model_details(model))
        self.post_message(ModelDescribed.of(describe, model=model, choose=choose))

    def on_model_described(self, message: ModelDescribed) -> None:
        message.stop()
        if message.model != self._described:
            return  # another model was highlighted meanwhile
        details = self.query_one("#model-details", Static)
        local = looks_like_path(message.model)
        if message.result is None:
            details.update(error_markup(message.error))
            return
        details.update(local_markup(message.result) if local else details_markup(message.result))
        if not local:
            self._verdicts[message.model] = (message.result.editable, message.result.reason)
        if message.choose:
            self._choose_if_editable(message.model, message.result.editable, message.result.reason)

    def _show_results(self, found: list[Any]) -> None:
        table = self.query_one("#model-results", DataTable)
        table.clear()
        self._rows = {BUILTIN_MODEL: None}
        table.add_row(BUILTIN_MODEL, "built in", "", "", key=BUILTIN_MODEL)
        for model in found:
            if model.id in self._rows:
                continue
            self._rows[model.id] = model
            gated = "gated" if model.gated else ""
            downloads = f"{model.downloads:,}" if model.downloads is not None else "?"
            likes = f"{model.likes:,}" if model.likes is not None else "?"
            table.add_row(model.id, downloads, likes, gated, key=model.id)

    @on(DataTable.RowHighlighted, "#model-results")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        repo_id = str(event.row_key.value)
        details = self.query_one("#model-details", Static)
        if repo_id == BUILTIN_MODEL:
            details.update(BUILTIN_DETAILS)
            return
        details.update(f"[b]{escape(repo_id)}[/b]\nreading its files on the Hub…")
        self._describe(repo_id)

    @on(DataTable.RowSelected, "#model-results")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.choose(str(event.row_key.value))

    # --- choose -------------------------------------------------------------------------

    def action_choose(self) -> None:
        """Choose the highlighted model (or the folder typed in the search box)."""
        query = self.query_one("#model-search", Input).value.strip()
        if self.query_one("#model-search", Input).has_focus and looks_like_path(query):
            self.choose(query)
            return
        table = self.query_one("#model-results", DataTable)
        if table.row_count:
            row_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            self.choose(str(row_key.value))

    def action_focus_search(self) -> None:
        """Put the cursor in the search box."""
        self.query_one("#model-search", Input).focus()

    def choose(self, model: str) -> None:
        """Make ``model`` the base model of the next run, unless cpedit cannot edit it (a local folder is
        checked first, in a worker; a Hub model whose details say so is refused)."""
        if looks_like_path(model):
            self.query_one("#model-status", Static).update(escape(f"checking {model}…"))
            self._describe(model, choose=True)
            return
        editable, reason = self._verdicts.get(model, (True, ""))
        self._choose_if_editable(model, editable, reason)

    def _choose_if_editable(self, model: str, editable: bool, reason: str) -> None:
        status = self.query_one("#model-status", Static)
        if not editable:
            status.update(f"[red]not chosen:[/] {escape(reason)}")
            self.show_error(reason, title=f"cannot edit {model}")
            return
        try:
            self.state.choose_model(model)
        except Exception as exc:  # noqa: BLE001 - shown, the app goes on
            self.show_error(exc)
            return
        status.update(escape(f"base model: {model}"))
        self.app.notify(f"base model: {model}", timeout=4)
        self.cpedit_app.refresh_panes()
