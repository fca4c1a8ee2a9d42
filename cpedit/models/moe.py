"""Mixture-of-experts feed-forwards (HiDream-I1): which layers they hold and where each routed row comes from.

A diffusers ``MOEFeedForwardSwiGLU`` holds a router (``gate``), routed experts
(``experts``, each a SwiGLU feed-forward ``w2(silu(w1(x)) * w3(x))``) and shared experts
(``shared_experts``, one SwiGLU feed-forward every token goes through). The router picks
``top_k`` experts per token; an expert then runs only on the tokens routed to it, gathered
into one ``[rows, features]`` tensor with no batch dimension, in an order the block's
forward decides:

* in eval mode (``moe_infer``, the inference path every pipeline uses): the flattened
  ``[tokens * top_k]`` expert indices are sorted with ``argsort()``; expert ``i`` gets the
  ``i``-th run of the sorted order, each position ``p`` standing for token ``p // top_k``;
* in training mode (unless the block forces its inference output): the same positions,
  ascending, selected by ``expert index == i``.

:func:`expert_batch_items` repeats exactly that computation on the router's output, so
that the statistics of each row of an expert's input can be counted for its own prompt.
The router itself is never a target: it is left alone.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["expert_batch_items", "is_moe_block", "is_swiglu", "parts"]


def is_swiglu(module: nn.Module) -> bool:
    """A SwiGLU feed-forward as HiDream builds it: ``w1`` and ``w3`` (dim -> hidden), ``w2`` (hidden -> dim)."""
    w1, w2, w3 = (getattr(module, name, None) for name in ("w1", "w2", "w3"))
    return (
        isinstance(w1, nn.Linear)
        and isinstance(w2, nn.Linear)
        and isinstance(w3, nn.Linear)
        and w1.out_features == w3.out_features == w2.in_features
    )


def is_moe_block(module: nn.Module) -> bool:
    """A mixture-of-experts feed-forward: a ``gate`` router, routed SwiGLU ``experts`` and SwiGLU ``shared_experts``."""
    experts = getattr(module, "experts", None)
    shared = getattr(module, "shared_experts", None)
    return (
        isinstance(getattr(module, "gate", None), nn.Module)
        and isinstance(experts, nn.ModuleList)
        and all(is_swiglu(expert) for expert in experts)
        and isinstance(shared, nn.Module)
        and is_swiglu(shared)
    )


def parts(block: nn.Module) -> tuple[nn.Module, nn.Module, nn.ModuleList]:
    """``(router, shared experts, routed experts)`` of a mixture-of-experts block (see :func:`is_moe_block`)."""
    gate, shared, experts = block.gate, block.shared_experts, block.experts
    assert isinstance(gate, nn.Module) and isinstance(shared, nn.Module) and isinstance(experts, nn.ModuleList)
    return gate, shared, experts


def expert_batch_items(
    block: nn.Module, router_input: torch.Tensor, expert_indices: torch.Tensor
) -> list[torch.Tensor]:
    """For each routed expert of ``block``, the batch item of every row of its input, in row order.

    Args:
        block: The mixture-of-experts module (see :func:`is_moe_block`).
        router_input: The router's input, ``[batch, tokens, features]``.
        expert_indices: The router's chosen experts, ``[batch * tokens, top_k]``.

    Returns:
        One int64 tensor per expert of ``block.experts`` (empty when no token went to it).
    """
    tokens = router_input.shape[1]
    top_k = expert_indices.shape[-1]
    flat = expert_indices.reshape(-1)
    if block.training and not getattr(block, "_force_inference_output", False):
        order = torch.sort(flat, stable=True).indices  # the positions ``flat == i`` selects, ascending
    else:
        order = flat.argsort()  # moe_infer's own call on the same tensor: the same order
    counts = flat.bincount(minlength=len(parts(block)[2])).tolist()
    items = torch.div(order, top_k * tokens, rounding_mode="floor")
    return list(items.split(counts))
