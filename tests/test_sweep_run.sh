#!/usr/bin/env bash
# `sspose sweep` end to end on real training runs (the train tests' 64x64 fixture):
# plan a 2x2 grid, run it locally 2 at a time, a second run skips it in seconds,
# a run stopped by USR1 then TERM (SLURM's warning, then its limit) checkpoints,
# exits 0 and is resumed by the next `sweep run`, a broken run is reported
# failed with its error line, --np 2 runs under mpirun, and summary/status read it all.
. tests/test_train_common.bash
tr_fixture || { t_fail sweep_run_fixture "synth/data failed"; t_end; }
D=$T_TMP/sw
common=(--set data.train="$SHARDS" "${TR_SETS[@]}" --set train.steps=6 --set train.checkpoint_every=2
        --set train.keep=10 --set train.log_every=2)

if out=$("$SSPOSE" sweep plan --config configs/tiny.ini --out "$D" --grid loss.alpha=10,0 --grid loss.gamma=9,5 \
          "${common[@]}" 2>&1); then
  names=$(cd "$D" && ls -d */ | tr -d / | tr '\n' ' ')
  want="00-alpha0-gamma5 01-alpha0-gamma9 02-alpha10-gamma5 03-alpha10-gamma9 "
  if [ "$names" = "$want" ]; then t_ok "sweep_plan_names (numeric order: $names)"
  else t_fail sweep_plan_names "got '$names', want '$want'"; fi
  if echo "$out" | grep -q 'loss.delta is not swept but differs'; then t_ok sweep_plan_delta_note
  else t_fail sweep_plan_delta_note "$out"; fi
else
  t_fail sweep_plan "$out"; t_end
fi
# the manifest, read back with Python: overrides, resolved config, delta = gamma + 1
if msg=$("$PY" - "$D/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert [g["key"] for g in m["grid"]] == ["loss.alpha", "loss.gamma"], m["grid"]
assert m["dependent"] == ["loss.delta"], m["dependent"]
for r in m["runs"]:
    c, o = r["config"], r["overrides"]
    assert c["loss.alpha"] == o["loss.alpha"] and c["loss.gamma"] == o["loss.gamma"], r["name"]
    assert float(c["loss.delta"]) == float(c["loss.gamma"]) + 1, (r["name"], c["loss.delta"])
    assert c["train.steps"] == "6" and c["data.train"].startswith("/"), c
print(len(m["runs"]), "runs")
EOF
); then t_ok "sweep_manifest ($msg)"; else t_fail sweep_manifest "$msg"; fi
# same plan again: nothing changes; another grid into the same DIR: refused
if "$SSPOSE" sweep plan --config configs/tiny.ini --out "$D" --grid loss.alpha=0,10 --grid loss.gamma=5,9 "${common[@]}" |
   grep -q unchanged; then t_ok sweep_plan_repeat; else t_fail sweep_plan_repeat "second identical plan not 'unchanged'"; fi
t_bad_input sweep_plan_other_grid "already holds a different sweep" \
  "$SSPOSE" sweep plan --config configs/tiny.ini --out "$D" --grid loss.alpha=1,2

# stop run 03 with USR1 then TERM after its first checkpoint: one graceful stop
R3=$D/03-alpha10-gamma9
"$SSPOSE" train --out "$R3" --resume >"$T_TMP/r3.log" 2>&1 & pid=$!
if tr_wait_file "$(tr_ckpt "$R3" 2)" 60; then
  # held stopped, so that both are pending together and reach the handler back to back
  kill -STOP $pid; kill -USR1 $pid; kill -TERM $pid; kill -CONT $pid
  wait $pid; rc=$?
  last=$(ls "$R3"/ckpt-*.h5 | sort | tail -n 1); last=$(basename "$last" .h5); last=$((10#${last#ckpt-}))
  if [ $rc -eq 0 ] && [ "$last" -lt 6 ] && grep -q 'stopped at step' "$T_TMP/r3.log"; then
    t_ok "sweep_usr1_then_term_graceful (exit 0, checkpoint at step $last)"
  else t_fail sweep_usr1_then_term_graceful "rc=$rc last=$last: $(tail -n 3 "$T_TMP/r3.log" | tr '\n' '|')"; fi
else
  kill -9 $pid; wait $pid; t_fail sweep_usr1_then_term_graceful "no checkpoint at step 2"
fi
# a second TERM still kills at once (the user means it)
"$SSPOSE" train --config "$R3/config.ini" --out "$T_TMP/killed" >"$T_TMP/killed.log" 2>&1 & pid=$!
if tr_wait_file "$(tr_ckpt "$T_TMP/killed" 2)" 60; then
  # two TERMs pending at once would merge into one: the second comes once the first was handled
  kill -STOP $pid; kill -USR1 $pid; kill -TERM $pid; kill -CONT $pid; sleep 0.02; kill -TERM $pid
  wait $pid; rc=$?
  if [ $rc -eq 143 ]; then t_ok "sweep_second_term_kills (exit $rc)"
  else t_fail sweep_second_term_kills "rc=$rc: $(tail -n 3 "$T_TMP/killed.log" | tr '\n' '|')"; fi
else
  kill -9 $pid; wait $pid; t_fail sweep_second_term_kills "no checkpoint at step 2"
fi
st=$("$SSPOSE" sweep status "$D")
if echo "$st" | grep -qE '^03-alpha10-gamma9 +step [0-9] of 6' && echo "$st" | grep -qE '^00-alpha0-gamma5 +not started'; then
  t_ok sweep_status_partial
else t_fail sweep_status_partial "$(echo "$st" | tr '\n' '|')"; fi

# break run 01: a value this build rejects in its config.ini
sed -i 's/^train.batch = .*/train.batch = banana/' "$D/01-alpha0-gamma9/config.ini"
"$SSPOSE" sweep run "$D" --jobs 2 >"$T_TMP/run1.out" 2>"$T_TMP/run1.err" & rp=$!
# a second runner on the same sweep is refused while the first holds it
tr_wait_file "$D/00-alpha0-gamma5/train.log" 30
t_bad_input sweep_run_one_runner "another 'sspose sweep run' is running" "$SSPOSE" sweep run "$D"
wait $rp; rc=$?
if [ $rc -ne 0 ] && [ "$(grep -c . "$T_TMP/run1.err")" -eq 1 ] && grep -q '1 of 4 runs failed' "$T_TMP/run1.err"; then
  t_ok sweep_run_reports_failure
else t_fail sweep_run_reports_failure "rc=$rc: $(cat "$T_TMP/run1.err" "$T_TMP/run1.out" | tr '\n' '|')"; fi
st=$("$SSPOSE" sweep status "$D")
if echo "$st" | grep -qE "^01-alpha0-gamma9 +failed .*train.batch.*banana"; then t_ok sweep_status_failed_line
else t_fail sweep_status_failed_line "$(echo "$st" | tr '\n' '|')"; fi
done3=$(echo "$st" | grep -cE ' done \(6 steps\)')
if [ "$done3" -eq 3 ]; then t_ok "sweep_run_jobs2 (3 done, the partial one resumed)"
else t_fail sweep_run_jobs2 "$done3 runs done: $(echo "$st" | tr '\n' '|')"; fi
# the resumed run matches a run trained straight through
"$SSPOSE" train --config "$R3/config.ini" --out "$T_TMP/straight" >/dev/null 2>&1
if msg=$(tr_compare "$(tr_ckpt "$R3" 6)" "$(tr_ckpt "$T_TMP/straight" 6)" 0); then t_ok "sweep_resumed_exact ($msg)"
else t_fail sweep_resumed_exact "$msg"; fi

# repair run 01; a second `sweep run` runs only it (with 2 ranks under mpirun), then a third returns at once
sed -i 's/^train.batch = .*/train.batch = 1/' "$D/01-alpha0-gamma9/config.ini"
export SSPOSE_MPIRUN="$MPIRUN"
if "$SSPOSE" sweep run "$D" --np 2 >"$T_TMP/run2.out" 2>&1 && grep -q '3 of 4 runs done, 1 to run' "$T_TMP/run2.out" &&
   grep -q '2 ranks' "$D/01-alpha0-gamma9/train.log" && [ -e "$(tr_ckpt "$D/01-alpha0-gamma9" 6)" ]; then
  t_ok sweep_run_np2_only_unfinished
else t_fail sweep_run_np2_only_unfinished "$(tr '\n' '|' <"$T_TMP/run2.out")"; fi
t0=$(date +%s%N)
"$SSPOSE" sweep run "$D" --np 2 >"$T_TMP/run3.out" 2>&1; rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
if [ $rc -eq 0 ] && grep -q '4 of 4 runs done, 0 to run' "$T_TMP/run3.out" && [ $ms -lt 3000 ]; then
  t_ok "sweep_run_done_is_fast (${ms} ms)"
else t_fail sweep_run_done_is_fast "rc=$rc ${ms} ms: $(tr '\n' '|' <"$T_TMP/run3.out")"; fi

# summary: table, JSON with the documented keys, CSV, sort
if "$SSPOSE" sweep summary "$D" --json "$T_TMP/s.json" --csv "$T_TMP/s.csv" --sort -alpha >"$T_TMP/s.md" 2>/dev/null &&
   msg=$("$PY" - "$T_TMP/s.json" "$T_TMP/s.csv" "$T_TMP/s.md" <<'EOF'
import csv, json, sys
rows = json.load(open(sys.argv[1]))
need = {"loss.alpha", "loss.gamma", "step", "final_loss", "best_val_ap", "status", "run_dir"}
for r in rows:
    assert need <= set(r), sorted(need - set(r))
    assert r["status"] == "done" and r["step"] == 6 and r["best_val_ap"] is None, r
    assert isinstance(r["final_loss"], float) and r["final_loss"] > 0, r
assert [r["loss.alpha"] for r in rows] == [10, 10, 0, 0], [r["loss.alpha"] for r in rows]
c = list(csv.DictReader(open(sys.argv[2])))
assert [float(x["loss.alpha"]) for x in c] == [10, 10, 0, 0] and all(x["status"] == "done" for x in c)
assert abs(float(c[0]["final_loss"]) - rows[0]["final_loss"]) <= 1e-6 * rows[0]["final_loss"]
md = open(sys.argv[3]).read().splitlines()
assert md[0].startswith("| alpha | gamma | step | final loss | best loss |"), md[0]
assert len([l for l in md if l.startswith("| 10 ")]) == 2, md
assert any("loss weights differ" in l for l in md), "no note on differing weights"
print(len(rows), "rows")
EOF
); then t_ok "sweep_summary ($msg)"; else t_fail sweep_summary "${msg:-summary failed}"; fi

# validation AP: lines at validation steps carry "val": {"ap": ...}; best = max, final = last, null when absent
V=$T_TMP/swv
"$SSPOSE" sweep plan --config configs/tiny.ini --out "$V" --grid loss.alpha=1,2 >/dev/null
printf '%s\n' '{"step":10,"loss":5,"weights":{"heat":1}}' '{"step":20,"loss":3,"val":{"ap":0.2,"ap50":0.5,"ap75":0.1,"ar":0.3}}' \
  '{"step":30,"loss":4,"val":{"ap":0.4,"ap50":0.6,"ap75":0.2,"ar":0.5}}' '{"step":40,"loss":3.5,"val":{"ap":0.3}}' \
  '{"step":4' >"$V/00-alpha1/metrics.jsonl"
if msg=$("$SSPOSE" sweep summary "$V" --json - 2>&1 | "$PY" -c '
import json, sys
a, b = json.load(sys.stdin)
assert a["best_val_ap"] == 0.4 and a["final_val_ap"] == 0.3, a
assert a["best_loss"] == 3 and a["final_loss"] == 3.5 and a["step"] == 40 and a["status"] == "partial", a
assert b["best_val_ap"] is None and b["final_loss"] is None and b["status"] == "not started", b
print("best 0.4, final 0.3")'); then t_ok "sweep_summary_val_ap ($msg)"; else t_fail sweep_summary_val_ap "$msg"; fi

# bad input: one line each
t_bad_input sweep_plan_unknown_key "unknown config key 'loss.alph'" \
  "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid loss.alph=1,2
t_bad_input sweep_plan_empty_grid "has no values" "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid loss.alpha=
t_bad_input sweep_plan_no_grid "no --grid" "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x"
t_bad_input sweep_plan_bad_value "loss.alpha.*wants a number" \
  "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid loss.alpha=1,x
t_bad_input sweep_plan_bracket "unbalanced" "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid 'loss.beta=[0,1'
t_bad_input sweep_plan_twice "twice" "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid loss.alpha=1,1.0
t_bad_input sweep_plan_set_and_grid "both swept" \
  "$SSPOSE" sweep plan --config configs/tiny.ini --out "$T_TMP/x" --grid loss.alpha=1,2 --set loss.alpha=3
for sub in run submit status summary; do
  t_bad_input "sweep_${sub}_not_a_sweep" "sweep $sub: .* is not a sweep" "$SSPOSE" sweep $sub "$T_TMP/shards"
  t_bad_input "sweep_${sub}_no_dir" "sweep $sub: .*(not a directory|no sweep DIR)" "$SSPOSE" sweep $sub "$T_TMP/nonexistent"
done
t_bad_input sweep_summary_bad_sort "unknown --sort column 'nope'" "$SSPOSE" sweep summary "$D" --sort nope
t_bad_input sweep_unknown_sub "unknown subcommand" "$SSPOSE" sweep frobnicate
if [ ! -e "$T_TMP/x" ]; then t_ok sweep_bad_plan_writes_nothing; else t_fail sweep_bad_plan_writes_nothing "$T_TMP/x exists"; fi
t_end
