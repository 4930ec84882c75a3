#!/usr/bin/env bash
# Training lowers the loss: tiny.ini (64x64 crops, 2 stages, offsets and p2h
# on) on the 7 samples `sspose synth` + `sspose data --max-images 4` make,
# one global batch holding all of them and no flips, so every step sees the
# same data and the loss is a function of the weights alone. 60 steps at
# lr 1e-5 (warmup 10) must bring the total to <= 90% of step 1's and the
# heatmap term to <= 60%. Deterministic on the CPU backend (one thread).
# Measured: total -17%, heat -43..-45% with each of SSPOSE_CPU_CONV=gemm|dnnl|auto.
# (With the SPEC's KL epsilon 1e-6 the outcome depended on rounding: total -23% to
# -41% across convolution paths; docs/deviations-training.md, "KL epsilon".)
. tests/test_train_common.bash
mkdir -p "$T_TMP/small"
"$SSPOSE" synth --out "$T_TMP/coco" --images 16 --seed 3 >/dev/null &&
"$SSPOSE" data --config configs/tiny.ini --set model.input=64 --ann "$T_TMP/coco/annotations.json" \
  --images "$T_TMP/coco/images" --out "$T_TMP/small/train" --threads 1 --max-images 4 >/dev/null 2>&1 ||
  { t_fail train_learns_fixture "synth/data failed"; t_end; }
n=$("$PY" -c "import h5py,glob; print(sum(h5py.File(f,'r')['jpeg'].shape[0] for f in glob.glob('$T_TMP/small/train-*.h5')))")
tr_train "$T_TMP/run" --set data.train="$T_TMP/small/train-*.h5" --set train.batch="$n" --set data.flip=0 \
  --set train.steps=60 --set train.warmup=10 --set train.log_every=1 --set train.checkpoint_every=0 \
  >"$T_TMP/run.log" 2>&1 || { t_fail train_learns "exit $?: $(tail -n 3 "$T_TMP/run.log" | tr '\n' '|')"; t_end; }
if out=$("$PY" - "$T_TMP/run/metrics.jsonl" <<'PYEOF'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
assert [x["step"] for x in r] == list(range(1, 61))
first, last = r[0]["loss"], sum(x["loss"] for x in r[-5:]) / 5
heat = lambda x: sum(s["heat"] for s in x["terms"].values())
h0, h1 = heat(r[0]), sum(heat(x) for x in r[-5:]) / 5
msg = f"loss {first:.0f} -> {last:.0f} ({100*(last/first-1):+.0f}%), heat term {h0:.1f} -> {h1:.1f} ({100*(h1/h0-1):+.0f}%)"
print(msg)
sys.exit(0 if last <= 0.9 * first and h1 <= 0.6 * h0 else 1)
PYEOF
); then t_ok "train_learns ($out, $n samples)"; else t_fail train_learns "$out"; fi
t_end
