#!/usr/bin/env bash
# The README's main job: a synthetic COCO-format dataset, its training shards,
# data-parallel training of a small detector on 2 MPI ranks (CPU backend) with
# validation AP during training, curves, skeleton overlays, and the COCO AP of
# the trained checkpoint on the held-out validation set. docs/demo.md.
#
#   bash cluster/demo.sh [RUNDIR]        (default runs/demo; about 10 minutes on 2 idle cores)
#
# Environment: DEMO_CONFIG (default configs/demo.ini), DEMO_SETS (extra --set
# arguments for training, e.g. "--set train.steps=200" for a short look).
# Rerunning continues: existing data is reused and training resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-runs/demo}
CFG=${DEMO_CONFIG:-configs/demo.ini}
read -r -a EXTRA <<<"${DEMO_SETS:-}"
S=bin/sspose
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
TIMEFORMAT="   (%0R s wall, %0U s user + %0S s sys CPU)"
mkdir -p "$R"
T0=$SECONDS

if [ ! -s "$R/synth/annotations.json" ] || [ ! -s "$R/val/annotations.json" ]; then
  echo "== 1/6 synthetic dataset: 1000 training + 48 validation images (different seeds)"
  time {
    $S synth --out "$R/synth" --images 1000 --seed 1 >/dev/null
    $S synth --out "$R/val" --images 48 --seed 2 >/dev/null
  }
fi
if ! ls "$R"/shards/train-*.h5 >/dev/null 2>&1; then
  echo "== 2/6 training shards: 2 augmented 128x128 crops per person, targets precomputed"
  mkdir -p "$R/shards"
  time $S data --config "$CFG" --ann "$R/synth/annotations.json" --images "$R/synth/images" \
          --out "$R/shards/train" --copies 2 --seed 1 --threads 2
fi
echo "== 3/6 training: $CFG on 2 ranks, validation AP on $R/val as it goes; metrics in $R/run/metrics.jsonl"
time mpirun -np 2 --bind-to none -x OMP_WAIT_POLICY -x OMP_NUM_THREADS=1 $S train --config "$CFG" \
       --set data.train="$R/shards/train-*.h5" --set data.val_ann="$R/val/annotations.json" \
       --set data.val_images="$R/val/images" ${EXTRA[@]+"${EXTRA[@]}"} --out "$R/run" --resume
echo "== 4/6 curves (loss terms, validation AP, ...) -> $R/run/curves.png"
$S plot "$R/run" --out "$R/run/curves.png"
CK=$(ls "$R"/run/ckpt-[0-9]*.h5 | tail -n 1)
echo "== 5/6 skeleton overlays of three validation images -> $R/infer/*.png"
$S infer --checkpoint "$CK" --out "$R/infer" $(ls "$R"/val/images/*.jpg | head -n 3) >/dev/null
echo "== 6/6 COCO keypoint AP of the last checkpoint ($(basename "$CK")) on the 48 validation images"
time $S eval --gt "$R/val/annotations.json" --checkpoint "$CK" --images "$R/val/images" \
        --out "$R/val-results.json" --json | tee "$R/eval.json"
/usr/bin/python3 - "$R" "$((SECONDS - T0))" <<'EOF' || true
import json, sys
R, wall = sys.argv[1], int(sys.argv[2])
ap = json.load(open(R + "/eval.json"))
rows = [json.loads(l) for l in open(R + "/run/metrics.jsonl")]
val = [(r["step"], r["val"]["ap"]) for r in rows if "val" in r]
steps = rows[-1]["step"]
train_s = sum(r["time"]["step"] * (r["step"] - p["step"]) for p, r in zip([{"step": 0}] + rows, rows))
print(f"demo: AP {ap['AP']:.3f}  AP50 {ap['AP50']:.3f}  AR {ap['AR']:.3f} on {ap['num_images']} validation images "
      f"(target AP >= 0.3) after {steps} steps, {steps / max(train_s, 1e-9):.2f} steps/s; this script took {wall} s")
print("validation AP during training: " + "  ".join(f"{s}:{a:.3f}" for s, a in val))
EOF
