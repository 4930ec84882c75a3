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
