"""Rendering library progress events and reports with rich."""

from __future__ import annotations

from types import TracebackType

import click
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column
from rich.text import Text

from cpedit.cli.layout import FittedTable
from cpedit.output.record import Report
from cpedit.progress import ProgressEvent
from cpedit.text import escape_unsafe


def is_transfer(event: ProgressEvent) -> bool:
    """Whether ``event`` reports bytes of a download or an upload (shown as a byte bar)."""
    return event.stage in ("download", "upload") and event.unit == "bytes" and event.total is not None


def _nothing_to_transfer(event: ProgressEvent) -> bool:
    """A transfer's first event says it is already complete (a model found in the Hub cache): a log line, no bar."""
    return event.file is None and event.completed == event.total


def transfer_label(event: ProgressEvent) -> str:
    """``3/12 unet/diffusion_pytorch_model.safetensors`` for a file's bytes, else the event's message."""
    if event.file is not None and event.file_index is not None and event.files is not None:
        return f"{event.file_index}/{event.files} {event.file}"
    return event.message


NARROW = 120
"""Below this many columns a bar's detail goes on a line under its label, so its counts and ETA keep their room."""


class _ByUnit(ProgressColumn):
    """One column for tasks that count bytes (``unit`` field ``bytes``), another for the others; never wrapped."""

    def __init__(self, for_bytes: ProgressColumn, for_others: ProgressColumn) -> None:
        super().__init__(table_column=Column(no_wrap=True))
        self.for_bytes = for_bytes
        self.for_others = for_others

    def render(self, task: Task) -> RenderableType:
        column = self.for_bytes if task.fields.get("unit") == "bytes" else self.for_others
        return column.render(task)


class _Label(ProgressColumn):
    """The task's ``label`` in bold; with ``stacked``, its ``detail`` on the line below (folded, never cut)."""

    def __init__(self, *, stacked: bool) -> None:
        super().__init__(table_column=Column(overflow="fold"))
        self.stacked = stacked

    def render(self, task: Task) -> RenderableType:
        label = Text(task.fields.get("label", ""), style="bold")
        detail = task.fields.get("detail", "")
        if not (self.stacked and detail):
            return label
        return Group(label, Padding(Text(detail), (0, 0, 0, 2)))


def progress_display(console: Console) -> Progress:
    """A rich :class:`Progress` whose tasks carry ``label``, ``detail`` and ``unit`` fields.

    One line per task (label, bar, counts, detail, elapsed time or speed, ETA) on a wide
    console; below :data:`NARROW` columns the detail goes under the label and the bar is
    shorter, so that no count, time or ETA is cut at 80 columns.
    """
    stacked = console.width < NARROW
    columns: list[ProgressColumn] = [
        SpinnerColumn(),
        _Label(stacked=stacked),
        BarColumn(bar_width=16 if stacked else 40),
        _ByUnit(DownloadColumn(), MofNCompleteColumn()),
    ]
    if not stacked:
        columns.append(TextColumn("{task.fields[detail]}", table_column=Column(overflow="fold")))
    columns += [
        _ByUnit(TransferSpeedColumn(), TimeElapsedColumn()),
        TextColumn("ETA", table_column=Column(no_wrap=True)),
        TimeRemainingColumn(table_column=Column(no_wrap=True)),
    ]
    return Progress(*columns, console=console, transient=False)


def _detail(event: ProgressEvent) -> str:
    """``batch 1/2 · call 3/10 · stats 70.0 KiB`` (calibration), ``batch 2/4 · step 12/25`` (images), a file."""
    if is_transfer(event):
        return transfer_label(event)
    parts = []
    if event.batch is not None:
        parts.append(f"batch {event.batch}/{event.batches}")
    if event.timestep is not None:
        parts.append(f"{'call' if event.stage == 'calibrate' else 'step'} {event.timestep}/{event.timesteps}")
    if event.accumulator_bytes:
        parts.append(f"stats {human_bytes(event.accumulator_bytes)}")
    if event.file:
        parts.append(event.file)
    return " · ".join(parts)


def _shown_completed(event: ProgressEvent) -> float:
    """``completed``, plus the share of the batch in flight that its denoising steps have done.

    Image events count whole images; a batch of 64 would move the bar (and its ETA) in
    jumps of 64, so the images of the batch in flight (the images left over the batches
    left: exact for the last batch and for one image a batch) count in proportion to
    ``timestep / timesteps``. Never more than the next batch's start count.
    """
    completed = float(event.completed or 0)
    if (
        event.unit != "images"
        or event.timestep is None
        or not event.timesteps
        or event.batch is None
        or not event.batches
        or event.total is None
    ):
        return completed
    in_flight = (event.total - completed) / max(event.batches - event.batch + 1, 1)
    return completed + in_flight * min(event.timestep / event.timesteps, 1.0)


class ProgressView:
    """A rich progress display fed with :class:`ProgressEvent` objects.

    One bar per concept (denoiser calls done / needed, with ETA), one byte bar per download
    (size done / total, speed, ETA, the file being fetched), one bar per other counted step
    (layers scored, files copied, images rendered with their batch and denoising step);
    other events are printed as log lines. Readable at 80 columns (see :func:`progress_display`).
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = progress_display(console)
        self._tasks: dict[tuple[str, str], TaskID] = {}
        self._completed: dict[tuple[str, str], float] = {}

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    counted_bars = True
    """Bars for calibration and other counted work (False: byte bars only, the rest as log lines)."""

    def __call__(self, event: ProgressEvent) -> None:
        if is_transfer(event):
            key = (event.stage, "")
            if key not in self._tasks:
                self.progress.console.log(event.message)
                if _nothing_to_transfer(event):
                    return
            self._update(key, event, label=event.stage)
        elif not self.counted_bars or event.stage == "done":
            if event.stage != "done":
                self.progress.console.log(event.message)
        elif event.stage == "calibrate" and event.concept is not None:
            self._update(("calibrate", event.concept), event, label=event.concept)
        elif event.total is not None and event.unit is not None:
            label = f"{event.stage} {event.concept}" if event.concept else event.stage
            self._update((event.stage, event.concept or ""), event, label=label)
        else:
            self.progress.console.log(event.message)

    def _update(self, key: tuple[str, str], event: ProgressEvent, *, label: str) -> None:
        completed = _shown_completed(event)
        detail = _detail(event)
        task = self._tasks.get(key)
        # rich annotates add_task's and reset's ``completed`` as int, but stores and draws a float
        # (Task.completed, update(completed=float)): the share of the batch in flight is fractional.
        if task is None:
            self._tasks[key] = self.progress.add_task(
                "",
                total=event.total,
                completed=completed,  # type: ignore[arg-type]  # float, as above
                label=label,
                detail=detail,
                unit=event.unit or "",
            )
        elif completed < self._completed[key]:  # the same step again (the next sweep point)
            self.progress.reset(  # reset replaces the fields
                task,
                total=event.total,
                completed=completed,  # type: ignore[arg-type]  # float, as above
                label=label,
                detail=detail,
                unit=event.unit or "",
            )
        else:
            self.progress.update(task, total=event.total, completed=completed, detail=detail)
        self._completed[key] = completed


def human_bytes(count: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def layer_table(report: Report) -> FittedTable:
    """Pruned weights per layer and in total (% of the edited components: the UNet, usually)."""
    table = FittedTable(title="Pruned weights", show_footer=True)
    totals = report.totals
    table.add_column("layer", footer="total")
    table.add_column("shape")
    table.add_column("pruned", justify="right", footer=f"{totals.pruned_weights:,}")
    table.add_column(
        "% of layer", justify="right", footer=f"{100 * totals.pruned_fraction:.4f}% of {report.edited_label}"
    )
    for layer in report.layers:
        out_f, in_f = layer.shape
        table.add_row(layer.name, f"{out_f}x{in_f}", f"{layer.pruned:,}", f"{100 * layer.pruned / layer.weights:.3f}%")
    return table


def concept_table(report: Report) -> FittedTable:
    """One row per concept: settings, target, denoiser calls, statistics size, time, pruned count."""
    table = FittedTable(title="Concepts")
    columns = ("concept", "target", "pairs", "skill_ratio", "tau", "batch", "calls", "stats", "seconds", "pruned")
    for column in columns:
        table.add_column(column, justify="left" if column == "concept" else "right")
    for c in report.concepts:
        table.add_row(
            c.name,
            c.target + ("" if c.stream == "image" else f" ({c.stream})"),
            str(c.prompt_pairs),
            f"{c.skill_ratio:g}",
            "-" if c.timesteps_note else str(c.timesteps),
            str(c.batch_size),
            str(c.denoiser_calls),
            human_bytes(c.accumulator_bytes) if c.accumulator_bytes else "",
            f"{c.calibrate_seconds:.1f}",
            f"{c.pruned_weights:,}",
        )
    return table


class TransferView(ProgressView):
    """A rich display of downloads and uploads: a byte bar per ``download`` or ``upload`` stage.

    Each bar shows the bytes done / in all, the speed, the ETA and the file being transferred;
    other events (loading, sampling, ...) are printed as log lines.
    """

    counted_bars = False


COLLAPSE_ADVICE = (
    "lower prune.skill_ratio in the recipe (`cpedit tune` finds the least pruning that erases the concept), "
    "or check its prune.target and that its target and base prompts differ only in the concept"
)
"""What to do about a collapsed edit (printed by ``prune``)."""


def collapse_warning(report: Report) -> str | None:
    """The warning line of a collapsed edit (None when the check passed or did not run)."""
    check = report.collapse_check
    if check is None or not check.collapsed:
        return None
    return (
        f"Warning: the edit destroyed generation, not just the concept ({escape_unsafe(check.reason)}). "
        f"The output was written but is probably unusable: {COLLAPSE_ADVICE}."
    )


def warn_if_collapsed(report: Report) -> None:
    """Print :func:`collapse_warning` on stderr, if there is one."""
    warning = collapse_warning(report)
    if warning is not None:
        click.echo(warning, err=True)
