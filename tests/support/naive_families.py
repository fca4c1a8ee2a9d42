"""The naive one-prompt-at-a-time procedure for the DiT families of issue 25 (SD3.5, Chroma, FLUX.2).

Like :mod:`support.naive_reference` (whose per-layer scoring it reuses), written from the
reference note and the diffusers model code, not from cpedit:

* the layers are found by their diffusers attribute names, per family, written out here;
* the timestep index t is the pipeline's scheduler step, counted at ``scheduler.step``: every
  transformer call of step t counts for t, so Chroma's and FLUX.2 klein's separate
  unconditional call counts with its conditional call, as a batched CFG half does in SD;
* a fused matrix's MLP part is a column range (the statistics and the pruned weights are in
  those columns only) or a row range (the statistics are the whole input; only weights in
  those rows are candidates); every weight outside stays unpruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from support.naive_reference import naive_layer_mask

Range = tuple[int, int] | None
Layer = tuple[torch.nn.Linear, Range, Range]
"""A hooked linear, its hooked input columns and its prunable output rows (None: all)."""


def family_layers(pipe: Any, target: str = "ffn", stream: str = "image") -> dict[str, Layer]:
    """The layers a target means in an SD3/SD3.5, Chroma or FLUX.2 transformer, keyed by module name."""
    transformer = pipe.transformer
    streams = {"image", "text"} if stream == "both" else {stream}
    layers: dict[str, Layer] = {}
    for i, block in enumerate(transformer.transformer_blocks):
        prefix = f"transformer_blocks.{i}"
        for attr, name in (("ff", "image"), ("ff_context", "text")):
            ff = getattr(block, attr, None)
            if ff is None or name not in streams or target not in ("ffn", "ffn-in"):
                continue
            if hasattr(ff, "linear_out"):  # FLUX.2 SwiGLU
                sub = "linear_out" if target == "ffn" else "linear_in"
                layers[f"{prefix}.{attr}.{sub}"] = (getattr(ff, sub), None, None)
            else:  # diffusers FeedForward: net.0.proj -> act -> net.2
                linear = ff.net[2] if target == "ffn" else ff.net[0].proj
                layers[f"{prefix}.{attr}.{'net.2' if target == 'ffn' else 'net.0.proj'}"] = (linear, None, None)
        if target in ("attn-key", "attn-value"):  # the text stream's projections of joint attention, never attn2
            attr = "add_k_proj" if target == "attn-key" else "add_v_proj"
            layers[f"{prefix}.attn.{attr}"] = (getattr(block.attn, attr), None, None)
    if "image" not in streams or target not in ("ffn", "ffn-in"):
        return layers
    for i, block in enumerate(getattr(transformer, "single_transformer_blocks", ())):
        prefix = f"single_transformer_blocks.{i}"
        if hasattr(block.attn, "to_qkv_mlp_proj"):  # FLUX.2: fused [attention | MLP] projections
            attn = block.attn
            inner, hidden = attn.inner_dim, attn.mlp_hidden_dim
            if target == "ffn":
                layers[f"{prefix}.attn.to_out"] = (attn.to_out, (inner, inner + hidden), None)
            else:
                fused = attn.to_qkv_mlp_proj
                layers[f"{prefix}.attn.to_qkv_mlp_proj"] = (fused, None, (3 * inner, fused.out_features))
        elif target == "ffn":  # FLUX.1 / Chroma: proj_out reads [attention | MLP]
            dim = block.proj_mlp.in_features
            layers[f"{prefix}.proj_out"] = (block.proj_out, (dim, dim + block.proj_mlp.out_features), None)
        else:
            layers[f"{prefix}.proj_mlp"] = (block.proj_mlp, None, None)
    return layers


def _collect_step_sums(
    pipe: Any, prompts: Sequence[str], seeds: Sequence[int], layers: dict[str, Layer], **generation: Any
) -> dict[int, dict[str, torch.Tensor]]:
    """sums[t][layer]: column sums of squares of the row-normalised input over every call of step t."""
    sums: dict[int, dict[str, torch.Tensor]] = {}
    step = [0]
    scheduler = pipe.scheduler
    original_step = scheduler.step

    def counted_step(*args: Any, **kwargs: Any) -> Any:
        step[0] += 1  # the transformer calls of this step are done
        return original_step(*args, **kwargs)

    def make_hook(name: str, columns: Range):
        def hook(module, inputs, output):
            x = inputs[0].detach().to(device="cpu", dtype=torch.float32)
            if columns is not None:
                x = x[..., columns[0] : columns[1]]
            x = x.reshape(-1, x.shape[-1])
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            column_sums = (x * x).sum(dim=0)
            previous = sums.setdefault(step[0], {}).get(name)
            sums[step[0]][name] = column_sums if previous is None else previous + column_sums

        return hook

    handles = [linear.register_forward_hook(make_hook(name, columns)) for name, (linear, columns, _) in layers.items()]
    scheduler.step = counted_step
    try:
        for prompt, seed in zip(prompts, seeds, strict=True):
            step[0] = 0
            torch.manual_seed(seed)
            with torch.no_grad():
                pipe(prompt=prompt, output_type="pil", **generation)  # a full generation, decoded
    finally:
        del scheduler.step
        for handle in handles:
            handle.remove()
    return sums


def naive_family_masks(pipe: Any, recipe: Any) -> dict[str, torch.Tensor]:
    """The skilled weights of a recipe's target on an SD3/SD3.5, Chroma or FLUX.2 pipeline, one prompt at a time."""
    s, prune = recipe.sampling, recipe.prune
    layers = family_layers(pipe, prune.target, prune.stream)
    seeds = list(s.pair_seeds) if s.pair_seeds is not None else [s.seed] * len(recipe.targets)
    generation = dict(num_inference_steps=s.steps, guidance_scale=s.guidance_scale, height=s.height, width=s.width)
    target_sums = _collect_step_sums(pipe, list(recipe.targets), seeds, layers, **generation)
    base_sums = _collect_step_sums(pipe, list(recipe.bases), seeds, layers, **generation)
    tau = prune.timesteps
    masks: dict[str, torch.Tensor] = {}
    for name, (linear, columns, rows) in layers.items():
        weight = linear.weight.detach().to(device="cpu", dtype=torch.float32).abs()
        first, last = rows if rows is not None else (0, weight.shape[0])
        start, stop = columns if columns is not None else (0, weight.shape[1])
        mask = torch.zeros(weight.shape, dtype=torch.bool)
        mask[first:last, start:stop] = naive_layer_mask(
            weight[first:last, start:stop],
            [target_sums[t][name] for t in range(tau)],
            [base_sums[t][name] for t in range(tau)],
            skill_ratio=prune.skill_ratio,
            select_ratio=prune.select_ratio,
        )
        masks[name] = mask
    return masks
