"""A 3-point sweep: bytes written and time per point, against the bare generation of its images.

Runs :func:`cpedit.tuning.sweep` (3 skill ratios, one tau, ``--eval shapes``) on the built-in
model in this process and reads this process's ``write_bytes`` from ``/proc/self/io`` around
it, twice:

* **in memory** (what ``cpedit sweep`` does now): each point is measured on the edited
  pipeline; only ``sweep.json`` and the evaluation images reach the disk;
* **saving each point** (``keep_models=True``: a model copy per point, as every point cost
  before this change, when it was saved, measured and deleted).

Then the **bare generation** of the images a point renders (the edited model's images of the
benchmark, same prompts' count, steps, batch size) with the pipeline called directly: the
floor a point's time is compared with. The base model's images and the calibration are made
once per sweep and are not in the per-point time (``seconds`` of each point in ``sweep.json``
counts select + apply + render + score + restore).

    python benchmarks/bench_sweep.py --images 32 --steps 10 --json sweep-bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cpedit.eval.options import ImageOptions
from cpedit.eval.shapes import ShapesOptions
from cpedit.models.compute import ComputeOptions
from cpedit.tuning import plan_evaluation, sweep

RATIOS = (0.05, 0.1, 0.2)


def write_bytes() -> int:
    """This process's bytes sent to the storage layer so far (``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no write_bytes")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_sweep(out: Path, *, images: int, steps: int, batch: int, keep: bool, device: str) -> dict:
    plan = plan_evaluation(
        "shapes", ShapesOptions(images=images), images=ImageOptions(seed=0, steps=steps, batch_size=batch)
    )
    before, started = write_bytes(), time.perf_counter()
    result = sweep(
        "builtin:shapes",
        ["shapes-striped"],
        skill_ratios=list(RATIOS),
        timesteps=[6],
        plan=plan,
        out=out,
        compute=ComputeOptions(device=device),
        keep_models=keep,
        plot=False,
    )
    seconds = time.perf_counter() - started
    written = write_bytes() - before
    return {
        "seconds": round(seconds, 2),
        "point_seconds": [round(p.seconds, 2) for p in result.points],
        "write_bytes": written,
        "folder_bytes": folder_bytes(out),
        "calibration_seconds": sum(c["seconds"] for c in result.calibrations),
    }


def bare_generation(*, images: int, steps: int, batch: int, device: str, rounds: int) -> float:
    """Seconds to generate one point's edited images (2 sets of ``images``) with the pipeline called directly."""
    from cpedit.eval.shapes import evaluation_prompts
    from cpedit.models import loading
    from cpedit.shapes import world

    _, pipe = loading.open_pipeline("builtin:shapes", compute=ComputeOptions(device=device))
    pipe.set_progress_bar_config(disable=True)
    with_concept, without = evaluation_prompts([("texture", "striped")], images=images, seed=0, exclude=set())
    prompts = [world.caption(scene) for scene in (*with_concept, *without)]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, len(prompts), batch):
            chunk = prompts[start : start + batch]
            generators = [torch.Generator("cpu").manual_seed(i) for i in range(len(chunk))]
            pipe(chunk, num_inference_steps=steps, generator=generators, output_type="pil")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="Held-out scenes per set (shapes' --images).")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="Images per pipeline call.")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of the bare generation (median).")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    common = {"images": args.images, "steps": args.steps, "batch": args.batch_size, "device": args.device}
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:  # on the disk, not a tmpfs
        in_memory = run_sweep(Path(tmp) / "memory", keep=False, **common)
        saving = run_sweep(Path(tmp) / "saving", keep=True, **common)
    bare = bare_generation(rounds=args.rounds, **common)
    per_point = statistics.median(in_memory["point_seconds"])
    result = {
        "machine": f"{platform.machine()}, {torch.__version__}, {args.device}",
        "settings": {**common, "points": len(RATIOS), "tau": 6},
        "in_memory": in_memory,
        "saving_each_point": saving,
        "bare_generation_per_point_s": round(bare, 2),
        "point_over_bare": round(per_point / bare, 3),
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
