"""The naive one-prompt-at-a-time ConceptPrune procedure for Qwen-Image and Z-Image.

Independent of cpedit's layer finding and calibration: layers are found by their names in the
diffusers / transformers models (Qwen-Image ``img_mlp`` / ``txt_mlp`` ``net.2``, Z-Image
``feed_forward.w2``, the text encoder's language-model ``mlp.down_proj``), every prompt is a full
ordinary generation (decoded) after ``torch.manual_seed(seed)``, every activation is copied to
the CPU, and the timestep index t is the scheduler step (every denoiser call of step t, Qwen-Image's
separate negative-prompt call included, counts for t), as ``shared/reference/conceptprune.md``
counts UNet calls of Stable Diffusion, where one step is one call.

A prompt run alone has no batch padding, so these statistics are the ground truth cpedit's
batched calibration must equal (where it pads a batch's prompts to the longest).
"""

from __future__ import annotations

import math
from typing import Any

import torch

QWEN_NEGATIVE_PROMPT = " "
"""What the naive Qwen-Image run passes as its negative prompt when guidance is asked (> 1)."""


def family_linears(pipe: Any, family: str, target: str, stream: str) -> dict[str, torch.nn.Linear]:
    """The hooked linears of a Qwen-Image / Z-Image pipeline, by module name.

    ``ffn``: the second linear of every feed-forward of the stream(s) (``image``, ``text``,
    ``both``); ``text-ffn``: the language model's ``mlp.down_proj`` (never the vision tower),
    keyed ``text_encoder/<name>``.
    """
    layers: dict[str, torch.nn.Linear] = {}
    if target == "text-ffn":
        for name, module in pipe.text_encoder.named_modules():
            if name.endswith(".mlp") and "visual" not in name.split("."):
                layers[f"text_encoder/{name}.down_proj"] = module.down_proj
        return layers
    assert target == "ffn", target
    streams = {"image", "text"} if stream == "both" else {stream}
    for name, module in pipe.transformer.named_modules():
        if family == "qwen-image" and name.endswith((".img_mlp", ".txt_mlp")):
            if ("text" if name.endswith(".txt_mlp") else "image") in streams:
                layers[f"{name}.net.2"] = module.net[2]
        elif family == "z-image" and name.endswith(".feed_forward"):
            if ("text" if name.startswith("context_refiner.") else "image") in streams:
                layers[f"{name}.w2"] = module.w2
    return layers


def guidance_call_arguments(family: str, guidance_scale: float) -> dict[str, Any]:
    """How the family's pipeline is asked for the recipe's guidance (Qwen-Image: true CFG with a negative prompt)."""
    if family == "qwen-image":
        negative = {"negative_prompt": QWEN_NEGATIVE_PROMPT} if guidance_scale > 1 else {}
        return {"true_cfg_scale": guidance_scale, **negative}
    return {"guidance_scale": guidance_scale}


def naive_sums(
    pipe: Any,
    family: str,
    prompts: list[str],
    seeds: list[int],
    layers: dict[str, torch.nn.Linear],
    *,
    steps: int,
    guidance_scale: float,
    size: int,
    text: bool,
) -> dict[int, dict[str, torch.Tensor]]:
    """sums[t][layer]: column sums of squares of the row-normalised input, over all prompts.

    t is the scheduler step (0 for ``text`` layers, which are counted over the whole call).
    """
    sums: dict[int, dict[str, torch.Tensor]] = {}
    step = [0]

    def make_hook(layer_name: str) -> Any:
        def hook(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).detach().to(device="cpu", dtype=torch.float32)
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            t = 0 if text else step[0]
            column = (x * x).sum(dim=0)
            sums.setdefault(t, {})
            sums[t][layer_name] = sums[t][layer_name] + column if layer_name in sums[t] else column

        return hook

    scheduler_step = pipe.scheduler.step

    def counted_step(*args: Any, **kwargs: Any) -> Any:
        result = scheduler_step(*args, **kwargs)
        step[0] += 1  # the calls of the next step are timestep t + 1
        return result

    handles = [linear.register_forward_hook(make_hook(name)) for name, linear in layers.items()]
    pipe.scheduler.step = counted_step
    try:
        for prompt, seed in zip(prompts, seeds, strict=True):
            step[0] = 0
            torch.manual_seed(seed)
            with torch.no_grad():
                pipe(
                    prompt,
                    num_inference_steps=steps,
                    height=size,
                    width=size,
                    generator=torch.Generator().manual_seed(seed),
                    output_type="pil",
                    **guidance_call_arguments(family, guidance_scale),
                )
    finally:
        del pipe.scheduler.step
        for handle in handles:
            handle.remove()
    return sums


def naive_family_masks(pipe: Any, family: str, recipe: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(masks, statistics) of the recipe by the naive procedure.

    masks: ``{layer: bool [out, in]}``; statistics: ``{layer: float32 [tau, 2, in]}`` (target, base),
    cpedit's :class:`~cpedit.edit.calibration.ConceptStats` layout.
    """
    s, prune = recipe.sampling, recipe.prune
    text = prune.target == "text-ffn"
    tau = 1 if text else prune.timesteps
    layers = family_linears(pipe, family, prune.target, prune.stream)
    seeds = recipe.calibration_seeds()
    common = dict(steps=s.steps, guidance_scale=s.guidance_scale, size=s.height, text=text)
    target = naive_sums(pipe, family, list(recipe.targets), seeds, layers, **common)
    base = naive_sums(pipe, family, list(recipe.bases), seeds, layers, **common)
    masks: dict[str, torch.Tensor] = {}
    stats: dict[str, torch.Tensor] = {}
    for name, linear in layers.items():
        weight = linear.weight.detach().float().abs()
        k = math.floor(prune.skill_ratio * weight.shape[1])
        count = torch.zeros(weight.shape, dtype=torch.int64)
        stats[name] = torch.stack([torch.stack([target[t][name], base[t][name]]) for t in range(tau)])
        for t in range(tau):
            s_target = weight * target[t][name].sqrt()[None, :]
            s_base = weight * base[t][name].sqrt()[None, :]
            marked = torch.zeros(weight.shape, dtype=torch.bool)
            marked.scatter_(1, torch.topk(s_target, k, dim=1).indices, True)
            count += (marked & (s_target > s_base)).to(torch.int64)
        masks[name] = count > prune.select_ratio * tau
    return masks, stats
