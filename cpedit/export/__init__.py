"""Exports of an edited pipeline in other layouts: one single-file checkpoint for ComfyUI, A1111 and Forge.

The names below are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cpedit._lazy import lazy_exports

if TYPE_CHECKING:
    from cpedit.export.single_file import SingleFileExport, check_single_file_target, export_single_file

_EXPORTS = {
    "SingleFileExport": "cpedit.export.single_file",
    "check_single_file_target": "cpedit.export.single_file",
    "export_single_file": "cpedit.export.single_file",
}
"""Public name -> the module that defines it (imported when the name is first used)."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
