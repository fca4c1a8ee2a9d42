"""Writing an output's files each byte once: cheap copies, and pruned weights patched into their place.

An unchanged file is copied the cheapest correct way: a reflink (the ``FICLONE`` ioctl: the new
file shares the old one's blocks) where the filesystem has them, else the kernel's own copy
(``os.copy_file_range``), else a streamed copy through a buffer. A safetensors file with pruned
weights is written once too: a safetensors file is an 8-byte header length, a JSON header giving
each tensor's dtype, shape and ``data_offsets``, then the raw little-endian tensor bytes, so the
bytes between the changed tensors are copied the same way and each changed tensor is read, filled
in the file's own dtype and written at its place. One tensor is in memory at a time, never the
file, and the result equals what loading the file, filling the tensors and saving it again gives.

Where a changed tensor's dtype has no torch dtype here, or the machine is big-endian, that file is
rewritten whole the old way (load, fill, save), and the reason is returned.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from cpedit.errors import CpeditError
from cpedit.models.files import SafetensorsHeader, SafetensorsProblem, TensorEntry, read_safetensors_header
from cpedit.models.matrices import matrix_shape
from cpedit.progress import check_cancel

CHUNK = 64 * 2**20
"""Bytes copied per call (cancel is checked between chunks)."""

FICLONE = 0x40049409
"""Linux's ioctl that makes a file share another's blocks (btrfs, XFS, bcachefs, ...)."""

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
"""The safetensors dtypes a pruned weight is patched in place in."""

_NO_KERNEL_COPY = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM, errno.EBADF}
"""``copy_file_range`` errors that mean "not here": the bytes go through a buffer instead."""


@dataclass(frozen=True)
class TensorFill:
    """What to write into one weight's masked entries.

    Attributes:
        mask: Bool, shaped like the weight or its matrix (:mod:`cpedit.models.matrices`); True where the
            entry changes.
        values: One value per masked entry in row-major order (float32 on the CPU), or None for zeros.
    """

    mask: torch.Tensor
    values: torch.Tensor | None = None


def copy_file(source: Path, target: Path, *, cancel: threading.Event | None = None) -> int:
    """Copy ``source`` (links followed) to the new file ``target``, with its mode and times; the bytes written.

    A reflink writes no data (0 is returned).

    Raises:
        Cancelled: ``cancel`` was set (checked between chunks).
        OSError: Reading or writing failed (a full disk included).
    """
    with open(source, "rb") as src, open(target, "xb") as dst:
        if _reflink(src.fileno(), dst.fileno()):
            written = 0
        else:
            written = copy_range(src.fileno(), dst.fileno(), 0, os.fstat(src.fileno()).st_size, cancel=cancel)
    shutil.copystat(source, target)
    return written


def _reflink(src: int, dst: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import fcntl

    try:
        fcntl.ioctl(dst, FICLONE, src)
    except OSError:
        return False  # not this filesystem, or two filesystems
    return True


def copy_range(src: int, dst: int, offset: int, length: int, *, cancel: threading.Event | None = None) -> int:
    """Copy ``length`` bytes at ``offset`` of ``src`` to the same offset of ``dst``; the bytes written."""
    done = 0
    while done < length:
        check_cancel(cancel, "while copying the pipeline")
        done += _copy_chunk(src, dst, offset + done, min(CHUNK, length - done))
    return done


def _copy_chunk(src: int, dst: int, offset: int, length: int) -> int:
    if hasattr(os, "copy_file_range"):
        try:
            copied = os.copy_file_range(src, dst, length, offset, offset)
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
        else:
            if copied > 0:
                return copied
    data = os.pread(src, length, offset)
    if not data:
        raise OSError(errno.EIO, "the file became shorter while it was copied")
    return write_at(dst, data, offset)


def write_at(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset`` of ``fd``; the bytes written."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return done


def write_filled_file(
    source: Path,
    target: Path,
    fills: Mapping[str, TensorFill],
    *,
    base_digests: dict[str, str] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[int, str | None]:
    """Write the safetensors file ``source`` to the new file ``target`` with ``fills`` applied to the tensors it holds.

    Bytes that do not change are copied (:func:`copy_range`); each changed tensor is read, its
    masked entries set (cast to the tensor's dtype, as ``tensor[mask] = values`` does) and
    written in place. The result is checked: the same size and header as ``source``.

    Args:
        source: The base file.
        target: The output file (must not exist).
        fills: Per tensor name (``NAME.weight``), what to write; names not in the file are ignored.
        base_digests: When given, receives per changed tensor the SHA-256 of its bytes in
            ``source`` (:func:`tensor_digest`), from the bytes read to fill it (no second read).
        cancel: Checked between chunks and tensors.

    Returns:
        The bytes written, and why the file was rewritten whole instead (None when it was patched).

    Raises:
        CpeditError: ``source`` is not a valid safetensors file (``reason="malformed"``), a
            tensor's shape differs from its mask's, or the written file does not verify.
    """
    header = _header(source)
    present = sorted((header.tensors[name] for name in fills if name in header.tensors), key=lambda e: e.start)
    fills = {entry.name: _fill_shaped_like(entry, fills[entry.name], source) for entry in present}
    reason = _why_not_patched(present)
    if reason is not None:
        if base_digests is not None:
            base_digests.update(tensor_digests(source, [e.name for e in present], cancel=cancel))
        written = copy_file(source, target, cancel=cancel)
        return written + _rewrite_whole(target, {e.name: fills[e.name] for e in present}), reason
    written, position = 0, 0
    with open(source, "rb") as src, open(target, "xb") as dst:
        for entry in present:
            written += copy_range(src.fileno(), dst.fileno(), position, entry.start - position, cancel=cancel)
            check_cancel(cancel, "while writing the pruned weights")
            data = _read_entry(src.fileno(), entry)
            if base_digests is not None:
                base_digests[entry.name] = tensor_digest(data)
            written += write_at(dst.fileno(), _fill(data, entry, fills[entry.name]), entry.start)
            position = entry.end
        written += copy_range(src.fileno(), dst.fileno(), position, header.size - position, cancel=cancel)
    shutil.copymode(source, target)
    written_header = _header(target)
    if written_header != header:
        raise CpeditError(
            f"{target}: the written file does not match {source} (size or header differ)",
            path=str(target),
            reason="mismatch",
        )
    return written, None


def _fill_shaped_like(entry: TensorEntry, fill: TensorFill, source: Path) -> TensorFill:
    """``fill`` with its mask in the stored tensor's shape: a 1x1 convolution's ``[out, in, 1, 1]`` holds the
    matrix ``[out, in]`` in the same order (:mod:`cpedit.models.matrices`), so the mask is only reshaped.

    Raises:
        CpeditError: The tensor does not hold the mask's matrix (``reason="mismatch"``).
    """
    shape = tuple(fill.mask.shape)
    if entry.shape == shape:
        return fill
    if matrix_shape(entry.shape) != shape:
        raise CpeditError(
            f"{source.name}: {entry.name} has shape {entry.shape}, expected {shape}",
            path=str(source),
            reason="mismatch",
        )
    return TensorFill(mask=fill.mask.reshape(entry.shape), values=fill.values)


def _header(path: Path) -> SafetensorsHeader:
    try:
        return read_safetensors_header(path)
    except SafetensorsProblem as exc:
        raise CpeditError(
            f"{path} is not a valid safetensors file: {exc}", path=str(path), reason="malformed"
        ) from None


def _why_not_patched(present: list[TensorEntry]) -> str | None:
    if present and sys.byteorder != "little":
        return "this machine is big-endian (safetensors bytes are little-endian)"
    for entry in present:
        if entry.dtype not in TORCH_DTYPES:
            return f"{entry.name} is stored as {entry.dtype}, which is patched only by a whole rewrite"
    return None


def tensor_digest(data: bytes | bytearray | memoryview) -> str:
    """The SHA-256 (hex) of one tensor's bytes as a safetensors file stores them."""
    return hashlib.sha256(data).hexdigest()


def tensor_digests(path: Path, names: list[str], *, cancel: threading.Event | None = None) -> dict[str, str]:
    """Per tensor of ``names`` that the safetensors file ``path`` holds, :func:`tensor_digest` of its bytes.

    One tensor is in memory at a time; the header is read by the one validated reader.

    Raises:
        CpeditError: ``path`` is not a valid safetensors file (``reason="malformed"``).
        Cancelled: ``cancel`` was set (checked between tensors).
    """
    header = _header(path)
    digests = {}
    with open(path, "rb") as handle:
        for name in names:
            entry = header.tensors.get(name)
            if entry is None:
                continue
            check_cancel(cancel, "while reading the base weights")
            digests[name] = tensor_digest(_read_entry(handle.fileno(), entry))
    return digests


def _read_entry(src: int, entry: TensorEntry) -> bytearray:
    """``entry``'s bytes from the open file ``src``."""
    buffer = bytearray(entry.end - entry.start)
    done = 0
    while done < len(buffer):
        read = os.preadv(src, [memoryview(buffer)[done:]], entry.start + done)
        if read <= 0:
            raise OSError(errno.EIO, "the file became shorter while it was read")
        done += read
    return buffer


def _fill(buffer: bytearray, entry: TensorEntry, fill: TensorFill) -> bytearray:
    """``buffer`` (``entry``'s bytes) with ``fill`` applied in place (in the tensor's dtype, little-endian)."""
    if not buffer:
        return buffer
    tensor = torch.frombuffer(buffer, dtype=TORCH_DTYPES[entry.dtype]).view(entry.shape)
    # what ``tensor[mask] = values`` does (row-major order), without the index tensor it builds
    if fill.values is None:
        tensor.masked_fill_(fill.mask, 0)
    else:
        tensor.masked_scatter_(fill.mask, fill.values.to(tensor.dtype))
    return buffer


def _rewrite_whole(file: Path, fills: Mapping[str, TensorFill]) -> int:
    """The old way, for files that cannot be patched: load ``file``, fill, save through a temporary; bytes written."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(file, framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(file)
    for name, fill in fills.items():
        tensors[name][fill.mask] = 0 if fill.values is None else fill.values.to(tensors[name].dtype)
    partial = file.with_name(file.name + ".partial")
    save_file(tensors, partial, metadata=metadata)
    shutil.copymode(file, partial)
    partial.replace(file)
    return file.stat().st_size
