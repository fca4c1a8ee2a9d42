"""Nested run progress: concept, prompt batch and denoiser call, with ETA, device and memory in use."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from tui.state import RunProgress

STAGE_WORDS = {
    "download": "downloading",
    "load": "loading",
    "calibrate": "calibrating",
    "score": "selecting",
    "prune": "pruning",
    "restore": "restoring",
    "save": "saving",
    "sample": "rendering",
    "upload": "uploading",
    "done": "done",
    "cancelled": "cancelled",
    "failed": "failed",
}


def format_seconds(seconds: float | None) -> str:
    """``75.2`` -> ``1:15`` (``--:--`` when unknown)."""
    if seconds is None:
        return "--:--"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bytes(count: int | None) -> str:
    """``1536`` -> ``1.5 KiB``."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def describe_progress(progress: RunProgress) -> tuple[str, str, str]:
    """The three lines of the view: what runs, where it is inside it, and where it runs."""
    if not progress.stage:
        return ("idle: queue recipes, then ctrl+r runs them", "", "")
    what = STAGE_WORDS.get(progress.stage, progress.stage)
    head = f"{what} · {progress.message}"
    if progress.concepts and progress.stage == "calibrate":
        head = f"concept {max(progress.concept_index, 1)}/{progress.concepts} · {progress.concept} · {what}"
    parts = []
    if progress.batch is not None and progress.batches:
        parts.append(f"prompt batch {progress.batch}/{progress.batches}")
    if progress.timestep is not None and progress.timesteps:
        parts.append(f"denoiser call {progress.timestep}/{progress.timesteps}")
    if progress.unit == "bytes" and progress.total:
        parts.append(f"{format_bytes(progress.completed)} of {format_bytes(progress.total)}")
    elif progress.total:
        parts.append(f"{progress.completed or 0}/{progress.total} {progress.unit or ''}".rstrip())
    if progress.fraction is not None and progress.fraction < 1:
        parts.append(f"ETA {format_seconds(progress.eta_seconds())}")
    where = f"device {progress.device or '?'}"
    if progress.memory_bytes is not None:
        where += f" · memory in use {format_bytes(progress.memory_bytes)}"
    return head, " · ".join(parts), where


class RunProgressView(Vertical):
    """Renders a :class:`~tui.state.RunProgress`: a headline, a bar for the current step and the details."""

    DEFAULT_CSS = """
    RunProgressView { height: auto; border: round $primary; padding: 0 1; }
    RunProgressView #progress-head { text-style: bold; }
    RunProgressView ProgressBar { width: 1fr; }
    RunProgressView ProgressBar Bar { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="progress-head", markup=False)
        yield ProgressBar(total=None, show_eta=False, id="progress-bar")
        yield Static(id="progress-detail", classes="muted", markup=False)
        yield Static(id="progress-where", classes="muted", markup=False)

    def show(self, progress: RunProgress) -> None:
        """Render ``progress``."""
        head, detail, where = describe_progress(progress)
        self.query_one("#progress-head", Static).update(head)
        self.query_one("#progress-detail", Static).update(detail)
        self.query_one("#progress-where", Static).update(where)
        bar = self.query_one(ProgressBar)
        # idle, cancelled or failed: no bar (an indeterminate one would pulse for nothing)
        bar.display = bool(progress.stage) and progress.stage not in ("cancelled", "failed")
        if progress.stage == "done":
            bar.update(total=1, progress=1)
        elif progress.total:
            bar.update(total=progress.total, progress=progress.completed or 0)
        else:
            bar.update(total=None)
