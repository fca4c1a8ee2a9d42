"""Writing files and folders so that a crash (kill -9, power loss, full disk) never leaves one that looks complete.

Everything cpedit writes goes through a temporary name in the same folder and a rename:

- a file ``NAME`` is written as ``.NAME.partial-PID-XXXXXXXX`` (hidden; ``PID`` is the writing
  process, ``XXXXXXXX`` 8 random hex digits), flushed to the disk (``fsync``), renamed over
  ``NAME``, then the folder is flushed so the rename itself survives a power loss;
- an output folder ``OUT`` is written as ``.OUT.partial-PID-XXXXXXXX`` the same way (see
  :func:`cpedit.output.folder.atomic_folder`); a replaced one waits as ``.OUT.old-PID-XXXXXXXX``
  until the new one is in place.

These names are the only leftovers a killed run can leave, and they are recognisable: the next
write of the same ``NAME`` (or the next run to the same ``OUT``) removes those whose process no
longer runs (:func:`remove_stale_temporaries`). A running process's temporaries are never touched.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from cpedit.errors import CpeditError

STALE_WITHOUT_PID_SECONDS = 24 * 3600
"""A temporary of an older cpedit (no PID in its name) is removed only once it is this old."""

_TEMPORARY = re.compile(r"^\..+\.(partial|old)(-(\d+-)?[0-9a-f]{8})?$")


def temporary_name(name: str, *, kind: str = "partial") -> str:
    """The hidden temporary name this process uses for ``name``: ``.NAME.partial-PID-XXXXXXXX`` (or ``.old-``)."""
    return f".{name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


TEMPORARY_NAME_EXTRA = len("..partial-") + 10 + len("-") + 8
"""Bytes a temporary name adds to ``NAME`` at most (``.NAME.partial-PID-XXXXXXXX``, PIDs up to 10 digits)."""


def check_name_fits(path: Path, *, argument: str | None = None) -> None:
    """Refuse a name too long for its filesystem once it carries a temporary name's additions.

    Everything is first written under :func:`temporary_name`, which is longer than ``NAME``: a name
    that fits (255 bytes on most filesystems) but whose temporary does not would fail only at the
    first write, after the work. Checked up front instead.

    Raises:
        CpeditError: ``reason="too_long"``; the message gives the most bytes a name may have there.
    """
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        limit = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    size = len(os.fsencode(path.name))
    if size + TEMPORARY_NAME_EXTRA > limit:
        shown = path.name if len(path.name) <= 40 else path.name[:37] + "..."
        raise CpeditError(
            f"the name {shown!r} is {size} bytes long; names there are at most {limit} bytes and cpedit first "
            f"writes under a temporary name up to {TEMPORARY_NAME_EXTRA} bytes longer, so give a name of at most "
            f"{limit - TEMPORARY_NAME_EXTRA} bytes",
            path=str(path),
            reason="too_long",
            argument=argument,
        )


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one of cpedit's temporary names (``.NAME.partial-PID-XXXXXXXX``, ``.NAME.old-...``).

    Older cpedit versions' names (``.NAME.partial``, ``.NAME.partial-XXXXXXXX``) count too.
    """
    return bool(_TEMPORARY.match(name))


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (on this machine); True when it cannot be told."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or cannot tell: keep its files
    return True


def remove_stale_temporaries(folder: Path, name: str, *, kinds: tuple[str, ...] = ("partial",)) -> list[Path]:
    """Remove the temporaries of ``folder/name`` left by processes that no longer run.

    Matched: ``.NAME.KIND-PID-*`` for each of ``kinds`` (``partial``, ``old``), files or folders
    (never through a symbolic link). A temporary whose PID runs is kept; one without a PID in its
    name (an older cpedit's, e.g. ``.NAME.partial``) only once it is a day old.

    Returns:
        The entries removed.
    """
    if not folder.is_dir():
        return []
    removed = []
    for kind in kinds:
        prefix = f".{name}.{kind}"
        for entry in folder.iterdir():
            rest = entry.name[len(prefix) :]
            if not entry.name.startswith(prefix) or (rest and not rest.startswith("-")):
                continue
            pid_text = rest[1:].split("-", 1)[0]
            try:
                if pid_text.isdigit() and "-" in rest[1:]:
                    if process_alive(int(pid_text)):
                        continue
                elif time.time() - entry.lstat().st_mtime < STALE_WITHOUT_PID_SECONDS:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
            except OSError:
                continue  # gone meanwhile, or not ours to remove: never a reason to fail the run
            removed.append(entry)
    return removed


def _fsync(fd: int) -> None:
    """``os.fsync``, the one place cpedit flushes to the disk (the crash tests stop the process here)."""
    os.fsync(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        _fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: Path) -> None:
    """Flush a folder's entries (renames, new files) to the disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # Windows: folders cannot be opened; renames there are durable through NTFS's journal
    try:
        _fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise  # some filesystems cannot flush a folder: nothing more can be done there
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Flush every file of a folder tree, then each folder (deepest first), to the disk."""
    folders = []
    for walked, _dirs, names in os.walk(root):
        for name in names:
            path = Path(walked) / name
            if not path.is_symlink():
                fsync_file(path)
        folders.append(Path(walked))
    for folder in reversed(folders):
        fsync_folder(folder)


def free_bytes(path: Path) -> int | None:
    """Free space (bytes, for this user) on the filesystem of ``path`` or its nearest existing parent."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def format_bytes(size: int) -> str:
    """``size`` for people: ``512 B``, ``14.2 MB``, ``4.27 GB`` (decimal units, as disks are sold)."""
    if size < 1000:
        return f"{size} B"
    for unit, scale in (("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12)):
        if size < scale * 1000 or unit == "TB":
            value = size / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def no_space_error(
    target: Path, *, needed: int | None, what: str, argument: str | None = "out", written: str = "nothing was written"
) -> CpeditError:
    """The message for a full disk: the target, the space needed (when known) and the space free."""
    free = free_bytes(target.parent)
    amounts = []
    if needed is not None:
        amounts.append(f"it needs about {format_bytes(needed)}")
    if free is not None:
        amounts.append(f"{format_bytes(free)} {'is' if free < 1000 else 'are'} free there")
    detail = f" ({', '.join(amounts)})" if amounts else ""
    return CpeditError(
        f"no space left on the device to write {what} {target}{detail}; {written}: free space or choose "
        "a place on another disk",
        path=str(target),
        reason="no_space",
        argument=argument,
    )


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is a full disk (ENOSPC or EDQUOT), also when a library reports it as its own error."""
    if isinstance(exc, CpeditError):
        return exc.reason == "no_space"
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    text = str(exc)
    return "No space left on device" in text or "StorageFull" in text or "os error 28" in text


def write_error(
    exc: OSError,
    target: Path,
    *,
    what: str,
    needed: int | None = None,
    argument: str | None = None,
    written: str = "nothing was written",
) -> CpeditError:
    """The error for an ``OSError`` met while writing ``what`` at ``target``: a full disk or a place not writable.

    The path named is the one the system names (``exc.filename``: a file inside ``target``, say)
    unless that is one of cpedit's temporary names or a folder above ``target``, else ``target``;
    ``written`` says what was kept (``nothing was written``, ``it was left as it was``).

    Returns:
        A :class:`CpeditError` with ``reason`` ``no_space`` or ``unwritable``.
    """
    named = Path(exc.filename) if isinstance(exc.filename, str) else None
    where = target
    if named is not None and not is_temporary_name(named.name) and named not in target.parents:
        where = named
    if is_no_space(exc):
        return no_space_error(where, needed=needed, what=what, argument=argument, written=written)
    return CpeditError(
        f"cannot write {what} {where} ({exc.strerror or exc}); {written}",
        path=str(where),
        reason="unwritable",
        argument=argument,
    )


def write_bytes_atomically(path: Path, data: bytes, *, what: str = "the file", argument: str | None = None) -> Path:
    """Write ``data`` to ``path`` through a hidden temporary file, ``fsync`` and a rename: never half-written.

    Missing parent folders are created. Stale temporaries of ``path`` (of killed processes) are
    removed first. On any failure (Ctrl-C included) the temporary file is removed and ``path``
    is left as it was.

    Args:
        path: The file to write.
        data: Its content.
        what: What the file is, for messages (``the evaluation result``).
        argument: The library argument ``path`` came from, if any (errors carry it).

    Raises:
        CpeditError: The disk is full (``reason="no_space"``: the message gives the size needed and
            the space free) or the place is not writable (``unwritable``).
    """
    temporary: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent, path.name)
        temporary = path.with_name(temporary_name(path.name))
        with open(temporary, "xb") as handle:
            handle.write(data)
            handle.flush()
            _fsync(handle.fileno())
        if path.exists():
            shutil.copymode(path, temporary)
        os.replace(temporary, path)
        temporary = None
        fsync_folder(path.parent)
    except OSError as exc:
        raise write_error(
            exc, path, what=what, needed=len(data), argument=argument, written="it was left as it was"
        ) from None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    return path


def write_each(writes: Sequence[Callable[[], Path]]) -> list[Path]:
    """Run every write (each returning the path it wrote), also those after one that fails.

    Where one result goes to several places (an output's record and a file elsewhere), a full
    disk or a read-only folder at one place must not lose the others.

    Returns:
        The paths written, in order.

    Raises:
        CpeditError: Some writes failed: the first failure's fields, a message naming each
            failure and the paths that were written.
    """
    written: list[Path] = []
    failures: list[CpeditError] = []
    for write in writes:
        try:
            written.append(write())
        except CpeditError as exc:
            failures.append(exc)
    if failures:
        kept = f"; {', '.join(map(str, written))} {'was' if len(written) == 1 else 'were'} written" if written else ""
        first = failures[0]
        raise CpeditError(
            "; ".join(map(str, failures)) + kept, path=first.path, reason=first.reason, argument=first.argument
        )
    return written
