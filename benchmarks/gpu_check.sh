#!/usr/bin/env bash
# One prepared GPU session: the benchmark (fp32 and bf16 autocast) and a short training on the
# demo slices, everything logged under $OUT (or ./gpu_out). Run from the repository root on a CUDA
# machine whose Python already has torch; wheels for missing packages may be put in .whl/ and a
# demo dataset (pixeldrl.demo_data.make_demo_dataset) in .gpu/demo_data.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
git rev-parse HEAD 2>/dev/null | tee -a "$OUT/gpu.txt"
timeout 200 python3 benchmarks/bench.py --device cuda --batch-sizes 2 8 32 --repeats 3 2>&1 | tee "$OUT/bench_fp32.txt"
timeout 200 python3 benchmarks/bench.py --device cuda --batch-sizes 2 8 32 64 --repeats 3 --amp bf16 2>&1 | tee "$OUT/bench_bf16.txt"
if [ -d .gpu/demo_data ]; then
  timeout 120 python3 -m pixeldrl.cli train --data .gpu/demo_data --preset small --image-size 128 --epochs 10 \
    --batch-size 4 --device cuda --out /tmp/gpu_run 2>&1 | grep -v "it/s\|batch/s\|s/batch" | tail -20 | tee "$OUT/train_small.txt"
  cp /tmp/gpu_run/log.csv "$OUT/train_small_log.csv" 2>/dev/null
fi
