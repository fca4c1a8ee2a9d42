"""Weight surgery: put a selection into the pipeline's weights in place, and take it out bit for bit.

Applying keeps only what restoring needs: per layer, the flat indices of the pruned entries
(on the CPU: with model offload a weight moves between devices between calls) and their base
values. So an edit session can try selection after selection on one copy of the model, and
:func:`restore_weights` puts the base weights back exactly. How the entries are filled (zeros,
or concealing draws) is :mod:`cpedit.edit.conceal`'s; this module only writes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from cpedit.edit.conceal import fill_values
from cpedit.edit.selection import Selection
from cpedit.models.ffn import FFNLayer
from cpedit.recipes.conceal import Conceal


@dataclass
class AppliedSelection:
    """A selection written into the weights, and what restoring it needs.

    Attributes:
        selection: The selection applied.
        saved: Per layer key, the pruned entries' flat indices and base values (CPU tensors).
        conceal: How the entries were filled (resolved: with its seed).
        fills: The values written in, per layer key (float32 on the CPU; empty for ``zero``): what a
            save writes into the files and a temporary swap puts back.
    """

    selection: Selection
    saved: dict[str, tuple[torch.Tensor, torch.Tensor]]
    conceal: Conceal = dataclasses.field(default_factory=Conceal)
    fills: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def apply_selection(
    selection: Selection,
    layers: Mapping[str, FFNLayer],
    *,
    conceal: Conceal,
    fills: Mapping[str, torch.Tensor] | None = None,
    differences: Mapping[str, torch.Tensor] | None = None,
) -> AppliedSelection:
    """Fill ``selection``'s entries in the weights of ``layers`` (by key), in place.

    Args:
        selection: What to prune; every mask's key must be in ``layers``.
        layers: The hooked layers by key.
        conceal: How to fill (resolved): zeros, or draws made here unless ``fills`` gives them.
        fills: The values to write per layer key (a temporary swap puts back the same ones).
        differences: Per layer key, the concept's :func:`~cpedit.edit.conceal.concept_difference`:
            the fill made here is the candidate that gives back the least of the concept (a layer
            without one gets the plain draw).

    Returns:
        What :func:`restore_weights` needs to undo it.
    """
    saved: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    made: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, mask in selection.masks.items():
            weight = layers[key].weight
            flat = weight.view(-1)
            # Kept on the CPU: with model offload the weight moves between devices between calls.
            indices = mask.reshape(-1).nonzero().squeeze(1)
            if indices.numel() == 0:
                continue
            on_device = indices.to(flat.device)
            saved[key] = (indices, flat[on_device].cpu())
            if not conceal.conceals:
                flat[on_device] = 0
                continue
            if fills is not None:
                values = fills[key]
            else:
                difference = differences.get(key) if differences is not None else None
                values = fill_values(weight, indices, conceal=conceal, name=key, difference=difference)
            made[key] = values
            flat[on_device] = values.to(flat.device, flat.dtype)
    return AppliedSelection(selection=selection, saved=saved, conceal=conceal, fills=made)


def restore_weights(applied: AppliedSelection, layers: Mapping[str, FFNLayer]) -> None:
    """Put the base values of ``applied``'s entries back, bit for bit, wherever each weight is now."""
    with torch.no_grad():
        for key, (indices, values) in applied.saved.items():
            flat = layers[key].weight.view(-1)
            flat[indices.to(flat.device)] = values.to(flat.device)


def base_weight(layer: FFNLayer, applied: AppliedSelection | None, *, device: torch.device) -> torch.Tensor:
    """``layer``'s base weight on ``device``, also while a selection is applied (a copy with its entries put back)."""
    weight = layer.weight.detach()
    saved = applied.saved.get(layer.key) if applied is not None else None
    if saved is None:
        return weight.to(device)
    indices, values = saved
    base = weight.to(device, copy=True)
    base.view(-1)[indices.to(device)] = values.to(device)
    return base
