"""Saving writes each output byte once, patches only the pruned tensors, and holds one tensor at a time.

The reference is the old way, built here: copy the base folder, then load each edited safetensors
file whole, fill the masked entries, and save it again (``safetensors.torch.save_file``). Every
variant of a component (fp16 and bf16 variant files, shards) and both fills (zero, gaussian) must
give the same bytes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import support.helpers as helpers
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from support.helpers import CPU
from support.paths import REPO_ROOT

import cpedit
import cpedit.output.weights_files as weights_files
from cpedit.errors import Cancelled, CpeditError
from cpedit.output.folder import weight_fills, write_pipeline_folder
from cpedit.output.weights_files import TensorFill, write_filled_file


def old_way(source: Path, out: Path, edits: dict[str, dict[str, TensorFill]]) -> None:
    """Today's save before this change: copy everything, then rewrite each edited file whole."""
    shutil.copytree(source, out)
    for component, fills in edits.items():
        for file in sorted((out / component).glob("*.safetensors")):
            with safe_open(file, framework="pt") as handle:
                metadata = handle.metadata()
            tensors = load_file(file)
            present = tensors.keys() & fills.keys()
            if not present:
                continue
            for key in present:
                fill = fills[key]
                tensors[key][fill.mask] = 0 if fill.values is None else fill.values.to(tensors[key].dtype)
            save_file(tensors, file, metadata=metadata)


def assert_same_files(expected: Path, actual: Path) -> None:
    names = sorted(p.relative_to(expected).as_posix() for p in expected.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(actual).as_posix() for p in actual.rglob("*") if p.is_file())
    for name in names:
        assert (expected / name).read_bytes() == (actual / name).read_bytes(), name


def ffn_edits(folder: Path, *, gaussian: bool, seed: int = 0) -> dict[str, dict[str, TensorFill]]:
    """Random masks (and values) for the UNet's FFN output weights, read from the folder's own file."""
    generator = torch.Generator().manual_seed(seed)
    with safe_open(folder / "unet" / "diffusion_pytorch_model.safetensors", framework="pt") as handle:
        names = [key for key in handle.keys() if key.endswith("ff.net.2.weight")]
        shapes = {key: handle.get_slice(key).get_shape() for key in names}
    assert names
    masks = {key.removesuffix(".weight"): torch.rand(shapes[key], generator=generator) < 0.1 for key in names}
    values = (
        {name: torch.randn(int(mask.sum()), generator=generator) for name, mask in masks.items()} if gaussian else {}
    )
    return {"unet": weight_fills(masks, values)}


@pytest.fixture(scope="module")
def variants_folder(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline plus fp16 and bf16 variant files of the UNet, and a sharded text encoder."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = tmp_path_factory.mktemp("variants") / "base"
    shutil.copytree(tiny_sd_path, folder)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    unet.to(torch.float16).save_pretrained(folder / "unet", variant="fp16")
    unet.to(torch.bfloat16).save_pretrained(folder / "unet", variant="bf16")
    text = CLIPTextModel.from_pretrained(folder / "text_encoder")
    shutil.rmtree(folder / "text_encoder")
    text.save_pretrained(folder / "text_encoder", max_shard_size="20KB")
    assert len(list((folder / "text_encoder").glob("*.safetensors"))) > 2
    return folder


@pytest.mark.parametrize("gaussian", [False, True], ids=["zero", "gaussian"])
def test_written_folder_equals_the_old_way_for_every_variant(
    variants_folder: Path, tmp_path: Path, gaussian: bool
) -> None:
    edits = ffn_edits(variants_folder, gaussian=gaussian)
    # the text encoder's shards too: one FFN weight in some shard, its fp32 file patched
    with open(variants_folder / "text_encoder" / "model.safetensors.index.json", encoding="utf-8") as f:
        shard_keys = [key for key in json.load(f)["weight_map"] if key.endswith("mlp.fc2.weight")]
    key = shard_keys[-1]
    shard = next(
        file
        for file in (variants_folder / "text_encoder").glob("*.safetensors")
        if key in safe_open(file, framework="pt").keys()
    )
    with safe_open(shard, framework="pt") as handle:
        shape = handle.get_slice(key).get_shape()
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[0, ::3] = True
    edits["text_encoder"] = weight_fills({key.removesuffix(".weight"): mask})

    expected, actual = tmp_path / "expected", tmp_path / "actual"
    old_way(variants_folder, expected, edits)
    written = write_pipeline_folder(variants_folder, actual, edits=edits)
    assert written.rewritten_whole == {}
    assert_same_files(expected, actual)
    for variant in ("", ".fp16", ".bf16"):  # the pruned entries really changed in each variant
        file = actual / "unet" / f"diffusion_pytorch_model{variant}.safetensors"
        name, fill = next(iter(edits["unet"].items()))
        tensor = load_file(file)[name]
        want = torch.zeros(int(fill.mask.sum())) if fill.values is None else fill.values
        assert torch.equal(tensor[fill.mask], want.to(tensor.dtype)), variant


def test_a_weight_missing_from_one_variant_is_refused(variants_folder: Path, tmp_path: Path) -> None:
    source = tmp_path / "base"
    shutil.copytree(variants_folder, source)
    bf16 = source / "unet" / "diffusion_pytorch_model.bf16.safetensors"
    tensors = load_file(bf16)
    edits = ffn_edits(source, gaussian=False)
    dropped = sorted(edits["unet"])[0]
    del tensors[dropped]
    save_file(tensors, bf16)
    with pytest.raises(CpeditError, match=f"weight {dropped} .* not found in its bf16 variant") as caught:
        write_pipeline_folder(source, tmp_path / "out", edits=edits)
    assert caught.value.reason == "mismatch"


def test_a_dtype_that_cannot_be_patched_is_rewritten_whole_with_the_reason(tmp_path: Path) -> None:
    source = tmp_path / "base.safetensors"
    save_file({"a.weight": torch.arange(12, dtype=torch.int32).view(3, 4), "b": torch.ones(5)}, source)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[1, 2] = True
    written, reason = write_filled_file(source, tmp_path / "out.safetensors", {"a.weight": TensorFill(mask=mask)})
    assert reason is not None and "I32" in reason
    out = load_file(tmp_path / "out.safetensors")
    assert int(out["a.weight"][1, 2]) == 0 and int(out["a.weight"].sum()) == 66 - 6
    assert written >= (tmp_path / "out.safetensors").stat().st_size


def test_only_the_changed_tensors_differ_even_in_an_unusual_layout(tmp_path: Path) -> None:
    """A header written by another tool (its own order, metadata, padding) keeps its bytes: only the values change."""
    tensors = {"z.weight": torch.randn(4, 6), "a.weight": torch.randn(3, 5).to(torch.float16), "m": torch.randn(7)}
    header: dict[str, object] = {"__metadata__": {"format": "pt", "by": "another tool"}}
    data, offset = b"", 0
    for name in ("m", "z.weight", "a.weight"):  # not safetensors' own (dtype, name) order
        raw = tensors[name].contiguous().view(torch.uint8).numpy().tobytes()
        dtype = {torch.float32: "F32", torch.float16: "F16"}[tensors[name].dtype]
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(raw)]}
        data, offset = data + raw, offset + len(raw)
    text = json.dumps(header).encode() + b" " * 13
    source = tmp_path / "odd.safetensors"
    source.write_bytes(len(text).to_bytes(8, "little") + text + data)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[2] = True
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    target = tmp_path / "out.safetensors"
    write_filled_file(source, target, {"a.weight": TensorFill(mask=mask, values=values)})
    before, after = source.read_bytes(), target.read_bytes()
    changed = [i for i, (x, y) in enumerate(zip(before, after, strict=True)) if x != y]
    start = 8 + len(text) + 7 * 4 + 24 * 4  # a.weight's bytes: after m and z.weight
    assert changed and all(start + 2 * 10 <= i < start + 2 * 15 for i in changed)
    out = load_file(target)
    assert torch.equal(out["a.weight"][2], values.to(torch.float16)) and torch.equal(
        out["z.weight"], tensors["z.weight"]
    )


# --- through an edit session ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(variants_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> cpedit.EditSession:
    recipe = helpers.write_recipe(tmp_path_factory.mktemp("recipe"), name="save-once", tau=2, steps=4, skill_ratio=0.2)
    opened = cpedit.EditSession.open(variants_folder, [recipe], compute=CPU)
    opened.calibrate()
    return opened


def session_edits(session: cpedit.EditSession) -> dict[str, dict[str, TensorFill]]:
    return session._weight_edits(session._require_applied())


@pytest.mark.parametrize("conceal", ["zero", "gaussian"])
def test_a_saved_session_equals_the_old_way(session: cpedit.EditSession, tmp_path: Path, conceal: str) -> None:
    session.apply(session.select(), conceal=conceal, conceal_seed=3)
    out = session.save(tmp_path / "new").path
    expected = tmp_path / "expected"
    old_way(session.source.path, expected, session_edits(session))  # type: ignore[union-attr]
    shutil.copytree(out / "conceptprune", expected / "conceptprune")
    assert_same_files(expected, out)
    assert bool(session_edits(session)["unet"])


class WriteCounter:
    """Counts the bytes every write system call of the save makes (pwrite, write, copy_file_range, sendfile)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        for name in ("pwrite", "write", "copy_file_range", "sendfile"):
            if hasattr(os, name):
                monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))

    def _wrap(self, function):  # type: ignore[no-untyped-def]
        def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            result = function(*args, **kwargs)
            self.bytes += result if isinstance(result, int) else 0
            return result

        return counted


def test_bytes_written_are_at_most_the_output_size(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.apply(session.select(), conceal="gaussian", conceal_seed=1)
    counter = WriteCounter(monkeypatch)
    out = session.save(tmp_path / "out").path
    monkeypatch.undo()
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    weights = sum(p.stat().st_size for p in out.rglob("*.safetensors") if "conceptprune" not in p.parts)
    assert counter.bytes >= weights * 0.99  # the counter sees the copies (no reflink on the test filesystem)
    assert counter.bytes <= 1.05 * size


def test_a_failure_midway_through_a_patched_file_leaves_nothing(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.apply(session.select())
    calls = 0
    original = weights_files.write_at

    def fail_on_third(fd: int, data: bytes, offset: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError(errno.EIO, "input/output error")
        return original(fd, data, offset)

    monkeypatch.setattr(weights_files, "write_at", fail_on_third)
    with pytest.raises(CpeditError, match="cannot write the output folder"):
        session.save(tmp_path / "out")
    assert calls == 3
    assert list(tmp_path.iterdir()) == []


def test_cancel_midway_through_a_file_leaves_nothing(
    session: cpedit.EditSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.apply(session.select())
    cancel = threading.Event()
    original = weights_files.copy_range

    def cancel_while_copying(*args, **kwargs):  # type: ignore[no-untyped-def]
        cancel.set()
        return original(*args, **kwargs)

    monkeypatch.setattr(weights_files, "copy_range", cancel_while_copying)
    with pytest.raises(Cancelled):
        session.save(tmp_path / "out", cancel=cancel)
    assert list(tmp_path.iterdir()) == []


# --- memory ---------------------------------------------------------------------------------------

_PEAK = """
import resource, sys, torch
from pathlib import Path
from cpedit.output.weights_files import TensorFill, write_filled_file
source, target = Path(sys.argv[1]), Path(sys.argv[2])
fills = {f"t{i}.weight": TensorFill(mask=torch.rand(1024, 4096) < 0.2) for i in range(8)}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
write_filled_file(source, target, fills)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


def test_patching_a_file_holds_one_tensor_not_the_file(tmp_path: Path) -> None:
    source = tmp_path / "big.safetensors"
    save_file({f"t{i}.weight": torch.full((1024, 4096), float(i)) for i in range(8)}, source)  # 8 x 16 MiB
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _PEAK, str(source), str(tmp_path / "out.safetensors")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    grown = int(done.stdout.split()[-1])
    assert grown < 3 * 16 * 2**20, (
        f"peak memory grew by {grown / 2**20:.0f} MiB for a {source.stat().st_size >> 20} MiB file"
    )
    out = load_file(tmp_path / "out.safetensors")
    assert all(0.15 < float((tensor == 0).float().mean()) < 0.25 for name, tensor in out.items() if name != "t0.weight")
