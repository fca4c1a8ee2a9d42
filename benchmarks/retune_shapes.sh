#!/usr/bin/env bash
# Re-tune the shipped shapes-* recipes with `cpedit tune`, then measure each tuned (or, when the goal
# is out of reach, best trade-off) setting with evaluation seeds different from the tuning seeds, so
# the numbers are not tuned to their own test.
#
#   bash benchmarks/retune_shapes.sh [WORK_DIR]     (about 30 minutes on the 2-core CPU)
#
# Goal A is the one the sweep above could not meet (erased <= 0.2 at a preservation drop <= 0.05);
# goal B halves the erased accuracy within the same budget. Tuning: seed 0, 64 images per set, the
# recipe's own target (and attn-value for the star and red, which ship with ffn). Checking: the
# setting pruned with `cpedit prune` and measured by `cpedit eval shapes --seed 1` (other prompts
# and image seeds), 64 images per set.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-/tmp/cpedit-retune}"
RESULTS=benchmarks/results
mkdir -p "$WORK"
TUNE_EVAL=(--eval shapes --images 64 --seed 0 --steps 25 --device cpu --max-skill-ratio 0.6)
run() {  # run NAME RECIPE GOAL [TARGET]
  local name="$1" recipe="$2" goal="$3" target="${4:-}" status=0 start
  start=$(date +%s)
  python -m cpedit tune --recipe "$recipe" "${TUNE_EVAL[@]}" --erased-at-most "$goal" --max-drop 0.05 \
    ${target:+--target "$target"} --out "$WORK/$name" --format json > /dev/null || status=$?
  echo "$name: tune exit $status, $(( $(date +%s) - start )) s"
  cp "$WORK/$name/tune.json" "$RESULTS/cpu-shapes-tune-$name.json"
  # the chosen (or best) setting as a recipe, pruned and checked on seed 1
  python - "$WORK/$name" "$recipe" <<'PY'
import json, sys
from pathlib import Path
from cpedit import resolve_recipe
from cpedit.recipes import with_settings, write_recipe_file
work, name = Path(sys.argv[1]), sys.argv[2]
best = json.loads((work / "tune.json").read_text())["best"]["settings"]
prune = {k: v for k, v in best.items() if v is not None}
write_recipe_file(with_settings(resolve_recipe(name), prune=prune), work / "check", overwrite=True)
PY
  python -m cpedit prune --recipe "$WORK/$name/check/$recipe.yaml" --out "$WORK/$name/check-model" \
    --device cpu --overwrite > /dev/null
  python -m cpedit eval shapes "$WORK/$name/check-model" --images 64 --seed 1 --steps 25 --device cpu \
    --format json > "$RESULTS/cpu-shapes-tune-$name-check-seed1.json"
  echo "$name: checked with seed 1"
}
run shapes-striped-goal-A shapes-striped 0.2
run shapes-striped-goal-B shapes-striped 0.5
for recipe in shapes-star shapes-red; do
  run "$recipe-goal-B" "$recipe" 0.5
  run "$recipe-attn-value-goal-B" "$recipe" 0.5 attn-value
done
