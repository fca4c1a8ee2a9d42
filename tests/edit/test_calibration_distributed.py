"""Calibration over several processes: 2 gloo processes on the CPU (torchrun) give one process's statistics and masks.

The recipe has 3 pairs and calibrates one pair per batch, so rank 0 runs batches 0 and 2 and
rank 1 batch 1; the statistics are added up in batch order on every rank. Both runs are
subprocesses with one thread each, so the same arithmetic runs in both.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.helpers import write_recipe

from cpedit import distributed

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")

SCRIPT = """
import sys
import torch
from safetensors.torch import save_file
from cpedit import distributed
from cpedit.edit.session import EditSession
from cpedit.models.compute import ComputeOptions

model, recipe, out = sys.argv[1:4]
session = EditSession.open(model, [recipe], compute=ComputeOptions(device="cpu"), batch_size=2)
session.calibrate()
stats = session.statistics["dist-style"]
selection = session.select()
launch = distributed.world()
rank = launch.rank if launch is not None else 0
tensors = {f"sums/{k}": v.contiguous() for k, v in stats.sums.items()}
tensors.update({f"mask/{k}": v.to(torch.uint8).contiguous() for k, v in selection.masks.items()})
tensors["calls_batches"] = torch.tensor([stats.denoiser_calls, stats.batches, stats.batch_size])
save_file(tensors, f"{out}.rank{rank}.safetensors")
"""


def _run(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_two_gloo_processes_calibrate_to_one_process_masks(tiny_sd_path: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, name="dist-style", subjects=("cat", "dog", "car"), tau=3, steps=4)
    script = tmp_path / "calibrate.py"
    script.write_text(SCRIPT)
    _run([sys.executable, str(script), str(tiny_sd_path), str(recipe), str(tmp_path / "one")])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launcher, str(script), str(tiny_sd_path), str(recipe), str(tmp_path / "two")])

    one = _load(tmp_path / "one.rank0.safetensors")
    assert one["calls_batches"].tolist() == [3 * 3, 3, 2]  # 3 batches of one pair, tau 3 each
    masks = [k for k in one if k.startswith("mask/")]
    assert masks and sum(int(one[k].sum()) for k in masks) > 0
    for rank in (0, 1):
        two = _load(tmp_path / f"two.rank{rank}.safetensors")
        assert two.keys() == one.keys()
        for key in one:  # bit for bit: the statistics, hence the masks, of one process
            assert torch.equal(two[key], one[key]), (rank, key)


def test_without_a_launch_the_helpers_are_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert distributed.smallest(6) == 6
    like = torch.zeros(2, 3)
    parts = {0: torch.full((2, 3), 0.1), 1: torch.full((2, 3), 0.2), 2: torch.full((2, 3), 0.3)}
    expected = torch.zeros(2, 3)
    for index in range(3):
        expected += parts[index]
    assert torch.equal(distributed.sum_in_order(parts, count=3, like=like), expected)


PRUNE_SCRIPT = """
import sys
import cpedit

model, recipe, out = sys.argv[1:4]
result = cpedit.prune(model, [recipe], out=out, compute=cpedit.ComputeOptions(device="cpu"), batch_size=2)
print("pruned", result.report.totals.pruned_weights)
"""


def test_prune_under_two_processes_writes_one_output_equal_to_one_process(tiny_sd_path: Path, tmp_path: Path) -> None:
    """Every rank calibrates its share; rank 0 alone writes the folder, and it is one process's, byte for byte."""
    recipe = write_recipe(tmp_path, name="dist-style", subjects=("cat", "dog", "car"), tau=3, steps=4)
    script = tmp_path / "prune.py"
    script.write_text(PRUNE_SCRIPT)
    _run([sys.executable, str(script), str(tiny_sd_path), str(recipe), str(tmp_path / "one")])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    _run([*launcher, str(script), str(tiny_sd_path), str(recipe), str(tmp_path / "two")])

    def weights(folder: Path) -> dict[str, bytes]:
        files = sorted(p for p in folder.rglob("*.safetensors") if p.parent.name != "conceptprune")
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files}

    one, two = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert one and one.keys() == two.keys()
    assert all(one[name] == two[name] for name in one)  # the pruned weights, byte for byte
    # the positions: the same tensors (safetensors orders a file's metadata differently from one write to the next)
    first, second = (_load(tmp_path / name / "conceptprune" / "pruned.safetensors") for name in ("one", "two"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == ["two"]  # no second folder
