# sspose eval on the command line: the happy path's output shape, and bad input
# (missing files, malformed JSON, unknown images, wrong keypoint counts, bad flags)
# ending in exactly one error line and a non-zero exit.
source tests/lib.sh
S=../shared/data/coco-sample
GT=$S/test_coco.json
DT=$S/example_preds.json

if [ ! -f "$GT" ]; then t_skip eval_cli "shared sample data not found"; t_end; fi

# happy path: ten summary lines, nothing on stderr
out=$("$SSPOSE" eval --gt "$GT" --results "$DT" 2>"$T_TMP/err"); rc=$?
if [ $rc -ne 0 ]; then t_fail eval_summary "rc=$rc $(cat "$T_TMP/err")"
elif [ "$(echo "$out" | grep -c '^ Average \(Precision\|Recall\)')" -ne 10 ]; then t_fail eval_summary "not ten lines: $out"
elif [ -s "$T_TMP/err" ]; then t_fail eval_summary "stderr not empty: $(cat "$T_TMP/err")"
else t_ok eval_summary; fi

# --json: one object with the ten stats, readable by Python's json
out=$("$SSPOSE" eval --gt "$GT" --results "$DT" --json)
if echo "$out" | ${PYTHON:-/usr/bin/python3} -c '
import json, sys
d = json.load(sys.stdin)
names = ["AP","AP50","AP75","APm","APl","AR","AR50","AR75","ARm","ARl"]
assert all(-1 <= d[n] <= 1 for n in names), d
assert d["num_images"] == 4 and d["num_gt"] == 12 and d["num_dets_in"] == 73, d
'; then t_ok eval_json; else t_fail eval_json "bad --json output: $out"; fi

# empty result list: defined output (0 where gt counts), exit 0
echo '[]' > "$T_TMP/empty.json"
out=$("$SSPOSE" eval --gt "$GT" --results "$T_TMP/empty.json" --json); rc=$?
if [ $rc -eq 0 ] && echo "$out" | grep -q '"AP": 0,'; then t_ok eval_empty_results; else t_fail eval_empty_results "rc=$rc $out"; fi

# a result of a category absent from the gt: ignored with one warning, still exit 0
${PYTHON:-/usr/bin/python3} -c '
import json, sys
d = json.load(open(sys.argv[1])); d[0]["category_id"] = 7
json.dump(d, open(sys.argv[2], "w"))' "$DT" "$T_TMP/othercat.json"
"$SSPOSE" eval --gt "$GT" --results "$T_TMP/othercat.json" >/dev/null 2>"$T_TMP/err"; rc=$?
if [ $rc -eq 0 ] && grep -q "1 results have a category_id absent" "$T_TMP/err"; then t_ok eval_other_category_warns
else t_fail eval_other_category_warns "rc=$rc $(cat "$T_TMP/err")"; fi

# ---- bad input
t_bad_input eval_missing_gt "cannot open ground truth file" "$SSPOSE" eval --gt "$T_TMP/nope.json" --results "$DT"
t_bad_input eval_missing_results "cannot open results file" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/nope.json"
t_bad_input eval_gt_is_directory "ground truth" "$SSPOSE" eval --gt "$T_TMP" --results "$DT"

head -c 3000 "$DT" > "$T_TMP/trunc.json"
t_bad_input eval_truncated_results "malformed JSON: unexpected end" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/trunc.json"
printf '[{"image_id": 785,, }]' > "$T_TMP/syntax.json"
t_bad_input eval_syntax_error "malformed JSON at line 1 column" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/syntax.json"
: > "$T_TMP/zero.json"
t_bad_input eval_zero_byte_results "malformed JSON" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/zero.json"
head -c 5000 "$GT" > "$T_TMP/gt_trunc.json"
t_bad_input eval_truncated_gt "gt_trunc.json: malformed JSON" "$SSPOSE" eval --gt "$T_TMP/gt_trunc.json" --results "$DT"
t_bad_input eval_results_as_gt "ground truth is not a JSON object" "$SSPOSE" eval --gt "$DT" --results "$DT"
echo '{"image_id": 785}' > "$T_TMP/obj.json"
t_bad_input eval_results_not_list "results are not a JSON array" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/obj.json"

${PYTHON:-/usr/bin/python3} - "$DT" "$T_TMP" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1])); tmp = sys.argv[2]
def w(name, x): json.dump(x, open(f"{tmp}/{name}.json", "w"))
u = json.loads(json.dumps(d)); u[5]["image_id"] = 424242; u[9]["image_id"] = 1; w("unknown", u)
k = json.loads(json.dumps(d)); k[3]["keypoints"] = k[3]["keypoints"][:54 - 3 * 2]; w("kp48", k)
k = json.loads(json.dumps(d)); k[2]["keypoints"] = k[2]["keypoints"][:34]; w("kp34", k)
s = json.loads(json.dumps(d)); del s[4]["score"]; w("noscore", s)
c = json.loads(json.dumps(d)); c[1]["keypoints"][7] = "x"; w("kpstr", c)
EOF
t_bad_input eval_unknown_image "2 results are for images not in the ground truth \(first: image_id 424242\)" \
  "$SSPOSE" eval --gt "$GT" --results "$T_TMP/unknown.json"
t_bad_input eval_wrong_kp_count "results\[3\] has 48 keypoint values, want 51" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/kp48.json"
t_bad_input eval_kp_count_34 "results\[2\] has 34 keypoint values, want 51" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/kp34.json"
t_bad_input eval_no_score "results\[4\] has no finite numeric 'score'" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/noscore.json"
t_bad_input eval_kp_string "results\[1\] 'keypoints' holds a non-number" "$SSPOSE" eval --gt "$GT" --results "$T_TMP/kpstr.json"

t_bad_input eval_no_gt_flag "eval: --gt ANNOTATIONS.json is required" "$SSPOSE" eval --results "$DT"
t_bad_input eval_no_results_flag "eval: --results RESULTS.json is required" "$SSPOSE" eval --gt "$GT"
t_bad_input eval_unknown_flag "unknown option" "$SSPOSE" eval --gt "$GT" --results "$DT" --bogus
t_bad_input eval_flag_without_value "needs a value" "$SSPOSE" eval --results "$DT" --gt
t_bad_input eval_stray_argument "unexpected argument 'extra'" "$SSPOSE" eval --gt "$GT" --results "$DT" extra

if "$SSPOSE" eval --help | grep -q -- "--results"; then t_ok eval_help; else t_fail eval_help "--help lacks --results"; fi
t_end
