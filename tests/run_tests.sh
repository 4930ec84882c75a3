#!/usr/bin/env bash
# Runs every test program and script and counts their result lines.
#   C programs:      $SSPOSE_BUILD/tests/test_*
#   shell scripts:   tests/test_*.sh
#   Python scripts:  tests/test_*.py   (run with $PYTHON, Debian's /usr/bin/python3)
# "gpu" as first argument runs the GPU suite (tests named *gpu*) instead.
# The last line is "N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
BUILD=${SSPOSE_BUILD:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
export SSPOSE_BIN=${SSPOSE_BIN:-$PWD/bin/sspose}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# tests share the cores with mpirun ranks and each other: spinning OpenMP workers would starve them
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
if [ "${SANITIZE:-}" = 1 ]; then
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0}
  export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi
mode=${1:-cpu}
pass=0 fail=0 skip=0
failed_names=()
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/sspose-logs.XXXXXX")

run_one() {
  local name=$1; shift
  local tmp; tmp=$(mktemp -d "${TMPDIR:-/tmp}/sspose-test.XXXXXX")
  local log=$LOGDIR/$(basename "$name").log
  local start=$SECONDS
  SSPOSE_TEST_TMP=$tmp timeout ${TEST_TIMEOUT:-900} "$@" >"$log" 2>&1
  local rc=$?
  local p f s
  if [ ! -f "$log" ]; then
    # Never count a test we could not read as passed (something removed the log directory).
    echo "FAIL - $(basename "$name"): its log $log is gone; rerun the suite"
    mkdir -p "$LOGDIR"; : >"$log"; rc=1
  fi
  p=$(grep -c '^ok - ' "$log"); f=$(grep -c '^FAIL - ' "$log"); s=$(grep -c '^skip - ' "$log")
  grep -E '^(FAIL|skip) - ' "$log" | sed "s|^|  $(basename "$name"): |"
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
    # A program that died without reporting a failure still fails once.
    echo "FAIL - $(basename "$name"): exit code $rc without a failure line; last output:"
    tail -n 15 "$log" | sed 's/^/    /'
    f=1
  fi
  printf '%-40s %3d ok %3d failed %3d skipped  (%ds)\n' "$(basename "$name")" "$p" "$f" "$s" $((SECONDS - start))
  pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
  [ "$f" -gt 0 ] && failed_names+=("$(basename "$name")")
  rm -rf "$tmp"
}

want() { # gpu mode runs only tests whose file name holds "gpu"; cpu mode runs the rest
  # (the file name alone: a checkout under a folder named like ".../gpu..." must still run everything)
  case "$(basename "$1")" in *gpu*) [ "$mode" = gpu ];; *) [ "$mode" != gpu ];; esac
}

for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue; want "$t" || continue
  run_one "$t" "$t"
done
for t in tests/test_*.sh; do
  [ -f "$t" ] || continue; want "$t" || continue
  run_one "$t" bash "$t"
done
for t in tests/test_*.py; do
  [ -f "$t" ] || continue; want "$t" || continue
  run_one "$t" "$PYTHON" "$t"
done
rm -rf "$LOGDIR"
[ ${#failed_names[@]} -gt 0 ] && echo "failing: ${failed_names[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
