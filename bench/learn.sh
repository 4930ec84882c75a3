#!/usr/bin/env bash
# How fast the network learns on this machine: validation AP against training
# wall time for the demo recipe (configs/demo.ini), and for the paper's loss
# against the OpenPose loss (configs/baseline.ini's loss terms) on the same
# network, optimizer, data and time budget; and the peer: the demo recipe trained
# by PyTorch (bench/learn_torch.py) on the same shards, scored by sspose eval.
# docs/demo.md.
#
#   bash bench/learn.sh [BUDGET_MIN] [RECIPES]   (default 8 minutes each; demo,paper,openpose,torch)
#
# Each recipe first times 12 steps to turn the budget into a step count (the
# schedules need one), then trains 2 ranks x configs/demo.ini's batch for that
# many steps with validation 8 times on the 48-image validation set. Prints per
# recipe the validation AP against training time (validation excluded) and a
# summary with steps/s and CPU time. LEARN_DATA=DIR reuses a dataset made by
# cluster/demo.sh (DIR/synth, DIR/val, DIR/shards); LEARN_KEEP=DIR keeps the runs;
# LEARN_VAL_IMAGES=N validates on the first N images only (a quick check).
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-8}
RECIPES=${2:-demo,paper,openpose,torch}
S=${SSPOSE_BIN:-$PWD/bin/sspose}
PY=${PYTHON:-/usr/bin/python3}
CFG=configs/demo.ini
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_WAIT_POLICY=passive
T=${LEARN_KEEP:-$(mktemp -d)}
[ -n "${LEARN_KEEP:-}" ] || trap 'rm -rf "$T"' EXIT
mkdir -p "$T"
D=${LEARN_DATA:-$T/data}
if ! ls "$D"/shards/train-*.h5 >/dev/null 2>&1; then
  echo "making the demo's dataset in $D (1000 + 48 synthetic images, 2 crops per person)"
  "$S" synth --out "$D/synth" --images 1000 --seed 1 >/dev/null
  "$S" synth --out "$D/val" --images 48 --seed 2 >/dev/null
  mkdir -p "$D/shards"
  "$S" data --config "$CFG" --ann "$D/synth/annotations.json" --images "$D/synth/images" --out "$D/shards/train" \
    --copies 2 --seed 1 --threads 2 >/dev/null
fi
BASE=(--set data.train="$D/shards/train-*.h5" --set data.val_ann="$D/val/annotations.json"
      --set data.val_images="$D/val/images" --set data.val_max_images="${LEARN_VAL_IMAGES:-0}"
      --set train.checkpoint_every=0 --set train.keep=1)

recipe_sets() {
  case $1 in
    demo) ;;
    paper) echo "--set model.offsets=1 --set model.ss=p2h" ;;
    openpose) echo "--set loss.gamma=1 --set loss.delta=1 --set loss.alpha=0 --set loss.beta=uniform" ;;
    torch) ;;
    *) echo "bench/learn.sh: unknown recipe '$1' (demo, paper, openpose, torch)" >&2; return 1 ;;
  esac
}

train() { # OUT CPUFILE [sets...]
  local out=$1 cpu=$2; shift 2
  local t0; t0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
  mpirun -np 2 --bind-to none -x OMP_WAIT_POLICY -x OMP_NUM_THREADS=1 "$S" train --config "$CFG" "${BASE[@]}" "$@" \
    --out "$out" >"$out.log" 2>&1 || { echo "training failed: $(tail -n 3 "$out.log")" >&2; return 1; }
  # children's CPU time (user + sys of reaped children), in clock ticks
  awk -v t0="$t0" -v hz="$(getconf CLK_TCK)" '{printf "%.1f\n", ($14 + $15 + $16 + $17 - t0) / hz}' /proc/$$/stat >"$cpu"
}

echo "budget ${BUDGET} min of training per recipe; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in ${RECIPES//,/ }; do
  read -r -a SETS <<<"$(recipe_sets "$r")"
  if [ "$r" = torch ]; then
    # the peer times its own 12 steps and validates 8 times with sspose eval
    t0=$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)
    "$PY" bench/learn_torch.py --sspose "$S" --config "$CFG" --out "$T/$r" --budget-min "$BUDGET" --ranks 2 \
      --set data.train="$D/shards/train-*.h5" --set data.val_ann="$D/val/annotations.json" \
      --set data.val_images="$D/val/images" >"$T/$r.log" 2>&1 || { echo "torch peer failed: $(tail -n 3 "$T/$r.log")" >&2; exit 1; }
    awk -v t0="$t0" -v hz="$(getconf CLK_TCK)" '{printf "%.1f\n", ($14 + $15 + $16 + $17 - t0) / hz}' /proc/$$/stat >"$T/$r.cpu"
  else
    # steps per second over steps 5..12 (the first ones build primitives)
    train "$T/cal-$r" "$T/cal-$r.cpu" ${SETS[@]+"${SETS[@]}"} --set train.steps=12 --set train.log_every=4 \
      --set train.val_every=0
    steps=$("$PY" - "$T/cal-$r/metrics.jsonl" "$BUDGET" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][1:]
rate = 1.0 / (sum(r["time"]["step"] for r in rows) / len(rows))
print(max(16, int(float(sys.argv[2]) * 60 * rate) // 8 * 8))
EOF
    )
    rm -rf "$T/cal-$r"
    train "$T/$r" "$T/$r.cpu" ${SETS[@]+"${SETS[@]}"} --set train.steps="$steps" --set train.val_every=$((steps / 8)) \
      --set train.log_every=$((steps / 8))
  fi
  "$PY" - "$r" "$T/$r/metrics.jsonl" "$(cat "$T/$r.cpu")" <<'EOF'
import json, sys
name, cpu = sys.argv[1], float(sys.argv[3])
rows = [json.loads(l) for l in open(sys.argv[2])]
t, prev, pts = 0.0, 0, []
for r in rows:
    t += r["time"]["step"] * (r["step"] - prev)
    prev = r["step"]
    if "val" in r:
        pts.append((r["step"], t, r["val"]))
print(f"\n{name}: {prev} steps in {t:.0f} s of training ({prev / t:.2f} steps/s), CPU {cpu:.0f} s incl. validation")
print(f"  {'step':>6} {'train s':>8} {'AP':>6} {'AP50':>6} {'AR':>6}")
for s, tt, v in pts:
    print(f"  {s:>6} {tt:>8.0f} {v['ap']:>6.3f} {v['ap50']:>6.3f} {v['ar']:>6.3f}")
with open(sys.argv[2] + ".summary", "w") as f:
    f.write(f"{name:<10} {prev:>6} {t:>8.0f} {prev / t:>8.2f} {cpu:>8.0f} {pts[-1][2]['ap']:>7.3f} "
            f"{max(p[2]['ap'] for p in pts):>7.3f}\n")
EOF
done
echo
echo "recipe      steps  train s  steps/s    CPU s  last AP  best AP"
for r in ${RECIPES//,/ }; do cat "$T/$r/metrics.jsonl.summary"; done
