"""``pruned.safetensors`` has one validated reader: a tampered file (indices out of range, a shape naming a missing
or huge tensor, metadata that is not JSON, a lying header, cut short) gives cpedit's own error naming the file and
the tensor or field, never a traceback, and never an allocation the file alone asks for."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpedit.output.positions import MAX_HEADER_BYTES, read_positions
from cpedit.output.record import LayerRecord, RecordError, save_positions

LAYERS = (LayerRecord(name="a", shape=(4, 6), pruned=3), LayerRecord(name="b", shape=(3, 5), pruned=0))


def _masks() -> dict[str, torch.Tensor]:
    a = torch.zeros(4, 6, dtype=torch.bool)
    a.view(-1)[torch.tensor([1, 7, 23])] = True
    return {"a": a, "b": torch.zeros(3, 5, dtype=torch.bool)}


def _saved(folder: Path) -> Path:
    path = folder / "pruned.safetensors"
    save_positions(path, _masks(), denoiser="unet")
    return path


def _split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def _join(path: Path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_a_saved_file_reads_back_as_the_masks(tmp_path: Path) -> None:
    masks = read_positions(_saved(tmp_path), layers=LAYERS)
    assert set(masks) == {"a", "b"} and all(torch.equal(masks[n], m) for n, m in _masks().items())
    # the caller may ask for the pruned layers only; the others must then hold nothing
    assert set(read_positions(tmp_path / "pruned.safetensors", layers=LAYERS[:1])) == {"a"}


def _data_with(values: list[int]) -> bytes:
    return struct.pack(f"<{len(values)}i", *values)


def _tamper(kind: str, header: dict, data: bytes) -> tuple[dict, bytes]:
    meta = header["__metadata__"]
    shapes = json.loads(meta["shapes"])
    start = header["a"]["data_offsets"][0]
    if kind == "out_of_range":
        data = data[:start] + _data_with([1, 7, 24]) + data[start + 12 :]
    elif kind == "negative":
        data = data[:start] + _data_with([-1, 7, 23]) + data[start + 12 :]
    elif kind == "repeated":
        data = data[:start] + _data_with([7, 7, 23]) + data[start + 12 :]
    elif kind == "missing_tensor":
        shapes["c"] = [2, 2]
    elif kind == "huge_shape":
        shapes["b"] = [2**20, 2**20]
    elif kind == "bad_shape":
        shapes["b"] = [-3, 5]
    elif kind == "metadata_not_json":
        meta["shapes"] = "{not json"
    elif kind == "metadata_nan":
        meta["shapes"] = '{"a": [NaN, 6]}'
    elif kind == "format":
        meta["format"] = "something else"
    elif kind == "dtype":
        header["a"]["dtype"] = "I64"
    elif kind == "huge_count":
        header["a"]["shape"] = [2**40]
    elif kind == "offsets_beyond":
        header["a"]["data_offsets"] = [2**40, 2**40 + 12]
    elif kind == "layer_shape":
        shapes["a"] = [6, 4]
    meta["shapes"] = json.dumps(shapes) if kind not in ("metadata_not_json", "metadata_nan") else meta["shapes"]
    return header, data


@pytest.mark.parametrize(
    ("kind", "field", "reason"),
    [
        ("out_of_range", "tensor 'a': position 24 is outside", "malformed"),
        ("negative", "tensor 'a': position -1 is outside", "malformed"),
        ("repeated", "tensor 'a': positions are not sorted", "malformed"),
        ("missing_tensor", "tensor 'c'", "malformed"),
        ("huge_shape", "__metadata__.shapes['b']", "malformed"),
        ("bad_shape", "__metadata__.shapes['b']", "malformed"),
        ("metadata_not_json", "__metadata__.shapes: not JSON", "malformed"),
        ("metadata_nan", "NaN is not a number", "malformed"),
        ("format", "__metadata__.format", "malformed"),
        ("dtype", "tensor 'a'.dtype", "malformed"),
        ("huge_count", "tensor 'a'.data_offsets", "malformed"),
        ("offsets_beyond", "tensor 'a'.data_offsets", "truncated"),
        ("layer_shape", "the layer is (4, 6)", "mismatch"),
    ],
)
def test_tampered_positions_are_refused_naming_file_and_field(
    tmp_path: Path, kind: str, field: str, reason: str
) -> None:
    path = _saved(tmp_path)
    _join(path, *_tamper(kind, *_split(path)))
    with pytest.raises(RecordError, match="is not a valid cpedit positions file") as info:
        read_positions(path, layers=LAYERS)
    assert field in str(info.value) and str(path) in str(info.value)
    assert info.value.path == str(path) and info.value.reason == reason


def test_the_report_and_the_file_must_agree(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    with pytest.raises(RecordError, match="tensor 'a': holds 3 positions, the report says 4") as info:
        read_positions(path, layers=(LayerRecord(name="a", shape=(4, 6), pruned=4),))
    assert info.value.reason == "mismatch"
    with pytest.raises(RecordError, match="tensor 'a': holds 3 positions of a layer not listed as pruned"):
        read_positions(path, layers=LAYERS[1:])
    with pytest.raises(RecordError, match="tensor 'z': is missing from the file"):
        read_positions(path, layers=(*LAYERS, LayerRecord(name="z", shape=(1, 1), pruned=0)))


def test_a_lying_header_a_cut_file_a_link_and_a_folder_are_refused(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    raw = path.read_bytes()
    cases = {
        "huge header": (struct.pack("<Q", MAX_HEADER_BYTES + 1) + raw[8:], "header: claims"),
        "header beyond the file": (struct.pack("<Q", len(raw)) + raw[8:], "header: claims"),
        "cut short": (raw[:-4], "tensor 'a'.data_offsets: end at"),
        "empty": (b"", "too short for a safetensors header"),
    }
    for name, (content, field) in cases.items():
        path.write_bytes(content)
        with pytest.raises(RecordError, match="is not a valid cpedit positions file") as info:
            read_positions(path, layers=LAYERS)
        assert field in str(info.value), name
    other = tmp_path / "other.safetensors"
    other.write_bytes(raw)
    path.unlink()
    path.symlink_to(other)
    with pytest.raises(RecordError, match="not a regular file"):
        read_positions(path, layers=LAYERS)
    path.unlink()
    path.mkdir()
    with pytest.raises(RecordError, match="not a regular file"):
        read_positions(path, layers=LAYERS)


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    noise=st.one_of(st.none(), st.binary(max_size=200)),
)
def test_random_and_mutated_files_give_masks_or_cpedits_own_error(
    tmp_path: Path, flips: list[tuple[int, int]], cut: int | None, noise: bytes | None
) -> None:
    folder = tmp_path / "case"
    folder.mkdir(exist_ok=True)
    path = _saved(folder)
    raw = bytearray(path.read_bytes()) if noise is None else bytearray(noise)
    for position, value in flips:
        if raw:
            raw[position % len(raw)] = value
    path.write_bytes(bytes(raw if cut is None else raw[:cut]))
    before = _listing(tmp_path)
    try:
        masks = read_positions(path, layers=LAYERS)
    except RecordError as exc:
        assert exc.path == str(path) and exc.reason in ("malformed", "truncated", "mismatch")
    else:  # what is accepted agrees with the layers
        for layer in LAYERS:
            assert masks[layer.name].shape == layer.shape and int(masks[layer.name].sum()) == layer.pruned
    assert _listing(tmp_path) == before
    os.unlink(path)
