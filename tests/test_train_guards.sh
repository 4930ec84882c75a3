#!/usr/bin/env bash
# Guards: a non-finite loss or gradient stops the run naming the step and the
# term (or, with train.skip_nonfinite, skips the step); a replica whose weights
# drift is caught by the cross-rank checksum, naming the rank; resuming with
# another rank count works when the global batch is kept, and is refused with
# a clear message otherwise. Faults are injected with SSPOSE_TEST_FAULT
# (docs/training.md).
. tests/test_train_common.bash
command -v mpirun >/dev/null || { t_skip train_guards "no mpirun"; t_end; }
tr_fixture || { t_fail train_guards_fixture "synth/data failed"; t_end; }
short=(--set train.steps=6 --set train.checkpoint_every=0)

# expect_fail NAME PATTERN LOG: command already run with rc in $rc.
expect_fail() {
  if [ "$rc" -eq 0 ]; then t_fail "$1" "exit 0"
  elif [ "$rc" -ge 124 ] && [ "$rc" -ne 134 ]; then t_fail "$1" "killed or hung (rc=$rc)"
  elif ! grep -qE "$2" "$3"; then t_fail "$1" "no '$2' in: $(grep -m3 -i error "$3" | tr '\n' '|')"
  else t_ok "$1"; fi
}

# NaN in rank 1's loss at step 3 -> both ranks stop, the step and term named.
SSPOSE_TEST_FAULT=nan_loss:3:1 timeout 60 $MPIRUN -x SSPOSE_TEST_FAULT -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" "${short[@]}" --out "$T_TMP/nan" >"$T_TMP/nan.log" 2>&1; rc=$?
expect_fail train_guard_nan_loss 'error: step 3: loss term stage1/heat = nan; stopping' "$T_TMP/nan.log"

# NaN gradient on one process, fatal by default ...
SSPOSE_TEST_FAULT=nan_grad:2:0 tr_train "$T_TMP/nang" "${short[@]}" >"$T_TMP/nang.log" 2>&1; rc=$?
expect_fail train_guard_nan_grad 'error: step 2: gradient of [a-z0-9_/]+ is not finite' "$T_TMP/nang.log"
# ... and skipped with train.skip_nonfinite=1 (2 ranks: the poisoned rank's NaN reaches every rank through the all-reduce)
SSPOSE_TEST_FAULT=nan_grad:2:1 timeout 60 $MPIRUN -x SSPOSE_TEST_FAULT -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" "${short[@]}" --set train.skip_nonfinite=1 --out "$T_TMP/skip" \
  >"$T_TMP/skip.log" 2>&1; rc=$?
if [ $rc -ne 0 ]; then t_fail train_guard_skip "exit $rc: $(tail -n 3 "$T_TMP/skip.log" | tr '\n' '|')"
elif ! grep -q 'warning: step 2: gradient of .* is not finite; step skipped (1 so far)' "$T_TMP/skip.log"; then
  t_fail train_guard_skip "no skip warning"
elif ! "$PY" -c "
import json,sys; r=[json.loads(l) for l in open('$T_TMP/skip/metrics.jsonl')]
assert r[-1]['step']==6 and r[-1]['skipped']==1, r[-1]" 2>/dev/null; then t_fail train_guard_skip "metrics do not count the skipped step"
else t_ok train_guard_skip; fi

# A drifted replica: rank 1 nudges one weight after step 4; checksum every 2 steps catches it at step 4.
SSPOSE_TEST_FAULT=drift:4:1 timeout 60 $MPIRUN -x SSPOSE_TEST_FAULT -np 2 "$SSPOSE" train --config configs/tiny.ini \
  --set data.train="$SHARDS" "${TR_SETS[@]}" "${short[@]}" --set train.checksum_every=2 --out "$T_TMP/drift" \
  >"$T_TMP/drift.log" 2>&1; rc=$?
expect_fail train_guard_drift 'error: step 4: the weights of 1 rank\(s\) differ from rank 0.s \(first: rank 1\); replicas drifted apart' "$T_TMP/drift.log"

# Rank count on resume: 2 ranks x 2 -> 1 rank x 4 continues (same global batch); 1 rank x 2 is refused.
tr_mpi 2 "$T_TMP/rc" --set train.steps=4 --set train.checkpoint_every=0 >"$T_TMP/rc.log" 2>&1 || t_fail train_resume_ranks "first run failed"
t_bad_input train_resume_ranks_refused 'global batch of 4 \(2 ranks x 2\), this run has 1 ranks x 2 = 2' \
  "$SSPOSE" train --out "$T_TMP/rc" --resume --set train.steps=6
if "$SSPOSE" train --out "$T_TMP/rc" --resume --set train.steps=6 --set train.batch=4 >"$T_TMP/rc2.log" 2>&1 &&
   grep -q 'resuming from .*step 4, with a different number of ranks' "$T_TMP/rc2.log" && [ -f "$(tr_ckpt "$T_TMP/rc" 6)" ]; then
  t_ok train_resume_ranks_same_global_batch
else
  t_fail train_resume_ranks_same_global_batch "$(tail -n 3 "$T_TMP/rc2.log" | tr '\n' '|')"
fi
t_end
