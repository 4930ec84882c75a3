#!/usr/bin/env bash
# Issue 14, the training side: --resume skips a newest checkpoint that fails
# verification (flipped byte, NaN optimizer state) with one warning naming it
# and uses the next older one; one trainer per run directory (the second exits
# with one line naming the holder, and the lock dies with its holder); corrupt
# and PNG crops stop training naming shard and sample unless data.skip_corrupt;
# shards of different recipes are refused unless data.mix_shards=1.
. tests/test_train_common.bash
tr_fixture || { t_fail reliability_train_fixture "synth/data failed"; t_end; }
R=$T_TMP/rel
mkdir -p "$R"
common=(--set train.checkpoint_every=10 --set train.keep=5)
tr_train "$R/base" "${common[@]}" --set train.steps=20 >"$R/base.log" 2>&1 || { t_fail base_run "$(tail -n 2 "$R/base.log")"; t_end; }

# ---- resume falls back past a damaged newest checkpoint
for kind in flip nanmom loader; do
  C=$R/$kind
  mkdir -p "$C"
  cp "$R/base/config.ini" "$(tr_ckpt "$R/base" 10)" "$(tr_ckpt "$R/base" 20)" "$C/"
  "$PY" - "$(tr_ckpt "$C" 20)" "$kind" <<'PYEOF' || t_fail "resume_${kind}_fixture" "python failed"
import sys, h5py, numpy as np
path, kind = sys.argv[1], sys.argv[2]
names = []
with h5py.File(path, "r") as f:
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and n.startswith("params/") else None)
    info = f[names[len(names) // 2]].id.get_chunk_info(0)
if kind == "flip":
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 3)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
elif kind == "loader":  # a loader position past the end of the data (issue 14, item 4)
    with h5py.File(path, "r+") as f:
        st = f["state/loader"][...]
        st[3] = st[4] + 5
        f["state/loader"][...] = st
else:
    with h5py.File(path, "r+") as f:
        ds = f["optim/momentum/" + names[0][len("params/"):]]
        x = ds[...]
        x.flat[x.size // 2] = np.nan
        ds[...] = x
PYEOF
  tr_train "$C" "${common[@]}" --resume --set train.steps=22 >"$C.log" 2>&1; rc=$?
  case $kind in
    flip) why="cannot be read \(checksum mismatch" ;;
    nanmom) why="optim/momentum/.* holds non-finite values" ;;
    loader) why="/state/loader: corrupt loader state" ;;
  esac
  if [ $rc -ne 0 ]; then t_fail "resume_skips_${kind}" "exit $rc: $(tail -n 2 "$C.log" | tr '\n' '|')"
  elif [ "$(grep -c 'falling back' "$C.log")" -ne 1 ] ||
       ! grep -qE "warning: checkpoint '.*ckpt-000000020.h5': .*$why.*falling back to the previous checkpoint \(step 10\)" "$C.log"; then
    t_fail "resume_skips_${kind}" "$(grep -E 'warning|resuming' "$C.log" | tr '\n' '|')"
  elif ! grep -q "resuming from .*ckpt-000000010.h5" "$C.log"; then t_fail "resume_skips_${kind}" "did not resume from step 10"
  else t_ok "resume_skips_${kind}"; fi
done

# ---- one trainer per run directory
L=$R/locked
# started directly (not through a shell function) so that $! is the trainer itself
"$SSPOSE" train --config configs/tiny.ini --set data.train="$SHARDS" "${TR_SETS[@]}" --out "$L" \
  --set train.steps=1000000 --set train.checkpoint_every=0 >"$R/first.log" 2>&1 &
FIRST=$!
for ((i = 0; i < 300; i++)); do grep -q "pid $FIRST" "$L/lock" 2>/dev/null && break; sleep 0.1; done
cp "$L/config.ini" "$R/config.before" 2>/dev/null
t_bad_input second_trainer_refused "run directory '.*locked' is in use by another trainer \(pid $FIRST on [^)]+\)" \
  tr_train "$L" --resume --set train.steps=5
t_bad_input second_fresh_start_refused "is in use by another trainer \(pid $FIRST" tr_train "$L" --set train.steps=5
kill -0 $FIRST 2>/dev/null && t_ok first_trainer_still_running || t_fail first_trainer_still_running "$(tail -n 2 "$R/first.log")"
kill -9 $FIRST
wait $FIRST 2>/dev/null
# the kernel drops the lock with its holder: no stale lock after kill -9
if tr_train "$L" --resume --set train.steps=2 >"$R/after.log" 2>&1; then t_ok lock_released_by_death
else t_fail lock_released_by_death "$(tail -n 2 "$R/after.log")"; fi

# ---- corrupt and PNG crops in training; data.skip_corrupt
mkdir -p "$R/xor" "$R/png"
"$PY" - "$T_TMP/shards/train-00000.h5" "$R" <<'PYEOF' || t_fail crop_fixtures "python failed"
import sys, shutil, h5py, numpy as np
src, d = sys.argv[1], sys.argv[2]
shutil.copy(src, d + "/xor/s-00000.h5")
with h5py.File(d + "/xor/s-00000.h5", "r+") as f:  # the issue's 40 XOR'd bytes mid-JPEG
    j = bytearray(f["jpeg"][5].tobytes())
    for k in range(len(j) // 2, len(j) // 2 + 40): j[k] ^= 0x5A
    f["jpeg"][5] = np.frombuffer(bytes(j), np.uint8)
shutil.copy(src, d + "/png/s-00000.h5")
with h5py.File(d + "/png/s-00000.h5", "r+") as f:
    del f["checksums"]
    f["jpeg"][5] = np.fromfile("tests/fuzz/corpus/image/rgb.png", np.uint8)
PYEOF
t_bad_input train_corrupt_jpeg_named "xor/s-00000.h5 sample 5: JPEG bytes fail their CRC-32.*data.skip_corrupt=1" \
  tr_train "$R/t-xor" --set data.train="$R/xor/s-*.h5" --set train.steps=10
t_bad_input train_png_crop_named "png/s-00000.h5 sample 5: corrupt JPEG: crop is not a JPEG but a PNG" \
  tr_train "$R/t-png" --set data.train="$R/png/s-*.h5" --set train.steps=10
if ! tr_train "$R/t-skip" --set data.train="$R/xor/s-*.h5" --set train.steps=10 --set data.skip_corrupt=1 \
   >"$R/skip.log" 2>&1; then t_fail train_skip_corrupt_counted "$(tail -n 2 "$R/skip.log")"
elif n=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["corrupt_samples"])' \
         "$R/t-skip/metrics.jsonl" 2>&1) && [ "$n" -ge 1 ]; then t_ok "train_skip_corrupt_counted ($n in metrics.jsonl)"
else t_fail train_skip_corrupt_counted "corrupt_samples: $n"; fi
grep -q corrupt_samples "$R/base/metrics.jsonl" && t_fail metrics_unchanged_without_skip "corrupt_samples written" \
  || t_ok metrics_unchanged_without_skip

# ---- shards of another recipe in one glob
mkdir -p "$R/mix"
cp "$T_TMP/shards/train-00000.h5" "$R/mix/a-00000.h5"
"$SSPOSE" data --config configs/tiny.ini --set model.input=64 --ann "$T_TMP/coco/annotations.json" \
  --images "$T_TMP/coco/images" --out "$R/mix/b" --threads 1 --seed 9 --max-images 4 >/dev/null 2>&1
t_bad_input mixed_shards_refused "loader: shards '.*a-00000.h5' and '.*b-00000.h5' were made differently \(seed 1 vs 9\)" \
  tr_train "$R/t-mix" --set data.train="$R/mix/*.h5" --set train.steps=1
if tr_train "$R/t-mix2" --set data.train="$R/mix/*.h5" --set train.steps=1 --set data.mix_shards=1 >"$R/mix.log" 2>&1
then t_ok mixed_shards_allowed; else t_fail mixed_shards_allowed "$(tail -n 2 "$R/mix.log")"; fi
t_end
