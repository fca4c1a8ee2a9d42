"""Messages the app's thread workers send back to the UI thread (Textual messages are thread-safe to post)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from cpedit.progress import ProgressEvent


class Progress(Message):
    """A progress event of the library, from a worker."""

    def __init__(self, event: ProgressEvent, *, group: str, memory_bytes: int | None = None) -> None:
        super().__init__()
        self.event = event
        self.group = group
        """Which work it belongs to (``run``, ``save``, ``preview``, ``push``)."""
        self.memory_bytes = memory_bytes
        """Memory in use on the run's device when the event was sent (None: not measured)."""


class SessionOpened(Message):
    """A run loaded its model: where it computes (``cpu``, ``cuda:0``, ...)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device


class WorkDone(Message):
    """A worker finished: ``result`` on success, else ``error`` (a cancel is a :class:`cpedit.Cancelled`)."""

    def __init__(self, *, group: str, result: Any = None, error: BaseException | None = None) -> None:
        super().__init__()
        self.group = group
        self.result = result
        self.error = error

    @property
    def ok(self) -> bool:
        """Whether the work succeeded."""
        return self.error is None


def post_outcome(target: Any, group: str, work: Any) -> None:
    """Call ``work()`` (inside a thread worker) and post its :class:`WorkDone` to ``target`` (a widget or the app).

    Every error is posted, never raised: the app shows it and stays usable.
    """
    try:
        result = work()
    except BaseException as exc:  # noqa: BLE001 - shown in the app, whatever it is
        target.post_message(WorkDone(group=group, error=exc))
    else:
        target.post_message(WorkDone(group=group, result=result))
