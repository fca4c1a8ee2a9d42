"""Finding the feed-forward blocks whose weights ConceptPrune prunes.

The "neurons" of the paper are the input features of each FFN's output projection
(``ff.net.2`` in Stable Diffusion). They are found by module type, a diffusers
``FeedForward`` and the last ``nn.Linear`` inside it, never by hard-coded names, so any
denoiser built from diffusers' feed-forward blocks works. :class:`FFNLayer` also describes
the other hook targets (FFN input projections, attention key/value projections, text
encoder MLPs); :mod:`cpedit.models.architectures` finds them per architecture.

A hooked layer is an ``nn.Linear`` or a 1x1 ``nn.Conv2d`` (Sana's ``GLUMBConv`` feed-forward). A
1x1 convolution is a linear map applied at every spatial position: its input ``[batch,
channels, height, width]`` is read as one row per position and one feature per channel, as a
linear layer's token rows, and its weight as the matrix ``[out_channels, in_channels]`` (see
:mod:`cpedit.models.matrices`). Any other convolution is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.attention import FeedForward
from torch import nn

from cpedit.errors import UnsupportedModelError
from cpedit.models.matrices import as_matrix


@dataclass(frozen=True)
class ExpertRoute:
    """A routed expert of a mixture-of-experts feed-forward block.

    Attributes:
        block: The mixture-of-experts module (diffusers' ``MOEFeedForwardSwiGLU``: ``gate``,
            ``experts``, ``shared_experts``).
        expert: The index of the expert in ``block.experts``.
    """

    block: nn.Module
    expert: int


@dataclass(frozen=True)
class RowMask:
    """Where a hooked layer's call finds which of its input rows are batch padding.

    Pipelines that pad each batch's text to its longest prompt (Qwen-Image) or pad token
    sequences inside the denoiser to the batch's longest (Z-Image) show a layer rows that a
    one-prompt-at-a-time run never has. The module named here receives, on every call, a
    ``[batch, rows]`` mask (nonzero: a real row; None or absent: every row is real) as the
    keyword ``keyword`` or positional argument ``position``; calibration leaves the padding
    rows out of the statistics, so they equal the naive procedure's.

    Attributes:
        module: The module whose call carries the mask (a transformer block, a text encoder).
        keyword: The mask's keyword argument name.
        position: Its position among the positional arguments.
    """

    module: nn.Module
    keyword: str
    position: int


@dataclass(frozen=True)
class FFNLayer:
    """One hooked layer whose weights may be pruned (an FFN output projection by default).

    Attributes:
        name: Qualified module name inside its component (e.g.
            ``down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2``); the weight's
            state-dict key is ``name + ".weight"``.
        module: The ``nn.Linear`` or 1x1 ``nn.Conv2d`` itself.
        component: The pipeline component holding it (``unet``, ``transformer``,
            ``text_encoder``, ...).
        columns: ``(start, stop)``: only these input features are the neurons (their
            statistics are taken and only weights in these columns can be pruned), e.g.
            the MLP columns of a FLUX single-stream block's ``proj_out``; None = all.
        rows: ``(start, stop)``: only weights in these output rows can be pruned (the
            statistics still cover every input feature), e.g. the MLP rows of a FLUX.2
            single-stream block's fused ``to_qkv_mlp_proj``; None = all.
        denoiser: Whether ``component`` is the (main) denoiser; then :attr:`key` is the plain
            name, as in every cpedit output so far. False for text encoders and for a
            family's further denoisers (Wan 2.2's ``transformer_2``), keyed ``component/name``.
        route: For a routed expert of a mixture-of-experts feed-forward (HiDream), which
            expert of which block: the layer sees only the tokens routed to it, stacked
            without a batch dimension, and calibration attributes each of those rows to its
            batch item from the block's router (see :mod:`cpedit.models.moe`). None for
            every other layer.
        padding: Where the layer's batch-padding mask comes from (see :class:`RowMask`); None
            when every input row of a batched call is one a single-prompt call also has.
    """

    name: str
    module: nn.Linear | nn.Conv2d
    component: str = "unet"
    columns: tuple[int, int] | None = None
    denoiser: bool = True
    route: ExpertRoute | None = None
    padding: RowMask | None = None
    rows: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        module = self.module
        if isinstance(module, nn.Conv2d):
            pointwise = (module.kernel_size, module.stride, module.groups) == ((1, 1), (1, 1), 1)
            if not (pointwise and module.padding in ((0, 0), "valid")):
                kernel = "x".join(str(n) for n in module.kernel_size)
                raise UnsupportedModelError(
                    f"{self.component}: {self.name} is a {kernel} convolution (stride {module.stride}, "
                    f"{module.groups} groups); cpedit prunes only linear layers and 1x1 convolutions, "
                    "whose inputs are one feature per channel at every position"
                )
        elif not isinstance(module, nn.Linear):
            raise UnsupportedModelError(
                f"{self.component}: {self.name} is a {type(module).__name__}; cpedit prunes linear layers "
                "and 1x1 convolutions"
            )

    @property
    def channels_first(self) -> bool:
        """Whether the layer's input is ``[batch, channels, ...]`` (a 1x1 convolution), not ``[..., features]``."""
        return isinstance(self.module, nn.Conv2d)

    @property
    def weight(self) -> torch.Tensor:
        """The weight as its ``[out, in]`` matrix: a view of the parameter (in-place changes reach the model)."""
        return as_matrix(self.module.weight)

    @property
    def shape(self) -> tuple[int, int]:
        """``(out_features, in_features)`` of the whole weight (a 1x1 convolution's ``(out, in)`` channels)."""
        out, inputs = self.module.weight.shape[:2]
        return (int(out), int(inputs))

    @property
    def in_features(self) -> int:
        """Number of input features whose statistics are collected (the hooked columns)."""
        if self.columns is None:
            return self.shape[1]
        return self.columns[1] - self.columns[0]

    @property
    def key(self) -> str:
        """Name in masks, positions and reports: ``name`` for denoiser layers, ``component/name`` otherwise."""
        return self.name if self.denoiser else f"{self.component}/{self.name}"


def find_ffn_output_layers(denoiser: nn.Module) -> list[FFNLayer]:
    """List the FFN output projections of a denoiser, in module order.

    Args:
        denoiser: A UNet or transformer (``pipe.unet``).

    Returns:
        One :class:`FFNLayer` per diffusers ``FeedForward`` block.
    """
    layers: list[FFNLayer] = []
    for block_name, block in denoiser.named_modules():
        if not isinstance(block, FeedForward):
            continue
        linears = [
            (name, m) for name, m in block.named_modules() if isinstance(m, nn.Linear) and name.startswith("net.")
        ]
        if not linears:
            continue
        name, linear = linears[-1]
        layers.append(FFNLayer(name=f"{block_name}.{name}" if block_name else name, module=linear))
    return layers


def get_denoiser(pipe: object) -> nn.Module:
    """The pipeline's denoiser (``unet``; ``transformer`` for DiT pipelines).

    Raises:
        UnsupportedModelError: The pipeline has neither.
    """
    for attr in ("unet", "transformer"):
        module = getattr(pipe, attr, None)
        if isinstance(module, nn.Module):
            return module
    raise UnsupportedModelError(
        f"{type(pipe).__name__} has no `unet` or `transformer` component; "
        "cpedit edits text-to-image diffusion pipelines"
    )


def execution_device(pipe: object) -> torch.device:
    """Where the denoiser computes: its device, or the GPU when model CPU offload parks it on the CPU."""
    denoiser = get_denoiser(pipe)
    if getattr(denoiser, "_hf_hook", None) is not None and hasattr(pipe, "_execution_device"):
        return torch.device(pipe._execution_device)
    device = denoiser.device  # diffusers' ModelMixin.device (nn.Module types attributes as Tensor | Module)
    assert isinstance(device, torch.device)
    return device
