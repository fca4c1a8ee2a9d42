"""Rendering library progress events and reports with rich."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from cpedit.progress import ProgressEvent


class ProgressView:
    """A rich progress display fed with :class:`ProgressEvent` objects.

    One bar per concept (denoiser calls done / needed, with ETA); other stages are
    printed as log lines.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[concept]}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "calibrate" and event.concept is not None:
            task = self._tasks.get(event.concept)
            detail = ""
            if event.batch is not None:
                detail = f"batch {event.batch}/{event.batches}"
            if event.timestep is not None:
                detail += f" · call {event.timestep}/{event.timesteps}"
            if event.accumulator_bytes:
                detail += f" · stats {human_bytes(event.accumulator_bytes)}"
            if task is None:
                task = self.progress.add_task("", total=event.total, concept=event.concept, detail=detail)
                self._tasks[event.concept] = task
            self.progress.update(task, total=event.total, completed=event.completed, detail=detail)
        elif event.stage != "done":
            self.progress.console.log(event.message)


def human_bytes(count: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def edited_label(report: dict[str, Any]) -> str:
    """What the pruned fraction is relative to: ``UNet`` or the edited components."""
    edited = report.get("edited_components", ["unet"])
    return "UNet" if edited == ["unet"] else " and ".join(edited)


def layer_table(report: dict[str, Any]) -> Table:
    """Pruned weights per layer and in total (% of the edited components: the UNet, usually)."""
    table = Table(title="Pruned weights", show_footer=True)
    totals = report["totals"]
    table.add_column("layer", footer="total")
    table.add_column("shape")
    table.add_column("pruned", justify="right", footer=f"{totals['pruned_weights']:,}")
    table.add_column(
        "% of layer", justify="right", footer=f"{100 * totals['pruned_fraction']:.4f}% of {edited_label(report)}"
    )
    for layer in report["layers"]:
        out_f, in_f = layer["shape"]
        table.add_row(
            layer["name"], f"{out_f}x{in_f}", f"{layer['pruned']:,}", f"{100 * layer['pruned'] / (out_f * in_f):.3f}%"
        )
    return table


def concept_table(report: dict[str, Any]) -> Table:
    """One row per concept: settings, target, calls, statistics size, time, pruned count."""
    table = Table(title="Concepts")
    columns = ("concept", "target", "pairs", "skill_ratio", "tau", "batch", "UNet calls", "stats", "seconds", "pruned")
    for column in columns:
        table.add_column(column, justify="left" if column == "concept" else "right")
    for c in report["concepts"]:
        table.add_row(
            c["name"],
            c.get("target", "ffn") + ("" if c.get("stream", "image") == "image" else f" ({c['stream']})"),
            str(c["prompt_pairs"]),
            f"{c['skill_ratio']:g}",
            "-" if c.get("timesteps_note") else str(c["timesteps"]),
            str(c["batch_size"]),
            str(c["unet_calls"]),
            human_bytes(c["accumulator_bytes"]) if "accumulator_bytes" in c else "",
            f"{c['calibrate_seconds']:.1f}",
            f"{c['pruned_weights']:,}",
        )
    return table


class UploadView:
    """A rich progress bar for ``upload`` events (bytes sent over all files)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> UploadView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "upload" and event.total is not None:
            label = f"{event.batch}/{event.batches} {event.message}" if event.batch else event.message
            if self._task is None:
                self._task = self.progress.add_task(label, total=event.total)
            self.progress.update(self._task, description=label, completed=event.completed or 0, total=event.total)
        elif event.stage != "done":
            self.progress.console.log(event.message)
