#!/usr/bin/env bash
# The four `pixeldrl reproduce` experiments on the demo slices on one CUDA GPU, at RESULTS.md's 128²
# budget (the demo's recipe for 94 epochs: 128², batch 8, the first 24 epochs at 64², scale augmentation
# 0.5, Adam 4e-3, gradients clipped at 1, 2-step PA3C episodes; every method alike), as RESULTS.md's GPU section reports them. The runs train JOBS at a
# time (benchmarks/reproduce_runs.py, one CPU thread each, CUDA MPS when the machine allows it), then
# one `pixeldrl reproduce` per experiment finds them finished and writes its tables and figures.
# Everything but checkpoints and data is packed into $OUT/results.tgz. Run from the repository root
# on a machine whose Python has torch; wheels of missing packages (monai, nibabel, nilearn) may be
# put in .whl/, the demo data set in .gpu/demo_data (python -c "from pixeldrl.data.demo import
# make_demo_dataset as m; m('.gpu/demo_data')").
set -uo pipefail
source benchmarks/gpu_env.sh
DATA=${DATA:-.gpu/demo_data}
SEEDS=${SEEDS:-3}
JOBS=${JOBS:-16}
LIMIT=${LIMIT:-420}   # seconds for the training pool; an experiment with unfinished runs is left out
R=${R:-/tmp/repro}
BUDGET=${BUDGET:-"--image-size 128 --batch-size 8 --epochs 94 --coarse-epochs 24 --zoom-out 0.5 --t-max 2 --grad-clip 1"}
DEVICE=${DEVICE:-cuda}
export OMP_NUM_THREADS=1
start_mps
python3 -c "import monai; print('monai', monai.__version__)" | tee -a "$OUT/gpu.txt"
C="--data $DATA --preset small $BUDGET --seeds $SEEDS --device $DEVICE --out $R"
start=$(date +%s)
timeout "$LIMIT" python3 benchmarks/reproduce_runs.py --jobs "$JOBS" --shots 25,50 \
  --experiments table2 table3 table4 -- $C > "$OUT/runs.log" 2>&1
echo "pool: $(( $(date +%s) - start )) s, $(grep -c ': trained in' "$OUT/runs.log") runs trained" | tee -a "$OUT/gpu.txt"
for e in table2 robustness table3 table4; do
  timeout 120 python3 -m pixeldrl.cli reproduce $C --shots 25,50 --experiment $e > "$OUT/$e.log" 2>&1 \
    && echo "$e written" || echo "$e: not finished (rc $?)"
done | tee -a "$OUT/gpu.txt"
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='data' -C "$(dirname "$R")" "$(basename "$R")"
ls -la "$OUT"
