"""How pruned entries are filled: zeros (the paper's), or draws that match the layer's own weights.

"Roots Beneath the Cut" (Zhang et al., arXiv 2603.06640) revives a pruned concept from the
*locations* of the pruned weights, which exact zeros give away. ``gaussian`` concealment fills
every pruned entry with a draw from N(mean, std^2) of the layer's remaining (unpruned) weights,
measured per output row (``row``) or over the whole layer (``layer``), so the edited entries
look like the rest of the layer. The draws are seeded per layer (from the seed and the layer's
name), so the same seed gives the same values in memory and in the saved files.

A draw can also put part of the concept back: the erasure a fill leaves varied with its seed
(``shapes-striped``, held-out prompts: 0.70 erased with zeros, 0.86 with one draw). So when the
edit's calibration statistics are at hand (an :class:`~cpedit.edit.session.EditSession` holds
them), :func:`fill_values` draws :data:`FILL_CANDIDATES` candidate fills per layer, each a
plain draw from the same distribution with its own seed derived from the edit's seed, and keeps
the one that gives back the least of the removed concept response (:func:`restored_share`).
Why this choice and not a fill shaped to the statistics (e.g. small values where the concept
is strong): every candidate is an ordinary draw, so the chosen fill has exactly the
distribution of a plain one (the KS statistic and the location attack see nothing new; the
choice among a few whole-layer draws carries at most log2(candidates) bits per layer), and it
is never worse than the plain draw on the criterion, which is candidate 0. The choice depends
only on the seed, the base weights and the statistics, so the recorded seed gives the same fill
again after the same calibration.

Concealment only helps while the base weights are not public: anyone holding the base finds
the edited entries by comparing the two (e.g. a sanitized proprietary fine-tune is a case
where it helps; a public base such as SD-1.5 is not).

This module decides the values (the setting itself is :class:`cpedit.recipes.conceal.Conceal`);
:meth:`cpedit.edit.session.EditSession.apply` puts them in the pipeline and
:func:`cpedit.output.folder.write_pipeline_folder` writes the same values into the files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from cpedit.edit.calibration import BASE, TARGET
from cpedit.errors import CpeditError
from cpedit.recipes.conceal import Conceal

FILL_CANDIDATES = 16
"""Candidate fills drawn per layer when the concept's statistics are known (candidate 0 is the plain draw)."""


def layer_seed(seed: int, name: str, candidate: int = 0) -> int:
    """The seed of one layer's draws: from the edit's seed, the layer's name and the candidate (stable across runs).

    Candidate 0 is the plain draw (the same values as before candidates existed).
    """
    label = f"cpedit-conceal:{seed}:{name}" + (f"#{candidate}" if candidate else "")
    digest = hashlib.sha256(label.encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def concept_difference(
    sums: Sequence[torch.Tensor], *, in_features: int, columns: tuple[int, int] | None = None
) -> torch.Tensor:
    """How much more each input column carries for the concept than for its base prompts, from calibration.

    Args:
        sums: Per recipe, the layer's calibration sums over the calls it selected with
            (``[tau, 2, hooked_features]``, see :class:`cpedit.edit.calibration.ConceptStats`).
        in_features: The whole weight's input features.
        columns: The hooked columns (None: all), as :attr:`cpedit.models.ffn.FFNLayer.columns`.

    Returns:
        float32 ``[in_features]`` on the CPU: per column, the sum over recipes and calls of
        ``max(target - base, 0)`` (zero outside the hooked columns), the energy the concept
        adds to that input, which is what marks a weight as skilled.
    """
    difference = torch.zeros(in_features, dtype=torch.float32)
    start = columns[0] if columns is not None else 0
    for recipe_sums in sums:
        per_call = (recipe_sums[:, TARGET] - recipe_sums[:, BASE]).clamp(min=0).sum(dim=0)
        difference[start : start + per_call.numel()] += per_call.detach().to("cpu", torch.float32)
    return difference


def restored_share(
    fill: torch.Tensor, base: torch.Tensor, indices: torch.Tensor, *, difference: torch.Tensor, columns: int
) -> float:
    """How much of the concept response removed by pruning a fill gives back (0: none; 1: all; < 0: it opposes).

    Pruning removes, from every output neuron i, the response ``sum_j W_ij x_j`` over its pruned
    columns j; a fill f puts ``sum_j f_ij x_j`` in its place. On the concept's inputs the fill's
    response along the removed one is, with the calibration's per-column second moments (their
    cross terms are not kept), ``sum f_ij W_ij d_j`` against the removed ``sum W_ij^2 d_j``,
    where d is :func:`concept_difference`: this ratio.

    Args:
        fill: The values written at ``indices``.
        base: The base values at ``indices``.
        indices: The pruned entries' flat (row-major) indices.
        difference: :func:`concept_difference` of the layer.
        columns: The layer's input features.
    """
    weight = difference[indices.to("cpu", torch.long) % columns]
    base = base.to("cpu", torch.float32)
    removed = float((base.square() * weight).sum())
    if removed <= 0:
        return 0.0
    return float((fill.to("cpu", torch.float32) * base * weight).sum()) / removed


def fill_values(
    weight: torch.Tensor,
    indices: torch.Tensor,
    *,
    conceal: Conceal,
    name: str,
    difference: torch.Tensor | None = None,
    candidates: int = FILL_CANDIDATES,
) -> torch.Tensor:
    """The values that replace the pruned entries of one layer, as float32 on the CPU.

    Args:
        weight: The layer's base weight (2-D, any dtype or device; not changed).
        indices: The pruned entries' flat (row-major) indices, sorted.
        conceal: How to fill (resolved: ``gaussian`` needs its seed).
        name: The layer's name (seeds its draws).
        difference: The layer's :func:`concept_difference`; None: the plain draw (candidate 0).
        candidates: How many candidate draws to choose among when ``difference`` is given.

    Returns:
        One value per index: zeros for ``zero``; for ``gaussian`` draws from N(mean, std^2) of the
        unpruned entries of the entry's row (``row``; a row with fewer than two unpruned entries
        uses the layer's) or of the layer (``layer``): with ``difference``, of ``candidates``
        such draws the one with the smallest :func:`restored_share` (the first on a tie). No
        draw is exactly zero in ``weight``'s dtype.
    """
    count = int(indices.numel())
    if not conceal.conceals or count == 0:
        return torch.zeros(count, dtype=torch.float32)
    drawn = candidate_fills(
        weight, indices, conceal=conceal, name=name, candidates=1 if difference is None else candidates
    )
    if difference is None:
        return drawn[0]
    base = weight.detach().to("cpu", torch.float32).reshape(-1)[indices.to("cpu", torch.long)]
    columns = weight.reshape(weight.shape[0], -1).shape[1]
    shares = [restored_share(fill, base, indices, difference=difference, columns=columns) for fill in drawn]
    return drawn[shares.index(min(shares))]  # the first of equals: candidate 0 unless another is better


def candidate_fills(
    weight: torch.Tensor, indices: torch.Tensor, *, conceal: Conceal, name: str, candidates: int = FILL_CANDIDATES
) -> list[torch.Tensor]:
    """The candidate fills of one layer (see :func:`fill_values`), candidate 0 (the plain draw) first.

    Each is an independent draw from the same distribution, seeded by :func:`layer_seed` with its number.

    Raises:
        CpeditError: ``conceal`` has no seed, or ``candidates`` is below 1.
    """
    if conceal.seed is None:
        raise CpeditError("a gaussian fill needs its seed; resolve the conceal setting first", argument="conceal")
    if candidates < 1:
        raise CpeditError(f"candidates must be at least 1, got {candidates}", argument="candidates")
    base = weight.detach().to("cpu", torch.float32).reshape(weight.shape[0], -1)
    mean, std = _entry_distribution(base, indices.to("cpu", torch.long), scale=conceal.scale)
    return [_draw(mean, std, seed=layer_seed(conceal.seed, name, c), dtype=weight.dtype) for c in range(candidates)]


def _entry_distribution(base: torch.Tensor, indices: torch.Tensor, *, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pruned entry, the mean and spread its draw comes from (its row's or the layer's unpruned entries)."""
    rows, columns = base.shape
    kept = torch.ones(rows * columns, dtype=torch.bool)
    kept[indices] = False
    kept = kept.view(rows, columns)
    values = torch.where(kept, base, torch.zeros(()))
    n_layer = kept.sum()
    layer_mean = values.sum() / n_layer.clamp(min=1)
    layer_std = (((values - layer_mean) * kept).pow(2).sum() / (n_layer - 1).clamp(min=1)).sqrt()
    if scale == "layer":
        mean = layer_mean.expand(rows)
        std = layer_std.expand(rows)
    else:
        n_row = kept.sum(dim=1)
        mean = values.sum(dim=1) / n_row.clamp(min=1)
        std = (((values - mean[:, None]) * kept).pow(2).sum(dim=1) / (n_row - 1).clamp(min=1)).sqrt()
        few = n_row < 2
        mean = torch.where(few, layer_mean, mean)
        std = torch.where(few, layer_std, std)
    row_of = indices // columns
    return mean[row_of], std[row_of]


def _draw(mean: torch.Tensor, std: torch.Tensor, *, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """One seeded draw per entry from N(mean, std^2), none exactly zero in ``dtype``."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randn(mean.numel(), generator=generator, dtype=torch.float32)
    filled = mean + std * draws
    # An exact zero (a draw rounding to 0 in the weight's dtype) would mark its position again.
    zero = filled.to(dtype) == 0
    if bool(zero.any()):
        tiny = (std.clamp(min=1e-3) * 1e-2).to(torch.float32)
        filled = torch.where(zero, torch.where(draws < 0, -tiny, tiny), filled)
    return filled
