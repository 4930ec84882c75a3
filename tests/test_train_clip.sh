#!/usr/bin/env bash
# Global gradient-norm clipping (train.clip_norm), applied after the all-reduce:
# - metrics.jsonl keeps grad_norm as the norm BEFORE clipping and reports the
#   steps clipped and the factor applied;
# - a bound below the norm scales the first SGD update (zero momentum, no weight
#   decay) by bound/norm on every tensor; a bound above it changes nothing (bit-identical);
# - under 2 ranks the clipped replicas stay bit-identical (checksum every step)
#   and match 1 rank x the same global batch.
. tests/test_train_common.bash
tr_fixture || { t_fail train_clip_fixture "synth/data failed"; t_end; }
one=(--set train.steps=1 --set train.log_every=1 --set train.checkpoint_every=0 --set train.weight_decay=0
     --set train.lr=1e-4)
tr_train "$T_TMP/free" "${one[@]}" >"$T_TMP/free.log" 2>&1 || t_fail train_clip_free "exit $?"
G=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["grad_norm"])' "$T_TMP/free/metrics.jsonl")
BOUND=$("$PY" -c "print($G / 4)")
tr_train "$T_TMP/clip" "${one[@]}" --set train.clip_norm="$BOUND" >"$T_TMP/clip.log" 2>&1 || t_fail train_clip_run "exit $?"
tr_train "$T_TMP/loose" "${one[@]}" --set train.clip_norm="$("$PY" -c "print($G * 10)")" >"$T_TMP/loose.log" 2>&1 ||
  t_fail train_clip_loose_run "exit $?"
"$SSPOSE" init --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --out "$T_TMP/init.h5" >/dev/null 2>&1

if msg=$("$PY" - "$T_TMP" "$G" "$BOUND" <<'PYEOF'
import json, sys, h5py, numpy as np
tmp, g, bound = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
free = json.loads(open(f"{tmp}/free/metrics.jsonl").readline())
clip = json.loads(open(f"{tmp}/clip/metrics.jsonl").readline())
loose = json.loads(open(f"{tmp}/loose/metrics.jsonl").readline())
assert "clipped" not in free, "clip fields written with clipping off"
assert clip["grad_norm"] == free["grad_norm"] == g, (clip["grad_norm"], g)  # before clipping
assert clip["clipped"] == 1 and abs(clip["clip_scale"] - bound / g) <= 1e-9, clip
assert loose["clipped"] == 0 and loose["clip_scale"] == 1, loose
p = lambda run: h5py.File(f"{tmp}/{run}/ckpt-000000001.h5", "r")
i, a, c, l = h5py.File(f"{tmp}/init.h5", "r"), p("free"), p("clip"), p("loose")
names = []
i["params"].visit(lambda n: names.append(n) if isinstance(i["params/" + n], h5py.Dataset) else None)
worst = 0
for n in names:
    w0 = i["params/" + n][...].astype(np.float64)
    # SGD's first momentum is lr*g: the clipped run's must be bound/norm times the free one's
    ma, mc = a["optim/momentum/" + n][...].astype(np.float64), c["optim/momentum/" + n][...]
    err = np.abs(mc - bound / g * ma).max() / max(np.abs(bound / g * ma).max(), 1e-30)
    assert err <= 1e-5, f"{n}: clipped momentum differs from {bound / g:.3g} x the free one by {err:.3g}"
    worst = max(worst, err)
    da, dc = a["params/" + n][...] - w0, c["params/" + n][...] - w0
    assert np.any(dc) and np.abs(dc).max() < np.abs(da).max(), f"{n}: the clipped update is not smaller"
    assert np.array_equal(l["params/" + n][...], a["params/" + n][...]), f"{n}: a loose bound changed the weights"
print(f"{len(names)} tensors, first update scaled by {bound / g:.3g}, worst relative momentum difference {worst:.2g}")
PYEOF
); then t_ok "train_clip_scales_update ($msg)"; else t_fail train_clip_scales_update "$msg"; fi

# Two ranks, a bound that clips every step (the norm is in the hundreds): replicas checked every step, and equal to 1 rank x 4.
if command -v mpirun >/dev/null; then
  many=(--set train.steps=6 --set train.checkpoint_every=0 --set train.clip_norm=1 --set model.ss=off
        --set model.offsets=0 --set loss.alpha=0 --set loss.gamma=1 --set loss.delta=1 --set loss.beta=uniform)
  tr_mpi 2 "$T_TMP/dp2" "${many[@]}" --set train.batch=2 --set train.checksum_every=1 >"$T_TMP/dp2.log" 2>&1 ||
    t_fail train_clip_ranks_identical "exit $?: $(tail -n 2 "$T_TMP/dp2.log" | tr '\n' '|')"
  tr_train "$T_TMP/dp1" "${many[@]}" --set train.batch=4 >"$T_TMP/dp1.log" 2>&1 || t_fail train_clip_dp_1rank "exit $?"
  if msg=$(tr_compare "$(tr_ckpt "$T_TMP/dp2" 6)" "$(tr_ckpt "$T_TMP/dp1" 6)" 1e-5) &&
     grep -q '"clipped":5' "$T_TMP/dp2/metrics.jsonl"; then
    t_ok "train_clip_data_parallel ($msg)"
  else
    t_fail train_clip_data_parallel "$msg $(head -c 300 "$T_TMP/dp2/metrics.jsonl")"
  fi
else
  t_skip train_clip_data_parallel "no mpirun"
fi
t_end
