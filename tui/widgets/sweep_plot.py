"""The trade-off of measured points: a scatter plot (preservation drop -> erased after) and a list of them."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option
from textual_plotext import PlotextPlot

from tui.state import PointsView, SweepPoint

PARETO_MARK = "★"
CHOSEN_MARK = "◆"
COLLAPSED_MARK = "✗"


def point_line(point: SweepPoint) -> Text:
    """One list row: a mark (◆ the tune's pick, ★ on the Pareto front, ✗ collapsed), settings, pruned %,
    erased after (with its 95% interval where the point has one), drop."""
    mark = COLLAPSED_MARK if point.collapsed else CHOSEN_MARK if point.chosen else PARETO_MARK if point.pareto else " "
    line = Text(f"{mark} ", style="bold yellow" if point.pareto or point.chosen else "")
    line.append(f"{point.label:<15}", style="bold" if point.pareto else "")
    line.append(f" {point.pruned_percent:6.3f}% {point.erased_after:6.3f} {point.drop:+6.3f}")
    if point.erased_interval is not None:
        low, high = point.erased_interval
        line.append(f"  erased 95% {low:.3f}-{high:.3f}", style="dim")
    if point.collapsed:
        line.append("  collapsed: failed", style="bold red")
    return line


HEADER = f"  {'settings':<15} {'pruned':>7} {'erased':>6} {'drop':>6}"
"""The column names above the list (as :func:`point_line` lays out a row)."""


class SweepPlot(Vertical):
    """Renders a :class:`~tui.state.PointsView`: a status line, the scatter plot (x: preservation drop,
    y: erased after; ★ the Pareto front, ◆ a tune's pick) and the point list."""

    DEFAULT_CSS = """
    SweepPlot { border: round $primary; padding: 0 1; }
    SweepPlot #sweep-status { height: auto; max-height: 3; }
    SweepPlot PlotextPlot { height: 1fr; min-height: 5; }
    SweepPlot #sweep-header { height: 1; text-style: bold; }
    SweepPlot OptionList { height: auto; max-height: 6; border: none; padding: 0; }
    """

    def on_mount(self) -> None:
        self.border_title = "erased after ↑ · drop →"

    def compose(self) -> ComposeResult:
        yield Static(id="sweep-status", classes="muted", markup=False)
        yield PlotextPlot(id="sweep-plot")
        yield Static(HEADER, id="sweep-header", classes="muted", markup=False)
        yield OptionList(id="sweep-points", compact=True, markup=False)

    def show(self, view: PointsView | None, *, status: str = "", error: bool = False) -> None:
        """Plot ``view``'s points and list them; ``status`` (an error when ``error``) replaces its title."""
        line = self.query_one("#sweep-status", Static)
        line.set_class(error, "error")
        line.set_class(not error, "muted")
        line.update(status or (f"{view.title}\n{view.note}".strip() if view else "w plots a sweep, t runs a tune"))
        points = view.points if view else []
        options = self.query_one("#sweep-points", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_options([Option(point_line(p), id=str(i)) for i, p in enumerate(points)])
        if points:
            options.highlighted = min(highlighted or 0, len(points) - 1)
        self._plot(points)

    def _plot(self, points: list[SweepPoint]) -> None:
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        for point in points:  # the 95% intervals as error bars, under the marks
            if point.erased_interval is not None:
                plt.plot([point.drop, point.drop], list(point.erased_interval), color="gray", marker="│")
            if point.drop_interval is not None:
                plt.plot(list(point.drop_interval), [point.erased_after, point.erased_after], color="gray", marker="─")
        for series, marker, color in (
            ([p for p in points if not p.pareto and not p.chosen and not p.collapsed], "•", "blue"),
            ([p for p in points if p.collapsed], COLLAPSED_MARK, "red"),
            ([p for p in points if p.pareto and not p.chosen], PARETO_MARK, "yellow"),
            ([p for p in points if p.chosen], CHOSEN_MARK, "green"),
        ):
            if series:
                plt.scatter([p.drop for p in series], [p.erased_after for p in series], marker=marker, color=color)
        plot.refresh()
