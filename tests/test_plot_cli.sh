#!/usr/bin/env bash
# sspose plot on the command line: --help, the listing, recoverable input (a
# warning, exit 0) and bad input (exactly one error line, non-zero exit, no
# crash, no output file left behind). The pictures: tests/test_plot_render.py.
source "$(dirname "$0")/lib.sh"
R=$T_TMP/run
mkdir -p "$R"
line() { # STEP LOSS: one metrics line as trainer/metrics.c writes it
  printf '{"step":%s,"epoch":0,"lr":1e-05,"loss":%s,"terms":{"stage1":{"heat":1,"paf":2}},"weights":{"heat":9,"paf":10},"grad_norm":5,"samples_per_s":17,"skipped":0,"time":{"data":0.01,"compute":0.4,"comm":0.05,"step":0.46}}\n' "$1" "$2"
}
# one stage: the last-stage panel would repeat the sum, so 7 default panels
for s in 10 20 30 40; do line $s $((1000 - s)); done >"$R/metrics.jsonl"
printf 'train.steps = 40\nloss.alpha = 10\n' >"$R/config.ini"

if "$SSPOSE" plot --help | grep -q 'usage: sspose plot RUNDIR... --out FILE.png|svg|pdf'; then t_ok plot_help
else t_fail plot_help "no usage text"; fi
if "$SSPOSE" --help | grep -A1 '^  train ' | grep -q '^  plot '; then t_ok plot_listed_after_train
else t_fail plot_listed_after_train "plot is not listed right after train in sspose --help"; fi

# --- good input
if "$SSPOSE" plot "$R" --out "$T_TMP/ok.png" >"$T_TMP/ok.out" 2>"$T_TMP/ok.err" && [ -s "$T_TMP/ok.png" ] &&
   grep -q "wrote $T_TMP/ok.png: 7 panels, 1 run" "$T_TMP/ok.out" && [ ! -s "$T_TMP/ok.err" ]; then t_ok plot_writes_png
else t_fail plot_writes_png "$(cat "$T_TMP/ok.out" "$T_TMP/ok.err" | head -c 300)"; fi

P=$T_TMP/partial
mkdir -p "$P" && cp "$R/metrics.jsonl" "$P/" && printf '{"step":50,"epoch":0,"lr":1e-0' >>"$P/metrics.jsonl"
if "$SSPOSE" plot "$P" --out "$T_TMP/p.svg" >/dev/null 2>"$T_TMP/p.err" &&
   [ "$(grep -c . "$T_TMP/p.err")" -eq 1 ] && grep -q 'warning: .*partly written last line' "$T_TMP/p.err"; then
  t_ok plot_run_in_progress
else t_fail plot_run_in_progress "$(head -c 300 "$T_TMP/p.err")"; fi

M=$T_TMP/malformed
mkdir -p "$M" && { line 10 5; echo '{"step": 20, "loss": }'; echo 'garbage'; line 30 4; } >"$M/metrics.jsonl"
if "$SSPOSE" plot "$M" --out "$T_TMP/m.pdf" >/dev/null 2>"$T_TMP/m.err" &&
   grep -q 'warning: .*skipped 2 malformed lines (the first at line 2)' "$T_TMP/m.err"; then t_ok plot_malformed_counted
else t_fail plot_malformed_counted "$(head -c 300 "$T_TMP/m.err")"; fi

U=$T_TMP/unordered
mkdir -p "$U" && { line 10 5; line 30 4; line 20 6; line 30 3; } >"$U/metrics.jsonl"
if "$SSPOSE" plot "$U" --out "$T_TMP/u.png" --dump-layout "$T_TMP/u.json" >/dev/null 2>"$T_TMP/u.err" &&
   grep -q 'warning: .*1 logged step appeared twice; kept the later line' "$T_TMP/u.err" &&
   grep -q '"rows":	3' "$T_TMP/u.json" && grep -q '"last_step":	30' "$T_TMP/u.json"; then t_ok plot_unordered_steps
else t_fail plot_unordered_steps "$(head -c 300 "$T_TMP/u.err")"; fi

# --dump-layout -: stdout is the JSON alone
if "$SSPOSE" plot "$R" --out "$T_TMP/s.png" --dump-layout - 2>"$T_TMP/s.err" | /usr/bin/python3 -c \
     'import json, sys; d = json.load(sys.stdin); assert len(d["panels"]) == 7' &&
   grep -q "wrote $T_TMP/s.png" "$T_TMP/s.err"; then t_ok plot_layout_to_stdout
else t_fail plot_layout_to_stdout "$(head -c 300 "$T_TMP/s.err")"; fi

# --- bad input: one line each
mkdir -p "$T_TMP/norun" "$T_TMP/empty" "$T_TMP/blank" "$T_TMP/junk" "$T_TMP/torn" "$T_TMP/dirfile/metrics.jsonl" \
         "$T_TMP/sweep/a" "$T_TMP/lossonly" "$T_TMP/notime"
: >"$T_TMP/empty/metrics.jsonl"
printf '\n  \n\n' >"$T_TMP/blank/metrics.jsonl"
{ echo 'not json'; echo '[1,2,3]'; echo '{"loss": 3}'; echo '{"step": "ten"}'; head -c 3000 /dev/urandom | tr -d '\n'; echo; } \
  >"$T_TMP/junk/metrics.jsonl"
printf '{"step":10,"loss":' >"$T_TMP/torn/metrics.jsonl"
cp "$R/metrics.jsonl" "$T_TMP/sweep/a/"
printf '{"step":1,"loss":3}\n{"step":2,"loss":2}\n' >"$T_TMP/lossonly/metrics.jsonl"
printf '{"step":1,"loss":3,"time":{"data":0.1}}\n' >"$T_TMP/notime/metrics.jsonl"

t_bad_input plot_missing_rundir "run directory '.*nope' does not exist" "$SSPOSE" plot "$T_TMP/nope" --out "$T_TMP/x.png"
t_bad_input plot_no_metrics "no metrics.jsonl in '.*norun'" "$SSPOSE" plot "$T_TMP/norun" --out "$T_TMP/x.png"
t_bad_input plot_sweep_folder "no metrics.jsonl in '.*sweep', but 1 of its folders have one" \
  "$SSPOSE" plot "$T_TMP/sweep" --out "$T_TMP/x.png"
t_bad_input plot_empty_file "metrics.jsonl is empty" "$SSPOSE" plot "$T_TMP/empty" --out "$T_TMP/x.png"
t_bad_input plot_blank_file "metrics.jsonl is empty" "$SSPOSE" plot "$T_TMP/blank" --out "$T_TMP/x.png"
t_bad_input plot_nothing_usable "has no usable line \(5 malformed, the first at line 1" \
  "$SSPOSE" plot "$T_TMP/junk" --out "$T_TMP/x.png"
t_bad_input plot_only_torn_line "has no complete line yet" "$SSPOSE" plot "$T_TMP/torn" --out "$T_TMP/x.png"
t_bad_input plot_metrics_is_dir "is a directory, not a metrics file" "$SSPOSE" plot "$T_TMP/dirfile" --out "$T_TMP/x.png"
t_bad_input plot_unknown_metric "unknown --metric 'bogus' \(known: loss, " "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --metric loss,bogus
t_bad_input plot_metric_no_data "no run has data for --metric 'lr'" "$SSPOSE" plot "$T_TMP/lossonly" --out "$T_TMP/x.png" --metric lr
t_bad_input plot_empty_metric "--metric needs a name" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --metric ,
t_bad_input plot_bad_extension "unsupported output format '.jpg'" "$SSPOSE" plot "$R" --out "$T_TMP/x.jpg"
t_bad_input plot_no_extension "has no file extension" "$SSPOSE" plot "$R" --out "$T_TMP/x"
t_bad_input plot_unwritable "cannot write .*/nodir/x.png" "$SSPOSE" plot "$R" --out "$T_TMP/nodir/x.png"
t_bad_input plot_out_is_dir "cannot write .*outdir.png" bash -c "mkdir -p '$T_TMP/outdir.png' && '$SSPOSE' plot '$R' --out '$T_TMP/outdir.png'"
t_bad_input plot_unwritable_layout "cannot write .*/nodir/l.json" "$SSPOSE" plot "$R" --out "$T_TMP/y.png" --dump-layout "$T_TMP/nodir/l.json"
t_bad_input plot_no_out "--out FILE.png\|svg\|pdf is required" "$SSPOSE" plot "$R"
t_bad_input plot_no_rundir "no RUNDIR given" "$SSPOSE" plot --out "$T_TMP/x.png"
t_bad_input plot_bad_flag "unknown option '--bogus'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --bogus
t_bad_input plot_bad_x "bad value for --x: 'epoch'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --x epoch
t_bad_input plot_time_without_times "--x time needs time.step" "$SSPOSE" plot "$T_TMP/notime" --out "$T_TMP/x.png" --x time
t_bad_input plot_bad_steps "bad value for --steps: '9:3'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --steps 9:3
t_bad_input plot_steps_no_colon "bad value for --steps: '100'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --steps 100
t_bad_input plot_steps_empty_range "no run has data within --steps" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --steps 500:
t_bad_input plot_bad_smooth "bad value for --smooth: 'x'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --smooth x
t_bad_input plot_bad_size "bad value for --size: '10x'" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --size 10x
t_bad_input plot_size_too_small "too small for 7 panels" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --size 400x300
t_bad_input plot_png_too_large "beyond cairo's 32767-pixel limit" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --size 20000x20000 --scale 2
t_bad_input plot_log_and_linear "give --log or --linear, not both" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --log --linear
t_bad_input plot_bad_scale "bad value for --scale" "$SSPOSE" plot "$R" --out "$T_TMP/x.png" --scale 100
# a failed run leaves neither the output nor a temporary file
left=$(ls "$T_TMP" | grep -E '^x\.|\.tmp' | tr '\n' ' ')
if [ -z "$left" ]; then t_ok plot_no_leftovers; else t_fail plot_no_leftovers "left behind: $left"; fi
t_end
