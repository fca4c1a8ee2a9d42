"""The output folder: the pruned pipeline written atomically, and its ``conceptprune/`` record
(report, positions, recipes as used, evaluations, preview) with its one validated reader.

The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.output.folder import check_output_target
    from cpedit.output.preview import render_preview, save_preview
    from cpedit.output.record import (
        EditRecord,
        OutputRecord,
        Report,
        read_edit,
        read_evaluations,
        read_output,
        read_report,
    )

_EXPORTS = {
    "check_output_target": "cpedit.output.folder",
    "EditRecord": "cpedit.output.record",
    "OutputRecord": "cpedit.output.record",
    "read_edit": "cpedit.output.record",
    "read_evaluations": "cpedit.output.record",
    "read_output": "cpedit.output.record",
    "read_report": "cpedit.output.record",
    "render_preview": "cpedit.output.preview",
    "Report": "cpedit.output.record",
    "save_preview": "cpedit.output.preview",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
