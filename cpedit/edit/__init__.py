"""The edit itself: calibrate once, select skilled weights, apply and restore them, and the
one-call :func:`prune` that composes a session.

The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.edit.collapse import CollapseGuard, check_collapse
    from cpedit.edit.memory import MemoryEstimate, estimate_memory
    from cpedit.edit.prune import PruneResult, prune
    from cpedit.edit.selection import Selection
    from cpedit.edit.session import EditSession, SaveResult

_EXPORTS = {
    "CollapseGuard": "cpedit.edit.collapse",
    "check_collapse": "cpedit.edit.collapse",
    "EditSession": "cpedit.edit.session",
    "MemoryEstimate": "cpedit.edit.memory",
    "estimate_memory": "cpedit.edit.memory",
    "prune": "cpedit.edit.prune",
    "PruneResult": "cpedit.edit.prune",
    "SaveResult": "cpedit.edit.session",
    "Selection": "cpedit.edit.selection",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
