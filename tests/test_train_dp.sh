#!/usr/bin/env bash
# Data-parallel equivalence: 2 ranks x batch 2 and 1 rank x batch 4 see the same
# global batches (same samples, same flips), so their weights and momentum agree
# to float rounding while both moved far from the initial weights:
#  - the paper loss (configs/tiny.ini's: offsets, p2h + KL, alpha, PDD) after 6
#    steps within 1e-4 on every tensor of the weights and of the momentum on its
#    own. Over more steps the paper loss's sharper landscape lets rounding flip
#    ReLU decisions and the runs drift apart (docs/deviations-training.md);
#  - the OpenPose loss (configs/baseline.ini's loss keys on the tiny net) after
#    6 steps within 1e-5 per tensor, and after 20 within 3e-2 per tensor.
#  - AdamW (cosine schedule, loss.normalize = cells) on the OpenPose loss: weights and
#    both moments after 20 steps.
. tests/test_train_common.bash

# dp_per_tensor A.h5 B.h5 TOL: max |a - b| / max |b| of every tensor of /params and
# /optim/momentum on its own; prints the worst per group, exit 0 when all <= TOL.
dp_per_tensor() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import sys, h5py, numpy as np
a, b, tol = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), float(sys.argv[3])
msg, bad = [], []
for grp in ("params", "optim/momentum"):
    names = []
    a[grp].visit(lambda n: names.append(n) if isinstance(a[grp + "/" + n], h5py.Dataset) else None)
    assert len(names) > 20, f"only {len(names)} tensors in {grp}"
    worst = (0.0, "-")
    for n in names:
        x, y = a[grp + "/" + n][...].astype(np.float64), b[grp + "/" + n][...].astype(np.float64)
        e = np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-30)
        worst = max(worst, (e, n))
        if not e <= tol:
            bad.append(f"{grp}/{n} {e:.2g}")
    msg.append(f"{grp}: {len(names)} tensors, worst {worst[0]:.2g} ({worst[1]})")
print("; ".join(msg) + (f"; over {tol}: " + ", ".join(bad[:6]) if bad else ""))
sys.exit(1 if bad else 0)
EOF
}
command -v mpirun >/dev/null || { t_skip train_dp "no mpirun"; t_end; }
tr_fixture || { t_fail train_dp_fixture "synth/data failed"; t_end; }
# The paper loss first (tiny.ini's loss keys; TR_SETS' network and rates), 6 steps. Seed 2:
# with the SPEC's KL epsilon 1e-6 this pair differs by 2.7e-2 (a KL gradient P/q with
# q ~ 1e-6 on a p2h output near 0); with loss.kl_eps = 1e-3 by ~1e-6
# (docs/deviations-training.md, "KL epsilon").
P1=$T_TMP/p1 P2=$T_TMP/p2 PSETS=(--set train.seed=2 --set train.steps=6 --set train.checkpoint_every=0)
tr_train "$P1" "${PSETS[@]}" --set train.batch=4 >"$T_TMP/p1.log" 2>&1 ||
  t_fail train_dp_paper_1rank "exit $?: $(tail -n 3 "$T_TMP/p1.log" | tr '\n' '|')"
tr_mpi 2 "$P2" "${PSETS[@]}" --set train.batch=2 >"$T_TMP/p2.log" 2>&1 ||
  t_fail train_dp_paper_2ranks "exit $?: $(tail -n 3 "$T_TMP/p2.log" | tr '\n' '|')"
A=$(tr_ckpt "$P1" 6) B=$(tr_ckpt "$P2" 6)
if [ -f "$A" ] && [ -f "$B" ]; then
  if msg=$(dp_per_tensor "$B" "$A" 1e-4); then t_ok "train_dp_paper_loss_per_tensor ($msg)"
  else t_fail train_dp_paper_loss_per_tensor "$msg"; fi
  "$SSPOSE" init --config configs/tiny.ini "${TR_SETS[@]}" --set train.seed=2 --out "$T_TMP/init_paper.h5" >/dev/null 2>&1
  # the momentum group of a fresh checkpoint is all zeros: compare the weights alone
  if "$PY" -c "
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], 'r')['params'], h5py.File(sys.argv[2], 'r')['params']
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
moved = sum(np.max(np.abs(a[n][...] - b[n][...])) > 1e-3 * np.max(np.abs(b[n][...])) for n in names)
sys.exit(0 if moved > len(names) // 2 else 1)" "$A" "$T_TMP/init_paper.h5"; then t_ok train_dp_paper_weights_moved
  else t_fail train_dp_paper_weights_moved "6 steps moved fewer than half the tensors by 1e-3 of their scale"; fi
else
  t_fail train_dp_paper_loss_per_tensor "missing final checkpoint(s)"
fi

TR_SETS+=(--set model.ss=off --set model.offsets=0 --set loss.alpha=0 --set loss.gamma=1 --set loss.delta=1
          --set loss.beta=uniform)
R1=$T_TMP/r1 R2=$T_TMP/r2
# checkpoints every 2 steps: step 6 is compared tensor by tensor, step 20 as a whole
tr_train "$R1" --set train.steps=20 --set train.batch=4 --set train.checkpoint_every=2 --set train.keep=10 \
  >"$T_TMP/r1.log" 2>&1 ||
  t_fail train_dp_1rank "exit $?: $(tail -n 3 "$T_TMP/r1.log" | tr '\n' '|')"
tr_mpi 2 "$R2" --set train.steps=20 --set train.batch=2 --set train.checkpoint_every=2 --set train.keep=10 \
  --set train.checksum_every=5 >"$T_TMP/r2.log" 2>&1 ||
  t_fail train_dp_2ranks "exit $?: $(tail -n 3 "$T_TMP/r2.log" | tr '\n' '|')"
A6=$(tr_ckpt "$R1" 6) B6=$(tr_ckpt "$R2" 6) A=$(tr_ckpt "$R1" 20) B=$(tr_ckpt "$R2" 20)
if [ -f "$A" ] && [ -f "$B" ] && [ -f "$A6" ] && [ -f "$B6" ]; then
  if msg=$(dp_per_tensor "$B6" "$A6" 1e-5); then t_ok "train_dp_equivalence_per_tensor ($msg)"
  else t_fail train_dp_equivalence_per_tensor "$msg"; fi
  # By step 20 a ReLU decision within rounding of its kink may have gone the other way in
  # one run (seen: one tensor's momentum 6e-3 off); a data-parallel fault (a sample lost,
  # doubled or misweighted) moves every momentum tensor by O(10%). tr_compare bounds each
  # tensor on its own.
  if msg=$(tr_compare "$B" "$A" 3e-2); then t_ok "train_dp_equivalence ($msg)"
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
