"""``cpedit sweep`` under torchrun (2 gloo processes on the CPU): one ``sweep.json``, the numbers of one process.

The ranks split the calibration's batches and each point's images; rank 0 alone writes the
file, prints and plots. Both runs are subprocesses with one thread each, so the same
arithmetic runs in both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE", "GROUP_RANK")
ARGS = ["sweep", "--recipe", "shapes-striped", "--skill-ratio", "0.05,0.2", "--timesteps", "3", "--eval", "shapes"]
ARGS += ["--images", "4", "--seed", "3", "--steps", "3", "--image-batch-size", "4", "--device", "cpu", "--no-plot"]


def _sweep(launcher: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    command = [*launcher, "-m", "cpedit", *ARGS, "--out", str(out), "--format", "json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _measured(data: dict) -> list[dict]:
    """The points without their timings (a point's and its collapse check's seconds)."""
    points = []
    for point in data["points"]:
        kept = {k: v for k, v in point.items() if k != "seconds"}
        if isinstance(kept.get("collapse_check"), dict):
            kept["collapse_check"] = {k: v for k, v in kept["collapse_check"].items() if k != "seconds"}
        points.append(kept)
    return points


def test_a_sweep_under_torchrun_writes_one_sweep_json_with_one_process_numbers(tmp_path: Path) -> None:
    _sweep([sys.executable], tmp_path / "one")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _sweep(launcher, tmp_path / "two")
    one_data = json.loads((tmp_path / "one" / "sweep.json").read_text())
    two_data = json.loads((tmp_path / "two" / "sweep.json").read_text())
    assert json.loads(two.stdout) == two_data  # printed once, by rank 0
    assert len(two_data["points"]) == 2 and _measured(two_data) == _measured(one_data)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["images", "sweep.json"]
    # the images are shared out and merged into one manifest, as one process writes it
    for bench in ("shapes",):
        one_manifest = (tmp_path / "one" / "images" / bench / "manifest.jsonl").read_text()
        assert (tmp_path / "two" / "images" / bench / "manifest.jsonl").read_text() == one_manifest
