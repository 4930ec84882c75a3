#!/usr/bin/env bash
# Issue 14, the command side: no output may be one of the inputs (same file by
# device and inode, whatever the spelling), damaged or wrongly typed checkpoints
# are refused by forward/infer/eval with one line, corrupt crops in a shard
# (checksum, libjpeg warnings, a PNG) are errors naming shard and sample, and
# the smaller input checks of item 8. The reproductions of the issue are the fixtures.
. tests/test_train_common.bash
tr_fixture || { t_fail reliability_io_fixture "synth/data failed"; t_end; }
D=$T_TMP/io
mkdir -p "$D"
TINY=(--config configs/tiny.ini --set model.input=64 --set model.stages=2)
CK=$D/ck.h5
"$SSPOSE" init "${TINY[@]}" --out "$CK" >/dev/null 2>"$D/init.err" || { t_fail init "$(cat "$D/init.err")"; t_end; }
SHARD=$T_TMP/shards/train-00000.h5
cp "$CK" "$D/ck.orig"
cp "$SHARD" "$D/shard.orig"

# ---- 1. an output that is an input, under another spelling or a hard link
t_bad_input forward_out_is_checkpoint "forward: --out '.*' is the same file as the input --checkpoint" \
  "$SSPOSE" forward --checkpoint "$CK" --shard "$SHARD" --out "$D/../io/./ck.h5"
ln -f "$SHARD" "$D/shard-link.h5"
t_bad_input forward_out_is_shard "is the same file as the input --shard" \
  "$SSPOSE" forward --checkpoint "$CK" --shard "$SHARD" --out "$D/shard-link.h5"
cmp -s "$CK" "$D/ck.orig" && cmp -s "$SHARD" "$D/shard.orig" && t_ok forward_inputs_intact \
  || t_fail forward_inputs_intact "the checkpoint or the shard changed"
GT=$D/gt.json
cp "$T_TMP/coco/annotations.json" "$GT"
t_bad_input eval_out_is_gt "eval: --out '.*' is the same file as the input --gt" \
  "$SSPOSE" eval --gt "$GT" --checkpoint "$CK" --images "$T_TMP/coco/images" --out "$D/./gt.json"
cmp -s "$GT" "$T_TMP/coco/annotations.json" && t_ok eval_gt_intact || t_fail eval_gt_intact "ground truth changed"
IMG=$(ls "$T_TMP"/coco/images/*.jpg | head -n 1)
mkdir -p "$D/inf"
cp "$IMG" "$D/inf/a.png"
t_bad_input infer_out_is_image "infer: output '.*a.png' is the same file as the input image" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$D/inf" "$D/inf/a.png"
cmp -s "$IMG" "$D/inf/a.png" && t_ok infer_image_intact || t_fail infer_image_intact "image replaced"
cp configs/tiny.ini "$D/c.ini"
t_bad_input init_out_is_config "init: --out '.*' is the same file as the input --config" \
  "$SSPOSE" init --config "$D/c.ini" --out "$D/c.ini"
cmp -s configs/tiny.ini "$D/c.ini" && t_ok init_config_intact || t_fail init_config_intact "config replaced"
t_bad_input init_needs_config "init: --config CFG is required" "$SSPOSE" init --out "$D/x.h5"
mkdir -p "$D/run"
echo '{"step":1,"loss":1}' >"$D/run/metrics.jsonl"
t_bad_input plot_out_is_metrics "plot: --out '.*' is the same file as the input run file" \
  "$SSPOSE" plot "$D/run" --out "$D/run/metrics.jsonl"

# ---- 2, 3. damaged checkpoints: one flipped byte in a tensor, int8 tensors, NaN optimizer state
"$PY" - "$CK" "$D" <<'PYEOF' || t_fail checkpoint_fixtures "python failed"
import sys, shutil, h5py, numpy as np
ck, d = sys.argv[1], sys.argv[2]
with h5py.File(ck, "r") as f:
    assert f.attrs["checksum"] == "fletcher32"
    names = []
    f["params"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    ds = f["params/" + names[0]]
    info = ds.id.get_chunk_info(0)
    name = ds.name
    assert ds.compression is None and ds.fletcher32, "weights must carry Fletcher-32"
shutil.copy(ck, d + "/flip.h5")
with open(d + "/flip.h5", "r+b") as f:  # one byte inside the tensor's data
    f.seek(info.byte_offset + info.size // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x10]))
shutil.copy(ck, d + "/int8.h5")
with h5py.File(d + "/int8.h5", "r+") as f:
    x = f[name][...]
    del f[name]
    f.create_dataset(name, data=np.clip(x * 100, -127, 127).astype(np.int8))
shutil.copy(ck, d + "/nanmom.h5")
with h5py.File(d + "/nanmom.h5", "r+") as f:
    names = []
    f["optim/momentum"].visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    ds = f["optim/momentum/" + names[-1]]
    x = ds[...]
    x.flat[0] = np.nan
    ds[...] = x
PYEOF
t_bad_input forward_flipped_byte "checkpoint '.*flip.h5': /params/.* cannot be read \(checksum mismatch" \
  "$SSPOSE" forward --checkpoint "$D/flip.h5" --shard "$SHARD" --out "$D/f1.h5"
t_bad_input infer_flipped_byte "checksum mismatch" "$SSPOSE" infer --checkpoint "$D/flip.h5" --out "$D/inf2" "$IMG"
t_bad_input eval_flipped_byte "checksum mismatch" \
  "$SSPOSE" eval --gt "$GT" --checkpoint "$D/flip.h5" --images "$T_TMP/coco/images" --out "$D/res.json"
t_bad_input forward_int8_params "is stored as integer of 1 bytes, expected float32" \
  "$SSPOSE" forward --checkpoint "$D/int8.h5" --shard "$SHARD" --out "$D/f2.h5"
t_bad_input forward_nan_momentum "/optim/momentum/.* holds non-finite values" \
  "$SSPOSE" forward --checkpoint "$D/nanmom.h5" --shard "$SHARD" --out "$D/f3.h5"
ls "$D"/f[123].h5* >/dev/null 2>&1 && t_fail refused_leave_nothing "an output or temporary file was written" \
  || t_ok refused_leave_nothing

# ---- corrupt crops in a shard: checksum, libjpeg warnings in an old (checksum-less) shard, a PNG
"$PY" - "$SHARD" "$D" <<'PYEOF' || t_fail shard_fixtures "python failed"
import sys, shutil, h5py, numpy as np
src, d = sys.argv[1], sys.argv[2]
def xor40(f, i):  # the issue's reproduction: 40 XOR'd bytes in the middle of one sample's JPEG
    j = bytearray(f["jpeg"][i].tobytes())
    mid = len(j) // 2
    for k in range(mid, mid + 40): j[k] ^= 0x5A
    f["jpeg"][i] = np.frombuffer(bytes(j), np.uint8)
def extraneous(f, i):  # 40 stray bytes before the end marker: libjpeg warns, then decodes
    j = f["jpeg"][i].tobytes()
    f["jpeg"][i] = np.frombuffer(j[:-2] + bytes(40) + j[-2:], np.uint8)
for name, old, damage in (("xor", False, "xor"), ("xorold", True, "extra"), ("png", True, "png")):
    p = f"{d}/{name}.h5"
    shutil.copy(src, p)
    with h5py.File(p, "r+") as f:
        assert f["checksums"].shape == (f["jpeg"].shape[0], 6) and f["meta"].fletcher32 and f["keypoints"].fletcher32
        if old: del f["checksums"]  # a shard written before checksums existed
        if damage == "png": f["jpeg"][2] = np.fromfile("tests/fuzz/corpus/image/rgb.png", np.uint8)
        elif damage == "xor": xor40(f, 3)
        else: extraneous(f, 3)
PYEOF
t_bad_input forward_corrupt_jpeg_checksum "shard '.*xor.h5' sample 3: JPEG bytes fail their CRC-32" \
  "$SSPOSE" forward --checkpoint "$CK" --shard "$D/xor.h5" --index 3 --out "$D/f4.h5"
t_bad_input forward_corrupt_jpeg_warning "shard '.*xorold.h5' sample 3: corrupt JPEG: Corrupt JPEG data: 38 extraneous bytes" \
  "$SSPOSE" forward --checkpoint "$CK" --shard "$D/xorold.h5" --index 3 --out "$D/f5.h5"
t_bad_input forward_png_in_shard "shard '.*png.h5' sample 2: crop is not a JPEG but a PNG" \
  "$SSPOSE" forward --checkpoint "$CK" --shard "$D/png.h5" --index 2 --out "$D/f6.h5"
"$SSPOSE" forward --checkpoint "$CK" --shard "$D/xorold.h5" --index 0 --count 2 --out "$D/f7.h5" >/dev/null 2>&1 \
  && t_ok old_shard_without_checksums_loads || t_fail old_shard_without_checksums_loads "refused"

# ---- 8. smaller input checks
printf '[model]\nwidth = 0.5\nwidth = 0.25\n' >"$D/dup.ini"
t_bad_input config_duplicate_key "dup.ini:3: config key 'model.width' is set twice \(first at line 2\)" \
  "$SSPOSE" init --config "$D/dup.ini" --out "$D/x.h5"
t_bad_input config_hex_number "config key 'model.stages' wants an integer, got '0x2'" \
  "$SSPOSE" init --config configs/tiny.ini --set model.stages=0x2 --out "$D/x.h5"
t_bad_input config_inf_number "wants a number, got 'inf'" \
  "$SSPOSE" init --config configs/tiny.ini --set train.lr=inf --out "$D/x.h5"
"$PY" - "$GT" "$D/dupgt.json" <<'PYEOF'
import json, sys
g = json.load(open(sys.argv[1]))
g["images"].append(dict(g["images"][0]))
json.dump(g, open(sys.argv[2], "w"))
PYEOF
echo '[]' >"$D/empty.json"
t_bad_input eval_gt_duplicate_image_id "lists image id [0-9]+ more than once" \
  "$SSPOSE" eval --gt "$D/dupgt.json" --results "$D/empty.json"
t_bad_input no_command "^sspose: error: no command given" "$SSPOSE"
t_end
