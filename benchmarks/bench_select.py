"""Selection time against calibration time in an edit session (select makes no denoiser call).

An :class:`cpedit.EditSession` calibrates once, then every ``select`` re-selects the skilled
weights from the kept statistics. This measures, in one process, the calibration and the
median of several selections (skill ratios 0.01, 0.05, 0.2 and the recipe's own), and prints
their ratio, on:

- ``builtin``: the built-in shapes model with ``shapes-striped`` (its own settings);
- ``sd15``: a full-size SD-1.5-shaped pipeline with random weights (no download), calibrated on
  ``--pairs`` prompt pairs of the van-gogh recipe at its own tau (10).

    python benchmarks/bench_select.py --model builtin --json benchmarks/results/cpu-select-builtin.json
    python benchmarks/bench_select.py --model sd15 --pairs 1 --json benchmarks/results/cpu-select-sd15.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch

import cpedit
from cpedit.models.compute import ComputeOptions
from cpedit.recipes.sources import resolve_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["builtin", "sd15"], default="builtin")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pairs", type=int, default=1, help="sd15: prompt pairs calibrated")
    parser.add_argument("--repeats", type=int, default=5, help="selections timed per skill ratio")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    if args.model == "builtin":
        session = cpedit.EditSession.open(
            "builtin:shapes", ["shapes-striped"], compute=ComputeOptions(device=args.device)
        )
    else:
        from devtools.builders import build_random_sd_components

        recipe = resolve_recipe("van-gogh")
        recipe = dataclasses.replace(recipe, targets=recipe.targets[: args.pairs], bases=recipe.bases[: args.pairs])
        pipe = build_random_sd_components(size="sd15", device=args.device)
        pipe.set_progress_bar_config(disable=True)
        session = cpedit.EditSession(pipe, [recipe])
    built = time.perf_counter() - started
    session.calibrate()
    calibrate_s = session.timings["calibrate"]
    recipe = session.recipes[0]
    rows = []
    for ratio in (None, 0.01, 0.05, 0.2):
        times = []
        for _ in range(args.repeats):
            selection = session.select(skill_ratio=ratio)
            times.append(selection.seconds)
        rows.append(
            {
                "skill_ratio": ratio if ratio is not None else recipe.prune.skill_ratio,
                "select_s_median": statistics.median(times),
                "select_s_min": min(times),
                "pruned": selection.pruned,
                "ratio_to_calibrate": statistics.median(times) / calibrate_s,
            }
        )
        print(
            f"skill_ratio {rows[-1]['skill_ratio']:g}: select {rows[-1]['select_s_median'] * 1000:.1f} ms "
            f"(median of {args.repeats}), {selection.pruned:,} pruned, "
            f"{rows[-1]['ratio_to_calibrate']:.5f}x the calibration",
            flush=True,
        )
    result = {
        "model": args.model,
        "recipe": recipe.name,
        "pairs": len(recipe.targets),
        "tau": recipe.prune.timesteps,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "load_or_build_s": built,
        "calibrate_s": calibrate_s,
        "unet_calls": session.statistics[recipe.name].denoiser_calls,
        "selections": rows,
        "command": " ".join(["python", "benchmarks/bench_select.py", *sys.argv[1:]]),
    }
    print(f"calibration {calibrate_s:.2f}s ({result['unet_calls']} denoiser calls)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
