"""The calibration statistic, in both implementations, against a float64 reference.

Statistic: per batch item, the column sums of squares of the L2-row-normalised FFN input.
The PyTorch path runs here directly; the Triton kernels (used on CUDA) run in Triton's
CPU interpreter in a subprocess, since TRITON_INTERPRET must be set before Triton loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from support.paths import REPO_ROOT

from cpedit.edit.calibration import accumulate_normalised_column_squares

ROOT = REPO_ROOT


def reference(x: torch.Tensor) -> torch.Tensor:
    """Straight from the note: normalise every row, square, sum over rows (float64)."""
    rows = x.reshape(x.shape[0], -1, x.shape[-1]).double()
    norms = rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return ((rows / norms) ** 2).sum(dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_path_matches_reference_and_groups(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    x = (torch.randn(6, 7, 11, 48) * 4).to(dtype)  # extra token dims are flattened into rows
    x[2, 3, 5] = 0  # a zero row contributes nothing (and no NaN)
    groups = torch.tensor([0, 1, 1, 0, 1, 0])
    out = torch.zeros(2, 48)
    accumulate_normalised_column_squares(x, out, groups)
    per_item = reference(x)
    expected = torch.stack([per_item[groups == g].sum(0) for g in (0, 1)])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-6)
    # each normalised row has unit norm, so a group's total is its number of non-zero rows
    assert out.sum().item() == pytest.approx(6 * 7 * 11 - 1, rel=1e-5)


def test_accumulates_in_place_across_calls() -> None:
    torch.manual_seed(1)
    a, b = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    groups = torch.tensor([0, 1])
    out = torch.zeros(2, 16)
    accumulate_normalised_column_squares(a, out, groups)
    accumulate_normalised_column_squares(b, out, groups)
    torch.testing.assert_close(out.double(), reference(a) + reference(b), rtol=1e-5, atol=1e-6)


_KERNEL_CHECK = textwrap.dedent(
    """
    import torch
    from cpedit.edit import kernels
    assert kernels.AVAILABLE
    torch.manual_seed(0)
    # (batch, rows, features): odd sizes, several row splits, one column block and several
    for shape in [(2, 37, 40), (1, 300, 40), (3, 70, 130), (2, 9, 300)]:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            x = (torch.randn(*shape) * 3).to(dtype)
            x[0, 4] = 0
            got = kernels.per_item_normalised_column_squares(x).double()
            rows = x.double()
            expected = ((rows / rows.norm(dim=-1, keepdim=True).clamp_min(1e-12)) ** 2).sum(1)
            error = ((got - expected).abs().max() / expected.abs().max()).item()
            assert torch.isfinite(got).all(), (shape, dtype)
            assert error < 1e-5, (shape, dtype, error)
    print("kernels ok")
    """
)


def test_triton_kernels_match_reference_in_interpreter() -> None:
    pytest.importorskip("triton", reason="Triton is installed with the test extra on Linux x86_64")
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _KERNEL_CHECK], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kernels ok" in done.stdout
