"""The evaluation engine's own cost: images per second, and its overhead over bare generation.

On the same in-memory pipeline, the same prompts, seeds, steps and batches, this times

* **bare**: the pipeline called batch by batch, one seeded generator per image, PIL images kept
  in memory (what a hand-written evaluation script does before it scores);
* **engine**: :func:`cpedit.eval.engine.render_images` into a fresh folder: the same calls plus
  everything the harness adds (cache keys, each image written atomically as PNG, the manifest
  line fsync'ed after it, the manifest rewritten in canonical order at the end).

Rounds alternate the two (bare first in even rounds, engine first in odd ones) and the ratio is
taken per round, then the median. On a shared CPU the pipeline's own time varies by 10-15%
from run to run, more than the harness costs, so the engine run also times its own pipeline
calls: the harness's own overhead is (engine time - time inside those calls) / that time,
measured within one run, which the machine's noise cannot move much. The goal (issue 13) is
an overhead of at most 10%.

    python benchmarks/bench_eval.py --images 64 --batch-size 16 --steps 25 --rounds 5 --json eval.json
    python benchmarks/bench_eval.py --model sd15 --device cuda --images 32 --batch-size 8 --steps 30
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # devtools/ for --model sd15

import cpedit
from cpedit.eval import engine as engine_module
from cpedit.eval.engine import PromptSpec, _batches, image_jobs, model_identity, render_batch, render_images
from cpedit.models import loading
from cpedit.models.compute import ComputeOptions
from cpedit.output.record import read_output

PROMPTS = [
    f"a {texture} {colour} {shape} on a {background} background"
    for texture in ("plain", "striped", "dotted", "checkered")
    for colour in ("red", "green", "blue", "yellow")
    for shape in ("circle", "square", "star", "cross")
    for background in ("white", "grey")
]


def _edited(model: str, work: Path, device: str) -> Path:
    if model == "builtin":
        return cpedit.prune(
            "builtin:shapes", ["shapes-striped"], out=work / "edited", compute=ComputeOptions(device=device)
        ).output
    from devtools.builders import build_random_sd_pipeline

    base = build_random_sd_pipeline(work / "sd15", size="sd15")
    recipe = work / "recipe.yaml"
    recipe.write_text(
        "cpedit: 1\nname: bench-style\nconcept: x\nkind: style\n"
        "prompts:\n  subjects: [cat, dog]\n  target: 'a {subject} in the style of x'\n  base: 'a {subject}'\n"
        "prune: {skill_ratio: 0.01, timesteps: 2}\nsampling: {steps: 4, seed: 0}\n"
    )
    return cpedit.prune(base, [recipe], out=work / "edited", compute=ComputeOptions(device=device)).output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("builtin", "sd15"), default="builtin")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    try:
        edited = _edited(args.model, work, args.device)
        record = read_output(edited)
        _, pipe = loading.open_pipeline(edited, compute=ComputeOptions(device=args.device))
        pipe.set_progress_bar_config(disable=True)
        prompts = [PromptSpec(PROMPTS[i % len(PROMPTS)], seed=i) for i in range(args.images)]
        settings = dict(seed=0, steps=args.steps, guidance_scale=7.5, height=None, width=None, images_per_prompt=1)
        jobs = image_jobs(prompts, identity=model_identity(record, "edited"), model="edited", **settings)
        batches = _batches(jobs, args.batch_size)

        def sync() -> None:
            if torch.cuda.is_available() and args.device.startswith("cuda"):
                torch.cuda.synchronize()

        def bare() -> float:
            sync()
            start = time.perf_counter()
            kept = [render_batch(pipe, batch) for batch in batches]
            sync()
            assert sum(len(k) for k in kept) == args.images
            return time.perf_counter() - start

        inside: list[float] = []

        def timed_batch(pipe_: object, jobs: object, **kwargs: object) -> list[object]:
            sync()
            start = time.perf_counter()
            images = render_batch(pipe_, jobs, **kwargs)  # type: ignore[arg-type]
            sync()
            inside.append(time.perf_counter() - start)
            return images

        def engine(round_index: int) -> tuple[float, float]:
            folder = work / f"images-{round_index}"
            inside.clear()
            engine_module.render_batch = timed_batch  # the engine's calls, timed
            try:
                sync()
                start = time.perf_counter()
                result = render_images(
                    record, prompts, folder=folder, pipe=pipe, batch_size=args.batch_size, **settings
                )
                sync()
                elapsed = time.perf_counter() - start
            finally:
                engine_module.render_batch = render_batch
            assert result.generated == args.images
            shutil.rmtree(folder)
            return elapsed, sum(inside)

        render_batch(pipe, batches[0])  # warm-up (allocator, kernels)
        rows = []
        for r in range(args.rounds):
            if r % 2 == 0:
                b, (e, pipeline_s) = bare(), engine(r)
            else:
                (e, pipeline_s), b = engine(r), bare()
            own = (e - pipeline_s) / pipeline_s
            rows.append(
                {
                    "bare_s": round(b, 3),
                    "engine_s": round(e, 3),
                    "engine_pipeline_s": round(pipeline_s, 3),
                    "ratio": round(e / b, 4),
                    "harness_overhead": round(own, 4),
                }
            )
            print(
                f"round {r}: bare {b:.2f} s, engine {e:.2f} s (harness {100 * own:.1f}%), ratio {e / b:.3f}", flush=True
            )
        ratio = statistics.median(row["ratio"] for row in rows)
        harness = statistics.median(row["harness_overhead"] for row in rows)
        bare_median = statistics.median(row["bare_s"] for row in rows)
        engine_median = statistics.median(row["engine_s"] for row in rows)
        summary = {
            "command": "python " + " ".join(sys.argv),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
            + (torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"),
            "model": args.model,
            "images": args.images,
            "batch_size": args.batch_size,
            "steps": args.steps,
            "images_per_s_bare": round(args.images / bare_median, 2),
            "images_per_s_engine": round(args.images / engine_median, 2),
            "engine_over_bare_median_ratio": ratio,
            "harness_overhead_median": harness,
            "rounds": rows,
            "versions": {"torch": torch.__version__, "cpedit": cpedit.__version__},
        }
        print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
        if args.json is not None:
            args.json.write_text(json.dumps(summary, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
