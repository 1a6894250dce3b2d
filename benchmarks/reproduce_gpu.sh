#!/usr/bin/env bash
# The four `pixeldrl reproduce` experiments on the demo slices on one CUDA GPU, as RESULTS.md's GPU
# section reports them. Three processes share the GPU (each with its own --out, so no run folder is
# written by two at once): table2 then robustness; table3; table4. Everything but the checkpoints
# is packed into $OUT/results.tgz. Run from the repository root on a machine whose Python has
# torch; wheels of missing packages (monai) may be put in .whl/, the demo data set in
# runs/demo_data (python -c "from pixeldrl.data.demo import make_demo_dataset as m; m('runs/demo_data')").
set -uo pipefail
source benchmarks/gpu_env.sh
DATA=${DATA:-runs/demo_data}
EPOCHS=${EPOCHS:-15}
LIMIT=${LIMIT:-250}   # seconds for all of it; unfinished experiments are left out of the tarball
R=${R:-/tmp/repro}
python3 -c "import monai; print('monai', monai.__version__)" | tee -a "$OUT/gpu.txt"
C="--data $DATA --preset small --image-size 128 --batch-size 4 --epochs $EPOCHS --seeds 1 --device cuda"
P="python3 -m pixeldrl.cli reproduce $C"
start=$(date +%s)
timeout "$LIMIT" bash -c "$P --out $R/a --experiment table2 && $P --out $R/a --experiment robustness" > "$OUT/a.log" 2>&1 &
timeout "$LIMIT" $P --out "$R/b" --experiment table3 > "$OUT/b.log" 2>&1 &
timeout "$LIMIT" $P --out "$R/c" --experiment table4 --shots 25,50 > "$OUT/c.log" 2>&1 &
wait
echo "wall $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='data' -C "$(dirname "$R")" "$(basename "$R")"
ls -la "$OUT"
