#!/usr/bin/env bash
# The README's main job on built-in defaults: a synthetic COCO-format dataset,
# its training shards, data-parallel training of the tiny network on 2 MPI ranks
# (CPU backend), then inference and COCO evaluation of the trained checkpoint.
#
#   bash cluster/demo.sh [RUNDIR]        (default runs/demo; ~10 minutes on 2 cores)
#
# Rerunning continues: existing data is reused and training resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-runs/demo}
S=bin/sspose
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$R"

if [ ! -s "$R/synth/annotations.json" ]; then
  echo "== 1/5 synthetic dataset: 240 training + 16 validation images"
  $S synth --out "$R/synth" --images 240 --seed 1
  $S synth --out "$R/val" --images 16 --seed 2
fi
if ! ls "$R"/shards/train-*.h5 >/dev/null 2>&1; then
  echo "== 2/5 training shards (augmented crops with precomputed targets)"
  mkdir -p "$R/shards"
  $S data --config configs/tiny.ini --ann "$R/synth/annotations.json" --images "$R/synth/images" \
          --out "$R/shards/train" --copies 2 --seed 1
fi
echo "== 3/5 training: configs/tiny.ini, 2 ranks (mpirun), metrics in $R/run/metrics.jsonl, curves in $R/run/curves.png"
mpirun -np 2 --bind-to none -x OMP_WAIT_POLICY $S train --config configs/tiny.ini \
       --set data.train="$R/shards/train-*.h5" --out "$R/run" --resume
$S plot "$R/run" --out "$R/run/curves.png"
CK=$(ls -t "$R"/run/ckpt-*.h5 | head -n 1)
echo "== 4/5 inference on two validation images -> $R/infer"
$S infer --checkpoint "$CK" --out "$R/infer" $(ls "$R"/val/images/*.jpg | head -n 2)
echo "== 5/5 COCO keypoint AP on the validation set"
$S eval --gt "$R/val/annotations.json" --checkpoint "$CK" --images "$R/val/images" --out "$R/val-results.json"
