#!/usr/bin/env bash
# comm/ under mpirun: the collective tests with 2 and 3 ranks, and the fault
# paths: a rank that dies (CORE_DIE), stalls or is killed must end the whole
# job within seconds, with the rank named, while the others wait in an all-reduce.
. tests/lib.sh
BIN=${SSPOSE_BUILD:-build}/tests/test_comm_collectives
if ! command -v mpirun >/dev/null; then t_skip comm_mpi "no mpirun"; t_end; fi
MPIRUN="mpirun --oversubscribe"

for np in 2 3; do
  out=$T_TMP/np$np.out
  timeout 120 $MPIRUN -np $np "$BIN" >"$out" 2>&1; rc=$?
  grep -E '^(ok|FAIL|skip) - ' "$out"
  n_ok=$(grep -c '^ok - ' "$out")
  if [ $rc -ne 0 ] || [ "$n_ok" -lt 7 ]; then
    t_fail "collectives_np$np" "rc=$rc, $n_ok ok lines: $(tail -n 5 "$out" | tr '\n' '|')"
  else
    t_ok "collectives_np$np"
  fi
done

# fault MODE VICTIM MAX_SECONDS PATTERN: the job must end non-zero within
# MAX_SECONDS, no rank may get past the collective, and the output must match PATTERN.
fault() {
  local mode=$1 victim=$2 max=$3 pat=$4 out=$T_TMP/fault_$1.out
  local t0=$SECONDS
  timeout 60 $MPIRUN -np 3 "$BIN" "$mode" "$victim" >"$out" 2>&1; local rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then t_fail "fault_$mode" "job exited 0"
  elif [ $rc -eq 124 ]; then t_fail "fault_$mode" "job hung (killed by timeout after 60 s)"
  elif [ $dt -gt "$max" ]; then t_fail "fault_$mode" "took ${dt}s (limit ${max}s)"
  elif grep -q 'passed the collective' "$out"; then t_fail "fault_$mode" "a rank got past the collective"
  elif ! grep -qE "$pat" "$out"; then t_fail "fault_$mode" "output does not match '$pat': $(head -c 400 "$out" | tr '\n' '|')"
  else t_ok "fault_$mode (${dt}s)"; fi
}
fault die 1 15 '\[rank 1\] sspose: error: injected failure'
# the stalled rank 2 is waited for by ranks 0 and 1: whichever watchdog fires first names itself
fault stall 2 20 '\[rank [01]\] sspose: error: gradient all-reduce: the other ranks did not join within 2 s'
fault kill 1 15 'process rank 1 .*(signal 9|Killed)'

# A fatal error in a single process (no mpirun) stays one line, exit 1.
t_bad_input singleton_die 'sspose: error: injected failure' "$BIN" die 0
t_end
