"""The safety of the files in a model or output folder: links, special files, truncated safetensors (no torch).

Which files a pull needs (formats, variants) is :mod:`cpedit.hub.pipeline_files`.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from cpedit.errors import UnsafeFileError

# --- Safety of the files in a folder --------------------------------------------------------
#
# Model folders and output folders come from strangers. Nothing outside the folder may be read,
# copied or uploaded through it: a symbolic link is followed only when it stays inside (a Hub
# cache snapshot's links point to its repo's blobs, which count as inside), and links to
# folders, link loops, dangling links and special files (FIFOs, devices) are refused up front.


def _hub_storage(folder: Path) -> Path | None:
    """The repo storage folder (``models--NS--NAME``) when ``folder`` is a Hub cache snapshot, else None."""
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent
    return None


def allowed_root(folder: Path) -> Path:
    """Where links of ``folder`` may point: the folder itself, or its repo's storage for a Hub cache snapshot."""
    resolved = folder.resolve()
    return _hub_storage(resolved) or resolved


def check_entry(entry: Path, *, root: Path, shown_as: str) -> None:
    """Refuse ``entry`` unless it is a folder or a regular file, any link in it staying under ``root``.

    Raises:
        UnsafeFileError: A link that points outside ``root``, to a folder, nowhere, or into a
            loop; or a FIFO, device or socket.
    """
    if entry.is_symlink():
        try:
            info = entry.stat()
        except FileNotFoundError:
            raise UnsafeFileError(
                f"{shown_as} is a dangling symbolic link (its target does not exist); remove it or replace it "
                "with the file",
                path=str(entry),
                reason="dangling_link",
            ) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(
                    f"{shown_as} is a symbolic link loop; remove it", path=str(entry), reason="link_loop"
                ) from None
            raise UnsafeFileError(
                f"{shown_as} cannot be read ({exc.strerror})", path=str(entry), reason="unreadable"
            ) from None
        target = Path(os.path.realpath(entry))
        if target != root and root not in target.parents:
            raise UnsafeFileError(
                f"{shown_as} is a symbolic link to {target}, outside the folder; cpedit never reads, copies or "
                "uploads files from outside it: replace the link with a copy of the file if you mean to ship it",
                path=str(entry),
                reason="link_outside",
            )
        if stat.S_ISDIR(info.st_mode):
            raise UnsafeFileError(
                f"{shown_as} is a symbolic link to a folder ({target}); replace it with a real folder",
                path=str(entry),
                reason="link_to_folder",
            )
    else:
        try:
            info = entry.lstat()
        except OSError as exc:
            raise UnsafeFileError(
                f"{shown_as} cannot be read ({exc.strerror})", path=str(entry), reason="unreadable"
            ) from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise UnsafeFileError(
            f"{shown_as} is not a regular file (a FIFO, device or socket); remove it",
            path=str(entry),
            reason="not_regular",
        )


def check_folder_files(folder: Path, *, root: Path | None = None, hidden: bool = False) -> None:
    """Check every entry under ``folder`` with :func:`check_entry` (links never followed into folders).

    Args:
        folder: The model or output folder.
        root: Where links may point; default :func:`allowed_root` of ``folder``.
        hidden: Also check hidden entries (names starting with ``.``; cpedit never copies them).

    Raises:
        UnsafeFileError: The first unsafe entry, named relative to ``folder``.
    """
    root = root or allowed_root(folder)
    for current, dirs, names in os.walk(folder, followlinks=False):
        if not hidden:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            names = [n for n in names if not n.startswith(".")]
        for name in sorted([*dirs, *names]):
            entry = Path(current) / name
            check_entry(entry, root=root, shown_as=f"{folder}/{entry.relative_to(folder).as_posix()}")


SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
"""The largest safetensors header accepted (the format's own limit)."""


class _Framing(ValueError):
    """What is wrong with a safetensors file's framing."""


def _framing(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file whose framing holds; :class:`_Framing` saying what is wrong otherwise."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise _Framing(f"it is {size} bytes, too short for a safetensors header")
            length = int.from_bytes(head, "little")
            if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
                raise _Framing(f"its header claims {length:,} bytes but the file is {size:,} bytes (truncated?)")
            header = load_json_text(handle.read(length).decode("utf-8"))
    except _Framing:
        raise
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSON errors are ValueErrors
        raise _Framing(f"its header cannot be read ({exc})") from None
    if not isinstance(header, dict):
        raise _Framing("its header is not a JSON object")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]
        ):
            raise _Framing(f"tensor {name!r} has malformed data_offsets")
        end = max(end, offsets[1])
    data = size - 8 - length
    if end > data:
        raise _Framing(f"it holds {data:,} bytes of tensor data but its header needs {end:,} (truncated)")
    return header


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None: the header parses and the data is all there.

    Reads the 8-byte length and the JSON header only (never the tensors): a file cut short by
    an interrupted download or copy, or one that is not safetensors at all, is caught here.
    """
    try:
        _framing(path)
    except _Framing as exc:
        return str(exc)
    return None


def check_safetensors(path: Path, *, shown_as: str | None = None) -> dict[str, Any]:
    """Refuse a safetensors file that is truncated or malformed (see :func:`safetensors_problem`).

    Returns:
        Its JSON header (tensor entries by name, and ``__metadata__``), its framing checked.

    Raises:
        UnsafeFileError: With ``reason="truncated"``, naming the file.
    """
    try:
        return _framing(path)
    except _Framing as problem:
        raise UnsafeFileError(
            f"{shown_as or path} is not a complete safetensors file: {problem}; download or write it again",
            path=str(path),
            reason="truncated",
        ) from None


def load_json_text(text: str) -> Any:
    """``json.loads`` for files from strangers: too-deep nesting is a ValueError, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("it is nested too deeply") from None
