"""The one validated reader of ``conceptprune/pruned.safetensors`` (the pruned positions).

The file is safetensors: per layer, a 1-D ``I32`` tensor of sorted flat indices into the layer's
weight, and metadata ``{"format": ..., "denoiser": ..., "shapes": "<JSON: name -> [rows, cols]>"}``
(written by :func:`cpedit.output.record.save_positions`). An output folder comes from strangers,
so every claim of the file is checked before it is believed: the header's length and size, the
metadata's JSON, each tensor's dtype, shape and data offsets, that its layer is one the caller
expects with the same shape and pruned count, and that every index is in range (and sorted, no
repeats). Only the bytes of the expected layers are read, and no allocation is larger than those
layers' own weights: a file claiming a huge tensor or shape is refused, not obeyed. Every problem
is one :class:`~cpedit.output.record.RecordError` naming the file and the tensor or field.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from cpedit import strict_json
from cpedit.output.record import POSITIONS_FORMAT, LayerRecord, RecordError
from cpedit.text import shown

if TYPE_CHECKING:
    import torch

MAX_HEADER_BYTES = 8 * 2**20
"""The largest header accepted (thousands of layers take a few hundred kB)."""
MAX_LAYER_WEIGHTS = 2**31 - 1
"""A layer's weights: flat indices are int32, so no layer of a positions file can be larger."""
MAX_DEPTH = 8
"""The header and the ``shapes`` metadata nest 3 levels; deeper is refused."""

__all__ = ["MAX_HEADER_BYTES", "read_positions"]


class _Bad(ValueError):
    """A problem at a field or tensor (``where``), with the reason for the error."""

    def __init__(self, where: str, message: str, *, reason: str = "malformed") -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = reason


def _json(raw: bytes | str, where: str) -> Any:
    try:
        return strict_json.loads(raw, max_depth=MAX_DEPTH)
    except strict_json.JsonProblem as exc:
        raise _Bad(where, str(exc)) from None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(value: Any, where: str) -> tuple[int, int]:
    if not (isinstance(value, list) and len(value) == 2 and all(_whole(v) and v > 0 for v in value)):
        raise _Bad(where, f"must be two positive whole numbers, got {shown(value)}")
    rows, cols = value
    if rows * cols > MAX_LAYER_WEIGHTS:
        raise _Bad(where, f"{rows} x {cols} weights are more than int32 positions can address")
    return rows, cols


def _header(handle: IO[bytes], size: int) -> tuple[dict[str, Any], int]:
    """The parsed header and where the tensor data starts."""
    head = handle.read(8)
    if len(head) < 8:
        raise _Bad("", f"{size} bytes, too short for a safetensors header", reason="truncated")
    length = int.from_bytes(head, "little")
    if length > MAX_HEADER_BYTES:
        raise _Bad("header", f"claims {length:,} bytes, more than {MAX_HEADER_BYTES // 2**20} MiB")
    if 8 + length > size:
        raise _Bad("header", f"claims {length:,} bytes but the file is {size:,} bytes", reason="truncated")
    header = _json(handle.read(length), "header")
    if not isinstance(header, dict):
        raise _Bad("header", "is not a JSON object")
    return header, 8 + length


def _entry(header: dict[str, Any], name: str, data_size: int) -> tuple[int, int]:
    """Where tensor ``name``'s data lies (start, count of indices), checked against the data region."""
    entry = header.get(name)
    where = f"tensor {shown(name)}"
    if not isinstance(entry, dict):
        raise _Bad(where, "is missing from the file" if entry is None else "is not a tensor entry")
    if entry.get("dtype") != "I32":
        raise _Bad(f"{where}.dtype", f"must be I32, got {shown(entry.get('dtype'))}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and len(shape) == 1 and _whole(shape[0]) and shape[0] >= 0):
        raise _Bad(f"{where}.shape", f"must be one whole number (a list of positions), got {shown(shape)}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(o) and o >= 0 for o in offsets)):
        raise _Bad(f"{where}.data_offsets", f"must be two whole numbers, got {shown(offsets)}")
    start, end = offsets
    if end - start != 4 * shape[0]:
        raise _Bad(f"{where}.data_offsets", f"span {end - start} bytes, not the {4 * shape[0]} its shape needs")
    if end > data_size:
        raise _Bad(
            f"{where}.data_offsets",
            f"end at {end:,} but the file holds {data_size:,} bytes of data",
            reason="truncated",
        )
    return start, shape[0]


def _indices(handle: IO[bytes], offset: int, count: int, weights: int, where: str) -> Any:
    """``count`` int32 indices read at ``offset``, checked: sorted, no repeats, in ``[0, weights)``."""
    import numpy as np

    handle.seek(offset)
    raw = handle.read(4 * count)
    if len(raw) != 4 * count:
        raise _Bad(where, "its data is cut short", reason="truncated")
    indices = np.frombuffer(raw, dtype="<i4")
    if count and (int(indices[0]) < 0 or int(indices[-1]) >= weights):
        bad = int(indices[0]) if int(indices[0]) < 0 else int(indices[-1])
        raise _Bad(where, f"position {bad} is outside the layer's {weights} weights")
    if count > 1 and not bool((np.diff(indices) > 0).all()):
        raise _Bad(where, "positions are not sorted without repeats (outside the layer or tampered with)")
    return indices


def _shapes(header: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """The layers' shapes from the metadata, checked: the same names as the tensors, sizes int32 can address."""
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or metadata.get("format") != POSITIONS_FORMAT:
        raise _Bad("__metadata__.format", f"is not {POSITIONS_FORMAT}")
    text = metadata.get("shapes")
    if not isinstance(text, str):
        raise _Bad("__metadata__.shapes", "is missing or not text")
    shapes = _json(text, "__metadata__.shapes")
    if not isinstance(shapes, dict):
        raise _Bad("__metadata__.shapes", "is not a JSON object")
    tensors = set(header) - {"__metadata__"}
    if tensors != set(shapes):
        odd = sorted(tensors ^ set(shapes))[0]
        raise _Bad(f"tensor {shown(odd)}", "is not both a tensor and in __metadata__.shapes")
    return {name: _shape(value, f"__metadata__.shapes[{shown(name)}]") for name, value in shapes.items()}


def _expected(name: str, shape: tuple[int, int], count: int, layer: LayerRecord | None) -> bool:
    """Whether layer ``name`` is one the caller asked for (then its shape and count agree with it)."""
    if layer is None:
        if count:
            raise _Bad(
                f"tensor {shown(name)}", f"holds {count} positions of a layer not listed as pruned", reason="mismatch"
            )
        return False
    if shape != tuple(layer.shape):
        raise _Bad(
            f"__metadata__.shapes[{shown(name)}]", f"is {shape}, the layer is {tuple(layer.shape)}", reason="mismatch"
        )
    if count != layer.pruned:
        raise _Bad(
            f"tensor {shown(name)}", f"holds {count} positions, the report says {layer.pruned}", reason="mismatch"
        )
    return True


def read_positions(path: str | os.PathLike[str], *, layers: Sequence[LayerRecord]) -> dict[str, torch.Tensor]:
    """The pruned positions of ``layers`` as dense bool masks (one per layer, the layer's shape).

    Args:
        path: A ``pruned.safetensors`` file.
        layers: The layers the positions apply to (from the output's report, their shapes checked
            against the weights by the caller where they are read): each must be in the file with
            this shape and as many positions as its ``pruned``. Other layers of the file must hold
            no positions; they are not returned.

    Raises:
        RecordError: The file is a link or not a regular file, is cut short, its header or metadata
            is not what cpedit writes, a tensor is missing, of another dtype or shape, or has
            positions out of range (``reason="malformed"`` or ``"truncated"``); or it disagrees
            with ``layers`` (``reason="mismatch"``). The message names the file and the tensor or field.
    """
    import torch

    wanted = {layer.name: layer for layer in layers}
    masks: dict[str, torch.Tensor] = {}
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise _Bad("", "not a regular file (a link, folder or device)")
        with open(path, "rb") as handle:
            header, data_start = _header(handle, info.st_size)
            for name, shape in _shapes(header).items():
                start, count = _entry(header, name, info.st_size - data_start)
                if _expected(name, shape, count, wanted.get(name)):
                    where = f"tensor {shown(name)}"
                    indices = _indices(handle, data_start + start, count, shape[0] * shape[1], where)
                    mask = torch.zeros(shape[0] * shape[1], dtype=torch.bool)
                    mask[torch.from_numpy(indices.astype("int64"))] = True
                    masks[name] = mask.view(shape)
        missing = sorted(set(wanted) - set(masks))
        if missing:
            raise _Bad(f"tensor {shown(missing[0])}", "is missing from the file", reason="mismatch")
    except (_Bad, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RecordError(
            f"{path} is not a valid cpedit positions file ({detail})",
            path=str(path),
            reason=exc.reason if isinstance(exc, _Bad) else "unreadable",
        ) from None
    return masks
