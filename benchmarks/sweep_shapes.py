"""Sweep skill_ratio x tau on the built-in shapes model: erased accuracy vs preservation.

For each recipe, an edit session calibrates once with the largest tau (the statistics of the
first tau calls do not depend on how many calls follow), then every (skill_ratio, tau) point
selects its skilled weights from those statistics exactly as ``cpedit prune`` would, applies
them in memory, is measured like ``cpedit eval shapes`` (same prompts and seeds for the base
and every point), and is restored.

    python benchmarks/sweep_shapes.py --images 96 --out benchmarks/results/cpu-shapes-sweep.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from cpedit.edit.session import EditSession
from cpedit.eval.shapes import evaluation_prompts, generate_images, score_images
from cpedit.models.compute import ComputeOptions
from cpedit.recipes.sources import resolve_recipe
from cpedit.recipes.targets import TARGETS
from cpedit.shapes.classifier import load_classifier
from cpedit.shapes.world import BUILTIN, caption


def measure(pipe, classifier, sets, erased, *, seed: int, steps: int, guidance: float) -> dict[str, float]:
    result = {}
    for offset, (mode, scenes) in enumerate(sets):
        shown = generate_images(
            pipe,
            [caption(s) for s in scenes],
            seed=seed + 1_000_000 * offset,
            steps=steps,
            guidance_scale=guidance,
            batch_size=64,
            label=mode,
            on_progress=None,
            done=0,
            total=0,
        )
        result[mode] = score_images(classifier, shown, scenes, erased, mode=mode)[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default="shapes-striped,shapes-star,shapes-red")
    parser.add_argument("--skill-ratios", default="0.01,0.02,0.05,0.1,0.2")
    parser.add_argument("--taus", default="5,10,20")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance-scale", type=float, default=7.5)
    parser.add_argument(
        "--target",
        default="ffn",
        choices=[t for t in TARGETS if t != "text-ffn"],  # denoiser targets: the fraction is of the UNet
        help="prune.target of every point (default: ffn, the paper's FFN output projections)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    ratios = [float(x) for x in args.skill_ratios.split(",")]
    taus = [int(x) for x in args.taus.split(",")]

    started = time.perf_counter()
    classifier = load_classifier()
    rows = []
    for name in args.recipes.split(","):
        recipe = resolve_recipe(name)
        recipe = dataclasses.replace(recipe, prune=dataclasses.replace(recipe.prune, target=args.target))
        attribute = next(a for a, values in BUILTIN.attributes.items() if recipe.concept in values)
        erased = [(attribute, recipe.concept)]
        excluded = {p.lower() for pair in recipe.pairs() for p in pair}
        with_concept, without = evaluation_prompts(erased, images=args.images, seed=args.seed, exclude=excluded)
        sets = [("erased", with_concept), ("preserved", without)]
        # One calibration for the largest tau; every point re-selects from its statistics.
        session = EditSession.open("builtin:shapes", [recipe], compute=ComputeOptions(device="cpu"))
        session.calibrate(timesteps=max(taus))
        pipe = session.pipeline
        unet_weights = sum(p.numel() for p in pipe.unet.parameters())
        kw = {"seed": args.seed, "steps": args.steps, "guidance": args.guidance_scale}
        before = measure(pipe, classifier, sets, erased, **kw)
        print(f"{name}: before erased {before['erased']:.3f} preserved {before['preserved']:.3f}", flush=True)
        for ratio in ratios:
            for tau in taus:
                selection = session.select(skill_ratio=ratio, timesteps=tau, select_ratio=0.0)
                session.apply(selection)
                after = measure(pipe, classifier, sets, erased, **kw)
                session.restore()
                pruned = selection.pruned
                row = {
                    "recipe": name,
                    "concept": recipe.concept,
                    "target": args.target,
                    "skill_ratio": ratio,
                    "tau": tau,
                    "pruned_fraction": pruned / unet_weights,
                    "erased": {"before": before["erased"], "after": after["erased"]},
                    "preserved": {"before": before["preserved"], "after": after["preserved"]},
                }
                rows.append(row)
                print(
                    f"  skill_ratio {ratio:<5} tau {tau:>2}: pruned {100 * pruned / unet_weights:6.3f}% "
                    f"erased {after['erased']:.3f} preserved {after['preserved']:.3f} "
                    f"(drop {before['preserved'] - after['preserved']:+.3f})",
                    flush=True,
                )
    result = {
        "command": "python benchmarks/sweep_shapes.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "images_per_set": args.images,
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"done in {result['seconds']} s")


if __name__ == "__main__":
    main()
