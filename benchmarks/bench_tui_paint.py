"""Terminal app first paint: ``cpedit tui`` until its first screen shows, against ``python -c "import torch"``.

Each run starts ``cpedit tui --images halfcell`` in a fresh detached tmux session (100x30, a
private tmux socket) and polls ``tmux capture-pane`` every 10 ms until the footer of the first
screen ("Quit") is on screen; the time from starting tmux to then is the first paint. The same
is done for ``python -c "import torch"`` (until the pane shows the word it prints after), with
the two taking turns in every round. The median of each is kept; the goal is a ratio under 1.5.

    python benchmarks/bench_tui_paint.py --runs 7 --json benchmarks/results/cpu-tui-paint.json
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
import time
import uuid
from pathlib import Path

GOAL = 1.5


def time_until(command: str, marker: str, *, timeout: float = 60.0) -> float:
    """Seconds from starting ``command`` in tmux until ``marker`` shows in the pane."""
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("tmux is needed: apt-get install -y tmux")
    socket = f"cpedit-bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    subprocess.run(
        [tmux, "-L", socket, "new-session", "-d", "-s", "b", "-x", "100", "-y", "30", f"{command}; sleep 30"],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        while time.perf_counter() - started < timeout:
            screen = subprocess.run(
                [tmux, "-L", socket, "capture-pane", "-p", "-t", "b"], capture_output=True, text=True
            ).stdout
            if marker in screen:
                return time.perf_counter() - started
            time.sleep(0.01)
        raise SystemExit(f"{marker!r} never showed for: {command}")
    finally:
        subprocess.run([tmux, "-L", socket, "kill-server"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args()
    cpedit = Path(sys.executable).parent / "cpedit"
    commands = {
        "cpedit tui (first paint)": (f"{cpedit} tui --images halfcell", "Quit"),
        'python -c "import torch"': (
            f"{sys.executable} -c 'import torch; print(\"imported-torch\")'",
            "imported-torch",
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, (command, marker) in commands.items():
            times[name].append(time_until(command, marker))
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["cpedit tui (first paint)"] / medians['python -c "import torch"']
    for name, value in medians.items():
        print(f"{name:32s} median {value:.3f} s over {args.runs} runs")
    print(f"first paint / import torch = {ratio:.2f}x (goal < {GOAL}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": f"{platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                    "python": platform.python_version(),
                    "runs": args.runs,
                    "median_seconds": medians,
                    "all_seconds": times,
                    "ratio": ratio,
                    "goal": GOAL,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
