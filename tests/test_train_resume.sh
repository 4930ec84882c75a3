#!/usr/bin/env bash
# Exact resume on one process: 30 steps straight and 15 + --resume + 15 give
# bit-identical weights and momentum; a corrupt newest checkpoint makes
# --resume fall back to the previous one with a warning, and the result is
# still bit-identical; metrics.jsonl never holds a step twice.
. tests/test_train_common.bash
tr_fixture || { t_fail train_resume_fixture "synth/data failed"; t_end; }
S=$T_TMP/straight P=$T_TMP/parts C=$T_TMP/corrupt
common=(--set train.checkpoint_every=10 --set train.keep=5)
tr_train "$S" "${common[@]}" --set train.steps=30 >"$T_TMP/s.log" 2>&1 || t_fail train_resume_straight "exit $?"
tr_train "$P" "${common[@]}" --set train.steps=15 >"$T_TMP/p1.log" 2>&1 || t_fail train_resume_part1 "exit $?"
[ -f "$(tr_ckpt "$P" 15)" ] || t_fail train_resume_part1 "no checkpoint at the end (step 15)"
# --resume without --config reads RUNDIR/config.ini
"$SSPOSE" train --out "$P" --resume --set train.steps=30 >"$T_TMP/p2.log" 2>&1 || t_fail train_resume_part2 "exit $?"
if grep -q 'resuming from .*ckpt-000000015.h5' "$T_TMP/p2.log" && grep -q 'changed settings: train.steps 15 -> 30' "$T_TMP/p2.log"; then
  t_ok train_resume_reports
else
  t_fail train_resume_reports "$(head -c 400 "$T_TMP/p2.log" | tr '\n' '|')"
fi
if msg=$(tr_compare "$(tr_ckpt "$P" 30)" "$(tr_ckpt "$S" 30)" 0); then t_ok "train_resume_bit_identical ($msg)"
else t_fail train_resume_bit_identical "$msg"; fi

if "$PY" - "$P/metrics.jsonl" "$S/metrics.jsonl" <<'PYEOF'
import json, sys
p = [json.loads(l) for l in open(sys.argv[1])]
s = [json.loads(l) for l in open(sys.argv[2])]
steps = [r["step"] for r in p]
assert len(steps) == len(set(steps)), steps
assert [r["step"] for r in s] == [5, 10, 15, 20, 25, 30], [r["step"] for r in s]
# windows after the resume point match the straight run exactly
sp = {r["step"]: r for r in p}
for r in s:
    if r["step"] > 15: assert sp[r["step"]]["loss"] == r["loss"], (r["step"], sp[r["step"]]["loss"], r["loss"])
PYEOF
then t_ok train_resume_metrics; else t_fail train_resume_metrics "metrics.jsonl of the resumed run is inconsistent"; fi

# Corrupt newest checkpoint: copy the straight run as it stood at step 20 with
# ckpt-20 truncated, resume to 30 -> falls back to ckpt-10 with a warning.
mkdir -p "$C"
cp "$S/config.ini" "$(tr_ckpt "$S" 10)" "$C/"
head -c 3000 "$(tr_ckpt "$S" 20)" >"$(tr_ckpt "$C" 20)"
: >"$C/ckpt-000000020.h5.tmp.999999999"   # a killed writer's leftover
"$SSPOSE" train --out "$C" --resume --set train.steps=30 >"$T_TMP/c.log" 2>&1; rc=$?
if [ $rc -ne 0 ]; then t_fail train_resume_corrupt_fallback "exit $rc: $(tail -n 3 "$T_TMP/c.log" | tr '\n' '|')"
elif ! grep -q "warning: .*ckpt-000000020.h5.*falling back to the previous checkpoint (step 10)" "$T_TMP/c.log"; then
  t_fail train_resume_corrupt_fallback "no fallback warning: $(head -c 400 "$T_TMP/c.log" | tr '\n' '|')"
elif [ -e "$C/ckpt-000000020.h5.tmp.999999999" ]; then t_fail train_resume_corrupt_fallback "stale temporary file left"
elif msg=$(tr_compare "$(tr_ckpt "$C" 30)" "$(tr_ckpt "$S" 30)" 0); then t_ok "train_resume_corrupt_fallback ($msg)"
else t_fail train_resume_corrupt_fallback "$msg"; fi

# Every checkpoint broken -> one clear error line, non-zero exit.
B=$T_TMP/broken; mkdir -p "$B"; cp "$S/config.ini" "$B/"; echo garbage >"$(tr_ckpt "$B" 10)"
t_bad_input train_resume_all_corrupt 'no usable checkpoint in .*not an HDF5 file' "$SSPOSE" train --out "$B" --resume
# Already finished -> nothing to do, exit 0.
if "$SSPOSE" train --out "$S" --resume 2>&1 | grep -q 'nothing to do'; then t_ok train_resume_finished
else t_fail train_resume_finished "resuming a finished run did not say 'nothing to do'"; fi
t_end
