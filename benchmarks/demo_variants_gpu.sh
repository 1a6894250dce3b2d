#!/usr/bin/env bash
# Recipe variants of the demo (benchmarks/demo_seeds.py) for several seeds at once on one CUDA GPU:
# one process per (variant, seed), all started together (one CPU thread each; CUDA MPS when the
# machine allows it, so their small kernels overlap: gpu_env.sh), then a second wave of seeds if time is left.
# Each variant's table (`demo_seeds.py --from`) goes to $OUT/tables.md; every run's log, summary and
# per-slice scores (no checkpoints) to $OUT/results.tgz. Run from the repository root on a machine
# whose Python has torch; wheels of missing packages (monai, nibabel, nilearn) may be put in .whl/,
# the demo data set in .gpu/demo_data (python -c "from pixeldrl.data.demo import make_demo_dataset
# as m; m('.gpu/demo_data')"), which every run then reuses.
#   VARIANTS: "name:KEY=VALUE,KEY=VALUE name2:..." (settings on top of SCHEDULE; "name:" for none)
#   SCHEDULE: settings every variant shares (default: the 68-epoch schedule, 16 of them coarse)
#   WAVES: seed groups, e.g. "0,1,2 3,4,5"; LIMIT: seconds for all the training
set -uo pipefail
source benchmarks/gpu_env.sh
SCHEDULE=${SCHEDULE:-epochs=68,coarse_epochs=16}
VARIANTS=${VARIANTS:-"clip5: clip1:grad_clip=1.0 huber:value_loss=huber clip1_huber:grad_clip=1.0,value_loss=huber vc025:value_coef=0.25"}
WAVES=${WAVES:-"0,1,2 3,4,5"}
LIMIT=${LIMIT:-480}
R=${R:-/tmp/variants}
export OMP_NUM_THREADS=1

start_mps

sets() {  # "a=1,b=2" -> --set a=1 --set b=2
  local IFS=,
  for kv in $1; do [ -n "$kv" ] && printf -- '--set %s ' "$kv"; done
}
start=$(date +%s)
for wave in $WAVES; do
  left=$(( LIMIT - ($(date +%s) - start) ))
  if [ "$left" -lt 120 ]; then echo "no time for seeds $wave ($left s left)" | tee -a "$OUT/gpu.txt"; break; fi
  for v in $VARIANTS; do
    name=${v%%:*}
    for seed in ${wave//,/ }; do
      mkdir -p "$R/$name/seed$seed"
      cp -r .gpu/demo_data "$R/$name/seed$seed/data"
      timeout "$left" python3 benchmarks/demo_seeds.py --seeds "$seed" --no-unet $(sets "$SCHEDULE") \
        $(sets "${v#*:}") --out "$R/$name" > "$R/$name/seed$seed.log" 2>&1 &
    done
  done
  (sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv >> "$OUT/gpu.txt") &
  wait
  echo "seeds $wave done at $(( $(date +%s) - start )) s" | tee -a "$OUT/gpu.txt"
done
for v in $VARIANTS; do
  name=${v%%:*}
  seeds=$(ls -d "$R/$name"/seed*/ | sed 's/.*seed\([0-9]*\)\//\1/' | tr '\n' ' ')
  { echo "## $name (${v#*:}; $SCHEDULE)"; python3 benchmarks/demo_seeds.py --from "$R/$name" --seeds $seeds \
      | grep -v "^Demo test split"; echo; } >> "$OUT/tables.md" 2>&1
done
cat "$OUT/tables.md"
tar czf "$OUT/results.tgz" --exclude='*.pt' --exclude='data' --exclude='*.png' --exclude='*.html' \
  -C "$(dirname "$R")" "$(basename "$R")"
ls -la "$OUT"
