#!/usr/bin/env bash
# The GPU benchmark as run on a lent GPU machine (see benchmarks/README.md).
# Needs: .whl/diffusers-*.whl and .whl/site/clip/ (the openai-clip package folder, for
# its BPE vocabulary) carried next to the repo; writes logs and JSON under $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.whl/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers, transformers, triton; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"
COMMON=(--size sd15 --device cuda --dtype float16)
FILTER='torchvision|should be kept in float32'
# 1. Full recipe (20 pairs): cpedit vs the bare UNet floor (no reference: it would take minutes).
timeout 150 python3 benchmarks/bench_speed.py "${COMMON[@]}" --skip-reference --json "$OUT/sd15-fp16-overhead.json" 2>&1 \
  | grep -v -iE "$FILTER" | tee "$OUT/sd15-fp16-overhead.log"
# 2. Speed and IoU against the reference procedure, on the first PAIRS pairs.
timeout "${BENCH_TIMEOUT:-300}" python3 benchmarks/bench_speed.py "${COMMON[@]}" --pairs "${PAIRS:-6}" \
  --json "$OUT/sd15-fp16-reference.json" 2>&1 | grep -v -iE "$FILTER" | tee "$OUT/sd15-fp16-reference.log"
