# Helpers for the shell tests (tests/test_*.sh): same result lines as tests/test.h.
# Each test script sources this, calls t_ok/t_fail/t_skip, and ends with t_end.
SSPOSE=${SSPOSE_BIN:-bin/sspose}
T_TMP=${SSPOSE_TEST_TMP:-$(mktemp -d)}
T_FAILED=0
t_ok()   { echo "ok - $1"; }
t_fail() { echo "FAIL - $1: $2"; T_FAILED=1; }
t_skip() { echo "skip - $1: $2"; }
t_end()  { exit $T_FAILED; }

# t_bad_input NAME PATTERN CMD...: the command must exit non-zero and print
# exactly one line on stderr, matching PATTERN (grep -E), and nothing crashes.
t_bad_input() {
  local name=$1 pat=$2; shift 2
  local err=$T_TMP/bad.err rc
  "$@" >/dev/null 2>"$err" </dev/null; rc=$?
  local lines; lines=$(grep -c . "$err")
  if [ $rc -eq 0 ]; then t_fail "$name" "exit 0 for bad input: $*"
  elif [ $rc -ge 124 ]; then t_fail "$name" "crashed or timed out (rc=$rc): $(head -c 300 "$err")"
  elif [ "$lines" -ne 1 ]; then t_fail "$name" "expected one error line, got $lines: $(head -c 300 "$err" | tr '\n' '|')"
  elif ! grep -qE -e "$pat" "$err"; then t_fail "$name" "message '$(cat "$err")' does not match '$pat'"
  else t_ok "$name"; fi
}

# MPI test programs (tests/test_mpi.h) under mpirun.
T_MPIRUN="mpirun --oversubscribe --bind-to none"
# t_mpi_program NAME BIN MIN_OK NP...: runs BIN with each rank count, passes its
# result lines through, and fails NAME_npN unless it exits 0 with MIN_OK ok lines.
t_mpi_program() {
  local name=$1 bin=$2 min=$3; shift 3
  local np out rc n_ok
  for np in "$@"; do
    out=$T_TMP/${name}_np$np.out
    timeout 120 $T_MPIRUN -np "$np" "$bin" >"$out" 2>&1; rc=$?
    grep -E '^(ok|FAIL|skip) - ' "$out"
    n_ok=$(grep -c '^ok - ' "$out")
    if [ $rc -ne 0 ] || [ "$n_ok" -lt "$min" ]; then
      t_fail "${name}_np$np" "rc=$rc, $n_ok ok lines: $(tail -n 5 "$out" | tr '\n' '|')"
    else
      t_ok "${name}_np$np"
    fi
  done
}
# t_mpi_fault NAME BIN MODE VICTIM MAX_SECONDS PATTERN: "BIN MODE VICTIM" on 3
# ranks must end non-zero within MAX_SECONDS (never hang), no rank may get past
# the collective, and the output must match PATTERN (grep -E).
t_mpi_fault() {
  local name=$1 bin=$2 mode=$3 victim=$4 max=$5 pat=$6 out=$T_TMP/$1.out
  local t0=$SECONDS rc
  timeout 60 $T_MPIRUN -np 3 "$bin" "$mode" "$victim" >"$out" 2>&1; rc=$?
  local dt=$((SECONDS - t0))
  if [ $rc -eq 0 ]; then t_fail "$name" "job exited 0"
  elif [ $rc -eq 124 ]; then t_fail "$name" "job hung (killed by timeout after 60 s)"
  elif [ $dt -gt "$max" ]; then t_fail "$name" "took ${dt}s (limit ${max}s)"
  elif grep -q 'passed the collective' "$out"; then t_fail "$name" "a rank got past the collective"
  elif ! grep -qE "$pat" "$out"; then t_fail "$name" "output does not match '$pat': $(head -c 400 "$out" | tr '\n' '|')"
  else t_ok "$name (${dt}s)"; fi
}
