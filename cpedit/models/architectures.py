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
image``. Chroma's single-stream blocks are built the same way.

HiDream-I1's feed-forwards are SwiGLU (``w2(silu(w1(x)) * w3(x))``), not diffusers
``FeedForward`` blocks. The image stream of every block (``ff_i``, dual- and
single-stream blocks alike) is a mixture of experts: a router (``gate``, never a
target), routed experts and shared experts. ``ffn`` means the ``w2`` of each routed
expert, separately, and of the shared experts; ``ffn-in`` their ``w1`` and ``w3`` (both
read the block's normalised hidden state). A routed expert sees only the tokens routed
to it (see :mod:`cpedit.models.moe`). The dual-stream blocks' text stream (``ff_t``) is
a plain SwiGLU feed-forward; the text-stream key/value projections of their joint
attention are ``to_k_t`` / ``to_v_t``.

Qwen-Image's dual-stream blocks hold their text-stream ``FeedForward`` as ``txt_mlp`` (image:
``img_mlp``). Z-Image's feed-forwards are gated SiLU MLPs (``w2(silu(w1 x) * w3 x)``): ``ffn``
is ``w2`` and ``ffn-in`` both ``w1`` and ``w3`` (they read the same input); the caption
refiner blocks (``spec.text_blocks``) are its text stream, the noise refiner and the main
single-stream blocks its image stream.

FLUX.2 goes further: its feed-forwards are SwiGLU ``linear_in`` (dim -> 2 h, gate and value
halves) -> ``linear_out`` (h -> dim), and its single-stream blocks fuse attention and MLP in
one input projection ``to_qkv_mlp_proj`` (dim -> 3 inner + 2 h: Q, K, V, then the MLP's gate
and value) and one output projection ``to_out`` (inner + h -> dim). ``ffn`` hooks the MLP
columns of ``to_out`` (its last h input features); ``ffn-in`` hooks ``to_qkv_mlp_proj``
(its input is the block's normalised hidden state, shared by attention and MLP) and prunes
only its MLP rows (the last 2 h output features), never a Q, K or V weight.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from cpedit.errors import CpeditError, UnsupportedModelError
from cpedit.models.ffn import ExpertRoute, FFNLayer, RowMask, get_denoiser
from cpedit.models.moe import is_moe_block, is_swiglu, parts
from cpedit.recipes.targets import STREAMS, TARGETS

__all__ = [
    "ArchitectureSpec",
    "SPECS",
    "STREAMS",
    "TARGETS",
    "check_targets_apply",
    "default_layers",
    "denoiser_components",
    "find_target_layers",
    "guidance_arguments",
    "spec_for_class",
    "spec_for_pipeline",
]


@dataclass(frozen=True)
class ArchitectureSpec:
    """How cpedit handles one family of pipelines.

    Attributes:
        name: Short name (``sd``, ``sdxl``, ``sd3``, ``flux``, ``pixart``, ``hidream``, ``sana``, ...).
        label: Human name for messages and docs.
        pipelines: Pipeline class names of the family.
        denoiser: The denoiser component (``unet`` or ``transformer``).
        guidance: ``cfg`` (classifier-free guidance: the denoiser batch is [uncond; cond]
            when guidance_scale > 1) or ``distilled`` (guidance is an input of the
            denoiser; one batch item per prompt).
        streams: The feed-forward streams: ``("image",)``, or ``("image", "text")`` for
            MMDiT/FLUX/HiDream blocks with a separate text-stream FFN (``ff_context``, ``ff_t``).
        text_encoders: The text encoder components, in order.
        call_kwargs: Extra arguments calibration passes to the pipeline's ``__call__``.
        refused_targets: Hook targets that do not apply to the family, each with the reason
            (a recipe asking for one is refused with it before anything loads or runs).
        native_area: The pipeline generates every image at its native pixel area, whatever
            height and width it is asked for (HiDream: the aspect ratio is kept, the sides
            rescaled to that area and rounded down to multiples of twice the VAE factor);
            calibration records the size the pipeline runs.
        guidance_argument: The ``__call__`` argument that takes the recipe's guidance scale
            (Qwen-Image: ``true_cfg_scale``; its ``guidance_scale`` is for guidance-distilled
            checkpoints only).
        negative_prompt: For a pipeline that guides only when given a negative prompt
            (Qwen-Image), the one calibration passes for every prompt when the guidance scale is
            above 1, so the recipe's guidance is applied as it asks; None: the pipeline's own default.
        text_padding: ``longest`` when the pipeline pads a batch's prompts to its longest
            (then the padding rows of the text encoders' ``text-ffn`` layers are left out of the
            statistics: a prompt calibrated alone has none); ``fixed`` when every prompt is
            padded alike (CLIP, T5, Z-Image's fixed length), or not padded at all.
        text_blocks: Name prefixes of denoiser blocks that carry only text tokens (Z-Image's
            caption refiner): their feed-forwards are the text stream.
        native_pixels: The default image side in pixels, for a pipeline whose default size is
            a constant of its ``__call__`` (Z-Image: 1024) rather than a ``sample_size``.
        extra_denoisers: Further denoiser components that take over some of the steps (Wan 2.2
            A14B's low-noise ``transformer_2``). Denoiser targets hook each one present in the
            pipeline, with statistics of the steps it runs; their layers' keys are
            ``component/name`` (the first denoiser's stay plain names).
        default_size: ``(height, width)`` calibration runs at when the recipe gives none (None: the
            pipeline's native size), for families whose native size is a long video.
        sample_frames: Frames of a clip ``cpedit sample`` and the preview render (video families
            only; None for image families). Calibration's clip length is ``call_kwargs``'
            ``num_frames``.
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
    native_area: bool = False
    guidance_argument: str = "guidance_scale"
    negative_prompt: str | None = None
    text_padding: str = "fixed"
    text_blocks: tuple[str, ...] = ()
    native_pixels: int | None = None
    extra_denoisers: tuple[str, ...] = ()
    default_size: tuple[int, int] | None = None
    sample_frames: int | None = None

    @property
    def denoisers(self) -> tuple[str, ...]:
        """Every denoiser component, the main one first."""
        return (self.denoiser, *self.extra_denoisers)


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
        name="hidream",
        label="HiDream-I1 (sparse DiT: mixture-of-experts feed-forwards, dual- and single-stream blocks)",
        pipelines=("HiDreamImagePipeline",),
        denoiser="transformer",
        # I1-Full runs classifier-free guidance ([uncond; cond]); I1-Dev and -Fast are distilled and
        # run with guidance_scale 0, which turns it off: the recipe's guidance_scale decides.
        guidance="cfg",
        streams=("image", "text"),
        text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3", "text_encoder_4"),
        native_area=True,
    ),
    ArchitectureSpec(
        name="qwen-image",
        label="Qwen-Image (MMDiT: image and text stream per block, Qwen2.5-VL text encoder)",
        pipelines=("QwenImagePipeline",),
        denoiser="transformer",
        # true CFG: the negative prompt's prediction is a separate denoiser call in the same step
        guidance="cfg",
        streams=("image", "text"),
        text_encoders=("text_encoder",),
        guidance_argument="true_cfg_scale",
        # the pipeline guides only when given a negative prompt; " " is the one its documentation
        # and Qwen's model card use for "no negative prompt"
        negative_prompt=" ",
        text_padding="longest",
    ),
    ArchitectureSpec(
        name="z-image",
        label="Z-Image (single-stream DiT with gated SiLU feed-forwards, Qwen3 text encoder)",
        pipelines=("ZImagePipeline",),
        denoiser="transformer",
        guidance="cfg",  # the batch is [cond; uncond] (conditional half first); guided when guidance_scale > 0
        streams=("image", "text"),
        text_encoders=("text_encoder",),
        text_blocks=("context_refiner",),
        native_pixels=1024,
        refused_targets={
            "attn-key": "its single-stream attention projects text and image tokens with the same key "
            "projection; there is no text-only key projection",
            "attn-value": "its single-stream attention projects text and image tokens with the same value "
            "projection; there is no text-only value projection",
        },
    ),
    ArchitectureSpec(
        name="wan",
        label="Wan 2.1 / 2.2 text-to-video (DiT with 3-D patches, UMT5; 2.2 A14B: high- and low-noise transformers)",
        pipelines=("WanPipeline",),
        denoiser="transformer",
        guidance="cfg",  # the unconditional half is a second denoiser call of the same step
        streams=("image",),
        text_encoders=("text_encoder",),
        # A short clip: 9 frames are 3 latent frames (Wan's VAE compresses time 4x after the
        # first frame), at half of Wan's 480x832 (the pipeline's own default is 81 frames).
        call_kwargs={"num_frames": 9},
        extra_denoisers=("transformer_2",),
        default_size=(240, 416),
        sample_frames=17,
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
    ArchitectureSpec(
        name="chroma",
        label="Chroma (FLUX-like double- and single-stream DiT, T5; unconditional half as a separate call)",
        pipelines=("ChromaPipeline",),
        denoiser="transformer",
        guidance="cfg",
        streams=("image", "text"),
        text_encoders=("text_encoder",),
    ),
    ArchitectureSpec(
        name="flux2",
        label="FLUX.2 dev (guidance-distilled DiT with SwiGLU and fused single-stream blocks, Mistral)",
        pipelines=("Flux2Pipeline",),
        denoiser="transformer",
        guidance="distilled",
        streams=("image", "text"),
        text_encoders=("text_encoder",),
    ),
    ArchitectureSpec(
        name="flux2-klein",
        label="FLUX.2 klein (FLUX.2 DiT, Qwen3; base: unconditional half as a separate call, distilled: none)",
        pipelines=("Flux2KleinPipeline",),
        denoiser="transformer",
        guidance="cfg",
        streams=("image", "text"),
        text_encoders=("text_encoder",),
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


def denoiser_components(pipe: Any) -> dict[str, nn.Module]:
    """Every denoiser component ``pipe`` holds, by name, the main one first (Wan 2.2: also ``transformer_2``)."""
    spec = spec_for_pipeline(pipe)
    main = get_denoiser(pipe)
    names = spec.denoisers if spec is not None else ()
    found = {name: getattr(pipe, name) for name in names if isinstance(getattr(pipe, name, None), nn.Module)}
    if main not in found.values():
        found = {name: main for name in ("unet", "transformer") if getattr(pipe, name, None) is main} | found
    return found


def check_targets_apply(pipeline_class: str, targets: Sequence[tuple[str, str]]) -> None:
    """Refuse, before a model loads, a recipe target its family does not have (``spec.refused_targets``).

    Args:
        pipeline_class: ``model_index.json``'s ``_class_name``.
        targets: ``(recipe name, prune target)`` of each recipe.

    Raises:
        UnsupportedModelError: A target does not apply; the message names the recipe, the family
            and the reason.
    """
    spec = _BY_PIPELINE.get(pipeline_class)
    if spec is None:
        return
    for name, target in targets:
        reason = spec.refused_targets.get(target)
        if reason is not None:
            raise UnsupportedModelError(f"{name}: prune.target = {target} does not apply to {spec.label}: {reason}")


def spec_for_pipeline(pipe: Any) -> ArchitectureSpec | None:
    """The spec of a pipeline object (its class or a base class), or None."""
    for cls in type(pipe).__mro__:
        spec = _BY_PIPELINE.get(cls.__name__)
        if spec is not None:
            return spec
    return None


def _linears(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear) and n.startswith("net.")]


_TEXT_STREAM_FFNS = ("ff_context", "ff_t", "txt_mlp")
"""Where a dual-stream block holds its text-stream feed-forward (MMDiT/FLUX, HiDream, Qwen-Image)."""
_TEXT_KEY_VALUE = (("add_k_proj", "add_v_proj"), ("to_k_t", "to_v_t"))
"""The text stream's key and value projections of a joint attention (MMDiT/FLUX/Qwen-Image, HiDream)."""


def _parent(modules: dict[str, nn.Module], name: str) -> nn.Module | None:
    return modules.get(name.rsplit(".", 1)[0]) if "." in name else None


def _is_text_stream(modules: dict[str, nn.Module], name: str, module: nn.Module) -> bool:
    """A feed-forward is the text stream when its parent block holds it as one of :data:`_TEXT_STREAM_FFNS`."""
    parent = _parent(modules, name)
    return parent is not None and any(getattr(parent, attr, None) is module for attr in _TEXT_STREAM_FFNS)


def _swiglu_layers(
    module: nn.Module,
    prefix: str,
    component: str,
    *,
    target: str,
    route: ExpertRoute | None = None,
    padding: RowMask | None = None,
) -> list[FFNLayer]:
    """``ffn``: a SwiGLU feed-forward's ``w2``; ``ffn-in``: its ``w1`` and ``w3`` (HiDream, Z-Image)."""
    names = ("w2",) if target == "ffn" else ("w1", "w3")
    return [
        FFNLayer(name=prefix + sub, module=getattr(module, sub), component=component, route=route, padding=padding)
        for sub in names
    ]


def _moe_layers(block: nn.Module, prefix: str, component: str, *, target: str) -> list[FFNLayer]:
    """A mixture-of-experts feed-forward: the shared experts, then each routed expert (the router is left alone)."""
    _, shared, experts = parts(block)
    layers = _swiglu_layers(shared, f"{prefix}shared_experts.", component, target=target)
    for index, expert in enumerate(experts):
        route = ExpertRoute(block=block, expert=index)
        layers += _swiglu_layers(expert, f"{prefix}experts.{index}.", component, target=target, route=route)
    return layers


_PADDING_MASKS = ("encoder_hidden_states_mask", "attn_mask")
"""Arguments of a block's ``forward`` that mark its padding rows: Qwen-Image's text mask, Z-Image's sequence mask."""


def _row_mask(block: nn.Module | None, *, text: bool) -> RowMask | None:
    """Where the FFN of ``block`` finds its batch-padding mask, if the block is given one.

    Qwen-Image's ``encoder_hidden_states_mask`` covers text rows only (the text stream);
    Z-Image's ``attn_mask`` covers every row of the block's one sequence.
    """
    if block is None:
        return None
    parameters = list(inspect.signature(block.forward).parameters)
    for keyword in _PADDING_MASKS:
        if keyword in parameters and (text or keyword == "attn_mask"):
            return RowMask(module=block, keyword=keyword, position=parameters.index(keyword))
    return None


def _denoiser_layers(
    denoiser: nn.Module, component: str, *, target: str, stream: str, text_blocks: tuple[str, ...] = ()
) -> list[FFNLayer]:
    from diffusers.models.attention import FeedForward

    want = {"image", "text"} if stream == "both" else {stream}
    modules = dict(denoiser.named_modules())
    layers: list[FFNLayer] = []
    experts: set[int] = set()  # the SwiGLU experts of the mixture-of-experts blocks seen so far
    for name, module in denoiser.named_modules():
        prefix = f"{name}." if name else ""
        parent = _parent(modules, name)
        if target in ("ffn", "ffn-in") and is_moe_block(module):
            experts.update(id(expert) for expert in (parts(module)[1], *parts(module)[2]))
            if ("text" if _is_text_stream(modules, name, module) else "image") in want:
                layers += _moe_layers(module, prefix, component, target=target)
        elif target in ("ffn", "ffn-in") and is_swiglu(module):  # HiDream, Z-Image
            if id(module) in experts:
                continue  # its mixture-of-experts block (visited first) lists it
            text = _is_text_stream(modules, name, module) or any(name.startswith(f"{b}.") for b in text_blocks)
            if ("text" if text else "image") in want:
                layers += _swiglu_layers(module, prefix, component, target=target, padding=_row_mask(parent, text=text))
        elif target in ("ffn", "ffn-in") and isinstance(module, FeedForward):
            text = _is_text_stream(modules, name, module)
            if ("text" if text else "image") not in want:
                continue
            linears = _linears(module)
            if linears:
                sub, linear = linears[-1] if target == "ffn" else linears[0]
                padding = _row_mask(parent, text=True) if text else None
                layers.append(FFNLayer(name=prefix + sub, module=linear, component=component, padding=padding))
        elif target in ("ffn", "ffn-in") and _is_swiglu_ffn(module):
            if ("text" if _is_text_stream(modules, name, module) else "image") not in want:
                continue
            sub = "linear_out" if target == "ffn" else "linear_in"
            layers.append(FFNLayer(name=prefix + sub, module=getattr(module, sub), component=component))
        elif target in ("ffn", "ffn-in") and _is_fused_parallel_attention(module):
            if "image" in want:
                layers.append(_fused_mlp_layer(module, prefix, component, target=target))
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
            else:
                pair = next((p for p in _TEXT_KEY_VALUE if isinstance(getattr(module, p[0], None), nn.Linear)), None)
                if pair is None:
                    continue  # self-attention over image tokens only (or a single-stream block's shared projections)
                attr = pair[0] if target == "attn-key" else pair[1]
            layers.append(FFNLayer(name=prefix + attr, module=getattr(module, attr), component=component))
    return layers


def _is_swiglu_ffn(module: nn.Module) -> bool:
    """A FLUX.2 feed-forward: ``linear_in`` (dim -> 2 h, gate and value) -> SwiGLU -> ``linear_out`` (h -> dim)."""
    first, last = getattr(module, "linear_in", None), getattr(module, "linear_out", None)
    return isinstance(first, nn.Linear) and isinstance(last, nn.Linear) and first.out_features == 2 * last.in_features


def _is_fused_parallel_attention(module: nn.Module) -> bool:
    """A FLUX.2 single-stream attention: ``to_qkv_mlp_proj`` (dim -> 3 inner + m h), ``to_out`` (inner + h -> dim)."""
    fused, out = getattr(module, "to_qkv_mlp_proj", None), getattr(module, "to_out", None)
    hidden, factor = getattr(module, "mlp_hidden_dim", None), getattr(module, "mlp_mult_factor", None)
    if not (isinstance(fused, nn.Linear) and isinstance(out, nn.Linear)):
        return False
    if not (isinstance(hidden, int) and isinstance(factor, int) and 0 < hidden < out.in_features):
        return False
    inner = out.in_features - hidden
    return fused.out_features == 3 * inner + factor * hidden


def _fused_mlp_layer(module: nn.Module, prefix: str, component: str, *, target: str) -> FFNLayer:
    """The MLP part of a FLUX.2 fused projection: ``to_out``'s MLP columns, or ``to_qkv_mlp_proj``'s MLP rows."""
    fused, out, hidden = module.to_qkv_mlp_proj, module.to_out, module.mlp_hidden_dim
    assert isinstance(fused, nn.Linear) and isinstance(out, nn.Linear) and isinstance(hidden, int)  # checked above
    if target == "ffn":
        columns = (out.in_features - hidden, out.in_features)
        return FFNLayer(name=prefix + "to_out", module=out, component=component, columns=columns)
    rows = (3 * (out.in_features - hidden), fused.out_features)
    return FFNLayer(name=prefix + "to_qkv_mlp_proj", module=fused, component=component, rows=rows)


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
        padding = _row_mask_of_encoder(encoder) if spec.text_padding == "longest" else None
        for name, module in encoder.named_modules():
            if _in_vision_tower(name):
                continue  # a multimodal text encoder's image side never sees the prompt
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
                    FFNLayer(
                        name=prefix + "down_proj",
                        module=module.down_proj,
                        component=component,
                        denoiser=False,
                        padding=padding,
                    )
                )
    return layers


def _row_mask_of_encoder(encoder: nn.Module) -> RowMask | None:
    """A text encoder's ``attention_mask`` argument: the padding of a batch padded to its longest prompt."""
    parameters = list(inspect.signature(encoder.forward).parameters)
    if "attention_mask" not in parameters:
        return None
    return RowMask(module=encoder, keyword="attention_mask", position=parameters.index("attention_mask"))


_VISION_PARTS = frozenset({"vision_tower", "vision_model", "visual", "multi_modal_projector"})
"""Submodule names of a multimodal text encoder's image side (FLUX.2's Mistral 3 holds a Pixtral tower,
Qwen2.5-VL ``model.visual``): a text-to-image pipeline gives them no image, so ``text-ffn`` takes the
language model's MLPs only."""


def _in_vision_tower(name: str) -> bool:
    return not _VISION_PARTS.isdisjoint(name.split("."))


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
        denoiser: The denoiser to search (default: every denoiser component of ``pipe``,
            :attr:`ArchitectureSpec.denoisers`).

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
    if stream != "image" and "text" not in spec.streams and target in ("ffn", "ffn-in"):
        raise CpeditError(
            f"prune.stream = {stream} but {spec.label} has no text-stream feed-forwards; "
            f"prune.stream applies to {', '.join(s.label.split(' (')[0] for s in SPECS if 'text' in s.streams)} "
            "(use image, the default)"
        )

    def layers_of(module: nn.Module, component: str) -> list[FFNLayer]:
        return _denoiser_layers(module, component, target=target, stream=stream, text_blocks=spec.text_blocks)

    if denoiser is not None:
        return layers_of(denoiser, spec.denoiser)
    layers = layers_of(get_denoiser(pipe), spec.denoiser)
    for component in spec.extra_denoisers:  # each one the pipeline has (Wan 2.1 has no transformer_2)
        extra = getattr(pipe, component, None)
        if isinstance(extra, nn.Module):
            found = layers_of(extra, component)
            layers += [dataclasses.replace(layer, denoiser=False) for layer in found]  # keyed component/name
    return layers


def guidance_arguments(spec: ArchitectureSpec | None, guidance_scale: float, *, prompts: int) -> dict[str, Any]:
    """The ``__call__`` arguments that apply a recipe's guidance scale to ``prompts`` prompts.

    ``{"guidance_scale": g}`` for most families. Qwen-Image takes it as ``true_cfg_scale`` and
    guides only when given a negative prompt: above 1 it gets ``spec.negative_prompt`` for
    every prompt (as a list, one per prompt), and ``guidance_scale`` (its distilled-guidance
    input) is left unset.
    """
    if spec is None or spec.guidance_argument == "guidance_scale":
        return {"guidance_scale": guidance_scale}
    arguments: dict[str, Any] = {spec.guidance_argument: guidance_scale, "guidance_scale": None}
    if spec.negative_prompt is not None and guidance_scale > 1.0:
        arguments["negative_prompt"] = [spec.negative_prompt] * prompts
    return arguments
