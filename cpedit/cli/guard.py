"""What every long-running command does around its work: SIGTERM like Ctrl-C, library warnings shown.

``kill PID`` (SIGTERM, what schedulers and ``timeout`` send) stops a run exactly as Ctrl-C
does: the work is interrupted, temporary folders are removed and the command exits with
130 ("Interrupted; nothing was written", or what was kept: :func:`keep_on_interrupt`). The
library reports suspicious but non-fatal things as :class:`~cpedit.errors.CpeditWarning` (it
never prints); they are shown here as ``Warning: ...`` lines on stderr.
"""

from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click

from cpedit.errors import CpeditWarning
from cpedit.text import escape_unsafe

KEPT_ON_INTERRUPT = "cpedit.kept_on_interrupt"
"""The ``click`` context's ``meta`` key for what an interrupted command kept (see :func:`keep_on_interrupt`)."""


def keep_on_interrupt(note: str) -> None:
    """Say what an interrupt (Ctrl-C, SIGTERM) leaves of this command's work, instead of "nothing was written".

    ``note`` ends ``Interrupted; ...`` (``the points finished so far are kept in sw/sweep.json``).
    """
    click.get_current_context().meta[KEPT_ON_INTERRUPT] = note


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread for the block (the previous handler is put back)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def show_warnings() -> Iterator[None]:
    """Print each :class:`CpeditWarning` raised in the block as ``Warning: ...`` on stderr, once."""
    original = warnings.showwarning
    seen: set[str] = set()

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if isinstance(message, CpeditWarning) or (isinstance(category, type) and issubclass(category, CpeditWarning)):
            text = escape_unsafe(str(message))
            if text not in seen:
                seen.add(text)
                click.echo(f"Warning: {text}", err=True)
            return
        original(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("always", CpeditWarning)
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = original


@contextmanager
def command_guard() -> Iterator[None]:
    """:func:`terminate_as_interrupt` and :func:`show_warnings` together, for commands that run long."""
    with terminate_as_interrupt(), show_warnings():
        yield
