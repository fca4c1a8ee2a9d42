#!/usr/bin/env bash
# Whole-process wall time: `cpedit prune` against the published procedure
# (benchmarks/reference_prune.py), each a fresh process on the same saved model folder.
# Usage: benchmarks/bench_whole_process.sh [SIZE] [RECIPE]   (default: small van-gogh)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${1:-small}
RECIPE=${2:-van-gogh}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python -c "from pathlib import Path; from devtools.builders import build_random_sd_pipeline as b; b(Path('$WORK/model'), size='$SIZE')" 2>/dev/null
now() { date +%s.%N; }
t0=$(now)
cpedit prune "$WORK/model" --recipe "$RECIPE" --out "$WORK/cpedit-out" --device cpu --format json > "$WORK/report.json"
t1=$(now)
python benchmarks/reference_prune.py "$WORK/model" "$RECIPE" "$WORK/reference-out" 2>/dev/null
t2=$(now)
python - "$t0" "$t1" "$t2" "$SIZE" "$RECIPE" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:4])
cp, ref = t1 - t0, t2 - t1
print(f"| whole process ({sys.argv[4]}, {sys.argv[5]}, cpu) | reference {ref:.1f}s | cpedit {cp:.1f}s | speedup {ref / cp:.2f}x |")
PY
