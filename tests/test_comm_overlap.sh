#!/usr/bin/env bash
# The overlapped gradient all-reduce under mpirun.
#  - build/tests/test_comm_overlap with 2 and 3 ranks: buckets launched during
#    backward only once final, results bit-identical to the plain all-reduce.
#  - a rank that stalls or is killed while the others have buckets in flight
#    ends the job promptly, the collective named.
#  - training: comm.overlap=1 and comm.overlap=0 give bit-identical weights and
#    momentum after 6 steps, with 2 and 3 ranks, small buckets, the shared p2h
#    and h2p subnets on (model.ss=both).
. tests/test_train_common.bash
BIN=${SSPOSE_BUILD:-build}/tests/test_comm_overlap
if ! command -v mpirun >/dev/null; then t_skip comm_overlap "no mpirun"; t_end; fi
t_mpi_program comm_overlap "$BIN" 5 2 3

t_mpi_fault overlap_fault_stall "$BIN" stall 2 20 '\[rank [01]\] sspose: error: gradient all-reduce: the other ranks did not join within 2 s at the overlap fault test'
t_mpi_fault overlap_fault_kill "$BIN" kill 1 15 'process rank 1 .*(signal 9|Killed)'

# Training: overlapped and not, bit for bit.
tr_fixture || { t_fail comm_overlap_fixture "synth/data failed"; t_end; }
OV=(--set model.ss=both --set comm.bucket_mb=0.01 --set train.steps=6 --set train.checkpoint_every=0
    --set train.log_every=3)
for np in 2 3; do
  bs=$((6 / np))
  for ov in 1 0; do
    tr_mpi $np "$T_TMP/t${np}_$ov" "${OV[@]}" --set train.batch=$bs --set comm.overlap=$ov \
      >"$T_TMP/t${np}_$ov.log" 2>&1 ||
      t_fail "overlap_train_np${np}_ov$ov" "exit $?: $(tail -n 3 "$T_TMP/t${np}_$ov.log" | tr '\n' '|')"
  done
  A=$(tr_ckpt "$T_TMP/t${np}_1" 6) B=$(tr_ckpt "$T_TMP/t${np}_0" 6)
  if [ -f "$A" ] && [ -f "$B" ]; then
    if msg=$(tr_compare "$A" "$B" 0); then t_ok "overlap_train_bit_identical_np$np ($msg)"
    else t_fail "overlap_train_bit_identical_np$np" "$msg"; fi
  else
    t_fail "overlap_train_bit_identical_np$np" "missing final checkpoint(s)"
  fi
  # the progress line reports how much of the gradient was reduced under backward
  grep -q 'of the gradient hidden' "$T_TMP/t${np}_1.log" && t_ok "overlap_train_reports_hidden_np$np" ||
    t_fail "overlap_train_reports_hidden_np$np" "no 'of the gradient hidden' in the progress lines"
done

# The nan_grad fault with buckets in flight: the NaN goes in once its gradient
# is final, reaches every rank through its bucket, the step is skipped, and
# the run stays bit-identical to the non-overlapped one.
for ov in 1 0; do
  SSPOSE_TEST_FAULT=nan_grad:2:1 timeout 120 $MPIRUN -x SSPOSE_TEST_FAULT -np 2 "$SSPOSE" train \
    --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" "${OV[@]}" --set train.steps=4 \
    --set train.skip_nonfinite=1 --set comm.overlap=$ov --out "$T_TMP/nan_$ov" >"$T_TMP/nan_$ov.log" 2>&1 ||
    t_fail "overlap_nan_grad_ov$ov" "exit $?: $(tail -n 3 "$T_TMP/nan_$ov.log" | tr '\n' '|')"
done
A=$(tr_ckpt "$T_TMP/nan_1" 4) B=$(tr_ckpt "$T_TMP/nan_0" 4)
if ! grep -q 'warning: step 2: gradient of .* is not finite; step skipped (1 so far)' "$T_TMP/nan_1.log"; then
  t_fail overlap_nan_grad "no skip warning with overlap on: $(grep -m2 -iE 'warning|error' "$T_TMP/nan_1.log" | tr '\n' '|')"
elif ! [ -f "$A" ] || ! [ -f "$B" ]; then t_fail overlap_nan_grad "missing final checkpoint(s)"
elif msg=$(tr_compare "$A" "$B" 0); then t_ok "overlap_nan_grad ($msg)"
else t_fail overlap_nan_grad "$msg"; fi
t_end
