#!/usr/bin/env bash
# Training throughput of configs/tiny.ini on the CPU backend with 1 and 2
# ranks at the same global batch (8), and the share of the step spent in
# communication (gradient all-reduce + metrics all-reduce, including waiting
# for the slower rank) and in waiting for data, from metrics.jsonl.
#
#   bash bench/train_cpu.sh [STEPS]      (default 30; the first 10 steps are warm-up)
#
# Prints one line per setting; the 2-rank lines also give the speed-up over
# the 1-rank line with the same total number of cores.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-30}
SSPOSE=${SSPOSE_BIN:-$PWD/bin/sspose}
PY=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
"$SSPOSE" synth --out "$T/coco" --images 40 --seed 11 >/dev/null
"$SSPOSE" data --config configs/tiny.ini --ann "$T/coco/annotations.json" --images "$T/coco/images" \
  --out "$T/train" --threads 2 >/dev/null 2>&1
SETS=(--set data.train="$T/train-*.h5" --set train.steps="$STEPS" --set train.log_every=10
      --set train.checkpoint_every=0 --set train.lr=2e-6 --set data.threads=1)

# report LABEL RUNDIR: mean over the logged windows after the first
report() {
  "$PY" - "$1" "$2/metrics.jsonl" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[2])][1:]   # drop the warm-up window
sps = sum(r["samples_per_s"] for r in rows) / len(rows)
t = {k: sum(r["time"][k] for r in rows) / len(rows) for k in ("step", "data", "compute", "comm")}
print(f"{sys.argv[1]:<28} {sps:7.2f} samples/s   step {t['step']*1000:7.1f} ms   "
      f"compute {100*t['compute']/t['step']:5.1f}%  comm {100*t['comm']/t['step']:5.1f}%  data {100*t['data']/t['step']:5.1f}%")
print(sps, file=open(sys.argv[2] + ".sps", "w"))
PYEOF
}

echo "configs/tiny.ini (128x128 crops, 6 stages, width 0.25), global batch 8, $STEPS steps, $(nproc) cores"
OMP_NUM_THREADS=1 "$SSPOSE" train --config configs/tiny.ini "${SETS[@]}" --set train.batch=8 --out "$T/r1t1" >/dev/null
report "1 rank  x 1 thread" "$T/r1t1"
OMP_NUM_THREADS=2 "$SSPOSE" train --config configs/tiny.ini "${SETS[@]}" --set train.batch=8 --out "$T/r1t2" >/dev/null
report "1 rank  x 2 threads" "$T/r1t2"
OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -x OMP_NUM_THREADS -np 2 \
  "$SSPOSE" train --config configs/tiny.ini "${SETS[@]}" --set train.batch=4 --out "$T/r2t1" >/dev/null
report "2 ranks x 1 thread" "$T/r2t1"
"$PY" -c "
a=float(open('$T/r1t2/metrics.jsonl.sps').read()); b=float(open('$T/r2t1/metrics.jsonl.sps').read())
print(f'2 ranks x 1 thread vs 1 rank x 2 threads (same 2 cores): {b/a:.2f}x')"
