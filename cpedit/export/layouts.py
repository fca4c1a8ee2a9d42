"""The single-file checkpoint layouts: diffusers' component weights -> the original checkpoint's keys.

ComfyUI, Automatic1111 and Forge load a model as one ``.safetensors`` file in the layout its authors
released (the "LDM" keys: ``model.diffusion_model.input_blocks.1.1...``, ``first_stage_model.``,
``cond_stage_model.``; for FLUX.1 the transformer alone, in Black Forest Labs' keys). diffusers'
``from_single_file`` reads that layout with its converters in ``diffusers.loaders.single_file_utils``
(``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint``,
``convert_open_clip_checkpoint``, ``convert_sd3_transformer_checkpoint_to_diffusers``,
``convert_flux_transformer_checkpoint_to_diffusers``, ``convert_sd3_t5_checkpoint_to_diffusers``).
This module is their inverse, written once: for each component, a :class:`Target` per checkpoint
tensor, saying which diffusers tensors it is made of and how. Where diffusers has the mapping as a
table (``DIFFUSERS_TO_LDM_MAPPING``: the UNet's, VAE's and OpenCLIP's fixed names), the table is used
as it is; the block numbering and the fused tensors follow the converters' code.

Every checkpoint tensor is the concatenation along dim 0 of its pieces (``qkv`` = ``to_q``,
``to_k``, ``to_v``; FLUX's ``linear1`` = ``to_q``, ``to_k``, ``to_v``, ``proj_mlp``), each piece
taken as it is, with its two halves swapped (the final AdaLN's ``shift, scale`` order, which
diffusers swaps to ``scale, shift``) or transposed (OpenCLIP's ``text_projection``), then reshaped
(the VAE's attention projections are 1x1 convolutions in the checkpoint). :func:`check_with_converter`
runs diffusers' own converter over the planned keys and shapes (on the meta device: no memory) and
refuses a plan that does not give back exactly the component's tensors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal

from cpedit.errors import CpeditError

Op = Literal["", "swap_halves", "transpose"]
Layout = Literal["unet", "vae", "clip", "open_clip", "t5", "sd3", "flux"]


@dataclass(frozen=True)
class Piece:
    """One diffusers tensor of a checkpoint tensor.

    Attributes:
        key: Its name in the component's safetensors files.
        op: ``""`` (as it is), ``swap_halves`` (the two halves of dim 0 swapped) or ``transpose``.
    """

    key: str
    op: Op = ""


@dataclass(frozen=True)
class Target:
    """One tensor of the single file.

    Attributes:
        name: Its checkpoint key (prefix included).
        component: The diffusers component its pieces come from (``unet``).
        pieces: Concatenated along dim 0, in order.
        shape: Its shape in the checkpoint (the pieces' elements, reshaped).
    """

    name: str
    component: str
    pieces: tuple[Piece, ...]
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ComponentLayout:
    """Where one diffusers component goes in a single file.

    Attributes:
        component: The pipeline's component folder (``unet``, ``text_encoder_2``).
        layout: Which inverse applies.
        prefix: The checkpoint's prefix for it (``model.diffusion_model.``).
        required: Whether a pipeline without this component cannot be exported.
    """

    component: str
    layout: Layout
    prefix: str
    required: bool = True


FAMILIES: dict[str, tuple[ComponentLayout, ...]] = {
    "sd1": (
        ComponentLayout("unet", "unet", "model.diffusion_model."),
        ComponentLayout("vae", "vae", "first_stage_model."),
        ComponentLayout("text_encoder", "clip", "cond_stage_model.transformer."),
    ),
    "sd2": (
        ComponentLayout("unet", "unet", "model.diffusion_model."),
        ComponentLayout("vae", "vae", "first_stage_model."),
        ComponentLayout("text_encoder", "open_clip", "cond_stage_model.model."),
    ),
    "sdxl": (
        ComponentLayout("unet", "unet", "model.diffusion_model."),
        ComponentLayout("vae", "vae", "first_stage_model."),
        ComponentLayout("text_encoder", "clip", "conditioner.embedders.0.transformer."),
        ComponentLayout("text_encoder_2", "open_clip", "conditioner.embedders.1.model."),
    ),
    "sd3": (
        ComponentLayout("transformer", "sd3", "model.diffusion_model."),
        ComponentLayout("vae", "vae", "first_stage_model."),
        ComponentLayout("text_encoder", "clip", "text_encoders.clip_l.transformer."),
        ComponentLayout("text_encoder_2", "clip", "text_encoders.clip_g.transformer."),
        ComponentLayout("text_encoder_3", "t5", "text_encoders.t5xxl.transformer.", required=False),
    ),
    "flux": (ComponentLayout("transformer", "flux", ""),),
}
"""Per family, the components of its single file, in the file's order. SD 2.x's text encoder is
OpenCLIP ViT-H (``cond_stage_model.model.``); FLUX.1's file is the transformer alone, in Black Forest
Labs' keys without a prefix, as ComfyUI, Forge and diffusers load it (the text encoders and the VAE
are separate files in those tools)."""

FAMILY_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "sd3": "SD3", "flux": "FLUX.1"}


def family_of(pipeline_class: str, text_encoder_config: Mapping[str, Any]) -> str | None:
    """The single-file family of a pipeline class (None: not one cpedit exports).

    ``StableDiffusionPipeline`` is SD 1.x with OpenAI's CLIP text encoder (``quick_gelu``) and
    SD 2.x with OpenCLIP's (``gelu``): their checkpoints store the text encoder differently.
    """
    if pipeline_class == "StableDiffusionPipeline":
        return "sd2" if text_encoder_config.get("hidden_act") == "gelu" else "sd1"
    return {
        "StableDiffusionXLPipeline": "sdxl",
        "StableDiffusion3Pipeline": "sd3",
        "FluxPipeline": "flux",
    }.get(pipeline_class)


class LayoutError(CpeditError):
    """A component's tensors do not fit its single-file layout (``reason="mismatch"`` or ``unsupported``)."""


# --- The plan of one component ------------------------------------------------------------------


def plan_component(
    layout: ComponentLayout, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]
) -> list[Target]:
    """The checkpoint tensors of one component: every tensor of ``shapes`` used exactly once.

    Args:
        layout: The component and where it goes.
        shapes: The component's tensors (name -> shape), from its safetensors headers.
        config: Its ``config.json``.

    Raises:
        LayoutError: A tensor has no place in the layout, or two land on one checkpoint key.
    """
    planner = _PLANNERS[layout.layout]
    parts: dict[str, list[tuple[int, Piece]]] = {}
    reshape: dict[str, tuple[int, ...]] = {}
    for key in shapes:
        placed = planner(key, shapes, config)
        if placed is None:
            raise LayoutError(
                f"{layout.component}: tensor {key} has no place in the single-file layout cpedit writes "
                f"(diffusers' from_single_file would not read it back)",
                reason="mismatch",
            )
        name, order, piece, shape = placed
        parts.setdefault(name, []).append((order, piece))
        if shape is not None:
            reshape[name] = shape
    targets = []
    for name, pieces in parts.items():
        ordered = tuple(piece for _, piece in sorted(pieces, key=lambda item: item[0]))
        if len({order for order, _ in pieces}) != len(pieces):
            raise LayoutError(f"{layout.component}: two tensors land on {layout.prefix}{name}", reason="mismatch")
        shape = reshape.get(name) or _concatenated_shape([_piece_shape(p, shapes) for p in ordered])
        targets.append(Target(name=layout.prefix + name, component=layout.component, pieces=ordered, shape=shape))
    return targets


def _piece_shape(piece: Piece, shapes: Mapping[str, tuple[int, ...]]) -> tuple[int, ...]:
    shape = shapes[piece.key]
    return tuple(reversed(shape)) if piece.op == "transpose" else shape


def _concatenated_shape(shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    first = shapes[0]
    if any(len(s) != len(first) or s[1:] != first[1:] for s in shapes[1:]):
        raise LayoutError(f"tensors of shapes {shapes} cannot be fused along their first dimension", reason="mismatch")
    return (sum(s[0] for s in shapes), *first[1:])


Placed = tuple[str, int, Piece, "tuple[int, ...] | None"]
"""(checkpoint key without prefix, order among its pieces, the piece, its checkpoint shape if reshaped)."""
Planner = Callable[[str, Mapping[str, tuple[int, ...]], Mapping[str, Any]], "Placed | None"]


def _renamed(name: str, op: Op = "", *, order: int = 0, source: str, shape: tuple[int, ...] | None = None) -> Placed:
    return name, order, Piece(source, op), shape


# --- UNet (SD 1.x/2.x, SDXL) ---------------------------------------------------------------------

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
"""diffusers' resnet names -> the checkpoint's (``update_unet_resnet_ldm_to_diffusers``, inverted)."""


def _unet_prefixes(config: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """diffusers block prefix -> (checkpoint prefix, is a resnet): ``convert_ldm_unet_checkpoint``'s numbering."""
    per_block = int(config["layers_per_block"])
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    prefixes: dict[str, tuple[str, bool]] = {}
    n = 1
    for b in range(len(down)):
        for j in range(per_block):
            prefixes[f"down_blocks.{b}.resnets.{j}."] = (f"input_blocks.{n}.0.", True)
            prefixes[f"down_blocks.{b}.attentions.{j}."] = (f"input_blocks.{n}.1.", False)
            n += 1
        if b < len(down) - 1:
            prefixes[f"down_blocks.{b}.downsamplers.0.conv."] = (f"input_blocks.{n}.0.op.", False)
            n += 1
    prefixes["mid_block.resnets.0."] = ("middle_block.0.", True)
    prefixes["mid_block.attentions.0."] = ("middle_block.1.", False)
    prefixes["mid_block.resnets.1."] = ("middle_block.2.", True)
    n = 0
    for b, kind in enumerate(up):
        for j in range(per_block + 1):
            prefixes[f"up_blocks.{b}.resnets.{j}."] = (f"output_blocks.{n}.0.", True)
            prefixes[f"up_blocks.{b}.attentions.{j}."] = (f"output_blocks.{n}.1.", False)
            if j == per_block and b < len(up) - 1:
                place = 2 if "CrossAttn" in kind else 1
                prefixes[f"up_blocks.{b}.upsamplers.0.conv."] = (f"output_blocks.{n}.{place}.conv.", False)
            n += 1
    return prefixes


def _unet(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    tables: dict[str, Any] = DIFFUSERS_TO_LDM_MAPPING["unet"]  # type: ignore[assignment]
    fixed = dict(tables["layers"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        fixed.update(tables["class_embed_type"])
    if config.get("addition_embed_type") == "text_time":
        fixed.update(tables["addition_embed_type"])
    if key in fixed:
        return _renamed(fixed[key], source=key)
    for prefix, (target, resnet) in _unet_prefix_cache(config).items():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            if resnet:
                rest = _replace_first(rest, _RESNET)
            return _renamed(target + rest, source=key)
    return None


_PREFIX_CACHE: dict[str, dict[str, tuple[str, bool]]] = {}


def _unet_prefix_cache(config: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    signature = repr((config.get("layers_per_block"), config.get("down_block_types"), config.get("up_block_types")))
    if signature not in _PREFIX_CACHE:
        _PREFIX_CACHE.clear()
        _PREFIX_CACHE[signature] = _unet_prefixes(config)
    return _PREFIX_CACHE[signature]


def _replace_first(rest: str, names: tuple[tuple[str, str], ...]) -> str:
    for old, new in names:
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


# --- VAE --------------------------------------------------------------------------------------

_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
    ("query", "q"),  # the names of older diffusers VAE files
    ("key", "k"),
    ("value", "v"),
    ("proj_attn", "proj_out"),
)
"""diffusers' VAE attention names -> the checkpoint's (``update_vae_attentions_ldm_to_diffusers``, inverted)."""


def _vae(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed: dict[str, str] = DIFFUSERS_TO_LDM_MAPPING["vae"]  # type: ignore[assignment]
    if key in fixed:
        return _renamed(fixed[key], source=key)
    blocks = len(config["up_block_types"])
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"encoder.down.{m[1]}.block.{m[2]}."),
        (r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", lambda m: f"encoder.down.{m[1]}.downsample.conv."),
        (
            r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.",
            lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.block.{m[2]}.",
        ),
        (
            r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.",
            lambda m: f"decoder.up.{blocks - 1 - int(m[1])}.upsample.conv.",
        ),
        (r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.", lambda m: f"{m[1]}.mid.block_{int(m[2]) + 1}."),
    ]
    for pattern, target in patterns:
        match = re.match(pattern, key)
        if match:
            rest = key[match.end() :]
            return _renamed(target(match) + rest.replace("conv_shortcut.", "nin_shortcut."), source=key)
    match = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.", key)
    if match:
        rest = _replace_first(key[match.end() :], _VAE_ATTENTION)
        shape = shapes[key]
        if rest.endswith(".weight") and not rest.startswith("norm.") and len(shape) == 2:
            return _renamed(f"{match[1]}.mid.attn_1.{rest}", source=key, shape=(*shape, 1, 1))  # 1x1 convolutions
        return _renamed(f"{match[1]}.mid.attn_1.{rest}", source=key)
    return None


# --- Text encoders ----------------------------------------------------------------------------


def _with_text_model(key: str) -> str:
    """CLIP keys as the checkpoint holds them: transformers 5's ``CLIPTextModel`` saves them without ``text_model.``."""
    if key.startswith("text_model.") or key == "text_projection.weight":
        return key
    return "text_model." + key


def _clip(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    return _renamed(_with_text_model(key), source=key)  # ``convert_ldm_clip_checkpoint`` only strips the prefix


def _t5(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    return _renamed(key, source=key)  # ``convert_sd3_t5_checkpoint_to_diffusers`` only strips the prefix


_QKV = {"q": 0, "k": 1, "v": 2}


def _open_clip(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    tables: dict[str, Any] = DIFFUSERS_TO_LDM_MAPPING["openclip"]  # type: ignore[assignment]
    name = _with_text_model(key)
    if name in tables["layers"]:
        return _renamed(tables["layers"][name], "transpose" if name == "text_projection.weight" else "", source=key)
    match = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", name)
    if match:
        return _renamed(f"transformer.resblocks.{match[1]}.attn.in_proj_{match[3]}", order=_QKV[match[2]], source=key)
    match = re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", name)
    if match is None:
        return None
    rest = match[2]
    for old, new in (("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."),
                     ("mlp.fc2.", "mlp.c_proj."), ("self_attn.out_proj.", "attn.out_proj.")):  # fmt: skip
        if rest.startswith(old):
            return _renamed(f"transformer.resblocks.{match[1]}.{new}{rest[len(old) :]}", source=key)
    return None


# --- Transformers (SD3 MMDiT, FLUX.1) --------------------------------------------------------------


@dataclass(frozen=True)
class _Rule:
    """``pattern`` (a diffusers key, fully matched) -> ``template`` (``{1}``... are its groups).

    ``parts`` orders the tensors fused into one (the group named ``part``); ``swap`` marks the
    final AdaLN, whose halves diffusers swaps (``swap_scale_shift``).
    """

    pattern: str
    template: str
    parts: tuple[str, ...] = ()
    swap: bool = False


_W = r"(weight|bias)"
_TB = r"transformer_blocks\.(\d+)\."
_QKV_PARTS = ("q", "k", "v")

_SD3_RULES = (
    _Rule(r"pos_embed\.pos_embed", "pos_embed"),
    _Rule(rf"pos_embed\.proj\.{_W}", "x_embedder.proj.{1}"),
    _Rule(rf"time_text_embed\.timestep_embedder\.linear_1\.{_W}", "t_embedder.mlp.0.{1}"),
    _Rule(rf"time_text_embed\.timestep_embedder\.linear_2\.{_W}", "t_embedder.mlp.2.{1}"),
    _Rule(rf"time_text_embed\.text_embedder\.linear_1\.{_W}", "y_embedder.mlp.0.{1}"),
    _Rule(rf"time_text_embed\.text_embedder\.linear_2\.{_W}", "y_embedder.mlp.2.{1}"),
    _Rule(rf"context_embedder\.{_W}", "context_embedder.{1}"),
    _Rule(rf"{_TB}attn\.to_(?P<part>[qkv])\.{_W}", "joint_blocks.{1}.x_block.attn.qkv.{3}", _QKV_PARTS),
    _Rule(rf"{_TB}attn\.add_(?P<part>[qkv])_proj\.{_W}", "joint_blocks.{1}.context_block.attn.qkv.{3}", _QKV_PARTS),
    _Rule(rf"{_TB}attn2\.to_(?P<part>[qkv])\.{_W}", "joint_blocks.{1}.x_block.attn2.qkv.{3}", _QKV_PARTS),
    _Rule(rf"{_TB}attn\.norm_q\.weight", "joint_blocks.{1}.x_block.attn.ln_q.weight"),
    _Rule(rf"{_TB}attn\.norm_k\.weight", "joint_blocks.{1}.x_block.attn.ln_k.weight"),
    _Rule(rf"{_TB}attn\.norm_added_q\.weight", "joint_blocks.{1}.context_block.attn.ln_q.weight"),
    _Rule(rf"{_TB}attn\.norm_added_k\.weight", "joint_blocks.{1}.context_block.attn.ln_k.weight"),
    _Rule(rf"{_TB}attn2\.norm_q\.weight", "joint_blocks.{1}.x_block.attn2.ln_q.weight"),
    _Rule(rf"{_TB}attn2\.norm_k\.weight", "joint_blocks.{1}.x_block.attn2.ln_k.weight"),
    _Rule(rf"{_TB}attn\.to_out\.0\.{_W}", "joint_blocks.{1}.x_block.attn.proj.{2}"),
    _Rule(rf"{_TB}attn\.to_add_out\.{_W}", "joint_blocks.{1}.context_block.attn.proj.{2}"),
    _Rule(rf"{_TB}attn2\.to_out\.0\.{_W}", "joint_blocks.{1}.x_block.attn2.proj.{2}"),
    _Rule(rf"{_TB}norm1\.linear\.{_W}", "joint_blocks.{1}.x_block.adaLN_modulation.1.{2}"),
    _Rule(rf"{_TB}norm1_context\.linear\.{_W}", "joint_blocks.{1}.context_block.adaLN_modulation.1.{2}"),
    _Rule(rf"{_TB}ff\.net\.0\.proj\.{_W}", "joint_blocks.{1}.x_block.mlp.fc1.{2}"),
    _Rule(rf"{_TB}ff\.net\.2\.{_W}", "joint_blocks.{1}.x_block.mlp.fc2.{2}"),
    _Rule(rf"{_TB}ff_context\.net\.0\.proj\.{_W}", "joint_blocks.{1}.context_block.mlp.fc1.{2}"),
    _Rule(rf"{_TB}ff_context\.net\.2\.{_W}", "joint_blocks.{1}.context_block.mlp.fc2.{2}"),
    _Rule(rf"proj_out\.{_W}", "final_layer.linear.{1}"),
    _Rule(rf"norm_out\.linear\.{_W}", "final_layer.adaLN_modulation.1.{1}", swap=True),
)  # fmt: skip
"""``convert_sd3_transformer_checkpoint_to_diffusers``, inverted. The last block's context AdaLN is
swapped too (it is an ``AdaLayerNormContinuous`` there: ``context_pre_only``)."""

_FLUX_RULES = (
    _Rule(rf"time_text_embed\.timestep_embedder\.linear_1\.{_W}", "time_in.in_layer.{1}"),
    _Rule(rf"time_text_embed\.timestep_embedder\.linear_2\.{_W}", "time_in.out_layer.{1}"),
    _Rule(rf"time_text_embed\.text_embedder\.linear_1\.{_W}", "vector_in.in_layer.{1}"),
    _Rule(rf"time_text_embed\.text_embedder\.linear_2\.{_W}", "vector_in.out_layer.{1}"),
    _Rule(rf"time_text_embed\.guidance_embedder\.linear_1\.{_W}", "guidance_in.in_layer.{1}"),
    _Rule(rf"time_text_embed\.guidance_embedder\.linear_2\.{_W}", "guidance_in.out_layer.{1}"),
    _Rule(rf"context_embedder\.{_W}", "txt_in.{1}"),
    _Rule(rf"x_embedder\.{_W}", "img_in.{1}"),
    _Rule(rf"{_TB}norm1\.linear\.{_W}", "double_blocks.{1}.img_mod.lin.{2}"),
    _Rule(rf"{_TB}norm1_context\.linear\.{_W}", "double_blocks.{1}.txt_mod.lin.{2}"),
    _Rule(rf"{_TB}attn\.to_(?P<part>[qkv])\.{_W}", "double_blocks.{1}.img_attn.qkv.{3}", _QKV_PARTS),
    _Rule(rf"{_TB}attn\.add_(?P<part>[qkv])_proj\.{_W}", "double_blocks.{1}.txt_attn.qkv.{3}", _QKV_PARTS),
    _Rule(rf"{_TB}attn\.norm_q\.weight", "double_blocks.{1}.img_attn.norm.query_norm.scale"),
    _Rule(rf"{_TB}attn\.norm_k\.weight", "double_blocks.{1}.img_attn.norm.key_norm.scale"),
    _Rule(rf"{_TB}attn\.norm_added_q\.weight", "double_blocks.{1}.txt_attn.norm.query_norm.scale"),
    _Rule(rf"{_TB}attn\.norm_added_k\.weight", "double_blocks.{1}.txt_attn.norm.key_norm.scale"),
    _Rule(rf"{_TB}ff\.net\.0\.proj\.{_W}", "double_blocks.{1}.img_mlp.0.{2}"),
    _Rule(rf"{_TB}ff\.net\.2\.{_W}", "double_blocks.{1}.img_mlp.2.{2}"),
    _Rule(rf"{_TB}ff_context\.net\.0\.proj\.{_W}", "double_blocks.{1}.txt_mlp.0.{2}"),
    _Rule(rf"{_TB}ff_context\.net\.2\.{_W}", "double_blocks.{1}.txt_mlp.2.{2}"),
    _Rule(rf"{_TB}attn\.to_out\.0\.{_W}", "double_blocks.{1}.img_attn.proj.{2}"),
    _Rule(rf"{_TB}attn\.to_add_out\.{_W}", "double_blocks.{1}.txt_attn.proj.{2}"),
    _Rule(rf"single_{_TB}norm\.linear\.{_W}", "single_blocks.{1}.modulation.lin.{2}"),
    _Rule(
        rf"single_{_TB}(?P<part>attn\.to_q|attn\.to_k|attn\.to_v|proj_mlp)\.{_W}",
        "single_blocks.{1}.linear1.{3}",
        ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    ),
    _Rule(rf"single_{_TB}attn\.norm_q\.weight", "single_blocks.{1}.norm.query_norm.scale"),
    _Rule(rf"single_{_TB}attn\.norm_k\.weight", "single_blocks.{1}.norm.key_norm.scale"),
    _Rule(rf"single_{_TB}proj_out\.{_W}", "single_blocks.{1}.linear2.{2}"),
    _Rule(rf"proj_out\.{_W}", "final_layer.linear.{1}"),
    _Rule(rf"norm_out\.linear\.{_W}", "final_layer.adaLN_modulation.1.{1}", swap=True),
)  # fmt: skip
"""``convert_flux_transformer_checkpoint_to_diffusers``, inverted."""

_COMPILED: dict[str, re.Pattern[str]] = {}


def _by_rules(rules: tuple[_Rule, ...], key: str) -> tuple[_Rule, re.Match[str]] | None:
    for rule in rules:
        pattern = _COMPILED.get(rule.pattern) or _COMPILED.setdefault(rule.pattern, re.compile(rule.pattern))
        match = pattern.fullmatch(key)
        if match:
            return rule, match
    return None


def _placed_by_rule(rule: _Rule, match: re.Match[str], key: str, *, swap: bool) -> Placed:
    name = rule.template.format(None, *match.groups())
    order = rule.parts.index(match["part"]) if rule.parts else 0
    return _renamed(name, "swap_halves" if swap else "", order=order, source=key)


def _sd3(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    found = _by_rules(_SD3_RULES, key)
    if found is None:
        return None
    rule, match = found
    last = int(config["num_layers"]) - 1
    swap = rule.swap or (key.startswith(f"transformer_blocks.{last}.norm1_context.") and last >= 0)
    return _placed_by_rule(rule, match, key, swap=swap)


def _flux(key: str, shapes: Mapping[str, tuple[int, ...]], config: Mapping[str, Any]) -> Placed | None:
    found = _by_rules(_FLUX_RULES, key)
    if found is None:
        return None
    rule, match = found
    return _placed_by_rule(rule, match, key, swap=rule.swap)


_PLANNERS: dict[str, Planner] = {
    "unet": _unet,
    "vae": _vae,
    "clip": _clip,
    "open_clip": _open_clip,
    "t5": _t5,
    "sd3": _sd3,
    "flux": _flux,
}


# --- diffusers' forward converters ------------------------------------------------------------


def forward_converter(
    layout: ComponentLayout, config: Mapping[str, Any]
) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """diffusers' converter that ``from_single_file`` uses to read this component back (checkpoint -> diffusers).

    None where it cannot run on this component: diffusers' FLUX converter assumes FLUX.1's width
    (``inner_dim = 3072``), so a narrower FLUX transformer is checked by the tests only.
    """
    from diffusers.loaders import single_file_utils as sfu

    config = dict(config)
    if layout.layout == "unet":
        return lambda checkpoint: sfu.convert_ldm_unet_checkpoint(checkpoint, config)
    if layout.layout == "vae":
        return lambda checkpoint: sfu.convert_ldm_vae_checkpoint(checkpoint, config)
    if layout.layout == "clip":
        return lambda checkpoint: sfu.convert_ldm_clip_checkpoint(checkpoint, layout.prefix)
    if layout.layout == "open_clip":
        model = SimpleNamespace(config=SimpleNamespace(hidden_size=config.get("hidden_size")))
        return lambda checkpoint: sfu.convert_open_clip_checkpoint(model, checkpoint, prefix=layout.prefix)
    if layout.layout == "t5":
        return sfu.convert_sd3_t5_checkpoint_to_diffusers
    if layout.layout == "sd3":
        return lambda checkpoint: sfu.convert_sd3_transformer_checkpoint_to_diffusers(dict(checkpoint))
    if int(config.get("num_attention_heads", 0)) * int(config.get("attention_head_dim", 0)) != 3072:
        return None
    return lambda checkpoint: sfu.convert_flux_transformer_checkpoint_to_diffusers(dict(checkpoint))


def diffusers_key(layout: ComponentLayout, key: str) -> str:
    """The key diffusers' converter gives for the component's tensor ``key`` (CLIP keys gain ``text_model.``)."""
    return _with_text_model(key) if layout.layout in ("clip", "open_clip") else key


def check_with_converter(
    layout: ComponentLayout,
    targets: list[Target],
    shapes: Mapping[str, tuple[int, ...]],
    config: Mapping[str, Any],
) -> bool:
    """Run diffusers' converter over the planned checkpoint (meta tensors: shapes only, no memory).

    Returns:
        False when diffusers' converter cannot run on this component (see :func:`forward_converter`).

    Raises:
        LayoutError: The converter does not give back exactly the component's tensors and shapes.
    """
    import torch

    convert = forward_converter(layout, config)
    if convert is None:
        return False
    checkpoint = {t.name: torch.empty(t.shape, device="meta") for t in targets}
    try:
        converted = convert(checkpoint)
    except (KeyError, RuntimeError, ValueError, IndexError) as exc:
        raise LayoutError(
            f"{layout.component}: diffusers' converter cannot read the planned single file back ({exc!r})",
            reason="mismatch",
        ) from None
    got = {key: tuple(value.shape) for key, value in converted.items()}
    expected = {diffusers_key(layout, key): tuple(shape) for key, shape in shapes.items()}
    if got != expected:
        missing = sorted(expected.keys() - got.keys())
        extra = sorted(got.keys() - expected.keys())
        reshaped = sorted(k for k in expected.keys() & got.keys() if expected[k] != got[k])
        raise LayoutError(
            f"{layout.component}: diffusers' converter would read the single file back differently "
            f"(missing {missing[:3]}, extra {extra[:3]}, other shapes {reshaped[:3]})",
            reason="mismatch",
        )
    return True


def numel(shape: tuple[int, ...]) -> int:
    """Elements of a tensor of ``shape``."""
    return math.prod(shape)
