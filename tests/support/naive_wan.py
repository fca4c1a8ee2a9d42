"""The naive one-prompt-at-a-time ConceptPrune procedure on Wan text-to-video pipelines.

Like :mod:`support.naive_reference` (written from the reference note, not from cpedit), for
the Wan family: one full generation per prompt (decoded to frames) after
``torch.manual_seed(seed)``, every hooked activation copied to the CPU, statistics per
*scheduler step* (Wan runs the unconditional half as a second transformer call of the same
step: both count for it), over every ``WanTransformerBlock``'s FFN output projection
``blocks.N.ffn.net.2`` of each transformer the pipeline has. Wan 2.2's low-noise
``transformer_2`` runs the steps after the boundary; its layers are named
``transformer_2/blocks.N.ffn.net.2`` and have zero statistics at the steps it does not run.
"""

from __future__ import annotations

import math

import torch


def wan_ffn_linears(pipe) -> dict[str, torch.nn.Linear]:
    """``blocks.N.ffn.net.2`` of ``pipe.transformer`` and (prefixed) of ``pipe.transformer_2`` if present."""
    layers: dict[str, torch.nn.Linear] = {}
    for component, prefix in (("transformer", ""), ("transformer_2", "transformer_2/")):
        model = getattr(pipe, component, None)
        if model is None:
            continue
        for index, block in enumerate(model.blocks):
            layers[f"{prefix}blocks.{index}.ffn.net.2"] = block.ffn.net[2]
    return layers


def _step_sums(
    pipe, prompts, seed: int, layers, *, num_frames: int, **generation
) -> dict[int, dict[str, torch.Tensor]]:
    """sums[t][layer]: column sums of squares of the row-normalised input, over every call of step t, all prompts."""
    sums: dict[int, dict[str, torch.Tensor]] = {}
    step = [0]
    original_step = pipe.scheduler.step

    def counted_step(*args, **kwargs):
        step[0] += 1  # the transformer calls of step t are done
        return original_step(*args, **kwargs)

    def make_hook(name: str):
        def hook(module, inputs, output):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).detach().to(device="cpu", dtype=torch.float32)
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            column = (x * x).sum(dim=0)
            at = sums.setdefault(step[0], {})
            at[name] = at[name] + column if name in at else column

        return hook

    handles = [linear.register_forward_hook(make_hook(name)) for name, linear in layers.items()]
    pipe.scheduler.step = counted_step
    try:
        for prompt in prompts:
            step[0] = 0
            torch.manual_seed(seed)
            with torch.no_grad():
                pipe(prompt, num_frames=num_frames, output_type="np", **generation)  # decoded, as the authors
    finally:
        del pipe.scheduler.step
        for handle in handles:
            handle.remove()
    return sums


def naive_wan_masks(pipe, recipe, *, num_frames: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """The skilled weights of a recipe on a Wan pipeline, by the published procedure (float32)."""
    layers = wan_ffn_linears(pipe)
    s, p = recipe.sampling, recipe.prune
    generation = dict(
        num_inference_steps=s.steps, guidance_scale=s.guidance_scale, height=height, width=width, num_frames=num_frames
    )
    target = _step_sums(pipe, recipe.targets, s.seed, layers, **generation)
    base = _step_sums(pipe, recipe.bases, s.seed, layers, **generation)
    masks = {}
    for name, linear in layers.items():
        weight = linear.weight.detach().float().abs()
        k = math.floor(p.skill_ratio * weight.shape[1])
        count = torch.zeros(weight.shape, dtype=torch.int64)
        zero = torch.zeros(weight.shape[1])
        for t in range(p.timesteps):
            score_t = weight * target.get(t, {}).get(name, zero).sqrt()[None, :]
            score_b = weight * base.get(t, {}).get(name, zero).sqrt()[None, :]
            marked = torch.zeros(weight.shape, dtype=torch.bool)
            if k > 0:
                marked.scatter_(1, torch.topk(score_t, k, dim=1).indices, True)
            count += (marked & (score_t > score_b)).to(torch.int64)
        masks[name] = count > p.select_ratio * p.timesteps
    return masks
