"""Fused GPU kernels for the calibration statistics (Triton, optional).

The statistic of one FFN call is, per batch item b and column j,
``sum_r x[b, r, j]**2 / ||x[b, r, :]||**2``. In plain PyTorch that takes a float32 copy
of the activation and four passes over it (about 22 bytes of memory traffic per fp16
element). These two kernels read the activation twice in its own dtype and accumulate in
float32 (about 4 bytes per element), which is what keeps calibration close to the cost
of the bare UNet forwards on a GPU.

Results are deterministic (no atomics): partial sums over row blocks are written to a
buffer and reduced by PyTorch. Triton ships with PyTorch's CUDA builds; without it (or
on the CPU) :mod:`cpedit.edit.calibration` uses its PyTorch implementation.
"""

from __future__ import annotations

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only torch builds do not ship Triton
    triton = None

AVAILABLE = triton is not None
"""True when the Triton kernels can be used (Triton importable)."""

_TARGET_PROGRAMS = 1024  # enough programs to fill a large GPU


if AVAILABLE:

    @triton.jit
    def _inverse_row_square_norms(x_ptr, out_ptr, features, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offsets = tl.arange(0, BLOCK)
        base = x_ptr + row.to(tl.int64) * features
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, features, BLOCK):
            columns = start + offsets
            values = tl.load(base + columns, mask=columns < features, other=0.0).to(tl.float32)
            acc += values * values
        total = tl.sum(acc, axis=0)
        tl.store(out_ptr + row, 1.0 / tl.maximum(total, 1e-30))

    @triton.jit
    def _weighted_column_squares(
        x_ptr,
        inverse_ptr,
        partial_ptr,
        rows,
        features,
        rows_per_split,
        BLOCK_R: tl.constexpr,
        BLOCK_F: tl.constexpr,
    ):
        item = tl.program_id(0)
        column_block = tl.program_id(1)
        split = tl.program_id(2)
        splits = tl.num_programs(2)
        columns = column_block * BLOCK_F + tl.arange(0, BLOCK_F)
        column_mask = columns < features
        first = split * rows_per_split
        acc = tl.zeros([BLOCK_F], dtype=tl.float32)
        for start in range(0, rows_per_split, BLOCK_R):
            row_index = first + start + tl.arange(0, BLOCK_R)
            row_mask = (row_index < rows) & (start + tl.arange(0, BLOCK_R) < rows_per_split)
            flat_rows = (item * rows + row_index).to(tl.int64)
            values = tl.load(
                x_ptr + flat_rows[:, None] * features + columns[None, :],
                mask=row_mask[:, None] & column_mask[None, :],
                other=0.0,
            ).to(tl.float32)
            weights = tl.load(inverse_ptr + flat_rows, mask=row_mask, other=0.0)
            acc += tl.sum(values * values * weights[:, None], axis=0)
        tl.store(partial_ptr + (item * splits + split).to(tl.int64) * features + columns, acc, mask=column_mask)


def per_item_normalised_column_squares(x: torch.Tensor) -> torch.Tensor:
    """``[batch, rows, features]`` -> ``[batch, features]`` float32: sum over rows of squared normalised rows.

    Args:
        x: A contiguous CUDA tensor (float16, bfloat16 or float32).

    Raises:
        RuntimeError: Triton is not available.
    """
    if not AVAILABLE:
        raise RuntimeError("Triton is not available")
    x = x.contiguous()
    batch, rows, features = x.shape
    inverse = torch.empty(batch * rows, device=x.device, dtype=torch.float32)
    block = min(triton.next_power_of_2(features), 2048)
    _inverse_row_square_norms[(batch * rows,)](x, inverse, features, BLOCK=block, num_warps=4)
    block_f = 128
    column_blocks = triton.cdiv(features, block_f)
    splits = max(1, min(triton.cdiv(rows, 64), _TARGET_PROGRAMS // max(batch * column_blocks, 1)))
    rows_per_split = triton.cdiv(rows, splits)
    partial = torch.empty(batch, splits, features, device=x.device, dtype=torch.float32)
    _weighted_column_squares[(batch, column_blocks, splits)](
        x, inverse, partial, rows, features, rows_per_split, BLOCK_R=32, BLOCK_F=block_f, num_warps=4
    )
    return partial.sum(dim=1)
