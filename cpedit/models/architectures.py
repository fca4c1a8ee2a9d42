"""Which diffusers pipelines cpedit supports, and which layers each hook target means there.

A small registry: pipeline class name -> :class:`ArchitectureSpec` (which component is
the denoiser, how guidance works, which feed-forward streams it has, which text
encoders it has, any call arguments calibration needs). Layers are always found by
module type or structure, never by hard-coded names, so fine-tuned or resized models
of a supported family work too. Whether a pipeline can be edited at all is decided in
:mod:`cpedit.models.support`, from this registry.

Hook targets (the paper's ablations; ``prune.target`` in a recipe):

``ffn`` (default)
    The FFN output projection: the last ``nn.Linear`` of every diffusers ``FeedForward``
    (``ff.net.2`` in Stable Diffusion). Its input columns are the FFN's hidden neurons.
    In Sana's convolutional feed-forward (``GLUMBConv``) the 1x1 ``conv_point``: its input
    channels are the inner channels (after the depthwise conv and the SiLU gate).
``ffn-in``
    The FFN input projection: the first ``nn.Linear`` of every ``FeedForward``
    (``ff.net.0.proj``; for GEGLU its output is twice the inner width, value and gate
    halves, and all of its weights are candidates). Its input is the block's
    normalised hidden state. In ``GLUMBConv`` the 1x1 ``conv_inverted`` (C -> 2 x inner:
    value and gate channels), which reads the normalised hidden state too.
``attn-key`` / ``attn-value``
    The key / value projections that read the text: cross-attention ``attn2.to_k`` /
    ``to_v`` in UNets and PixArt; in MMDiT/FLUX joint attention, the text stream's
    ``add_k_proj`` / ``add_v_proj``. Their input is the text encoder's hidden states
    (constant over timesteps in UNets; still tau calls, as in the paper).
``text-ffn``
    The text encoders' MLP output layers (CLIP ``mlp.fc2``, T5 ``DenseReluDense.wo``, the
    ``mlp.down_proj`` of decoder LLMs used as text encoders: Llama, Gemma, Mistral, Qwen):
    every text-encoder forward of the prompt's pipeline call (its own encoding and, under
    classifier-free guidance, the negative prompt's, as the authors' hook sees them), no
    timesteps (tau is ignored).

FLUX single-stream blocks have no ``FeedForward``: an MLP branch ``proj_mlp`` (dim ->
4 dim) -> GELU runs in parallel with attention and ``proj_out`` reads the
concatenation ``[attention output, MLP hidden]``. cpedit treats ``proj_mlp`` as the
FFN input projection and the MLP columns of ``proj_out`` (its last ``mlp_hidden_dim``
input features) as the FFN output projection; statistics use only those columns,
and only weights in those columns are ever pruned. These blocks carry the image
stream (FLUX discards their text tokens at the end), so they belong to ``stream:
image``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cpedit.errors import CpeditError, UnsupportedModelError
from cpedit.models.ffn import FFNLayer, get_denoiser
from cpedit.recipes.targets import STREAMS, TARGETS

__all__ = [
    "ArchitectureSpec",
    "SPECS",
    "STREAMS",
    "TARGETS",
    "default_layers",
    "find_target_layers",
    "spec_for_class",
    "spec_for_pipeline",
]


@dataclass(frozen=True)
class ArchitectureSpec:
    """How cpedit handles one family of pipelines.

    Attributes:
        name: Short name (``sd``, ``sdxl``, ``sd3``, ``flux``, ``pixart``, ``sana``).
        label: Human name for messages and docs.
        pipelines: Pipeline class names of the family.
        denoiser: The denoiser component (``unet`` or ``transformer``).
        guidance: ``cfg`` (classifier-free guidance: the denoiser batch is [uncond; cond]
            when guidance_scale > 1) or ``distilled`` (guidance is an input of the
            denoiser; one batch item per prompt).
        streams: The feed-forward streams: ``("image",)``, or ``("image", "text")`` for
            MMDiT/FLUX blocks with a separate text-stream FFN (``ff_context``).
        text_encoders: The text encoder components, in order.
        call_kwargs: Extra arguments calibration passes to the pipeline's ``__call__``.
        refused_targets: Hook targets that do not apply to the family, each with the reason
            (a recipe asking for one is refused with it before anything loads or runs).
    """

    name: str
    label: str
    pipelines: tuple[str, ...]
    denoiser: str
    guidance: str
    streams: tuple[str, ...]
    text_encoders: tuple[str, ...]
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    refused_targets: Mapping[str, str] = field(default_factory=dict)


SPECS: tuple[ArchitectureSpec, ...] = (
    ArchitectureSpec(
        name="sd",
        label="Stable Diffusion 1.x / 2.x (UNet, CLIP; epsilon or v-prediction)",
        pipelines=("StableDiffusionPipeline",),
        denoiser="unet",
        guidance="cfg",
        streams=("image",),
        text_encoders=("text_encoder",),
    ),
    ArchitectureSpec(
        name="sdxl",
        label="Stable Diffusion XL (UNet, two CLIP text encoders, added conditioning)",
        pipelines=("StableDiffusionXLPipeline",),
        denoiser="unet",
        guidance="cfg",
        streams=("image",),
        text_encoders=("text_encoder", "text_encoder_2"),
    ),
    ArchitectureSpec(
        name="sd3",
        label="Stable Diffusion 3 / 3.5 (MMDiT: image and text stream per block)",
        pipelines=("StableDiffusion3Pipeline",),
        denoiser="transformer",
        guidance="cfg",
        streams=("image", "text"),
        text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
    ),
    ArchitectureSpec(
        name="flux",
        label="FLUX.1 (guidance-distilled MMDiT: double- and single-stream blocks)",
        pipelines=("FluxPipeline",),
        denoiser="transformer",
        guidance="distilled",
        streams=("image", "text"),
        text_encoders=("text_encoder", "text_encoder_2"),
    ),
    ArchitectureSpec(
        name="pixart",
        label="PixArt-alpha / PixArt-sigma (DiT with GELU feed-forwards, T5)",
        pipelines=("PixArtAlphaPipeline", "PixArtSigmaPipeline"),
        denoiser="transformer",
        guidance="cfg",
        streams=("image",),
        text_encoders=("text_encoder",),
        # Resolution binning only resizes the decoded image; calibration never decodes and
        # runs at the recipe's (or the native) size exactly. Caption cleaning depends on
        # optional packages (beautifulsoup4, ftfy) being installed: off, so the prompts are
        # encoded exactly as the recipe writes them, whatever is installed.
        call_kwargs={"use_resolution_binning": False, "clean_caption": False},
    ),
    ArchitectureSpec(
        name="sana",
        label="Sana (linear-attention DiT with convolutional GLU feed-forwards, Gemma 2)",
        pipelines=("SanaPipeline",),
        denoiser="transformer",
        guidance="cfg",
        streams=("image",),
        text_encoders=("text_encoder",),
        # As PixArt: binning resizes only the decoded image (and accepts only the four native
        # sizes); captions are encoded as written. The complex human instruction that SanaPipeline
        # puts before every prompt by default is kept: calibration encodes what generation encodes.
        call_kwargs={"use_resolution_binning": False, "clean_caption": False},
    ),
)

_BY_PIPELINE = {pipeline: spec for spec in SPECS for pipeline in spec.pipelines}


def spec_for_class(pipeline_class: str) -> ArchitectureSpec | None:
    """The spec of a pipeline class name (``model_index.json``'s ``_class_name``), or None."""
    return _BY_PIPELINE.get(pipeline_class)


def default_layers(pipeline_class: str, denoiser: nn.Module) -> list[FFNLayer]:
    """The layers ``cpedit prune`` hooks by default (target ``ffn``, image stream) in ``denoiser``.

    For a pipeline class without a spec, every diffusers FeedForward output projection.
    Works on a meta-device denoiser (nothing is read from its weights), as ``cpedit models
    info`` builds it.
    """
    spec = _BY_PIPELINE.get(pipeline_class)
    if spec is None:
        from cpedit.models.ffn import find_ffn_output_layers

        return find_ffn_output_layers(denoiser)
    return find_target_layers(None, spec, denoiser=denoiser)


def spec_for_pipeline(pipe: Any) -> ArchitectureSpec | None:
    """The spec of a pipeline object (its class or a base class), or None."""
    for cls in type(pipe).__mro__:
        spec = _BY_PIPELINE.get(cls.__name__)
        if spec is not None:
            return spec
    return None


def _linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear) and n.startswith("net.")]


def _is_text_stream(modules: dict[str, nn.Module], name: str, module: nn.Module) -> bool:
    """A ``FeedForward`` is the text stream when its parent block holds it as ``ff_context``."""
    parent = modules.get(name.rsplit(".", 1)[0]) if "." in name else None
    return parent is not None and getattr(parent, "ff_context", None) is module


def _denoiser_layers(denoiser: nn.Module, component: str, *, target: str, stream: str) -> list[FFNLayer]:
    from diffusers.models.attention import FeedForward

    want = {"image", "text"} if stream == "both" else {stream}
    modules = dict(denoiser.named_modules())
    layers: list[FFNLayer] = []
    for name, module in denoiser.named_modules():
        prefix = f"{name}." if name else ""
        if target in ("ffn", "ffn-in") and isinstance(module, FeedForward):
            if ("text" if _is_text_stream(modules, name, module) else "image") not in want:
                continue
            linears = _linears(module)
            if linears:
                sub, linear = linears[-1] if target == "ffn" else linears[0]
                layers.append(FFNLayer(name=prefix + sub, module=linear, component=component))
        elif target in ("ffn", "ffn-in") and _is_conv_glu(module):
            sub = "conv_point" if target == "ffn" else "conv_inverted"
            layers.append(FFNLayer(name=prefix + sub, module=getattr(module, sub), component=component))
        elif target in ("ffn", "ffn-in") and _is_single_stream_block(module):
            if "image" not in want:
                continue
            mlp, out = module.proj_mlp, module.proj_out
            if target == "ffn":
                columns = (out.in_features - mlp.out_features, out.in_features)
                layers.append(FFNLayer(name=prefix + "proj_out", module=out, component=component, columns=columns))
            else:
                layers.append(FFNLayer(name=prefix + "proj_mlp", module=mlp, component=component))
        elif target in ("attn-key", "attn-value") and isinstance(getattr(module, "to_k", None), nn.Linear):
            if getattr(module, "is_cross_attention", False):
                attr = "to_k" if target == "attn-key" else "to_v"
            elif isinstance(getattr(module, "add_k_proj", None), nn.Linear):
                attr = "add_k_proj" if target == "attn-key" else "add_v_proj"
            else:
                continue  # self-attention over image tokens only
            layers.append(FFNLayer(name=prefix + attr, module=getattr(module, attr), component=component))
    return layers


def _is_single_stream_block(module: nn.Module) -> bool:
    """A FLUX-style single-stream block: ``proj_mlp`` (dim -> h) beside attention, ``proj_out`` (dim + h -> dim)."""
    mlp, out = getattr(module, "proj_mlp", None), getattr(module, "proj_out", None)
    return (
        isinstance(mlp, nn.Linear)
        and isinstance(out, nn.Linear)
        and out.in_features == mlp.in_features + mlp.out_features
    )


def _is_conv_glu(module: nn.Module) -> bool:
    """A Sana-style convolutional GLU feed-forward (``GLUMBConv``): 1x1 ``conv_inverted`` (C -> 2h),
    depthwise ``conv_depth``, SiLU gate, 1x1 ``conv_point`` (h -> C)."""
    inverted, point = getattr(module, "conv_inverted", None), getattr(module, "conv_point", None)
    return (
        isinstance(inverted, nn.Conv2d)
        and isinstance(point, nn.Conv2d)
        and isinstance(getattr(module, "conv_depth", None), nn.Conv2d)
        and inverted.out_channels == 2 * point.in_channels
    )


def _text_encoder_layers(pipe: Any, spec: ArchitectureSpec) -> list[FFNLayer]:
    layers: list[FFNLayer] = []
    for component in spec.text_encoders:
        encoder = getattr(pipe, component, None)
        if not isinstance(encoder, nn.Module):
            continue
        for name, module in encoder.named_modules():
            prefix = f"{name}." if name else ""
            fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
            wo = getattr(module, "wo", None)
            if isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear):  # CLIP MLP
                layers.append(FFNLayer(name=prefix + "fc2", module=fc2, component=component, denoiser=False))
            elif isinstance(wo, nn.Linear) and isinstance(
                getattr(module, "wi", getattr(module, "wi_0", None)), nn.Linear
            ):
                layers.append(FFNLayer(name=prefix + "wo", module=wo, component=component, denoiser=False))  # T5
            elif _is_gated_mlp(module):  # Llama, Gemma, Mistral, Qwen: gate_proj/up_proj -> down_proj
                layers.append(
                    FFNLayer(name=prefix + "down_proj", module=module.down_proj, component=component, denoiser=False)
                )
    return layers


def _is_gated_mlp(module: nn.Module) -> bool:
    """A decoder-LLM MLP (Llama, Gemma, Mistral, Qwen): ``down_proj(act(gate_proj(x)) * up_proj(x))``."""
    return all(isinstance(getattr(module, attr, None), nn.Linear) for attr in ("gate_proj", "up_proj", "down_proj"))


def find_target_layers(
    pipe: Any,
    spec: ArchitectureSpec,
    *,
    target: str = "ffn",
    stream: str = "image",
    denoiser: nn.Module | None = None,
) -> list[FFNLayer]:
    """The layers a hook target means in a pipeline, in module order.

    Args:
        pipe: The pipeline (may be None when ``denoiser`` is given and the target is in it).
        spec: Its architecture spec.
        target: One of :data:`TARGETS`.
        stream: ``image``, ``text`` or ``both``; selects FFNs of MMDiT/FLUX blocks
            (``ffn`` and ``ffn-in`` only).
        denoiser: The denoiser (default: ``pipe``'s).

    Raises:
        CpeditError: Unknown target or stream, or a text stream asked of a one-stream model.
        UnsupportedModelError: The target does not apply to the family (``spec.refused_targets``).
    """
    if target not in TARGETS:
        raise CpeditError(f"unknown prune target {target!r}; use one of {', '.join(TARGETS)}")
    if stream not in STREAMS:
        raise CpeditError(f"unknown prune stream {stream!r}; use one of {', '.join(STREAMS)}")
    reason = spec.refused_targets.get(target)
    if reason is not None:
        raise UnsupportedModelError(f"prune.target = {target} does not apply to {spec.label}: {reason}")
    if target == "text-ffn":
        return _text_encoder_layers(pipe, spec)
    if denoiser is None:
        denoiser = get_denoiser(pipe)
    if stream != "image" and "text" not in spec.streams and target in ("ffn", "ffn-in"):
        raise CpeditError(
            f"prune.stream = {stream} but {spec.label} has no text-stream feed-forwards; "
            "prune.stream applies to SD3 and FLUX (use image, the default)"
        )
    return _denoiser_layers(denoiser, spec.denoiser, target=target, stream=stream)
