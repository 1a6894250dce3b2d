#!/usr/bin/env bash
# One prepared GPU session (about 9 minutes): the benchmark's fast paths at the paper preset, 256²,
# then a short training on the demo slices; everything logged under $OUT (or ./gpu_out). Run from
# the repository root on a CUDA machine whose Python has torch; wheels of missing packages may be
# put in .whl/ and the demo data set in .gpu/demo_data (pixeldrl.data.demo.make_demo_dataset).
set -uo pipefail
source benchmarks/gpu_env.sh
B="python3 benchmarks/bench.py --device cuda --repeats 3"
# Straightforward vs each fast path at the paper's batch size and at larger batches.
timeout 150 $B --batch-sizes 2 16 --variants plain cl bf16 cl,bf16 2>&1 | tee "$OUT/bench_paths.txt"
timeout 120 $B --batch-sizes 64 --variants bf16 cl,bf16 --no-unet 2>&1 | tee "$OUT/bench_b64.txt"
# The two-phase update (one t_max·B batch instead of t_max sequential ones).
timeout 120 $B --batch-sizes 16 64 --variants bf16 two,bf16 --no-unet 2>&1 | tee "$OUT/bench_two_phase.txt"
# Recomputation for the memory plan.
timeout 90 $B --batch-sizes 64 128 --variants bf16,recompute --no-unet 2>&1 | tee "$OUT/bench_recompute.txt"
timeout 90 python3 benchmarks/memory.py --device cuda --batch-sizes 16 32 2>&1 | tee "$OUT/memory.txt"
if [ -d .gpu/demo_data ]; then
  timeout 90 python3 -m pixeldrl.cli train --data .gpu/demo_data --preset small --image-size 128 --epochs 10 \
    --batch-size 4 --device cuda --out /tmp/gpu_run 2>&1 | grep -v "it/s\|batch/s\|s/batch" | tail -20 | tee "$OUT/train_small.txt"
  cp /tmp/gpu_run/log.csv "$OUT/train_small_log.csv" 2>/dev/null
fi
