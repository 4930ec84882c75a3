#!/usr/bin/env bash
# A training step never waits for the device (docs/gpu.md, "Host waits in a
# training step"): the loss, the non-finite verdict, clipping and the update
# count stay in the backend's memory and come to the host once per sync point.
# The CPU backend counts the calls an asynchronous backend would wait in
# (SSPOSE_TRACE_WAITS), so these runs check the trainer's pattern; they also
# check that where the sync points fall changes no number, and that a
# non-finite step inside a log window is reported at the next sync point with
# its own step number, without any update or checkpoint after it.
. tests/test_train_common.bash
command -v mpirun >/dev/null || { t_skip train_sync "no mpirun"; t_end; }
tr_fixture || { t_fail train_sync_fixture "synth/data failed"; t_end; }
CK() { printf '%s/ckpt-%09d.h5' "$1" "$2"; }

# No host wait after the first step: one rank (SGD), two ranks (Adam, clipping on), two
# ranks with batch norm.
SSPOSE_TRACE_WAITS=1 tr_train "$T_TMP/w1" --set train.steps=9 --set train.log_every=3 >"$T_TMP/w1.log" 2>&1; rc=$?
pat='host waits for the device inside steps: [0-9]+ in the first, 0 in the 8 after it'
if [ $rc -ne 0 ]; then t_fail train_sync_no_waits_1rank "exit $rc: $(tail -n 2 "$T_TMP/w1.log" | tr '\n' '|')"
elif grep -qE "$pat" "$T_TMP/w1.log"; then t_ok train_sync_no_waits_1rank
else t_fail train_sync_no_waits_1rank "$(grep 'host waits' "$T_TMP/w1.log" || echo 'no trace line')"; fi

SSPOSE_TRACE_WAITS=1 timeout 120 $MPIRUN -x SSPOSE_TRACE_WAITS -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=9 --set train.log_every=3 --set train.optimizer=adamw \
  --set train.lr=1e-3 --set train.clip_norm=1e-3 --out "$T_TMP/w2" >"$T_TMP/w2.log" 2>&1; rc=$?
if [ $rc -ne 0 ]; then t_fail train_sync_no_waits_2ranks "exit $rc: $(tail -n 2 "$T_TMP/w2.log" | tr '\n' '|')"
elif ! grep -qE "$pat" "$T_TMP/w2.log"; then
  t_fail train_sync_no_waits_2ranks "$(grep 'host waits' "$T_TMP/w2.log" || echo 'no trace line')"
elif ! "$PY" -c "
import json; r=[json.loads(l) for l in open('$T_TMP/w2/metrics.jsonl')]
assert [x['step'] for x in r]==[3,6,9] and all(x['clipped']==3 and 0<x['clip_scale']<1 for x in r), r" 2>/dev/null; then
  t_fail train_sync_no_waits_2ranks "metrics rows or clipping counts wrong: $(cat "$T_TMP/w2/metrics.jsonl" | head -c 300)"
else t_ok train_sync_no_waits_2ranks; fi

# Synchronised batch norm: its statistics are made and all-reduced in the backend's memory too.
SSPOSE_TRACE_WAITS=1 timeout 120 $MPIRUN -x SSPOSE_TRACE_WAITS -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=9 --set train.log_every=3 --set model.norm=batch \
  --out "$T_TMP/wbn" >"$T_TMP/wbn.log" 2>&1; rc=$?
if [ $rc -ne 0 ]; then t_fail train_sync_no_waits_batch_norm "exit $rc: $(tail -n 2 "$T_TMP/wbn.log" | tr '\n' '|')"
elif grep -qE "$pat" "$T_TMP/wbn.log"; then t_ok train_sync_no_waits_batch_norm
else t_fail train_sync_no_waits_batch_norm "$(grep 'host waits' "$T_TMP/wbn.log" || echo 'no trace line')"; fi

# Sync points every step or every 4th: the same weights and optimizer state, bit for bit,
# and the same window means where the windows coincide (steps 1-4 vs the mean of rows 1-4).
tr_train "$T_TMP/l1" --set train.steps=8 --set train.log_every=1 --set train.checkpoint_every=0 >"$T_TMP/l1.log" 2>&1 &&
  tr_train "$T_TMP/l4" --set train.steps=8 --set train.log_every=4 --set train.checkpoint_every=0 >"$T_TMP/l4.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then t_fail train_sync_points_change_nothing "exit $rc"
elif ! msg=$(tr_compare "$(CK "$T_TMP/l1" 8)" "$(CK "$T_TMP/l4" 8)" 0); then t_fail train_sync_points_change_nothing "$msg"
elif ! "$PY" -c "
import json
a=[json.loads(l) for l in open('$T_TMP/l1/metrics.jsonl')]; b=[json.loads(l) for l in open('$T_TMP/l4/metrics.jsonl')]
assert [x['step'] for x in b]==[4,8], b
for k,row in enumerate(b):
    win=a[4*k:4*k+4]
    for key in ('loss','grad_norm'):
        m=sum(x[key] for x in win)/4
        assert abs(m-row[key])<=1e-12*abs(m), (key, m, row[key])
    t=sum(x['terms']['stage2']['paf'] for x in win)/4
    assert abs(t-row['terms']['stage2']['paf'])<=1e-12*abs(t)" 2>"$T_TMP/l.err"; then
  t_fail train_sync_points_change_nothing "window means: $(tail -n 1 "$T_TMP/l.err")"
else t_ok "train_sync_points_change_nothing ($msg)"; fi

# A NaN loss on rank 1 at step 3, sync points at 2 (checkpoint) and 4 (log): stopped at
# step 4's sync point naming step 3, the checkpoint of step 2 kept, none written after.
SSPOSE_TEST_FAULT=nan_loss:3:1 timeout 60 $MPIRUN -x SSPOSE_TEST_FAULT -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=8 --set train.log_every=4 --set train.checkpoint_every=2 \
  --out "$T_TMP/halt" >"$T_TMP/halt.log" 2>&1; rc=$?
if [ $rc -eq 0 ] || { [ $rc -ge 124 ] && [ $rc -ne 134 ]; }; then t_fail train_sync_halt_mid_window "rc=$rc"
elif ! grep -q 'error: step 3: loss term stage1/heat = nan; stopping (last checkpoint: step 2;' "$T_TMP/halt.log"; then
  t_fail train_sync_halt_mid_window "$(grep -m2 -i error "$T_TMP/halt.log" | tr '\n' '|')"
elif [ ! -f "$(CK "$T_TMP/halt" 2)" ] || [ -e "$(CK "$T_TMP/halt" 4)" ]; then
  t_fail train_sync_halt_mid_window "checkpoints: $(ls "$T_TMP/halt" | tr '\n' ' ')"
else t_ok train_sync_halt_mid_window; fi

# The same steps skipped: one NaN gradient at step 2 inside the window 1-4. The run goes
# on; the warning names step 2; the row of step 4 counts it and averages the other three.
# Skipping it must equal the weights of a run that never made step 2's update: compared
# through the update count (Adam's t) in the checkpoint.
SSPOSE_TEST_FAULT=nan_grad:2:0 tr_train "$T_TMP/skip" --set train.steps=8 --set train.log_every=4 \
  --set train.skip_nonfinite=1 --set train.optimizer=adam >"$T_TMP/skip.log" 2>&1; rc=$?
if [ $rc -ne 0 ]; then t_fail train_sync_skip_mid_window "exit $rc: $(tail -n 2 "$T_TMP/skip.log" | tr '\n' '|')"
elif ! grep -q 'warning: step 2: gradient of .* is not finite; step skipped (1 so far)' "$T_TMP/skip.log"; then
  t_fail train_sync_skip_mid_window "no warning: $(grep -m2 -i warn "$T_TMP/skip.log" | tr '\n' '|')"
elif ! "$PY" -c "
import json, math, h5py
r=[json.loads(l) for l in open('$T_TMP/skip/metrics.jsonl')]
assert [x['step'] for x in r]==[4,8] and r[0]['skipped']==1 and r[1]['skipped']==1, r
assert math.isfinite(r[0]['loss']) and math.isfinite(r[0]['grad_norm']), r[0]
assert h5py.File('$(CK "$T_TMP/skip" 8)','r')['optim'].attrs['updates']==7" 2>"$T_TMP/skip.err"; then
  t_fail train_sync_skip_mid_window "$(tail -n 1 "$T_TMP/skip.err")"
else t_ok train_sync_skip_mid_window; fi
t_end
