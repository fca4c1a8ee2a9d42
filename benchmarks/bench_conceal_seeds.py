"""The erasure a ``gaussian`` fill leaves, over fill seeds: the plain draw against the chosen candidate.

One edit session calibrates a shipped shapes recipe once and selects once; then for every fill
seed it applies the plain draw (candidate 0 only: the fill before candidates existed) and the
chosen fill (the candidate that gives back the least of the concept, see
:mod:`cpedit.edit.conceal`), and also the zero fill. Each variant renders the same held-out
prompts and image seeds (``cpedit eval shapes``'s prompt draw with ``--seed``, which must
differ from the recipe's calibration seed), judged by the shipped classifier: erased accuracy
(lower: erased) and preservation. The detectability of each variant is measured in the same run:
exact zeros, the KS statistic of the edited entries against the rest of their layer, and the
positions the location attack recovers (as ``cpedit audit``).

    nice -n 10 python benchmarks/bench_conceal_seeds.py --seeds 8 --images 24 --steps 20 --seed 1 \\
        --json benchmarks/results/cpu-conceal-seeds.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from cpedit.edit.session import EditSession
from cpedit.eval.audit import ks_statistic, location_attack
from cpedit.eval.intervals import wilson
from cpedit.eval.shapes import _calibration_prompts, evaluation_prompts, generate_images, score_images
from cpedit.models.compute import ComputeOptions
from cpedit.shapes import world
from cpedit.shapes.classifier import load_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="shapes-striped")
    parser.add_argument("--seeds", type=int, default=8, help="Fill seeds (0 .. N-1).")
    parser.add_argument("--images", type=int, default=24, help="Images per prompt set (erased, preserved).")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1, help="Evaluation prompts and image seeds.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    session = EditSession.open("builtin:shapes", [args.recipe], compute=ComputeOptions(device="cpu"))
    recipe = session.recipes[0]
    if args.seed == recipe.sampling.seed:
        parser.error(f"--seed {args.seed} is the recipe's calibration seed; use another")
    session.calibrate()
    selection = session.select()
    pipe = session.pipeline
    pipe.set_progress_bar_config(disable=True)
    layers = {layer.key: layer for found in session.layers.values() for layer in found}
    concept = recipe.concept.strip().lower()
    erased = [(a, concept) for a, values in world.BUILTIN.attributes.items() if concept in values][:1]
    with_concept, without = evaluation_prompts(
        erased, images=args.images, seed=args.seed, exclude=_calibration_prompts(session.recipes)
    )
    classifier = load_classifier()

    def measure() -> dict[str, Any]:
        scores: dict[str, Any] = {}
        for offset, (mode, scenes) in enumerate((("erased", with_concept), ("preserved", without))):
            shown = generate_images(
                pipe,
                [world.caption(s) for s in scenes],
                seed=args.seed + 1_000_000 * offset,
                steps=args.steps,
                guidance_scale=recipe.sampling.guidance_scale,
                batch_size=args.images,
                label=mode,
                on_progress=None,
                done=0,
                total=2 * args.images,
            )
            scores[mode], _ = score_images(classifier, shown, scenes, erased, mode=mode)
        interval = wilson(round(scores["erased"] * args.images), args.images)
        scores["erased_interval"] = [round(interval.low, 3), round(interval.high, 3)]
        return scores

    def detectability() -> dict[str, Any]:
        pruned = zeros = recovered = 0
        ks_weighted = 0.0
        for key, mask in selection.masks.items():
            weight = layers[key].module.weight.detach().float().cpu()
            count = int(mask.sum())
            pruned += count
            zeros += int((weight == 0).sum())
            ks_weighted += ks_statistic(weight[mask], weight[~mask]) * count
            recovered += int((location_attack(weight).found & mask).sum())
        return {"zeros": zeros, "ks": round(ks_weighted / pruned, 4), "recovered": recovered, "pruned": pruned}

    rows: list[dict[str, Any]] = []
    session.restore()
    base = measure()
    rows.append({"fill": "base", "seed": None, **base})
    print(json.dumps(rows[-1]), flush=True)
    variants: list[tuple[str, int | None, dict[str, Any]]] = [("zero", None, {"conceal": "zero"})]
    for seed in range(args.seeds):
        variants.append(("plain", seed, {"conceal": "gaussian", "conceal_seed": seed}))
        variants.append(("chosen", seed, {"conceal": "gaussian", "conceal_seed": seed}))
    for label, seed, kwargs in variants:
        if label == "plain":  # candidate 0 only: the fill of a session without statistics
            held = session.statistics
            session.statistics = {}
            try:
                session.apply(selection, **kwargs)
            finally:
                session.statistics = held
        else:
            session.apply(selection, **kwargs)
        rows.append({"fill": label, "seed": seed, **measure(), **detectability()})
        print(json.dumps(rows[-1]), flush=True)
    session.restore()

    def summary(label: str) -> dict[str, Any]:
        chosen = [r for r in rows if r["fill"] == label]
        out: dict[str, Any] = {}
        for key in ("erased", "preserved", "ks"):
            values = [r[key] for r in chosen]
            out[key] = {
                "mean": round(statistics.fmean(values), 4),
                "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                "min": round(min(values), 4),
                "max": round(max(values), 4),
            }
        out["recovered"] = max(r["recovered"] for r in chosen)
        out["zeros"] = max(r["zeros"] for r in chosen)
        return out

    result = {
        "recipe": args.recipe,
        "seeds": args.seeds,
        "images": args.images,
        "steps": args.steps,
        "eval_seed": args.seed,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": {label: summary(label) for label in ("zero", "plain", "chosen")},
        "rows": rows,
    }
    print("| fill | erased mean (min-max) | preserved mean (min-max) | KS mean | exact zeros | recovered |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, s in result["summary"].items():
        e, p = s["erased"], s["preserved"]
        print(
            f"| {label} | {e['mean']:.3f} ({e['min']:.3f}-{e['max']:.3f}) "
            f"| {p['mean']:.3f} ({p['min']:.3f}-{p['max']:.3f}) "
            f"| {s['ks']['mean']:.3f} | {s['zeros']} | {s['recovered']} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
