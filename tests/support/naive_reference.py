"""A deliberately naive, independent implementation of ConceptPrune's skilled-weight search.

Written from /work/shared/reference/conceptprune.md only (no cpedit code was
consulted), to serve as

* the ground truth of fidelity tests, and
* the "authors' procedure" in speed benchmarks: one prompt at a time, a full
  ordinary text-to-image generation *including* the VAE decode, a hook that
  copies every activation to the CPU, statistics for every UNet call although
  only the first ``tau`` are used.

Everything is plain Python loops and is meant to be obviously correct, not fast.
Arithmetic is float32 whatever the model's dtype: this is the exact procedure. (The
authors' scripts load the model in fp16 and copy, normalise, accumulate and score in
fp16, which rounds some scores to ties that the strict ``S_t > S_b`` then drops; on an
fp32 model the two agree.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from diffusers.models.attention import FeedForward

LayerLookup = Callable[[Any, str], Mapping[str, torch.nn.Module]]
"""A family's layer lookup: ``(pipe, target) -> {layer name: module}`` (see :func:`target_linears`)."""


def ffn_output_linears(unet: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """Every FFN output projection of the UNet: the ``net[2]`` Linear of each ``FeedForward``.

    Keys are qualified module names inside the UNet, e.g.
    ``"down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"``.
    """
    layers: dict[str, torch.nn.Linear] = {}
    for name, module in unet.named_modules():
        if isinstance(module, FeedForward):
            linear = module.net[2]
            assert isinstance(linear, torch.nn.Linear), f"{name}.net.2 is not a Linear"
            layers[f"{name}.net.2"] = linear
    return layers


def denoiser_of(pipe) -> torch.nn.Module:
    """The pipeline's denoiser: ``pipe.unet``, or ``pipe.transformer`` for DiT pipelines."""
    unet = getattr(pipe, "unet", None)
    return unet if unet is not None else pipe.transformer


def target_linears(pipe, target: str) -> dict[str, torch.nn.Linear]:
    """The linear layers a hook target means in ``pipe``, looked up by its family (pipeline class).

    Each family's lookup is written from that family's diffusers model code, by module names,
    independently of cpedit's structural search.
    """
    lookup = _FAMILY_LOOKUPS.get(type(pipe).__name__)
    if lookup is None:
        raise ValueError(f"no naive layer lookup for {type(pipe).__name__}")
    return lookup(pipe, target)


def _sd_linears(pipe, target: str) -> dict[str, torch.nn.Linear]:
    """The linear layers a hook target means in an SD 1.x/2.x pipeline, by the reference note.

    ``ffn``: ``ff.net.2``; ``ffn-in``: ``ff.net.0.proj``; ``attn-key`` / ``attn-value``:
    the cross-attention ``attn2.to_k`` / ``attn2.to_v``; ``text-ffn``: the CLIP text
    encoder's ``mlp.fc2`` (keys prefixed ``text_encoder/``).
    """
    layers: dict[str, torch.nn.Linear] = {}
    if target == "ffn":
        return ffn_output_linears(pipe.unet)
    if target == "ffn-in":
        for name, module in pipe.unet.named_modules():
            if isinstance(module, FeedForward):
                layers[f"{name}.net.0.proj"] = module.net[0].proj
        return layers
    if target in ("attn-key", "attn-value"):
        for name, module in pipe.unet.named_modules():
            if name.endswith(".attn2"):
                attr = "to_k" if target == "attn-key" else "to_v"
                layers[f"{name}.{attr}"] = getattr(module, attr)
        return layers
    if target == "text-ffn":
        for name, module in pipe.text_encoder.named_modules():
            if name.endswith(".mlp"):
                layers[f"text_encoder/{name}.fc2"] = module.fc2
        return layers
    raise ValueError(f"unknown target {target}")


def _hidream_linears(pipe, target: str) -> dict[str, torch.nn.Linear]:
    """The linear layers a hook target means in a HiDream-I1 pipeline (image stream).

    ``ffn``: the ``w2`` of every image-stream feed-forward ``ff_i`` of the dual- and
    single-stream blocks; where ``ff_i`` is a mixture of experts, the shared experts'
    ``w2`` and every routed expert's ``w2`` (the router ``gate`` is never hooked).
    ``ffn-in``: their ``w1`` and ``w3``. ``attn-key`` / ``attn-value``: the dual-stream
    blocks' text-stream ``attn1.to_k_t`` / ``to_v_t``. ``text-ffn``: both CLIPs'
    ``mlp.fc2``, T5's ``DenseReluDense.wo`` and the Llama's ``mlp.down_proj``.
    """
    layers: dict[str, torch.nn.Linear] = {}
    transformer = pipe.transformer
    blocks = [(f"double_stream_blocks.{i}.block", b.block) for i, b in enumerate(transformer.double_stream_blocks)]
    blocks += [(f"single_stream_blocks.{i}.block", b.block) for i, b in enumerate(transformer.single_stream_blocks)]
    names = {"ffn": ("w2",), "ffn-in": ("w1", "w3")}
    if target in names:
        for prefix, block in blocks:
            ff = block.ff_i
            swiglus = (
                [(f"{prefix}.ff_i.shared_experts", ff.shared_experts)]
                + [(f"{prefix}.ff_i.experts.{e}", expert) for e, expert in enumerate(ff.experts)]
                if hasattr(ff, "experts")
                else [(f"{prefix}.ff_i", ff)]
            )
            for name, swiglu in swiglus:
                for linear in names[target]:
                    layers[f"{name}.{linear}"] = getattr(swiglu, linear)
        return layers
    if target in ("attn-key", "attn-value"):
        attr = "to_k_t" if target == "attn-key" else "to_v_t"
        for prefix, block in blocks:
            if prefix.startswith("double_stream_blocks."):
                layers[f"{prefix}.attn1.{attr}"] = getattr(block.attn1, attr)
        return layers
    if target == "text-ffn":
        for component, suffix, linear in (
            ("text_encoder", ".mlp", "fc2"),
            ("text_encoder_2", ".mlp", "fc2"),
            ("text_encoder_3", ".DenseReluDense", "wo"),
            ("text_encoder_4", ".mlp", "down_proj"),
        ):
            for name, module in getattr(pipe, component).named_modules():
                if name.endswith(suffix):
                    layers[f"{component}/{name}.{linear}"] = getattr(module, linear)
        return layers
    raise ValueError(f"unknown target {target}")


def sana_layers(pipe, target: str) -> Mapping[str, torch.nn.Module]:
    """The layers a hook target means in a SanaPipeline, read from diffusers' Sana source by name.

    ``ffn``: every block's ``ff.conv_point`` (the 1x1 conv whose input channels are the GLU's
    inner channels); ``ffn-in``: ``ff.conv_inverted``; ``attn-key`` / ``attn-value``: the
    cross-attention ``attn2.to_k`` / ``to_v``; ``text-ffn``: the Gemma 2 encoder's
    ``mlp.down_proj`` (keys prefixed ``text_encoder/``).
    """
    blocks = pipe.transformer.transformer_blocks
    if target in ("ffn", "ffn-in"):
        attr = "conv_point" if target == "ffn" else "conv_inverted"
        return {f"transformer_blocks.{i}.ff.{attr}": getattr(block.ff, attr) for i, block in enumerate(blocks)}
    if target in ("attn-key", "attn-value"):
        attr = "to_k" if target == "attn-key" else "to_v"
        return {f"transformer_blocks.{i}.attn2.{attr}": getattr(block.attn2, attr) for i, block in enumerate(blocks)}
    if target == "text-ffn":
        return {
            f"text_encoder/layers.{i}.mlp.down_proj": layer.mlp.down_proj
            for i, layer in enumerate(pipe.text_encoder.layers)
        }
    raise ValueError(f"unknown target {target}")


def _rows(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer input as rows of features: a token per row; for a 1x1 conv, a spatial position per row."""
    if isinstance(module, torch.nn.Conv2d):
        x = x.permute(0, 2, 3, 1)  # [batch, channels, h, w] -> [batch, h, w, channels]
    return x.reshape(-1, x.shape[-1])


def _weight_matrix(module: torch.nn.Module) -> torch.Tensor:
    """``|W|`` as ``[out, in]`` in float32 on the CPU; a 1x1 conv's ``[out, in, 1, 1]`` squeezed."""
    weight = module.weight.detach().to(device="cpu", dtype=torch.float32)
    if weight.dim() == 4:
        assert weight.shape[2:] == (1, 1), "only 1x1 convolutions are linear maps per position"
        weight = weight[:, :, 0, 0]
    return weight.abs()


def _generate(
    pipe,
    prompt: str,
    *,
    seed: int,
    steps: int,
    guidance_scale: float,
    height: int | None,
    width: int | None,
    call_kwargs: Mapping[str, Any] | None = None,
) -> None:
    """One ordinary generation of ``prompt``, decoded to an image, after ``torch.manual_seed(seed)``, as the authors."""
    torch.manual_seed(seed)
    with torch.no_grad():
        pipe(
            prompt,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            output_type="pil",  # full generation and decode, like the authors
            **(call_kwargs or {}),
        )


def _collect_text_sums_of_squares(
    pipe, prompts: list[str], seeds: list[int], layers: Mapping[str, torch.nn.Module], **generation
) -> dict[int, dict[str, torch.Tensor]]:
    """text-ffn: sums[0][layer] over every text-encoder forward of one full generation per prompt.

    As in the authors' text hook, the hooks stay on for the whole pipeline call: with
    classifier-free guidance the pipeline encodes the prompt and then the (empty) negative
    prompt, and every token row of both counts for the prompt.
    """
    sums: dict[int, dict[str, torch.Tensor]] = {0: {}}

    def make_hook(layer_name: str):
        def hook(module, inputs, output):
            x = _rows(module, inputs[0]).detach().to(device="cpu", dtype=torch.float32)
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            column_sums = (x * x).sum(dim=0)
            previous = sums[0].get(layer_name)
            sums[0][layer_name] = column_sums if previous is None else previous + column_sums

        return hook

    handles = [linear.register_forward_hook(make_hook(name)) for name, linear in layers.items()]
    try:
        for prompt, seed in zip(prompts, seeds, strict=True):
            _generate(pipe, prompt, seed=seed, **generation)
    finally:
        for handle in handles:
            handle.remove()
    return sums


def _collect_sums_of_squares(
    pipe, prompts: list[str], seeds: list[int], layers: Mapping[str, torch.nn.Module], **generation
) -> dict[int, dict[str, torch.Tensor]]:
    """Run one full generation per prompt (prompt i after ``torch.manual_seed(seeds[i])``).

    Returns sums[t][layer] = column sums of squares over all rows (tokens of all batch
    items, both CFG halves) of all prompts, for UNet call t (counted per prompt, from 0).
    """
    sums: dict[int, dict[str, torch.Tensor]] = {}
    call_index = [0]  # index t of the UNet call in progress, for the current prompt
    # (FFN hooks fire during the UNet call; the UNet's own forward hook, which
    # fires after all of them, advances the index.)

    def unet_post_hook(module, args, output):
        call_index[0] += 1  # the next UNet call is timestep index t + 1
        return None

    def make_ffn_hook(layer_name: str):
        def hook(module, inputs, output):
            t = call_index[0]
            x = inputs[0]
            # rows = all tokens of all batch items (both classifier-free guidance halves)
            x = _rows(module, x)
            # copy to the CPU on every call, as the authors do (they keep the model's fp16; the
            # reference computes in float32, the exact result)
            x = x.detach().to(device="cpu", dtype=torch.float32)
            # L2-normalise every row (token) over the feature dimension
            row_norms = x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            x = x / row_norms
            # accumulate the per-column sum of squares for this (t, layer)
            column_sums = (x * x).sum(dim=0)
            if t not in sums:
                sums[t] = {}
            if layer_name in sums[t]:
                sums[t][layer_name] = sums[t][layer_name] + column_sums
            else:
                sums[t][layer_name] = column_sums
            return None

        return hook

    handles = []
    try:
        handles.append(denoiser_of(pipe).register_forward_hook(unet_post_hook))
        for layer_name, linear in layers.items():
            handles.append(linear.register_forward_hook(make_ffn_hook(layer_name)))
        for prompt, seed in zip(prompts, seeds, strict=True):
            call_index[0] = 0  # every prompt restarts at t = 0
            _generate(pipe, prompt, seed=seed, **generation)  # the seed is reset before every prompt
    finally:
        for handle in handles:
            handle.remove()
    return sums


def naive_skilled_masks(
    pipe,
    target_prompts: list[str],
    base_prompts: list[str],
    *,
    skill_ratio: float,
    tau: int,
    select_ratio: float,
    steps: int,
    guidance_scale: float,
    seed: int | Sequence[int],
    height: int | None = None,
    width: int | None = None,
    target: str = "ffn",
    layer_lookup: LayerLookup | None = None,
    call_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Skilled weights of every hooked layer (FFN output projections by default), by the published procedure.

    ``target`` picks the layers (see :func:`target_linears`); for ``text-ffn`` the
    statistics come from every text-encoder forward of each prompt's generation (the
    prompt's and, with guidance, the empty negative prompt's) and tau is 1.
    ``seed`` is reset before every prompt; a sequence gives each (target, base) pair its
    own seed, as the authors' gender runs do. ``layer_lookup`` is the family's layer lookup
    (default :func:`target_linears`, SD 1.x/2.x; :func:`sana_layers` for Sana); ``call_kwargs``
    go to every pipeline call (e.g. a family's switches that only resize the decoded image).

    Returns:
        ``{layer name: bool tensor [out_features, in_features] on the CPU}``;
        True marks a skilled weight (one to prune).
    """
    layers = (layer_lookup or target_linears)(pipe, target)

    seeds = [seed] * len(target_prompts) if isinstance(seed, int) else list(seed)

    # 1. Statistics, separately for targets and bases.
    common = dict(steps=steps, guidance_scale=guidance_scale, height=height, width=width, call_kwargs=call_kwargs)
    if target == "text-ffn":
        tau = 1  # no timesteps: the text encoders run before the first UNet call
        target_sums = _collect_text_sums_of_squares(pipe, list(target_prompts), seeds, layers, **common)
        base_sums = _collect_text_sums_of_squares(pipe, list(base_prompts), seeds, layers, **common)
    else:
        target_sums = _collect_sums_of_squares(pipe, list(target_prompts), seeds, layers, **common)
        base_sums = _collect_sums_of_squares(pipe, list(base_prompts), seeds, layers, **common)

    calls = len(target_sums)
    if tau > calls:
        raise ValueError(f"tau={tau} exceeds the {calls} UNet calls of a {steps}-step generation")

    masks: dict[str, torch.Tensor] = {}
    for layer_name, linear in layers.items():
        weight_abs = _weight_matrix(linear)
        masks[layer_name] = naive_layer_mask(
            weight_abs,
            [target_sums[t][layer_name] for t in range(tau)],
            [base_sums[t][layer_name] for t in range(tau)],
            skill_ratio=skill_ratio,
            select_ratio=select_ratio,
        )
    return masks


def naive_layer_mask(
    weight_abs: torch.Tensor,
    target_sums: list[torch.Tensor],
    base_sums: list[torch.Tensor],
    *,
    skill_ratio: float,
    select_ratio: float,
) -> torch.Tensor:
    """The skilled weights of one layer from its per-timestep sums of squares (one entry per t < tau)."""
    tau = len(target_sums)
    out_features, in_features = weight_abs.shape
    k = math.floor(skill_ratio * in_features)
    count = torch.zeros(out_features, in_features, dtype=torch.int64)

    # 2. Per timestep t < tau: Wanda scores with target and base norms.
    for t in range(tau):
        norm_target = torch.sqrt(target_sums[t])
        norm_base = torch.sqrt(base_sums[t])
        score_target = weight_abs * norm_target[None, :]  # S_t[i, j] = |W[i, j]| * ||X_j||
        score_base = weight_abs * norm_base[None, :]
        marked = torch.zeros(out_features, in_features, dtype=torch.bool)
        if k > 0:
            # per output row i, the k columns with the largest S_t[i, :]
            top_columns = torch.topk(score_target, k, dim=1).indices  # [out, k]
            marked.scatter_(1, top_columns, True)
        # keep only those where the target score beats the base score
        marked = marked & (score_target > score_base)
        count += marked.to(torch.int64)

    # 3. Union over time: marked at more than select_ratio * tau timesteps.
    return count > select_ratio * tau


def naive_prune(pipe, masks: dict[str, torch.Tensor]) -> None:
    """Zero, in place, every weight of the denoiser that ``masks`` marks as skilled."""
    modules = dict(denoiser_of(pipe).named_modules())
    with torch.no_grad():
        for layer_name, mask in masks.items():
            weight = modules[layer_name].weight
            weight[mask.to(weight.device)] = 0


def naive_unet_call_count(pipe, steps: int) -> int:
    """How many UNet calls one full generation with ``steps`` inference steps makes.

    Counted by running a generation with a hook on the UNet (PNDM with
    ``skip_prk_steps`` makes ``steps + 1`` calls, DDIM makes ``steps``).
    """
    calls = [0]

    def count_call(module, args, output):
        calls[0] += 1
        return None

    handle = denoiser_of(pipe).register_forward_hook(count_call)
    try:
        with torch.no_grad():
            pipe(
                "",
                num_inference_steps=steps,
                output_type="latent",
                generator=torch.Generator().manual_seed(0),
            )
    finally:
        handle.remove()
    return calls[0]


def naive_masks_for_recipe(
    pipe, recipe, *, layer_lookup: LayerLookup | None = None, call_kwargs: Mapping[str, Any] | None = None
) -> dict[str, torch.Tensor]:
    """:func:`naive_skilled_masks` with a cpedit recipe's prompts and settings (and the family's lookup)."""
    s = recipe.sampling
    return naive_skilled_masks(
        pipe,
        list(recipe.targets),
        list(recipe.bases),
        skill_ratio=recipe.prune.skill_ratio,
        tau=recipe.prune.timesteps,
        select_ratio=recipe.prune.select_ratio,
        steps=s.steps,
        guidance_scale=s.guidance_scale,
        seed=list(s.pair_seeds) if s.pair_seeds is not None else s.seed,
        height=s.height,
        width=s.width,
        target=recipe.prune.target,
        layer_lookup=layer_lookup,
        call_kwargs=call_kwargs,
    )


_FAMILY_LOOKUPS = {
    "StableDiffusionPipeline": _sd_linears,
    "HiDreamImagePipeline": _hidream_linears,
    "SanaPipeline": sana_layers,
}
