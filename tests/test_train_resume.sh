#!/usr/bin/env bash
# Exact resume on one process: 30 steps straight and 15 + --resume + 15 give
# bit-identical weights and momentum; with each optimizer (Nesterov SGD, Adam,
# AdamW; cosine schedule and clipping) a run killed (SIGKILL) after step 14
# and resumed from its step-10 checkpoint ends bit-identical to a straight run,
# and resuming with another optimizer is refused; a corrupt newest checkpoint makes
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

# Each optimizer: straight 20 steps vs killed after step 14 (SIGKILL from the test
# fault hook, deterministic) and resumed from ckpt-10. The cosine schedule spans
# train.steps, so both runs keep steps = 20 and only the kill interrupts one.
for name in nesterov adam adamw; do
  opt=$name; [ $name = nesterov ] && opt=sgd
  o=(--set train.optimizer=$opt --set train.schedule=cosine --set train.warmup=3 --set train.warmup_start=0.04
     --set train.lr_final=0.001 --set train.clip_norm=50 --set train.checkpoint_every=5 --set train.keep=5
     --set train.steps=20 --set loss.normalize=cells)
  [ "$name" = nesterov ] && o+=(--set train.nesterov=1)
  [ "$name" != nesterov ] && o+=(--set train.lr=1e-3 --set train.weight_decay=1e-4)
  tr_train "$T_TMP/$name-s" "${o[@]}" >"$T_TMP/$name-s.log" 2>&1 || t_fail "train_resume_${name}_straight" "exit $?"
  SSPOSE_TEST_FAULT=kill:14 tr_train "$T_TMP/$name-k" "${o[@]}" >"$T_TMP/$name-k.log" 2>&1; rc=$?
  if [ $rc -ne 137 ] || [ -e "$(tr_ckpt "$T_TMP/$name-k" 15)" ] || [ ! -e "$(tr_ckpt "$T_TMP/$name-k" 10)" ]; then
    t_fail "train_resume_${name}_killed" "rc=$rc (want 137, killed after step 14 with ckpt-10 written)"; continue
  fi
  "$SSPOSE" train --out "$T_TMP/$name-k" --resume >"$T_TMP/$name-r.log" 2>&1 || t_fail "train_resume_${name}_resume" "exit $?"
  if ! grep -q 'resuming from .*ckpt-000000010.h5' "$T_TMP/$name-r.log"; then
    t_fail "train_resume_${name}_bit_identical" "did not resume from step 10: $(head -c 300 "$T_TMP/$name-r.log" | tr '\n' '|')"
  elif msg=$(tr_compare "$(tr_ckpt "$T_TMP/$name-k" 20)" "$(tr_ckpt "$T_TMP/$name-s" 20)" 0); then
    t_ok "train_resume_${name}_bit_identical ($msg)"
  else t_fail "train_resume_${name}_bit_identical" "$msg"; fi
done
# The optimizer's state belongs to it: switching optimizers on resume is refused, naming both.
t_bad_input train_resume_other_optimizer 'trained with train.optimizer = adamw, this run has adam' \
  "$SSPOSE" train --out "$T_TMP/adamw-s" --resume --set train.optimizer=adam --set train.steps=25

# Every checkpoint broken -> one clear error line, non-zero exit.
B=$T_TMP/broken; mkdir -p "$B"; cp "$S/config.ini" "$B/"; echo garbage >"$(tr_ckpt "$B" 10)"
t_bad_input train_resume_all_corrupt 'no usable checkpoint in .*not an HDF5 file' "$SSPOSE" train --out "$B" --resume
# Already finished -> nothing to do, exit 0.
if "$SSPOSE" train --out "$S" --resume 2>&1 | grep -q 'nothing to do'; then t_ok train_resume_finished
else t_fail train_resume_finished "resuming a finished run did not say 'nothing to do'"; fi
t_end
