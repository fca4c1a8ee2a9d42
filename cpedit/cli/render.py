"""Rendering library progress events and reports with rich."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console, RenderableType
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
from rich.table import Table

from cpedit.progress import ProgressEvent
from cpedit.record import Report


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


class _ByUnit(ProgressColumn):
    """One column for tasks that count bytes (``unit`` field ``bytes``), another for the others."""

    def __init__(self, for_bytes: ProgressColumn, for_others: ProgressColumn) -> None:
        super().__init__()
        self.for_bytes = for_bytes
        self.for_others = for_others

    def render(self, task: Task) -> RenderableType:
        column = self.for_bytes if task.fields.get("unit") == "bytes" else self.for_others
        return column.render(task)


class ProgressView:
    """A rich progress display fed with :class:`ProgressEvent` objects.

    One bar per concept (denoiser calls done / needed, with ETA), one byte bar per download
    (size done / total, speed, ETA, the file being fetched), one bar per other counted step
    (layers scored, files copied, images rendered); other events are printed as log lines.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[concept]}[/]"),
            BarColumn(),
            _ByUnit(DownloadColumn(), MofNCompleteColumn()),
            TextColumn("{task.fields[detail]}"),
            _ByUnit(TransferSpeedColumn(), TimeElapsedColumn()),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage == "calibrate" and event.concept is not None:
            detail = ""
            if event.batch is not None:
                detail = f"batch {event.batch}/{event.batches}"
            if event.timestep is not None:
                detail += f" · call {event.timestep}/{event.timesteps}"
            if event.accumulator_bytes:
                detail += f" · stats {human_bytes(event.accumulator_bytes)}"
            self._update(("calibrate", event.concept), event, concept=event.concept, detail=detail)
        elif is_transfer(event):
            key = (event.stage, "")
            if key not in self._tasks:
                self.progress.console.log(event.message)
                if _nothing_to_transfer(event):
                    return
            self._update(key, event, concept=event.stage, detail=transfer_label(event))
        elif event.total is not None and event.unit is not None and event.stage != "done":
            # Counted work of other stages (layers scored, files copied, images rendered): a bar each.
            label = f"{event.stage} {event.concept}" if event.concept else event.stage
            self._update((event.stage, event.concept or ""), event, concept=label, detail=event.file or "")
        elif event.stage != "done":
            self.progress.console.log(event.message)

    def _update(self, key: tuple[str, str], event: ProgressEvent, *, concept: str, detail: str) -> None:
        task = self._tasks.get(key)
        if task is None:
            task = self.progress.add_task(
                "",
                total=event.total,
                completed=event.completed or 0,
                concept=concept,
                detail=detail,
                unit=event.unit or "",
            )
            self._tasks[key] = task
        self.progress.update(task, total=event.total, completed=event.completed, detail=detail)


def human_bytes(count: int) -> str:
    """``1536`` -> ``1.5 KiB``."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def layer_table(report: Report) -> Table:
    """Pruned weights per layer and in total (% of the edited components: the UNet, usually)."""
    table = Table(title="Pruned weights", show_footer=True)
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


def concept_table(report: Report) -> Table:
    """One row per concept: settings, target, calls, statistics size, time, pruned count."""
    table = Table(title="Concepts")
    columns = ("concept", "target", "pairs", "skill_ratio", "tau", "batch", "UNet calls", "stats", "seconds", "pruned")
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
            str(c.unet_calls),
            human_bytes(c.accumulator_bytes) if c.accumulator_bytes else "",
            f"{c.calibrate_seconds:.1f}",
            f"{c.pruned_weights:,}",
        )
    return table


class TransferView:
    """A rich display of downloads and uploads: a byte bar per ``download`` or ``upload`` stage.

    Each bar shows the bytes done / in all, the speed, the ETA and the file being transferred;
    other events (loading, sampling, ...) are printed as log lines.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[stage]}[/]"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.description}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> TransferView:
        self.progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def __call__(self, event: ProgressEvent) -> None:
        if is_transfer(event):
            label = transfer_label(event)
            task = self._tasks.get(event.stage)
            if task is None:
                self.progress.console.log(event.message)
                if _nothing_to_transfer(event):
                    return
                task = self.progress.add_task(
                    label, total=event.total, completed=event.completed or 0, stage=event.stage
                )
                self._tasks[event.stage] = task
            self.progress.update(task, description=label, completed=event.completed or 0, total=event.total)
        elif event.stage != "done":
            self.progress.console.log(event.message)
