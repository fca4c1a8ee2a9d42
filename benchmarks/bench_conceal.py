"""Concealment against the location attack, measured on the built-in shapes model.

One edit session calibrates a recipe once, applies the same selection with each fill
(``zero``, ``gaussian`` per row, ``gaussian`` per layer) and saves each output; then every
output is audited (``cpedit audit``: exact zeros, KS statistic of the edited entries, the
location attack's recovered positions) and the attack's revived weights are evaluated on the
shapes world (erased and preserved accuracy of the base, the edit and the revived edit; the
same held-out prompts and seeds for all).

    python benchmarks/bench_conceal.py --out /tmp/conceal-bench --images 32 --json conceal.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cpedit.edit.session import EditSession
from cpedit.eval.audit import audit_output, evaluate_revival
from cpedit.models.compute import ComputeOptions

VARIANTS = (("zero", "row"), ("gaussian", "row"), ("gaussian", "layer"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="shapes-striped")
    parser.add_argument("--out", type=Path, required=True, help="Folder for the three outputs.")
    parser.add_argument("--images", type=int, default=32, help="Images per prompt set, per model.")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0, help="Prompts and image seeds.")
    parser.add_argument("--conceal-seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    session = EditSession.open("builtin:shapes", [args.recipe], compute=ComputeOptions(device="cpu"))
    session.calibrate()
    selection = session.select()
    rows = []
    base_scores = None
    for mode, scale in VARIANTS:
        label = mode if mode == "zero" else f"{mode}-{scale}"
        session.apply(selection, conceal=mode, conceal_scale=scale, conceal_seed=args.conceal_seed)
        out = session.save(args.out / label, overwrite=True).path
        audit = audit_output(out, base="builtin:shapes")
        revival = evaluate_revival(
            audit,
            images=args.images,
            seed=args.seed,
            steps=args.steps,
            compute=ComputeOptions(device="cpu"),
            base_scores=base_scores,
        )
        base_scores = (revival.erased["base"], revival.preserved["base"])
        row = {
            "conceal": label,
            "pruned": audit.pruned,
            "zeros": audit.zeros,
            "base_zeros": audit.base_zeros,
            "ks": round(audit.ks, 4),
            "recovered": audit.recovered,
            "recovered_fraction": round(audit.recovered_fraction, 4),
            "erased": revival.erased,
            "preserved": revival.preserved,
            "revival": round(revival.revival, 4),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    session.restore()
    result = {
        "recipe": args.recipe,
        "images": args.images,
        "steps": args.steps,
        "seed": args.seed,
        "machine": f"{platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads".strip(),
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    print(
        "| fill | erased base -> edit | preserved base -> edit | exact zeros | KS | positions recovered "
        "| erased after attack | revival |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        e, p = r["erased"], r["preserved"]
        print(
            f"| {r['conceal']} | {e['base']:.3f} -> {e['edited']:.3f} | {p['base']:.3f} -> {p['edited']:.3f} "
            f"| {r['zeros']:,} of {r['pruned']:,} | {r['ks']:.3f} "
            f"| {r['recovered']:,} ({100 * r['recovered_fraction']:.1f}%) "
            f"| {e['revived']:.3f} | {r['revival']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
