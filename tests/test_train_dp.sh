#!/usr/bin/env bash
# Data-parallel equivalence: 2 ranks x batch 2 and 1 rank x batch 4 see the same
# global batches (same samples, same flips), so after 20 steps their weights and
# momentum agree to float rounding (relative difference <= 1e-5), while both
# moved far from the initial weights. The same holds with AdamW (cosine
# schedule, loss.normalize = cells) for the weights and both moments.
# The loss is the OpenPose one (configs/baseline.ini's loss keys on the tiny
# net): with the paper loss (KL term, attention-weighted PAFs) rounding noise
# is amplified so strongly that one process with 1 vs 2 threads already
# differs by more than 1e-5 after 20 steps (docs/deviations-training.md).
. tests/test_train_common.bash
command -v mpirun >/dev/null || { t_skip train_dp "no mpirun"; t_end; }
tr_fixture || { t_fail train_dp_fixture "synth/data failed"; t_end; }
TR_SETS+=(--set model.ss=off --set model.offsets=0 --set loss.alpha=0 --set loss.gamma=1 --set loss.delta=1
          --set loss.beta=uniform)
R1=$T_TMP/r1 R2=$T_TMP/r2
tr_train "$R1" --set train.steps=20 --set train.batch=4 --set train.checkpoint_every=0 >"$T_TMP/r1.log" 2>&1 ||
  t_fail train_dp_1rank "exit $?: $(tail -n 3 "$T_TMP/r1.log" | tr '\n' '|')"
tr_mpi 2 "$R2" --set train.steps=20 --set train.batch=2 --set train.checkpoint_every=0 \
  --set train.checksum_every=5 >"$T_TMP/r2.log" 2>&1 ||
  t_fail train_dp_2ranks "exit $?: $(tail -n 3 "$T_TMP/r2.log" | tr '\n' '|')"
A=$(tr_ckpt "$R1" 20) B=$(tr_ckpt "$R2" 20)
if [ -f "$A" ] && [ -f "$B" ]; then
  if msg=$(tr_compare "$B" "$A" 1e-5); then t_ok "train_dp_equivalence ($msg)"
  else t_fail train_dp_equivalence "$msg"; fi
  # The comparison means something only if training moved the weights.
  "$SSPOSE" init --config configs/tiny.ini "${TR_SETS[@]}" --out "$T_TMP/init.h5" >/dev/null 2>&1
  if msg=$(tr_compare "$A" "$T_TMP/init.h5" 1e-3); then t_fail train_dp_weights_moved "20 steps left the weights at init: $msg"
  else t_ok "train_dp_weights_moved"; fi
  # Same global batches -> same logged losses.
  if "$PY" - "$R1/metrics.jsonl" "$R2/metrics.jsonl" <<'PYEOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
assert [r["step"] for r in a] == [r["step"] for r in b] == [5, 10, 15, 20], ([r["step"] for r in a], [r["step"] for r in b])
for x, y in zip(a, b):
    assert abs(x["loss"] - y["loss"]) <= 1e-5 * abs(x["loss"]), (x["step"], x["loss"], y["loss"])
    assert x["epoch"] == y["epoch"]
PYEOF
  then t_ok train_dp_same_losses; else t_fail train_dp_same_losses "logged losses differ"; fi
else
  t_fail train_dp_equivalence "missing final checkpoint(s)"
fi

ADAM=(--set train.optimizer=adamw --set train.lr=1e-3 --set train.weight_decay=1e-4 --set train.schedule=cosine
      --set train.warmup=2 --set train.warmup_start=0.04 --set train.lr_final=0.001 --set loss.normalize=cells
      --set train.steps=20 --set train.checkpoint_every=0)
tr_train "$T_TMP/a1" "${ADAM[@]}" --set train.batch=4 >"$T_TMP/a1.log" 2>&1 ||
  t_fail train_dp_adamw_1rank "exit $?: $(tail -n 3 "$T_TMP/a1.log" | tr '\n' '|')"
tr_mpi 2 "$T_TMP/a2" "${ADAM[@]}" --set train.batch=2 --set train.checksum_every=5 >"$T_TMP/a2.log" 2>&1 ||
  t_fail train_dp_adamw_2ranks "exit $?: $(tail -n 3 "$T_TMP/a2.log" | tr '\n' '|')"
A=$(tr_ckpt "$T_TMP/a1" 20) B=$(tr_ckpt "$T_TMP/a2" 20)
if [ ! -f "$A" ] || [ ! -f "$B" ]; then t_fail train_dp_adamw_equivalence "missing final checkpoint(s)"
elif ! msg=$(tr_compare "$B" "$A" 1e-5); then t_fail train_dp_adamw_equivalence "$msg"
elif ! "$PY" -c '
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r")["params"], h5py.File(sys.argv[2], "r")["params"]
d = [np.linalg.norm(a[n][...] - b[n][...]) / np.linalg.norm(b[n][...]) for n in ("conv1_1/weight", "stage2/heat/conv1/weight")]
sys.exit(0 if min(d) > 1e-3 else 1)' "$A" "$T_TMP/init.h5"; then t_fail train_dp_adamw_equivalence "weights did not move"
else t_ok "train_dp_adamw_equivalence ($msg)"; fi
t_end
