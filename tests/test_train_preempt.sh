#!/usr/bin/env bash
# Preemption and dead ranks with 2 ranks (checkpoint every 3 of 12 steps):
#  - SIGTERM to one rank: both finish the same step, a checkpoint is written, exit 0;
#  - SIGUSR1 to mpirun (forwarded to the ranks, as SLURM's --signal does): the same;
#  - kill -9 of one rank: the job ends within seconds, naming the rank;
# and after each, --resume reaches step 12 with weights bit-identical to an
# uninterrupted run.
. tests/test_train_common.bash
command -v mpirun >/dev/null || { t_skip train_preempt "no mpirun"; t_end; }
tr_fixture || { t_fail train_preempt_fixture "synth/data failed"; t_end; }
REF=$T_TMP/ref
common=(--set train.steps=12 --set train.checkpoint_every=3 --set train.keep=10)
tr_mpi 2 "$REF" "${common[@]}" >"$T_TMP/ref.log" 2>&1 || t_fail train_preempt_reference "exit $?"

# interrupted NAME HOW: starts a run, waits for its first checkpoint, then HOW
# (term-rank | usr1-mpirun | kill-rank); leaves rc, dt (seconds from the signal to the end) and the log.
interrupted() {
  local name=$1 how=$2 dir=$T_TMP/$1
  tr_mpi_bg "$T_TMP/$name.log" 2 "$dir" "${common[@]}"
  local mp=$TR_PID
  if ! tr_wait_file "$(tr_ckpt "$dir" 3)" 60; then kill -9 $mp; wait $mp; rc=999; return; fi
  local victim; victim=$(tr_rank_pid $mp 1)
  local t0=$SECONDS
  case $how in
    term-rank) kill -TERM "$victim" ;;
    usr1-mpirun) kill -USR1 $mp ;;
    kill-rank) kill -9 "$victim" ;;
  esac
  ( sleep 60; kill -9 $mp 2>/dev/null ) & local guard=$!
  wait $mp; rc=$?
  dt=$((SECONDS - t0))
  kill $guard 2>/dev/null; wait $guard 2>/dev/null
}

# stopped_ok NAME: clean stop before step 12 with a checkpoint at the stop step, then exact resume.
stopped_ok() {
  local name=$1 dir=$T_TMP/$1
  if [ "$rc" -ne 0 ]; then t_fail "train_preempt_$name" "exit $rc: $(tail -n 4 "$T_TMP/$name.log" | tr '\n' '|')"; return; fi
  local last; last=$(ls "$dir"/ckpt-*.h5 | sort | tail -n 1)
  local step; step=$(basename "$last" .h5); step=$((10#${step#ckpt-}))
  if [ "$step" -ge 12 ]; then t_fail "train_preempt_$name" "run reached step 12; the signal came too late to test"; return; fi
  if ! grep -q "stop requested .* stopped at step $step after writing its checkpoint" "$T_TMP/$name.log"; then
    t_fail "train_preempt_$name" "no stop message for step $step: $(tail -n 3 "$T_TMP/$name.log" | tr '\n' '|')"; return
  fi
  t_ok "train_preempt_${name}_stops (checkpoint at step $step, exit 0)"
  resumed "$name"
}

resumed() {
  local name=$1 dir=$T_TMP/$1
  $MPIRUN -np 2 "$SSPOSE" train --out "$dir" --resume >"$T_TMP/$name.resume.log" 2>&1 ||
    { t_fail "train_preempt_${name}_resume" "exit $?: $(tail -n 3 "$T_TMP/$name.resume.log" | tr '\n' '|')"; return; }
  if msg=$(tr_compare "$(tr_ckpt "$dir" 12)" "$(tr_ckpt "$REF" 12)" 0); then t_ok "train_preempt_${name}_resume ($msg)"
  else t_fail "train_preempt_${name}_resume" "$msg"; fi
}

interrupted sigterm term-rank; stopped_ok sigterm
interrupted sigusr1 usr1-mpirun; stopped_ok sigusr1

interrupted kill9 kill-rank
if [ "$rc" -eq 0 ] || [ "$rc" -eq 999 ]; then t_fail train_preempt_kill9_ends "rc=$rc"
elif [ "$dt" -gt 20 ]; then t_fail train_preempt_kill9_ends "the job took ${dt}s to end after rank 1 died"
elif ! grep -qE 'rank 1 .*(signal 9|Killed)' "$T_TMP/kill9.log"; then
  t_fail train_preempt_kill9_ends "the dead rank is not named: $(tail -n 5 "$T_TMP/kill9.log" | tr '\n' '|')"
else
  t_ok "train_preempt_kill9_ends (${dt}s, rank 1 named)"
  resumed kill9
fi
t_end
