"""Speed of cpedit against the published procedure and against the bare UNet floor.

One process, one random-weight SD-1.x-shaped pipeline, one recipe (default: the shipped
van-gogh recipe: 20 prompt pairs, 50 steps, tau 10, skill_ratio 0.01):

1. reference: the authors' procedure as written in tests/naive_reference.py (one prompt
   at a time, full generation with VAE decode, hooks copying to the CPU), then scoring;
2. cpedit: ``cpedit.prune(pipe, [recipe])`` (calibration + scoring, no saving);
3. floor: the bare UNet forwards that cpedit's calibration needs (same batches, tau calls
   each, no hooks, no pipeline);
4. pipeline-only: cpedit's calibration loop without FFN hooks (pipeline overhead).

Prints a table and, with ``--json``, writes the numbers. Also reports the IoU of the two
pruned sets. Example:

    python benchmarks/bench_speed.py --size small --device cpu
    python benchmarks/bench_speed.py --size sd15 --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # devtools (not installed with cpedit)

from support.naive_reference import naive_masks_for_recipe  # noqa: E402

import cpedit  # noqa: E402
import cpedit.edit.calibration  # noqa: E402
from cpedit.edit.calibration import calibrate, denoiser_calls, native_size  # noqa: E402
from cpedit.models.ffn import find_ffn_output_layers  # noqa: E402
from cpedit.recipes.format import load_recipe  # noqa: E402
from devtools.builders import build_random_sd_components  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Any) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    value = fn()
    sync(device)
    return time.perf_counter() - start, value


def unet_floor(pipe: Any, recipe: Any, *, batch_size: int, device: torch.device) -> tuple[float, int]:
    """Time the bare UNet forwards calibration needs: same batches, tau calls, no hooks."""
    settings = recipe.sampling
    height, width = (settings.height, settings.width) if settings.height else native_size(pipe)
    prompts = list(recipe.targets) + list(recipe.bases)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    scheduler.set_timesteps(settings.steps, device=device)
    timesteps = scheduler.timesteps[: recipe.prune.timesteps]
    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    batches = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        with torch.no_grad():
            cond, uncond = pipe.encode_prompt(batch, device, 1, True, None)
        embeds = torch.cat([uncond, cond])
        latents = torch.randn(shape, device=device, dtype=embeds.dtype).expand(2 * len(batch), *shape[1:]).contiguous()
        batches.append((embeds, latents))
    calls = 0

    def run() -> None:
        nonlocal calls
        with torch.no_grad():
            for embeds, latents in batches:
                for t in timesteps:
                    pipe.unet(latents, t, encoder_hidden_states=embeds, return_dict=False)
                    calls += 1

    run()  # warm-up (kernels, allocator)
    calls = 0
    seconds, _ = timed(device, run)
    return seconds, calls


def iou(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    inter = sum(int((a[k] & b[k]).sum()) for k in a)
    union = sum(int((a[k] | b[k]).sum()) for k in a)
    return inter / union if union else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=["tiny", "small", "sd15"], default="small")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument("--recipe", default=str(ROOT / "recipes/artists/van-gogh.yaml"))
    parser.add_argument("--pairs", type=int, default=None, help="use only the recipe's first N prompt pairs")
    parser.add_argument("--batch-size", type=int, default=None, help="cpedit batch size (default: auto)")
    parser.add_argument("--skip-reference", action="store_true", help="only cpedit, floor and pipeline-only")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    recipe = load_recipe(args.recipe)
    if args.pairs:
        recipe = dataclasses.replace(recipe, targets=recipe.targets[: args.pairs], bases=recipe.bases[: args.pairs])
    build_s, pipe = timed(device, lambda: build_random_sd_components(size=args.size, device=args.device))
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    layers = find_ffn_output_layers(pipe.unet)
    originals = {layer.name: layer.module.weight.detach().clone() for layer in layers}
    pairs = len(recipe.targets)
    calls_per_prompt = denoiser_calls(pipe, recipe.sampling.steps)
    print(
        f"model {args.size} on {device} ({args.dtype}), built in {build_s:.1f}s; recipe {recipe.name}: "
        f"{pairs} pairs, {recipe.sampling.steps} steps ({calls_per_prompt} UNet calls), tau {recipe.prune.timesteps}",
        flush=True,
    )

    # Warm-up both code paths once on a 1-pair recipe (kernel selection, allocator).
    warm = dataclasses.replace(
        recipe, targets=recipe.targets[:1], bases=recipe.bases[:1], prune=dataclasses.replace(recipe.prune, timesteps=2)
    )
    calibrate(pipe, warm, layers, batch_size=2)

    results: dict[str, Any] = {
        "size": args.size,
        "device": str(device),
        "dtype": args.dtype,
        "recipe": recipe.name,
        "pairs": pairs,
        "steps": recipe.sampling.steps,
        "tau": recipe.prune.timesteps,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }
    reference_masks = None
    if not args.skip_reference:
        reference_s, reference_masks = timed(device, lambda: naive_masks_for_recipe(pipe, recipe))
        results["reference_s"] = reference_s
        results["reference_unet_calls"] = 2 * pairs * calls_per_prompt
        print(f"reference: {reference_s:.2f}s", flush=True)

    cpedit_s, result = timed(device, lambda: cpedit.prune(pipe, [recipe], batch_size=args.batch_size))
    concept = result.report.concepts[0]
    results.update(
        cpedit_s=cpedit_s,
        cpedit_calibrate_s=result.report.timings_s["calibrate"],
        cpedit_score_s=result.report.timings_s["score"],
        cpedit_unet_calls=concept.denoiser_calls,
        batch_size=concept.batch_size,
        pruned_weights=result.report.totals.pruned_weights,
    )
    print(
        f"cpedit: {cpedit_s:.2f}s (calibrate {results['cpedit_calibrate_s']:.2f}s, batch {concept.batch_size})",
        flush=True,
    )

    def restore() -> None:  # the unpruned weights, for the next measurement
        with torch.no_grad():
            for layer in layers:
                layer.module.weight.copy_(originals[layer.name])

    restore()
    if device.type == "cuda" and cpedit.edit.calibration.use_triton():
        os.environ["CPEDIT_DISABLE_TRITON"] = "1"  # the plain PyTorch statistics, for comparison
        torch_s, torch_result = timed(device, lambda: cpedit.prune(pipe, [recipe], batch_size=concept.batch_size))
        del os.environ["CPEDIT_DISABLE_TRITON"]
        restore()
        results["cpedit_torch_path_calibrate_s"] = torch_result.report.timings_s["calibrate"]
        results["iou_triton_vs_torch_path"] = iou(torch_result.masks, result.masks)

    floor_s, floor_calls = unet_floor(pipe, recipe, batch_size=concept.batch_size, device=device)
    results.update(floor_s=floor_s, floor_unet_calls=floor_calls)
    pipeline_s, _ = timed(device, lambda: calibrate(pipe, recipe, [], batch_size=concept.batch_size))
    results["pipeline_no_hooks_s"] = pipeline_s
    repeat_s, _ = timed(device, lambda: calibrate(pipe, recipe, layers, batch_size=concept.batch_size))
    results["cpedit_calibrate_repeat_s"] = repeat_s
    calib = min(results["cpedit_calibrate_s"], repeat_s)
    results["overhead_vs_floor"] = calib / floor_s - 1
    results["hook_overhead_vs_pipeline"] = calib / pipeline_s - 1
    if reference_masks is not None:
        results["speedup"] = results["reference_s"] / cpedit_s
        results["iou"] = iou(reference_masks, result.masks)

    print("\n| measure | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
