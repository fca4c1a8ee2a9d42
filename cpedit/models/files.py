"""The safety of the files in a model or output folder: links, special files, truncated safetensors (no torch).

Which files a pull needs (formats, variants) is :mod:`cpedit.hub.pipeline_files`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpedit.errors import ModelLoadError, UnsafeFileError

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


SAFETENSORS_ITEMSIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
"""Bytes per element of the safetensors dtypes whose size cpedit checks (others are framed by their offsets only)."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors header.

    Attributes:
        name: The tensor's name.
        dtype: Its safetensors dtype (``F32``, ``F16``, ``BF16``, ...); the bytes are little-endian.
        shape: Its shape.
        start: Where its bytes begin in the file (absolute, header included).
        end: Where they end (exclusive).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A safetensors file's framing, read without its tensors (see :func:`read_safetensors_header`).

    Attributes:
        size: The file's size in bytes.
        data_start: Where the tensor data begins (8 + the header's length).
        tensors: The tensors by name, in the order of their bytes.
        metadata: The ``__metadata__`` strings (None when there are none).
    """

    size: int
    data_start: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] | None


class SafetensorsProblem(ValueError):
    """What is wrong with a safetensors file's framing (the message says it, without the file's name)."""


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Read and check a safetensors file's header: the one reader of it in cpedit (the tensors are never read).

    Checked: the 8-byte length (bounded by :data:`SAFETENSORS_MAX_HEADER`), a JSON object whose
    entries have a dtype string, a shape of non-negative integers and ``data_offsets`` that are
    in order, do not overlap, match the dtype's size and lie inside the file; ``__metadata__``
    maps strings to strings.

    Raises:
        SafetensorsProblem: The framing is wrong (truncated, malformed); the message says how.
        OSError: The file cannot be read.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise SafetensorsProblem(f"it is {size} bytes, too short for a safetensors header")
        length = int.from_bytes(head, "little")
        if length > SAFETENSORS_MAX_HEADER or 8 + length > size:
            raise SafetensorsProblem(f"its header claims {length:,} bytes but the file is {size:,} bytes (truncated?)")
        try:
            header = load_json_text(handle.read(length).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise SafetensorsProblem(f"its header cannot be read ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsProblem("its header is not a JSON object")
    data_start = 8 + length
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise SafetensorsProblem("its __metadata__ is not a map of strings")
    entries = [_tensor_entry(name, entry, data_start) for name, entry in header.items() if name != "__metadata__"]
    entries.sort(key=lambda entry: (entry.start, entry.end))
    end = data_start
    for entry in entries:
        if entry.start < end:
            raise SafetensorsProblem(f"tensor {entry.name!r} overlaps another tensor's bytes")
        end = entry.end
    if end > size:
        raise SafetensorsProblem(
            f"it holds {size - data_start:,} bytes of tensor data but its header needs {end - data_start:,} (truncated)"
        )
    return SafetensorsHeader(
        size=size, data_start=data_start, tensors={entry.name: entry for entry in entries}, metadata=metadata
    )


def _tensor_entry(name: str, entry: object, data_start: int) -> TensorEntry:
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        and offsets[0] <= offsets[1]
    ):
        raise SafetensorsProblem(f"tensor {name!r} has malformed data_offsets")
    assert isinstance(entry, dict)
    dtype, shape = entry.get("dtype"), entry.get("shape")
    if not isinstance(dtype, str) or not (
        isinstance(shape, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
    ):
        raise SafetensorsProblem(f"tensor {name!r} has a malformed dtype or shape")
    itemsize = SAFETENSORS_ITEMSIZES.get(dtype)
    if itemsize is not None and math.prod(shape) * itemsize != offsets[1] - offsets[0]:
        raise SafetensorsProblem(
            f"tensor {name!r} is {offsets[1] - offsets[0]:,} bytes but its dtype and shape make "
            f"{math.prod(shape) * itemsize:,}"
        )
    return TensorEntry(
        name=name, dtype=dtype, shape=tuple(shape), start=data_start + offsets[0], end=data_start + offsets[1]
    )


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None: the header parses and the data is all there.

    Reads the header only (:func:`read_safetensors_header`, never the tensors): a file cut short by
    an interrupted download or copy, or one that is not safetensors at all, is caught here.
    """
    try:
        read_safetensors_header(path)
    except SafetensorsProblem as exc:
        return str(exc)
    except OSError as exc:
        return f"its header cannot be read ({exc})"
    return None


def check_safetensors(path: Path, *, shown_as: str | None = None) -> SafetensorsHeader:
    """Refuse a safetensors file that is truncated or malformed (see :func:`read_safetensors_header`).

    Returns:
        Its header (tensor entries by name, and the metadata), its framing checked.

    Raises:
        UnsafeFileError: With ``reason="truncated"``, naming the file.
    """
    try:
        return read_safetensors_header(path)
    except (SafetensorsProblem, OSError) as problem:
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


MAX_MODEL_INDEX_BYTES = 1 << 20
"""model_index.json is a few hundred bytes; a larger one is refused unread (a hostile folder)."""


def read_json_object(file: Path, *, shown_as: str, **fields: Any) -> dict[str, Any]:
    """Read a small JSON object file of a model folder (``model_index.json``, a component's ``config.json``).

    Bounded in size (:data:`MAX_MODEL_INDEX_BYTES`) and nesting, and it must be a JSON object.

    Args:
        file: The file.
        shown_as: How messages name the model or component (the reference the user gave).
        fields: Extra fields for the error (``repo_id=...``).

    Raises:
        ModelLoadError: The file cannot be read, is too large, is not JSON, or not an object;
            the message names the model and the file.
    """
    fields.setdefault("path", str(file))
    try:
        with open(file, "rb") as handle:
            raw = handle.read(MAX_MODEL_INDEX_BYTES + 1)
        if len(raw) > MAX_MODEL_INDEX_BYTES:
            raise ValueError(f"it is larger than {MAX_MODEL_INDEX_BYTES:,} bytes")
        data = load_json_text(raw.decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{shown_as}: cannot read {file.name} ({exc})", **fields) from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{shown_as}: {file.name} is not a JSON object", **fields)
    return data


def read_model_index(index_file: Path, *, shown_as: str, **fields: Any) -> dict[str, Any]:
    """Read a pipeline's ``model_index.json``: the one reader for it (local folders, Hub snapshots).

    Bounded in size and nesting, and it must be a JSON object (:func:`read_json_object`).

    Args:
        index_file: The file.
        shown_as: How messages name the model (the reference the user gave).
        fields: Extra fields for the error (``repo_id=...``).

    Raises:
        ModelLoadError: The file cannot be read, is too large, is not JSON, or not an object;
            the message names the model and the file.
    """
    return read_json_object(index_file, shown_as=shown_as, **fields)
