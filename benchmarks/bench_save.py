"""Save cost of ``cpedit.prune`` on a full-size pipeline: time, bytes written, peak memory.

One process per measurement (run it with ``PYTHONPATH`` pointing at the cpedit to measure, so the
same script measures an older checkout too): ``cpedit.prune`` of a pipeline folder with a short
recipe (one prompt pair, tau 1, 64 px: calibration is short, saving dominates), then from
``/proc/self/io`` the bytes the process wrote (``write_bytes``, and ``cancelled_write_bytes``:
bytes of files deleted before they reached the disk) and from ``getrusage`` its peak resident
memory, against the output's size and the loaded pipeline's size. Prints one JSON line.

    python -m benchmarks.bench_save BASE_FOLDER OUT_FOLDER

Build the base once with ``devtools.builders.build_random_sd_pipeline(folder, size="sd15")``.
Compare with ``cp -r BASE OUT`` (see benchmarks/README.md for the commands used).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

RECIPE = """cpedit: 1
name: bench-save
concept: Van Gogh
kind: style
description: one pair, tau 1, 64 px (the save benchmark)
prompts:
  subjects: [cat]
  target: "a {subject} in the style of Van Gogh"
  base: "a photo of a {subject}"
prune: {skill_ratio: 0.01, timesteps: 1, select_ratio: 0.0}
sampling: {steps: 2, guidance_scale: 7.5, seed: 0, height: 64, width: 64}
"""


def proc_io() -> dict[str, int]:
    """This process's I/O counters (Linux)."""
    counters = {}
    for line in Path("/proc/self/io").read_text(encoding="ascii").splitlines():
        key, value = line.split(":")
        counters[key.strip()] = int(value)
    return counters


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(base: Path, out: Path) -> dict[str, object]:
    import torch

    import cpedit

    recipe = Path(tempfile.mkdtemp()) / "bench-save.yaml"
    recipe.write_text(RECIPE, encoding="utf-8")
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    io_before = proc_io()
    started = time.perf_counter()
    result = cpedit.prune(base, [recipe], out=out, compute=cpedit.ComputeOptions(device="cpu"), batch_size=2)
    total = time.perf_counter() - started
    io_after = proc_io()
    pipeline_bytes = sum(
        t.numel() * t.element_size()
        for value in vars(result.pipeline).values()
        if isinstance(value, torch.nn.Module)
        for t in [*value.parameters(), *value.buffers()]
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    output = folder_size(out)
    written = io_after["write_bytes"] - io_before["write_bytes"]
    timings = result.report.timings_s
    return {
        "cpedit": str(Path(cpedit.__file__).parent.parent),
        "whole_s": round(total, 2),
        "save_s": round(float(timings.get("save", 0.0)), 2),
        "load_s": round(float(timings.get("load", 0.0)), 2),
        "calibrate_s": round(float(timings.get("calibrate", 0.0)), 2),
        "output_bytes": output,
        "write_bytes": written,
        "cancelled_write_bytes": io_after["cancelled_write_bytes"] - io_before["cancelled_write_bytes"],
        "written_over_output": round(written / output, 3),
        "pipeline_bytes": pipeline_bytes,
        "peak_rss_bytes": peak,
        "rss_after_imports_bytes": rss_imports,
        "peak_rss_over_pipeline": round(peak / pipeline_bytes, 3),
        "pruned_weights": result.report.totals.pruned_weights,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]))))
