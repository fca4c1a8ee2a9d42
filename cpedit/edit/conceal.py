"""How pruned entries are filled: zeros (the paper's), or draws that match the layer's own weights.

"Roots Beneath the Cut" (Zhang et al., arXiv 2603.06640) revives a pruned concept from the
*locations* of the pruned weights, which exact zeros give away. ``gaussian`` concealment fills
every pruned entry with a draw from N(mean, std^2) of the layer's remaining (unpruned) weights,
measured per output row (``row``) or over the whole layer (``layer``), so the edited entries
look like the rest of the layer. The draws are seeded per layer (from the seed and the layer's
name), so the same seed gives the same values in memory and in the saved files.

Concealment only helps while the base weights are not public: anyone holding the base finds
the edited entries by comparing the two (e.g. a sanitized proprietary fine-tune is a case
where it helps; a public base such as SD-1.5 is not).

This module decides the values (the setting itself is :class:`cpedit.recipes.conceal.Conceal`);
:meth:`cpedit.edit.session.EditSession.apply` puts them in the pipeline and
:func:`cpedit.output.folder.write_pipeline_folder` writes the same values into the files.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from cpedit.errors import CpeditError
from cpedit.recipes.conceal import Conceal

if TYPE_CHECKING:
    import torch


def layer_seed(seed: int, name: str) -> int:
    """The seed of one layer's draws: from the edit's seed and the layer's name (stable across runs)."""
    digest = hashlib.sha256(f"cpedit-conceal:{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def fill_values(weight: torch.Tensor, indices: torch.Tensor, *, conceal: Conceal, name: str) -> torch.Tensor:
    """The values that replace the pruned entries of one layer, as float32 on the CPU.

    Args:
        weight: The layer's base weight (2-D, any dtype or device; not changed).
        indices: The pruned entries' flat (row-major) indices, sorted.
        conceal: How to fill (resolved: ``gaussian`` needs its seed).
        name: The layer's name (seeds its draws).

    Returns:
        One value per index: zeros for ``zero``; for ``gaussian`` draws from N(mean, std^2) of the
        unpruned entries of the entry's row (``row``; a row with fewer than two unpruned entries
        uses the layer's) or of the layer (``layer``). No draw is exactly zero in ``weight``'s dtype.
    """
    import torch

    count = int(indices.numel())
    if not conceal.conceals or count == 0:
        return torch.zeros(count, dtype=torch.float32)
    if conceal.seed is None:
        raise CpeditError("a gaussian fill needs its seed; resolve the conceal setting first", argument="conceal")
    base = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
    rows, columns = base.shape
    indices = indices.to("cpu", torch.long)
    kept = torch.ones(rows * columns, dtype=torch.bool)
    kept[indices] = False
    kept = kept.view(rows, columns)
    values = torch.where(kept, base, torch.zeros(()))
    n_layer = kept.sum()
    layer_mean = values.sum() / n_layer.clamp(min=1)
    layer_std = (((values - layer_mean) * kept).pow(2).sum() / (n_layer - 1).clamp(min=1)).sqrt()
    if conceal.scale == "layer":
        mean = layer_mean.expand(rows)
        std = layer_std.expand(rows)
    else:
        n_row = kept.sum(dim=1)
        mean = values.sum(dim=1) / n_row.clamp(min=1)
        std = (((values - mean[:, None]) * kept).pow(2).sum(dim=1) / (n_row - 1).clamp(min=1)).sqrt()
        few = n_row < 2
        mean = torch.where(few, layer_mean, mean)
        std = torch.where(few, layer_std, std)
    generator = torch.Generator().manual_seed(layer_seed(conceal.seed, name))
    draws = torch.randn(count, generator=generator, dtype=torch.float32)
    row_of = indices // columns
    filled = mean[row_of] + std[row_of] * draws
    # An exact zero (a draw rounding to 0 in the weight's dtype) would mark its position again.
    zero = filled.to(weight.dtype) == 0
    if bool(zero.any()):
        tiny = (std[row_of].clamp(min=1e-3) * 1e-2).to(torch.float32)
        filled = torch.where(zero, torch.where(draws < 0, -tiny, tiny), filled)
    return filled
