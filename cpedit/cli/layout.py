"""Output that stays readable at any width: the consoles, and tables that fit the terminal.

At 80 columns (tmux, a pipe, a CI log) a rich table with many columns squeezes its cells to
``conc…`` and ``down_blo…``. A :class:`FittedTable` never cuts a word: it is drawn as a table
when every column fits (cells wrap between words, never inside one), and otherwise as one
stacked record per row: the row's first cell on a line of its own (a layer name whole),
then ``column value`` pairs on as many lines as they need.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from cpedit.text import strip_unsafe

SEPARATOR = " · "
"""Between the ``column value`` pairs of a stacked record."""
INDENT = "  "
"""Before the pairs of a stacked record (its first cell is not indented)."""


class SafeConsole(Console):
    """A console through which no control character of the text it shows reaches the terminal.

    Recipes, results and Hub data are written by others: an ``ESC ] 0 ; ... BEL`` in a protocol
    value or a model's description would retitle, clear or redraw the terminal. Every text
    segment is passed through :func:`cpedit.text.strip_unsafe` (newlines and tabs kept) as it is
    rendered; rich's own control segments (cursor moves of live progress) and the styles it
    emits are untouched. The CLI's one sink for terminal output: every console is one.
    """

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and not segment.text.isprintable():
                segment = Segment(strip_unsafe(segment.text, keep_newlines=True), segment.style)
            yield segment


def stderr_console() -> Console:
    """The console for progress, logs and notes: stderr, without rich's ``file.py:123`` log-path column."""
    return SafeConsole(stderr=True, log_path=False)


def stdout_console() -> Console:
    """The console for results (tables, summaries) on stdout."""
    return SafeConsole()


class FittedTable(Table):
    """A :class:`rich.table.Table` that fits the width it is drawn at without cutting a word.

    Three layouts, the first that fits: every cell on one line; columns narrowed (the ones
    with the most room first) so cells wrap between words, never below a column's longest
    word; or stacked records (see the module docstring).

    Args:
        record_header: In stacked records, show the first cell as ``header value`` too (for a
            first column of numbers, such as a skill ratio), not the value alone (a name).
        *args, **kwargs: As :class:`rich.table.Table`.
    """

    def __init__(self, *args: Any, record_header: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record_header = record_header

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        unbounded = options.update_width(1_000_000)
        limits = []
        for column in self.columns:
            measured = self._measure_column(console, unbounded, column)
            low = measured.maximum if column.no_wrap else measured.minimum  # a no-wrap cell cannot wrap
            limits.append((low, measured.maximum))
        natural = sum(high for _, high in limits) + self._extra_width
        if natural <= width:
            yield from super().__rich_console__(console, options)
        elif sum(low for low, _ in limits) + self._extra_width <= width:
            yield from Table.__rich_console__(self._narrowed(limits, natural - width), console, options)
        else:
            yield from self._stacked(console, width)

    def _narrowed(self, limits: list[tuple[int, int]], excess: int) -> Table:
        """A copy with fixed column widths, ``excess`` cells narrower, no column below its longest word."""
        widths = [high for _, high in limits]
        while excess > 0:
            index = max(range(len(widths)), key=lambda i: widths[i] - limits[i][0])
            widths[index] -= 1
            excess -= 1
        narrowed = copy.copy(self)
        narrowed.columns = []
        for index, column in enumerate(self.columns):
            fixed = copy.copy(column)
            fixed.width = widths[index] - self._get_padding_width(index)
            narrowed.columns.append(fixed)
        return narrowed

    def _stacked(self, console: Console, width: int) -> Iterable[RenderableType]:
        """One record per row: the first cell, then ``header value`` pairs packed into lines of ``width``."""
        if self.title:
            yield _text(console, self.title, style="bold")
        headers = [_text(console, column.header) for column in self.columns]
        rows = [[_text(console, cell) for cell in column._cells] for column in self.columns]
        records = [[column[row] for column in rows] for row in range(self.row_count)]
        if self.show_footer:
            records.append([_text(console, column.footer) for column in self.columns])
        for cells in records:
            first = Text.assemble(headers[0], " ", cells[0]) if self.record_header else cells[0]
            yield Text.assemble(first, style="bold")
            yield from _pairs(headers[1:], cells[1:], width)
        if self.caption:
            yield _text(console, self.caption, style="dim")


def _text(console: Console, value: object, *, style: str = "") -> Text:
    """A cell, header or title as :class:`Text` (strings are rich markup, as a table reads them)."""
    if isinstance(value, Text):
        text = value.copy()
    elif isinstance(value, str):
        text = console.render_str(value)
    else:
        text = Text(str(value or ""))
    if style:
        text.stylize(style)
    return text


def _pairs(headers: list[Text], cells: list[Text], width: int) -> Iterable[Text]:
    """``header value`` pairs joined by :data:`SEPARATOR`, on indented lines of at most ``width`` cells.

    A value of several lines (a list of problems) gets lines of its own; a pair longer than a
    line is folded by the console.
    """
    line = Text(INDENT)
    for header, cell in zip(headers, cells, strict=True):
        if not cell.plain.strip():
            continue
        if "\n" in cell.plain:
            if line.plain.strip():
                yield line
            yield Text.assemble(INDENT, header, ":")
            for part in cell.split("\n"):
                yield Text.assemble(INDENT * 2, part)
            line = Text(INDENT)
            continue
        pair = Text.assemble(header, " ", cell) if header.plain else cell
        if line.plain.strip() and line.cell_len + len(SEPARATOR) + pair.cell_len > width:
            yield line
            line = Text(INDENT)
        if line.plain.strip():
            line.append(SEPARATOR)
        line.append_text(pair)
    if line.plain.strip():
        yield line
