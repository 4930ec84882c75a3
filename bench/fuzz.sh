#!/usr/bin/env bash
# Runs every libFuzzer driver (tests/fuzz/fuzz_*.c: COCO JSON, images, INI
# config, results JSON) for SECONDS each on a scratch copy of its corpus and
# reports executions and crashes per driver. Zero crashes expected; a crash
# input is left in build/fuzz/crash-<driver>-* (fix it, then add it to
# tests/fuzz/corpus/ so `make test` replays it).
#   bash bench/fuzz.sh [SECONDS]          (default 60; builds with clang first)
set -uo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -gt 0 ] || { echo "fuzz.sh: SECONDS must be a positive integer, got '$SECS'" >&2; exit 2; }
bash tests/fuzz/build.sh >/dev/null || { echo "fuzz.sh: building the drivers failed (clang with libFuzzer needed)" >&2; exit 1; }
declare -A CORPUS=([fuzz_coco]=json [fuzz_image]=image [fuzz_ini]=ini [fuzz_results]=results)
declare -A MAXLEN=([fuzz_coco]=4096 [fuzz_image]=8192 [fuzz_ini]=2048 [fuzz_results]=4096)
crashes=0
for d in fuzz_coco fuzz_image fuzz_ini fuzz_results; do
  work=build/fuzz/work_${CORPUS[$d]}
  mkdir -p "$work"
  log=build/fuzz/$d.log
  ASAN_OPTIONS=detect_leaks=1 build/fuzz/$d "$work" "tests/fuzz/corpus/${CORPUS[$d]}" -max_total_time="$SECS" \
    -max_len="${MAXLEN[$d]}" -artifact_prefix="build/fuzz/crash-$d-" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  found=$(ls build/fuzz/crash-$d-* 2>/dev/null | wc -l)
  printf '%-13s %6ss  %10s executions  exit %d  crash inputs %d\n' "$d" "$SECS" "${runs:-?}" "$rc" "$found"
  [ $rc -ne 0 ] || [ "$found" -ne 0 ] && crashes=$((crashes + 1))
done
[ $crashes -eq 0 ] && echo "fuzz: no crashes" || { echo "fuzz: $crashes driver(s) crashed (see build/fuzz/*.log)"; exit 1; }
