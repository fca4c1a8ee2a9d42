"""Comparing pruning masks: per-layer IoU against a reference, with the tolerance the fidelity tests use."""

from __future__ import annotations

import filecmp
from pathlib import Path

import torch

MIN_IOU = 0.99
"""Accepted per-layer intersection-over-union between cpedit's and the naive masks.

The masks are identical in practice, but exact identity is not guaranteed: cpedit sums
activations per batch item with a batched matmul, and batches of different sizes, while
the reference sums one prompt's rows at a time; float32 addition is not associative,
so a score that is a near-tie (top-k boundary, or S_t vs S_b) can flip. IoU >= 0.99
tolerates such flips and still fails on any real deviation (a wrong group, timestep,
normalisation or CFG half changes far more than 1% of a layer's mask).
"""


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = int((a | b).sum())
    return 1.0 if union == 0 else int((a & b).sum()) / union


def assert_masks_match(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Same layers, same shapes, every expected layer non-empty, per-layer IoU >= :data:`MIN_IOU`."""
    assert set(got) == set(expected)
    for name, mask in expected.items():
        assert bool(mask.any()), f"{name}: the reference mask is empty; the test would prove nothing"
        assert got[name].dtype == torch.bool and got[name].shape == mask.shape, name
        score = iou(got[name].cpu(), mask)
        assert score >= MIN_IOU, f"{name}: IoU {score:.4f} (cpedit {int(got[name].sum())}, naive {int(mask.sum())})"


def output_positions(out: Path) -> dict[str, torch.Tensor]:
    """An output's pruned positions as masks, through cpedit's one reader (checked against its report)."""
    from cpedit.output.positions import read_positions
    from cpedit.output.record import POSITIONS_FILE, RECORD_DIR, read_report

    return read_positions(out / RECORD_DIR / POSITIONS_FILE, layers=read_report(out).layers)


def assert_only_masked_weights_changed(base: Path, out: Path, masks: dict[str, torch.Tensor], component: str) -> None:
    """Every file but the component's safetensors is byte-identical; there, exactly the masked weights became 0."""
    from safetensors.torch import load_file

    base_files = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
    out_files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file() and "conceptprune" not in p.parts)
    assert out_files == base_files
    changed = [str(p) for p in base_files if not filecmp.cmp(base / p, out / p, shallow=False)]
    assert changed and all(p.startswith(f"{component}/") and p.endswith(".safetensors") for p in changed), changed
    before = {k: v for f in (base / component).glob("*.safetensors") for k, v in load_file(f).items()}
    after = {k: v for f in (out / component).glob("*.safetensors") for k, v in load_file(f).items()}
    assert before.keys() == after.keys()
    prefix = f"{component}/"
    keyed = {(name.removeprefix(prefix) + ".weight"): mask for name, mask in masks.items()}
    assert any(bool(m.any()) for m in keyed.values())
    for key, tensor in before.items():
        mask = keyed.get(key)
        if mask is None:
            assert torch.equal(tensor, after[key]), key
        else:
            mask = mask.reshape(tensor.shape)  # a 1x1 convolution stores its [out, in] matrix as [out, in, 1, 1]
            assert torch.equal(after[key] == 0, (tensor == 0) | mask), key
            assert torch.equal(after[key][~mask], tensor[~mask]), key
