#!/usr/bin/env bash
# Validation during training (train.val_every, trainer/validate.h): the "val"
# object of metrics.jsonl on the right steps, its numbers and detections equal to
# `sspose eval` of the same step's checkpoint (2 ranks, capped image list),
# ckpt-best.h5 (a copy of its step's checkpoint with val_* attributes, kept by
# pruning, never resumed from), and training bit-identical with and without it.
. tests/test_train_common.bash
tr_fixture || { t_fail train_val_fixture "synth/data failed"; t_end; }
"$SSPOSE" synth --out "$T_TMP/val" --images 6 --seed 5 >/dev/null || { t_fail train_val_fixture "synth val"; t_end; }
VAL=(--set data.val_ann="$T_TMP/val/annotations.json" --set data.val_images="$T_TMP/val/images")
# Thresholds at their floor: an untrained network then yields many people, so
# comparing detections is not comparing two empty lists.
LOOSE=(--set eval.base_size=64 --set eval.thre1=0 --set eval.thre2=-1 --set eval.mid_thresh=-1
       --set eval.min_inlier_frac=0 --set eval.min_parts=1 --set eval.min_person_score=0)
# log_every 1: every line is one step, so lines with and without validation compare one to one
# The demo's kind of network and optimizer: batch norm (the replica must get the
# running statistics and use them) and AdamW.
STEPS=(--set train.steps=10 --set train.checkpoint_every=0 --set train.keep=20 --set train.log_every=1
       --set model.norm=batch --set train.optimizer=adamw --set train.lr=1e-3 --set loss.normalize=cells)

# --- 2 ranks with validation every 4 steps on the first 4 of 6 images
R=$T_TMP/withval
if ! tr_mpi 2 "$R" "${STEPS[@]}" "${VAL[@]}" "${LOOSE[@]}" --set train.val_every=4 --set data.val_max_images=4 \
     >"$T_TMP/withval.log" 2>&1; then
  t_fail train_val_run "exit non-zero: $(tail -n 3 "$T_TMP/withval.log" | tr '\n' '|')"; t_end
fi
t_ok train_val_run

# val lines on steps 4, 8 and the last (10), with exactly the documented keys
if "$PY" - "$R/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
val = {r["step"]: r["val"] for r in rows if "val" in r}
assert sorted(val) == [4, 8, 10], sorted(val)
for s, v in val.items():
    assert sorted(v) == sorted(["ap", "ap50", "ap75", "ar", "images", "time_s"]), v
    assert v["images"] == 4 and v["time_s"] > 0, v
    assert all(-1 <= v[k] <= 1 for k in ("ap", "ap50", "ap75", "ar")), v
EOF
then t_ok train_val_metrics_lines; else t_fail train_val_metrics_lines "see above"; fi

# The same numbers and detections as `sspose eval` on ckpt-10 over a file of those 4 images.
"$PY" - "$T_TMP/val/annotations.json" "$T_TMP/val4.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["images"] = d["images"][:4]
ids = {im["id"] for im in d["images"]}
d["annotations"] = [a for a in d["annotations"] if a["image_id"] in ids]
json.dump(d, open(sys.argv[2], "w"))
EOF
cp "$R/val-results.json" "$T_TMP/val-results-10.json"
if "$SSPOSE" eval --gt "$T_TMP/val4.json" --checkpoint "$(tr_ckpt "$R" 10)" --images "$T_TMP/val/images" \
     --out "$T_TMP/eval10.json" "${LOOSE[@]}" --device cpu --json >"$T_TMP/eval10.txt" 2>"$T_TMP/eval10.err" &&
   "$PY" - "$R/metrics.jsonl" "$T_TMP/eval10.txt" "$T_TMP/val-results-10.json" "$T_TMP/eval10.json" <<'EOF'
import json, sys
val = [json.loads(l) for l in open(sys.argv[1])][-1]["val"]
ev = json.loads(open(sys.argv[2]).read())
mine, theirs = json.load(open(sys.argv[3])), json.load(open(sys.argv[4]))
assert len(theirs) > 20, "too few people to compare: %d" % len(theirs)
assert mine == theirs, "detections differ: %d vs %d people" % (len(mine), len(theirs))
for a, b in (("ap", "AP"), ("ap50", "AP50"), ("ap75", "AP75"), ("ar", "AR")):
    assert abs(val[a] - ev[b]) <= 1e-12, (a, val[a], ev[b])
print("  %d people, AP %g AR %g in both" % (len(theirs), ev["AP"], ev["AR"]))
EOF
then t_ok train_val_equals_sspose_eval; else t_fail train_val_equals_sspose_eval "$(tail -n 2 "$T_TMP/eval10.err")"; fi

# ckpt-best.h5: the first step with the highest AP, a copy of that step's checkpoint.
if "$PY" - "$R" <<'EOF'
import json, sys, h5py
R = sys.argv[1]
rows = [json.loads(l) for l in open(R + "/metrics.jsonl")]
val = [(r["step"], r["val"]["ap"]) for r in rows if "val" in r]
best = max(v for _, v in val)
step = min(s for s, v in val if v == best)
f = h5py.File(R + "/ckpt-best.h5", "r")
assert f.attrs["val_step"] == step and f.attrs["val_ap"] == best, (dict(f.attrs), step, best)
g = h5py.File(R + "/ckpt-%09d.h5" % step, "r")
names = []
g.visit(lambda n: names.append(n) if isinstance(g[n], h5py.Dataset) else None)
assert names and all(f[n][...].tobytes() == g[n][...].tobytes() for n in names)
assert f.attrs["step"] == step
EOF
then t_ok train_val_best_checkpoint; else t_fail train_val_best_checkpoint "see above"; fi

# --- the same run without validation: bit-identical weights and momentum, same losses
R0=$T_TMP/noval
if tr_mpi 2 "$R0" "${STEPS[@]}" >"$T_TMP/noval.log" 2>&1 &&
   tr_compare "$(tr_ckpt "$R0" 10)" "$(tr_ckpt "$R" 10)" 0 >"$T_TMP/cmp.txt" &&
   "$PY" - "$R0/metrics.jsonl" "$R/metrics.jsonl" <<'EOF'
import json, sys
a = {r["step"]: r for r in map(json.loads, open(sys.argv[1]))}
b = {r["step"]: r for r in map(json.loads, open(sys.argv[2]))}
common = sorted(set(a) & set(b))
assert common == list(range(1, 11)), common
for s in common:
    assert a[s]["loss"] == b[s]["loss"] and a[s]["terms"] == b[s]["terms"], s
EOF
then t_ok train_val_bit_identical; else t_fail train_val_bit_identical "$(cat "$T_TMP/cmp.txt" 2>/dev/null | tail -n 1)"; fi

# --- resume: keep=1 prunes the regular checkpoints, never ckpt-best.h5; --resume
# takes the newest regular one, and a later validation that does not beat the
# recorded AP leaves ckpt-best.h5 alone.
R1=$T_TMP/resume
tr_train "$R1" "${VAL[@]}" "${LOOSE[@]}" --set train.val_every=3 --set train.steps=6 --set train.checkpoint_every=2 \
  --set train.keep=1 >"$T_TMP/r1a.log" 2>&1
first=$(ls "$R1")
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); f.attrs['val_ap']=2.0" "$R1/ckpt-best.h5" 2>/dev/null
tr_train "$R1" "${VAL[@]}" "${LOOSE[@]}" --set train.val_every=3 --set train.steps=9 --set train.checkpoint_every=2 \
  --set train.keep=1 --resume >"$T_TMP/r1b.log" 2>&1
if [ "$(echo "$first" | tr '\n' ' ')" != "ckpt-000000006.h5 ckpt-best.h5 config.ini lock metrics.jsonl val-results.json " ]; then
  t_fail train_val_resume "after the first run: $(echo "$first" | tr '\n' ' ')"
elif ! grep -q "resuming from .*ckpt-000000006.h5" "$T_TMP/r1b.log"; then
  t_fail train_val_resume "did not resume from ckpt-6: $(grep -i resum "$T_TMP/r1b.log" | head -n 2 | tr '\n' '|')"
elif ! grep -q "best validation so far: AP 2.0000 at step 3" "$T_TMP/r1b.log"; then
  t_fail train_val_resume "the recorded best was not read back"
elif [ ! -e "$(tr_ckpt "$R1" 9)" ] || [ -e "$(tr_ckpt "$R1" 6)" ]; then
  t_fail train_val_resume "regular checkpoints after resume: $(ls "$R1" | tr '\n' ' ')"
elif ! "$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r'); sys.exit(not (f.attrs['val_ap']==2.0 and f.attrs['val_step']==3))" \
       "$R1/ckpt-best.h5"; then
  t_fail train_val_resume "ckpt-best.h5 was replaced by a worse validation"
else
  t_ok train_val_resume
fi

# --- sspose plot: the default figure has the validation panel (3 points per curve,
# from the lines that have "val"), a run without validation has none.
if "$SSPOSE" plot "$R" --out "$T_TMP/v.svg" --dump-layout "$T_TMP/v.json" >/dev/null 2>&1 &&
   "$SSPOSE" plot "$R0" --out "$T_TMP/n.svg" --dump-layout "$T_TMP/n.json" >/dev/null 2>&1 &&
   "$PY" - "$T_TMP/v.json" "$T_TMP/n.json" <<'EOF'
import json, sys
v, n = (json.load(open(f)) for f in sys.argv[1:])
p = [q for q in v["panels"] if q["metric"] == "val"]
assert len(p) == 1 and [s["quantity"] for s in p[0]["series"]] == ["AP", "AP50", "AR"], p
assert all(s["points"] == 3 for s in p[0]["series"]), p[0]["series"]
assert not [q for q in n["panels"] if q["metric"] == "val"]
EOF
then t_ok train_val_plot; else t_fail train_val_plot "see above"; fi

# --- bad input: one line each
t_bad_input train_val_needs_set "train.val_every = 5 needs data.val_ann" \
  "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.val_every=5 \
  --out "$T_TMP/bad1"
t_bad_input train_val_missing_ann "val_missing.json" \
  "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.val_every=5 \
  --set data.val_ann="$T_TMP/val_missing.json" --set data.val_images="$T_TMP/val/images" --out "$T_TMP/bad2"
t_bad_input train_val_missing_images "validation image .*nowhere" \
  "$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --set train.val_every=1 \
  --set train.steps=1 --set data.val_ann="$T_TMP/val/annotations.json" --set data.val_images="$T_TMP/nowhere" \
  --out "$T_TMP/bad3"
t_end
