"""What a recipe can ask cpedit to hook and prune: hook targets and feed-forward streams.

Plain constants (no torch): :mod:`cpedit.recipes.format` validates recipes against them and
:mod:`cpedit.models.architectures` finds the layers each one means in a model.
"""

from __future__ import annotations

TARGETS = ("ffn", "ffn-in", "attn-key", "attn-value", "text-ffn")
"""Hook targets (``prune.target``): the layers whose input statistics score their weights.

``ffn`` (default, the paper's): FFN output projections; ``ffn-in``: FFN input projections;
``attn-key`` / ``attn-value``: the key / value projections reading the text (cross-attention);
``text-ffn``: the text encoders' MLP output layers (every text-encoder forward of the prompt's pipeline
call: the prompt and, under guidance, the negative prompt; tau is ignored).
"""
STREAMS = ("image", "text", "both")
"""Feed-forward streams of MMDiT/FLUX models (``prune.stream``; image is the default)."""

__all__ = ["STREAMS", "TARGETS"]
