"""Skilled weights: Wanda scores, per-timestep selection and the union over time.

For layer weight W and call t < tau, with norms n_t (target) and n_b (base) from
calibration, the paper scores S_t = |W| * n_t and S_b = |W| * n_b (broadcast over rows),
marks per output row the k = floor(skill_ratio * in_features) columns with the largest
S_t, keeps those where S_t > S_b, counts the marks over the first tau calls and calls a
weight skilled when its count exceeds select_ratio * tau.

:class:`Selection` is what :meth:`cpedit.edit.session.EditSession.select` returns: those masks
per layer and per recipe, and their counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cpedit.edit.calibration import BASE, TARGET
from cpedit.models.ffn import FFNLayer
from cpedit.recipes.format import PruneSettings


@dataclass(frozen=True)
class Selection:
    """What a selection would prune; making one changes nothing in the model.

    Attributes:
        masks: Per hooked layer (its :attr:`~cpedit.models.ffn.FFNLayer.key`), a bool CPU tensor shaped
            like the whole weight (True = pruned): the union over the recipes.
        concept_masks: The same per recipe name, before the union.
        settings: The prune settings each recipe was selected with (its own, or the overrides).
        pruned: Weights pruned in all (the union).
        fraction: ``pruned`` over the weights of the edited components.
        per_layer: Pruned weights per layer key (the union).
        per_concept: Pruned weights per recipe name (each recipe alone).
        seconds: How long the selection took.
    """

    masks: dict[str, torch.Tensor]
    concept_masks: dict[str, dict[str, torch.Tensor]]
    settings: dict[str, PruneSettings]
    pruned: int
    fraction: float
    per_layer: dict[str, int]
    per_concept: dict[str, int]
    seconds: float = 0.0


def skilled_weights(weight: torch.Tensor, sums: torch.Tensor, settings: PruneSettings) -> torch.Tensor:
    """The skilled-weight mask of one layer.

    Args:
        weight: The layer's weight ``[out_features, in_features]`` (any dtype/device).
        sums: Its calibration sums ``[tau, 2, in_features]`` (float32, same device).
        settings: skill_ratio, timesteps (tau) and select_ratio.

    Returns:
        A bool tensor shaped like ``weight`` on the device of ``sums``: True marks a weight to prune.
    """
    tau = settings.timesteps
    out_features, in_features = weight.shape
    k = math.floor(settings.skill_ratio * in_features)
    if k == 0:
        return torch.zeros(out_features, in_features, dtype=torch.bool, device=sums.device)
    magnitude = weight.detach().to(sums.device).float().abs()  # weights may wait on the CPU (model offload)
    norms = sums[:tau].sqrt()
    counts = torch.zeros(out_features, in_features, dtype=torch.int32, device=sums.device)
    for t in range(tau):
        target_scores, columns = (magnitude * norms[t, TARGET]).topk(k, dim=1)
        base_scores = magnitude.gather(1, columns) * norms[t, BASE][columns]
        counts.scatter_add_(1, columns, (target_scores > base_scores).to(torch.int32))
    return counts > settings.select_ratio * tau


def union(masks: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise OR of several per-layer mask sets (multi-concept erasure).

    Each set is one concept's own skilled weights, thresholded on its own counts, so the result
    does not depend on the order of the concepts. (The authors' ``multi_concept_union.py``
    thresholds the running union after each concept instead: the same at ``select_ratio`` 0, but
    order-dependent, and lossy for earlier concepts, once ``select_ratio * tau >= 1``.)
    """
    merged: dict[str, torch.Tensor] = {}
    for mask_set in masks:
        for name, mask in mask_set.items():
            merged[name] = merged[name] | mask if name in merged else mask.clone()
    return merged


def layer_mask(
    layer: FFNLayer, sums: torch.Tensor, settings: PruneSettings, *, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The skilled-weight mask of a hooked layer, shaped like its whole weight.

    For a layer with hooked ``columns`` (a FLUX single-stream ``proj_out``) only those
    columns are scored; for a layer with prunable ``rows`` (a FLUX.2 single-stream
    ``to_qkv_mlp_proj``) only those rows. Every other weight stays unmarked.

    Args:
        layer: The hooked layer.
        sums: Its calibration sums ``[tau', 2, in_features]`` with tau' >= ``settings.timesteps``.
        settings: skill_ratio, timesteps (tau) and select_ratio.
        weight: The weight to score (default: the layer's own); an edit session passes the base
            weight while a selection is applied.
    """
    weight = layer.weight if weight is None else weight
    if layer.columns is None and layer.rows is None:
        return skilled_weights(weight, sums, settings)
    start, stop = layer.columns if layer.columns is not None else (0, weight.shape[1])
    first, last = layer.rows if layer.rows is not None else (0, weight.shape[0])
    mask = torch.zeros(tuple(weight.shape), dtype=torch.bool, device=sums.device)
    mask[first:last, start:stop] = skilled_weights(weight[first:last, start:stop], sums, settings)
    return mask
