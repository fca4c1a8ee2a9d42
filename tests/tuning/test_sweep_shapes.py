"""``benchmarks/sweep_shapes.py``: the erasure sweep runs, restores the weights between points and writes its rows."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
from support.paths import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "sweep_shapes.py"


@pytest.mark.parametrize("target", ["ffn", "attn-value"])
def test_sweep_writes_one_row_per_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    out = tmp_path / "sweep.json"
    argv = [str(SCRIPT), "--recipes", "shapes-striped", "--skill-ratios", "0.1,0.5", "--taus", "2", "--images", "4"]
    argv += ["--steps", "2", "--target", target, "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(SCRIPT), run_name="__main__")
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["skill_ratio"], r["tau"], r["target"]) for r in rows] == [(0.1, 2, target), (0.5, 2, target)]
    assert 0.0 < rows[0]["pruned_fraction"] < rows[1]["pruned_fraction"] < 0.05  # more skill, more pruned
    for row in rows:
        for key in ("erased", "preserved"):
            assert all(0.0 <= v <= 1.0 for v in row[key].values())
    assert rows[0]["erased"]["before"] == rows[1]["erased"]["before"]  # one base measure for every point
    assert f"--target {target}" in result["command"]


def test_sweep_rejects_an_unknown_target(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--target", "everything"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    assert exit_info.value.code == 2 and "--target" in capsys.readouterr().err
