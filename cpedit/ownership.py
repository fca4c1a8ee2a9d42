"""Deleting and replacing only what cpedit can prove it wrote.

A user's files can sit where cpedit writes (an output folder given twice, a file under a
sweep's ``points/``, a recipe of the same name in a tune folder). cpedit removes or replaces a
path only with a proof that it wrote it:

- a temporary name this process chose (:func:`cpedit.durable.temporary_name`:
  ``.NAME.partial-PID-XXXXXXXX`` or ``.NAME.old-PID-XXXXXXXX`` with this process's PID), or
- a marker cpedit writes: files inside a folder (an output's ``conceptprune/report.json``),
  or text on a file's first line (a tuned recipe's ``# ..., tuned by cpedit tune`` comment).

Without the proof it refuses with :class:`NotOursError`, naming the path and what is missing.
A folder that is removed is first renamed to a temporary name, then deleted: a kill -9 midway
leaves only a hidden temporary that the next run clears (:func:`cpedit.durable.remove_stale_temporaries`),
never a half-deleted folder that looks like something else.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from cpedit.durable import fsync_folder, is_temporary_name, temporary_name
from cpedit.errors import CpeditError

FIRST_LINE_BYTES = 4096
"""How much of a file's first line is read to look for its marker."""


class NotOursError(CpeditError):
    """cpedit was about to delete or replace something it cannot prove it wrote, and refused.

    ``path`` is the entry kept; ``reason`` is ``not_ours``.
    """


def chosen_by_this_process(path: Path) -> bool:
    """Whether ``path``'s name is a temporary name this process chose (``.NAME.partial-PID-...`` with our PID)."""
    name = path.name
    if not is_temporary_name(name):
        return False
    tail = name.rsplit(".", 1)[-1]  # partial-PID-XXXXXXXX or old-PID-XXXXXXXX
    parts = tail.split("-")
    return len(parts) == 3 and parts[1] == str(os.getpid())


def has_markers(folder: Path, markers: Sequence[str]) -> bool:
    """Whether ``folder`` (not a link) holds every marker file (relative paths), none of them through a link."""
    if folder.is_symlink() or not folder.is_dir() or not markers:
        return False
    for marker in markers:
        entry = folder
        for part in Path(marker).parts:
            entry = entry / part
            if entry.is_symlink():
                return False
        if not entry.is_file():
            return False
    return True


def first_line_has(path: Path, marker: str) -> bool:
    """Whether ``path`` is a regular file (not a link) whose first line is a ``#`` comment containing ``marker``."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            head = handle.read(FIRST_LINE_BYTES)
    except OSError:
        return False
    line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    return line.startswith("#") and marker in line


def _refuse(path: Path, action: str, missing: str, argument: str | None) -> NotOursError:
    return NotOursError(
        f"{path} was not written by cpedit ({missing}), so cpedit will not {action} it; "
        "move it away yourself or choose another place",
        path=str(path),
        reason="not_ours",
        argument=argument,
    )


def set_aside(
    path: Path, *, markers: Sequence[str], allow_empty: bool = False, argument: str | None = None
) -> Path | None:
    """Rename a folder cpedit wrote to a temporary name of this process, to be replaced or removed.

    Args:
        path: The folder.
        markers: Files (relative paths) that prove cpedit wrote it.
        allow_empty: An empty folder needs no proof (nothing in it can be lost).
        argument: The library argument ``path`` came from, for the error.

    Returns:
        The temporary path (``.NAME.old-PID-XXXXXXXX``), or None when nothing is at ``path``.

    Raises:
        NotOursError: ``path`` is a link, a file, or a folder without the markers.
    """
    if not os.path.lexists(path):
        return None
    if chosen_by_this_process(path):
        return path
    empty = allow_empty and not path.is_symlink() and path.is_dir() and not any(path.iterdir())
    if not empty and not has_markers(path, markers):
        raise _refuse(path, "delete or replace", f"no {', '.join(markers)}", argument)
    moved = path.with_name(temporary_name(path.name, kind="old"))
    path.rename(moved)
    fsync_folder(path.parent)
    return moved


def remove_folder(path: Path, *, markers: Sequence[str] = (), argument: str | None = None) -> bool:
    """Delete a folder cpedit wrote: one with the ``markers``, or a temporary name this process chose.

    The folder is renamed to a temporary name first (see the module docstring), then deleted.

    Returns:
        Whether something was removed (False: nothing was at ``path``).

    Raises:
        NotOursError: ``path`` is not provably cpedit's; it is left as it was.
    """
    moved = set_aside(path, markers=markers, argument=argument)
    if moved is None:
        return False
    if moved.is_symlink() or not moved.is_dir():
        moved.unlink(missing_ok=True)  # a temporary file of ours
    else:
        shutil.rmtree(moved, ignore_errors=True)  # what is left keeps a temporary name: the next run clears it
    return True


def check_replaceable_file(path: Path, *, marker: str, argument: str | None = None) -> None:
    """Refuse to replace ``path`` unless it is missing or a file whose first-line comment carries ``marker``.

    Raises:
        NotOursError: ``path`` is a link, a folder, or a file without the marker; it is left as it was.
    """
    if not os.path.lexists(path):
        return
    if not first_line_has(path, marker):
        raise _refuse(path, "replace", f"its first line has no '# ... {marker}' comment", argument)
