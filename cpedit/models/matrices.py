"""A hooked layer's weight as the matrix cpedit scores, masks and patches.

A linear layer's weight is the matrix ``[out_features, in_features]``. A 1x1 convolution
(Sana's ``GLUMBConv`` feed-forward: ``conv_inverted`` and ``conv_point``) is the same map
applied at every spatial position: its weight ``[out_channels, in_channels, 1, 1]`` holds the
same numbers in the same row-major order, so entry ``(o, i)`` has the same flat index in
both shapes. Masks, positions and reports use the matrix shape; a weights file stores the
tensor's own shape, and a mask is reshaped to it where the two hold the same matrix.

Torch only (no diffusers): the output layer imports it to patch weights files.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["as_matrix", "matrix_shape"]


def matrix_shape(shape: Sequence[int]) -> tuple[int, int] | None:
    """``(rows, columns)`` of a weight's shape when it is a matrix: 2-D, or ``[out, in, 1, ...]``; else None."""
    dims = tuple(int(n) for n in shape)
    if len(dims) < 2 or any(n != 1 for n in dims[2:]):
        return None
    return dims[0], dims[1]


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` viewed as its ``[rows, columns]`` matrix (the same storage: in-place changes reach it).

    Raises:
        ValueError: ``weight`` is not a matrix (see :func:`matrix_shape`), e.g. a 3x3 kernel.
    """
    shape = matrix_shape(weight.shape)
    if shape is None:
        raise ValueError(f"a weight of shape {tuple(weight.shape)} is not a matrix")
    return weight if weight.dim() == 2 else weight.view(shape)
