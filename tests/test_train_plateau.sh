#!/usr/bin/env bash
# A short fixed-seed CPU run of the demo recipe (configs/demo.ini: batch norm,
# AdamW, one-cycle, loss / cells) leaves the constant-prediction plateau: its
# last-stage heatmap term ends clearly below what the best per-channel constant
# scores on the same samples, computed here from the shards with h5py. (Plain SGD
# sits on that plateau: issue 11, ../shared/notes/learning.md.)
. tests/test_train_common.bash
tr_fixture || { t_fail train_plateau_fixture "synth/data failed"; t_end; }
STEPS=100
# beta = uniform makes the heat term a plain masked L2 (PDD weight 1), whose best
# constant per channel is the masked mean; no flips, so the channels are the shards'.
R=$T_TMP/plateau
if ! "$SSPOSE" train --config configs/demo.ini --set data.train="$SHARDS" --set model.input=64 \
     --set loss.beta=uniform --set data.flip=0 --set data.threads=1 --set train.batch=8 \
     --set train.steps=$STEPS --set train.warmup=15 --set train.log_every=10 --set train.checkpoint_every=0 \
     --set train.val_every=0 --set train.seed=3 --set comm.timeout_s=60 --out "$R" >"$T_TMP/plateau.log" 2>&1; then
  t_fail train_plateau_run "exit non-zero: $(tail -n 3 "$T_TMP/plateau.log" | tr '\n' '|')"; t_end
fi
t_ok train_plateau_run
if "$PY" - "$R/metrics.jsonl" $SHARDS <<'EOF'
import json, sys, h5py, numpy as np
rows = [json.loads(l) for l in open(sys.argv[1])]
last = max(int(k[5:]) for k in rows[-1]["terms"])
heat = lambda r: r["terms"]["stage%d" % last]["heat"]
num = den = sq = n = 0
ths, ms = [], []
for path in sys.argv[2:]:
    f = h5py.File(path, "r")
    th = f["heatmap"][...].astype(np.float64) * f["heatmap"].attrs["scale"]  # [N,19,h,w]
    m = f["mask"][...].astype(np.float64)[:, None] * f["mask"].attrs["scale"]  # [N,1,h,w]
    ths.append(th); ms.append(m)
th, m = np.concatenate(ths), np.concatenate(ms)
cells = th.shape[2] * th.shape[3]
k = (m * th).sum(axis=(0, 2, 3)) / np.broadcast_to(m, th.shape).sum(axis=(0, 2, 3))  # best constant per channel
const = ((m * (k[None, :, None, None] - th) ** 2).sum(axis=(1, 2, 3)) / cells).mean()
first, end = heat(rows[0]), sum(heat(r) for r in rows[-3:]) / 3
print(f"  last-stage heat term: first window {first:.4g}, last 30 steps {end:.4g}; "
      f"best per-channel constant {const:.4g} ({len(th)} samples); ratio {end / const:.3f}")
assert end < 0.75 * const, "still on the plateau"
EOF
then t_ok train_plateau_left; else t_fail train_plateau_left "see above"; fi
t_end
