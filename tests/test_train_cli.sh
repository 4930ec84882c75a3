#!/usr/bin/env bash
# sspose train as one process: --help, bad input (one error line, non-zero
# exit), and what a run leaves in RUNDIR: config.ini (the resolved config),
# metrics.jsonl (fields), checkpoints (SPEC section 6, read with h5py), the
# newest train.keep kept.
. tests/test_train_common.bash
tr_fixture || { t_fail train_cli_fixture "synth/data failed"; t_end; }

if "$SSPOSE" train --help | grep -q 'usage: sspose train --config CFG --out RUNDIR'; then t_ok train_help
else t_fail train_help "no usage text"; fi
if "$SSPOSE" --help | grep -q '^  train '; then t_ok train_listed; else t_fail train_listed "train missing from sspose --help"; fi

t_bad_input train_no_out 'train: --out RUNDIR is required' "$SSPOSE" train --config configs/tiny.ini
t_bad_input train_no_config 'train: --config CFG is required' "$SSPOSE" train --out "$T_TMP/x"
t_bad_input train_bad_flag "unknown option '--bogus'" "$SSPOSE" train --bogus --out "$T_TMP/x"
t_bad_input train_bad_key "unknown config key 'train.bogus'" "$SSPOSE" train --config configs/tiny.ini --set train.bogus=1 --out "$T_TMP/x"
t_bad_input train_missing_config "cannot open config" "$SSPOSE" train --config "$T_TMP/none.ini" --out "$T_TMP/x"
t_bad_input train_no_shards "no files|match" tr_train "$T_TMP/x" --set data.train="$T_TMP/nothing-*.h5"
t_bad_input train_wrong_input "hold 64x64 crops but model.input = 128" tr_train "$T_TMP/x2" --set model.input=128
t_bad_input train_zero_steps "train.steps must be positive" tr_train "$T_TMP/x3" --set train.steps=0
echo "not hdf5" >"$T_TMP/bad-000.h5"
t_bad_input train_corrupt_shard "bad-000.h5" tr_train "$T_TMP/x4" --set data.train="$T_TMP/bad-*.h5"

R=$T_TMP/run
tr_train "$R" --set train.steps=6 --set train.checkpoint_every=2 --set train.keep=2 >"$T_TMP/run.log" 2>&1 ||
  t_fail train_run "exit $?: $(tail -n 3 "$T_TMP/run.log" | tr '\n' '|')"
if [ "$(cd "$R" && ls ckpt-*.h5 | tr '\n' ' ')" = "ckpt-000000004.h5 ckpt-000000006.h5 " ]; then t_ok train_keep_newest
else t_fail train_keep_newest "checkpoints left: $(cd "$R" && ls)"; fi
if grep -q '^train.steps = 6$' "$R/config.ini" && grep -q '^model.input = 64$' "$R/config.ini"; then t_ok train_config_ini
else t_fail train_config_ini "config.ini lacks the resolved values"; fi
if "$PY" - "$R" <<'PYEOF'
import json, sys, h5py, numpy as np
d = sys.argv[1]
rows = [json.loads(l) for l in open(d + "/metrics.jsonl")]
assert [r["step"] for r in rows] == [5, 6], [r["step"] for r in rows]
r = rows[-1]
for k in ("step", "epoch", "lr", "loss", "terms", "weights", "grad_norm", "samples_per_s", "skipped", "time", "comm_hidden"):
    assert k in r, k
assert set(r["time"]) == {"data", "compute", "comm", "step"}
assert 0 <= r["comm_hidden"] <= 1, r["comm_hidden"]
assert set(r["terms"]) == {"stage1", "stage2"}, r["terms"].keys()
assert set(r["terms"]["stage1"]) == {"heat", "paf", "offset", "ps", "kl"}, r["terms"]["stage1"]
# the total is the weighted sum of the per-stage terms (window means of the same steps)
tot = sum(r["weights"][t] * v for s in r["terms"].values() for t, v in s.items())
assert abs(tot - r["loss"]) <= 1e-6 * abs(r["loss"]), (tot, r["loss"])
assert r["lr"] == 1e-5 and r["samples_per_s"] > 0
f = h5py.File(d + "/ckpt-000000006.h5", "r")
assert f.attrs["format"] == "sspose-checkpoint" and f.attrs["version"] == 1 and f.attrs["step"] == 6
assert "train.steps = 6" in f.attrs["config"]
assert f["params/conv1_1/weight"].shape == (16, 3, 3, 3), f["params/conv1_1/weight"].shape
m = f["optim/momentum/conv1_1/weight"][...]
assert np.abs(m).max() > 0, "momentum not saved"
st = f["state"]
assert st.attrs["step"] == 6 and st.attrs["global_batch"] == 2 and st.attrs["ranks"] == 1
assert st["loader"].shape == (6,) and st["loader"].dtype == np.int64
PYEOF
then t_ok train_outputs_h5py; else t_fail train_outputs_h5py "RUNDIR contents do not match docs/training.md"; fi

t_bad_input train_rundir_in_use "already holds 2 checkpoint\(s\); pass --resume" tr_train "$R" --set train.steps=6
t_bad_input train_resume_other_model "trained with model.width = 0.25, this run has 0.5" \
  "$SSPOSE" train --out "$R" --resume --set model.width=0.5 --set train.steps=8
if grep -q '^model.width = 0.25$' "$R/config.ini"; then t_ok train_refused_resume_keeps_config
else t_fail train_refused_resume_keeps_config "a refused resume rewrote config.ini"; fi
t_end
