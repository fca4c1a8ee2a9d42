"""CLI start-up time: commands that load no model, against ``python -c "import torch"``.

Each command runs as a fresh process (the installed ``cpedit`` console script, output
discarded), ``--runs`` times, the commands taking turns in every round (so a slow moment
of a shared machine hits them all alike); the median wall time of each is kept and
divided by the median of ``python -c "import torch"``. The goals: ``cpedit --help`` under
0.3x, ``cpedit recipes list`` under 0.5x.

``cpedit card DIR`` needs a prune output: ``--card-dir`` names one, else one is made first
(``cpedit.prune("builtin:shapes", ["shapes-striped"])`` into a temporary folder, a few
seconds on a CPU). Example:

    python benchmarks/bench_startup.py --runs 15 --json benchmarks/results/cpu-startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cpedit.models.compute import ComputeOptions

GOALS = {"cpedit --help": 0.3, "cpedit recipes list": 0.5}


def cpedit_command() -> list[str]:
    """The console script next to this interpreter (what a user runs), else ``python -m cpedit.cli.main``."""
    script = Path(sys.executable).parent / "cpedit"
    if script.is_file():
        return [str(script)]
    found = shutil.which("cpedit")
    return [found] if found else [sys.executable, "-m", "cpedit.cli.main"]


def make_output(folder: Path) -> Path:
    """A prune output of the built-in model to run ``cpedit card`` on."""
    import cpedit

    out = folder / "shapes-striped"
    cpedit.prune("builtin:shapes", ["shapes-striped"], out=out, compute=ComputeOptions(device="cpu"))
    return out


def time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall times of every command, ``runs`` rounds, the commands taking turns; one warm-up round first."""
    for argv in commands.values():
        time_once(argv)  # warm the file cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(time_once(argv))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="Rounds (each command runs once per round).")
    parser.add_argument("--card-dir", type=Path, default=None, help="A prune output for `cpedit card`.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args()

    os.environ.update({"COLUMNS": "100", "NO_COLOR": "1"})  # the children's terminal: same for every run
    cpedit = cpedit_command()
    with tempfile.TemporaryDirectory(prefix="cpedit-bench-startup-") as tmp:
        card_dir = args.card_dir or make_output(Path(tmp))
        commands = {
            'python -c "import torch"': [sys.executable, "-c", "import torch"],
            "cpedit --help": [*cpedit, "--help"],
            "cpedit recipes list": [*cpedit, "recipes", "list"],
            "cpedit recipes show van-gogh": [*cpedit, "recipes", "show", "van-gogh"],
            "cpedit card DIR": [*cpedit, "card", str(card_dir)],
        }
        times = measure(commands, args.runs)

    baseline = statistics.median(times['python -c "import torch"'])
    rows: dict[str, dict[str, Any]] = {}
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {
            "median_s": round(median, 4),
            "min_s": round(min(values), 4),
            "max_s": round(max(values), 4),
            "ratio_to_import_torch": round(median / baseline, 3),
            "goal_ratio": GOALS.get(name),
            "runs_s": [round(v, 4) for v in values],
        }
    result = {
        "runs": args.runs,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "cpedit_command": cpedit,
        "results": rows,
    }
    width = max(len(name) for name in rows)
    print(f"{'command':<{width}}  median    ratio  goal")
    for name, row in rows.items():
        goal = f"< {row['goal_ratio']}x" if row["goal_ratio"] else ""
        print(f"{name:<{width}}  {row['median_s']:.3f} s  {row['ratio_to_import_torch']:.3f}x  {goal}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
