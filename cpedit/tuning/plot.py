"""``sweep.png``: the trade-off of a sweep, drawn with matplotlib (the ``eval`` extra).

Erased after the edit (lower is better) against the preservation drop (lower is better):
every point labelled with its settings and drawn with its 95% intervals as error bars (both
axes, where the benchmarks give them), the base model as a reference mark, the Pareto front
joined by a line and ringed, collapsed points (their edit destroyed generation) crossed out in
red. Written atomically; matplotlib runs headless (Agg).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from cpedit.errors import CpeditError
from cpedit.tuning.measure import EvaluationPlan
from cpedit.tuning.points import Point

__all__ = ["plot_available", "plot_sweep"]

MISSING = 'the sweep plot needs matplotlib: pip install "cpedit[eval]"'


def plot_available() -> bool:
    """Whether matplotlib (the ``eval`` extra) is installed, so :func:`plot_sweep` can draw."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def check_plot_available() -> None:
    """Refuse, before any work, a sweep that was asked for a plot it cannot draw.

    Raises:
        CpeditError: ``reason="missing_dependency"``, ``argument="plot"``.
    """
    if not plot_available():
        raise CpeditError(MISSING, reason="missing_dependency", argument="plot")


def error_bars(points: Sequence[Point], what: str) -> tuple[list[float], list[float]]:
    """The distances below and above each point's value to its 95% interval's bounds (0 without one)."""
    value = (lambda p: p.erased["after"]) if what == "erased" else (lambda p: p.drop)
    return [value(p) - p.lower(what) for p in points], [p.upper(what) - value(p) for p in points]


def plot_sweep(points: Sequence[Point], path: str | os.PathLike[str], *, plan: EvaluationPlan) -> Path:
    """Draw the sweep's points into ``path`` (PNG) and return it.

    Raises:
        CpeditError: matplotlib is not installed (``reason="missing_dependency"``: ``pip install
            "cpedit[eval]"``), or there is no point to draw.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise CpeditError(MISSING, reason="missing_dependency", argument="plot") from None
    from cpedit.durable import write_bytes_atomically
    from cpedit.tuning.points import pareto_front

    if not points:
        raise CpeditError("no point to plot", argument="plot")
    front = pareto_front(points)
    on_front = {id(p) for p in front}
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        xs = [p.drop for p in points]
        ys = [p.erased["after"] for p in points]
        axes.scatter(xs, ys, s=28, color="#4c72b0", zorder=3, label="settings")
        xerr, yerr = error_bars(points, "drop"), error_bars(points, "erased")
        if any(any(row) for row in (*xerr, *yerr)):
            axes.errorbar(
                xs,
                ys,
                xerr=xerr,
                yerr=yerr,
                fmt="none",
                ecolor="#4c72b0",
                alpha=0.45,
                capsize=2,
                zorder=2,
                label="95% interval",
            )
        for point in points:
            axes.annotate(
                f"{point.settings.label} ({point.pruned_percent:.3g}%)",
                (point.drop, point.erased["after"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
                color="#222222" if id(point) in on_front else "#777777",
            )
        axes.plot(
            [p.drop for p in front],
            [p.erased["after"] for p in front],
            color="#dd8452",
            linewidth=1.5,
            marker="o",
            markersize=9,
            markerfacecolor="none",
            zorder=4,
            label="Pareto front",
        )
        broken = [p for p in points if p.collapsed]
        if broken:
            axes.scatter(
                [p.drop for p in broken],
                [p.erased["after"] for p in broken],
                marker="x",
                s=70,
                color="#c44e52",
                zorder=6,
                label="collapsed (failed)",
            )
        before = points[0].erased.get("before")
        if before is not None:
            axes.scatter([0.0], [before], marker="*", s=140, color="#55a868", zorder=5, label="base model")
        axes.set_xlabel(f"preservation drop ({plan.preserved_metric}: before - after; lower is better)")
        axes.set_ylabel(f"{plan.erased_metric} after the edit (lower is better)")
        axes.set_title(f"cpedit sweep: {plan.benchmark}, {len(points)} points")
        axes.grid(True, alpha=0.3)
        axes.legend(loc="best", fontsize=8)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return write_bytes_atomically(Path(path), buffer.getvalue(), what="the sweep plot", argument="out")
