"""Calibration overhead per architecture, against the bare denoiser calls it needs.

For each tiny random-weight pipeline of :func:`devtools.builders.build_random_components`
(SD 1.x, SD 2.x, SDXL, SD3, FLUX.1, PixArt-alpha/sigma, Sana and the 2026 families of
:data:`devtools.builders.ARCHITECTURES`; Wan 2.1/2.2 as a 9-frame clip) and one recipe (default:
the shipped van-gogh recipe, 20 prompt pairs, 50 steps, tau 10, at 32x32 px so that every
architecture runs the same image size; HiDream always runs its native area, 128x128 px for
the tiny model, recorded as ``image_size``), in one process:

1. calibrate: ``cpedit.edit.calibration.calibrate`` with the FFN hooks (the default target),
   all prompts in one batch: what ``cpedit prune`` spends calibrating;
2. pipeline: the same loop without FFN hooks (the pipeline's own call path stopped after
   tau denoiser calls: text encoding, latents, scheduler, guidance);
3. floor: the bare denoiser calls alone, replayed from inputs recorded during a run
   (same batch, tau calls, no hooks, no pipeline).

Each is timed ``--repeats`` times after a warm-up, the three taking turns, and the
fastest run of each is kept, in user CPU time (robust to other jobs on a shared
machine and to page-fault noise; wall and system times are recorded too). Overheads
are calibrate / floor - 1 (everything cpedit adds, pipeline included) and calibrate /
pipeline - 1 (the statistics hooks alone). Example:

    OMP_NUM_THREADS=1 python benchmarks/bench_architectures.py --json benchmarks/results/cpu-architectures.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cpedit.edit.calibration import calibrate  # noqa: E402
from cpedit.models.architectures import denoiser_components, find_target_layers  # noqa: E402
from cpedit.models.ffn import get_denoiser  # noqa: E402
from cpedit.models.support import require_support  # noqa: E402
from cpedit.recipes.sources import resolve_recipe  # noqa: E402
from devtools.builders import ARCHITECTURES, build_random_components  # noqa: E402


def fastest_interleaved(repeats: int, **runs: Any) -> dict[str, dict[str, float]]:
    """Minimum wall, user-CPU and system-CPU time of each run, the runs taking turns in every round.

    Taking turns (after one warm-up round) spreads any background load on a shared machine
    evenly over the runs being compared. User CPU time counts only this process's own
    computation: it is barely disturbed by other jobs, and it leaves out the system time of
    page faults, which glibc's malloc makes vary by up to 15% between identical runs (it
    maps and unmaps large buffers depending on the allocation history). With one thread it
    is the compute time.
    """
    for fn in runs.values():
        fn()
    samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "user": [], "sys": []} for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            fn()
            wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            samples[name]["wall"].append(wall)
            samples[name]["user"].append(after.ru_utime - before.ru_utime)
            samples[name]["sys"].append(after.ru_stime - before.ru_stime)
    return {name: {kind: min(values) for kind, values in kinds.items()} for name, kinds in samples.items()}


def record_denoiser_inputs(pipe: Any, recipe: Any) -> list[tuple[torch.nn.Module, tuple, dict]]:
    """The denoiser and (args, kwargs) of every denoiser call of one calibration, cloned.

    Every denoiser component counts (Wan 2.2's ``transformer_2`` for the steps it runs).
    """
    calls: list[tuple[torch.nn.Module, tuple, dict]] = []

    def clone(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, dict):
            return {k: clone(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(clone(v) for v in value)
        return value

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        calls.append((module, clone(args), clone(kwargs)))

    handles = [
        module.register_forward_pre_hook(hook, with_kwargs=True) for module in denoiser_components(pipe).values()
    ]
    try:
        calibrate(pipe, recipe, [], batch_size=2 * len(recipe.targets))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def batch_of(args: tuple, kwargs: dict) -> int:
    """Batch size of a recorded denoiser call (UNets take the sample positionally, DiTs as hidden_states;
    Z-Image takes a list of per-item latents)."""
    sample = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states", kwargs.get("x")))
    return len(sample) if isinstance(sample, (list, tuple)) else int(sample.shape[0])


def bench(architecture: str, recipe: Any, repeats: int) -> dict[str, Any]:
    pipe = build_random_components(architecture, seed=0)
    pipe.set_progress_bar_config(disable=True)
    spec = require_support(pipe)
    layers = find_target_layers(pipe, spec, target="ffn")
    denoiser = get_denoiser(pipe)
    recorded = record_denoiser_inputs(pipe, recipe)

    def floor() -> None:
        with torch.no_grad():
            for module, args, kwargs in recorded:
                module(*args, **kwargs)

    everything = 2 * len(recipe.targets)  # all prompts in one batch, whatever the memory estimate says
    stats = calibrate(pipe, recipe, layers, batch_size=everything)
    best = fastest_interleaved(
        repeats,
        floor=floor,
        pipeline=lambda: calibrate(pipe, recipe, [], batch_size=everything),
        calibrate=lambda: calibrate(pipe, recipe, layers, batch_size=everything),
    )
    calibrate_s, pipeline_s, floor_s = (best[name]["user"] for name in ("calibrate", "pipeline", "floor"))
    return {
        "architecture": architecture,
        "pipeline": type(pipe).__name__,
        "denoiser_parameters": sum(p.numel() for p in denoiser.parameters()),
        "ffn_layers": len(layers),
        "denoiser_calls": len(recorded),
        "denoiser_batch": batch_of(*recorded[0][1:]),
        "accumulator_bytes": stats.accumulator_bytes,
        "image_size": stats.image_size,
        "calibrate_s": calibrate_s,
        "pipeline_s": pipeline_s,
        "floor_s": floor_s,
        "wall_s": {name: best[name]["wall"] for name in best},
        "sys_s": {name: best[name]["sys"] for name in best},
        "overhead_vs_floor": calibrate_s / floor_s - 1,
        "hooks_overhead_vs_pipeline": calibrate_s / pipeline_s - 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="repeat; default: all")
    parser.add_argument("--recipe", default="van-gogh")
    parser.add_argument("--size", type=int, default=32, help="calibration image size in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    recipe = resolve_recipe(args.recipe)
    recipe = dataclasses.replace(
        recipe, sampling=dataclasses.replace(recipe.sampling, height=args.size, width=args.size)
    )
    rows = []
    for architecture in args.arch or ARCHITECTURES:
        row = bench(architecture, recipe, args.repeats)
        rows.append(row)
        vs_floor, hooks = 100 * row["overhead_vs_floor"], 100 * row["hooks_overhead_vs_pipeline"]
        print(
            f"{architecture:13s} {row['pipeline']:26s} {row['denoiser_calls']:2d} calls x {row['denoiser_batch']:3d}"
            f"  floor {row['floor_s']:7.3f}s  pipeline {row['pipeline_s']:7.3f}s  calibrate {row['calibrate_s']:7.3f}s"
            f"  vs floor {vs_floor:+6.1f}%  hooks {hooks:+6.1f}%  stats {row['accumulator_bytes']:,} B",
            flush=True,
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "machine": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "recipe": recipe.name,
            "size": args.size,
            "repeats": args.repeats,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
