#!/usr/bin/env bash
# Save benchmark: `cp -r` of the base folder, then `cpedit.prune` with main's code (before) and this
# checkout's (after), one process each, on the same base. Usage:
#   bash benchmarks/bench_save.sh BASE_FOLDER SCRATCH_FOLDER BEFORE_CHECKOUT
# (BASE_FOLDER from devtools.builders.build_random_sd_pipeline(size="sd15"); results: JSON lines on stdout)
set -euo pipefail
base=$1; scratch=$2; before=$3; after=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
mkdir -p "$scratch"; rm -rf "$scratch"/cp "$scratch"/before "$scratch"/after
cp -r "$base" "$scratch/cp" && rm -rf "$scratch/cp"   # warm the page cache: every run reads from memory
start=$(date +%s.%N); cp -r "$base" "$scratch/cp"; mid=$(date +%s.%N)
sync -f "$scratch/cp"; find "$scratch/cp" -type f -exec sync {} +; end=$(date +%s.%N)
echo "{\"cp_r_s\": $(echo "$mid - $start" | bc), \"cp_r_and_fsync_s\": $(echo "$end - $start" | bc)}"
rm -rf "$scratch/cp"
PYTHONPATH=$before "$python" "$after/benchmarks/bench_save.py" "$base" "$scratch/before"
rm -rf "$scratch/before"
PYTHONPATH=$after "$python" "$after/benchmarks/bench_save.py" "$base" "$scratch/after"
rm -rf "$scratch/after"
