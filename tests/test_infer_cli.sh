#!/usr/bin/env bash
# sspose infer and the inference mode of sspose eval, end to end on the real
# sample images with a freshly initialised tiny network (so the maps are
# arbitrary: these tests check files and formats, tests/test_decode_* check
# what the decoder finds). Outputs are read back with Python.
source "$(dirname "$0")/lib.sh"
PY=${PYTHON:-/usr/bin/python3}
SHARED=../shared/data/coco-sample
CK=$T_TMP/tiny.h5
FAST=(--set eval.base_size=64)
# OpenMP's default spin-waiting makes the CPU backend ~8x slower on a shared,
# oversubscribed machine (measured: 5.4 s vs 0.7 s a pass); passive waiting
# changes nothing else.
export OMP_WAIT_POLICY=PASSIVE

if ! "$SSPOSE" init --config configs/tiny.ini --out "$CK" >/dev/null 2>"$T_TMP/init.err"; then
  t_fail infer_setup "sspose init failed: $(head -c 300 "$T_TMP/init.err")"; t_end
fi

# --- infer writes NAME.json (COCO results list) and NAME.png of the image's size
if "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/out" "${FAST[@]}" --flip --scales 0.5,1 \
     "$SHARED/000000000785.jpg" "$SHARED/000000040083.jpg" >"$T_TMP/infer.log" 2>&1; then
  if "$PY" - "$T_TMP/out" "$SHARED/test_coco.json" <<'EOF' >"$T_TMP/check.log" 2>&1
import json, struct, sys, zlib
out, gt = sys.argv[1], json.load(open(sys.argv[2]))
size = {im["file_name"][:-4]: (im["width"], im["height"]) for im in gt["images"]}
for name, iid in (("000000000785", 785), ("000000040083", 40083)):
    res = json.load(open(f"{out}/{name}.json"))
    assert isinstance(res, list), "not a list"
    for r in res:
        assert r["image_id"] == iid and r["category_id"] == 1, r
        assert len(r["keypoints"]) == 51 and isinstance(r["score"], (int, float)), r
    png = open(f"{out}/{name}.png", "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    w, h, depth, ctype = struct.unpack(">IIBB", png[16:26])
    assert (w, h) == size[name], f"{name}.png is {w}x{h}, image is {size[name]}"
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    # the PNG's pixel data must decompress (a complete, valid file)
    pos, idat = 8, b""
    while pos < len(png):
        n, = struct.unpack(">I", png[pos:pos + 4]); kind = png[pos + 4:pos + 8]
        if kind == b"IDAT": idat += png[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    assert len(raw) == h * (1 + w * (3 if ctype == 2 else 4)), "pixel data size"
print("ok")
EOF
  then t_ok infer_writes_json_and_png
  else t_fail infer_writes_json_and_png "$(tail -n 3 "$T_TMP/check.log" | tr '\n' ' ')"; fi
else
  t_fail infer_writes_json_and_png "infer failed: $(tail -n 3 "$T_TMP/infer.log" | tr '\n' ' ')"
fi

# --- eval --checkpoint: inference over the GT's images, results file, then the summary
if "$SSPOSE" eval --gt "$SHARED/test_coco.json" --checkpoint "$CK" --images "$SHARED" --out "$T_TMP/dt.json" \
     "${FAST[@]}" --json >"$T_TMP/eval.out" 2>"$T_TMP/eval.err"; then
  if "$PY" -c "
import json,sys
d = json.load(open('$T_TMP/dt.json')); assert isinstance(d, list)
s = json.load(open('$T_TMP/eval.out')); assert 'AP' in s, s
" 2>"$T_TMP/evalchk.err"; then t_ok eval_checkpoint_mode
  else t_fail eval_checkpoint_mode "$(tail -n 2 "$T_TMP/evalchk.err" | tr '\n' ' ')"; fi
else
  t_fail eval_checkpoint_mode "exit $?: $(tail -n 3 "$T_TMP/eval.err" | tr '\n' ' ')"
fi

# --- bad input: one clear line, non-zero exit
printf 'this is not a jpeg' >"$T_TMP/corrupt.jpg"
printf 'not hdf5' >"$T_TMP/bad.h5"
mkdir -p "$T_TMP/noimages"
t_bad_input infer_missing_image "cannot open image .*nope\.jpg" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2" "$T_TMP/nope.jpg"
t_bad_input infer_corrupt_image "image .*corrupt\.jpg" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2" "${FAST[@]}" "$T_TMP/corrupt.jpg"
t_bad_input infer_bad_checkpoint "bad\.h5" \
  "$SSPOSE" infer --checkpoint "$T_TMP/bad.h5" --out "$T_TMP/o2" "$SHARED/000000000785.jpg"
t_bad_input infer_missing_checkpoint "missing\.h5" \
  "$SSPOSE" infer --checkpoint "$T_TMP/missing.h5" --out "$T_TMP/o2" "$SHARED/000000000785.jpg"
t_bad_input infer_same_name "would both write" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2" "$SHARED/000000000785.jpg" "$SHARED/../coco-sample/000000000785.jpg"
t_bad_input infer_no_out "out DIR is required" "$SSPOSE" infer --checkpoint "$CK" "$SHARED/000000000785.jpg"
t_bad_input infer_no_images "no images" "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2"
t_bad_input infer_bad_scales "eval\.scales" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2" --scales 1,abc "$SHARED/000000000785.jpg"
t_bad_input infer_bad_device "device" \
  "$SSPOSE" infer --checkpoint "$CK" --out "$T_TMP/o2" --device tpu "$SHARED/000000000785.jpg"
t_bad_input eval_checkpoint_without_images "needs .*images DIR" \
  "$SSPOSE" eval --gt "$SHARED/test_coco.json" --checkpoint "$CK" --out "$T_TMP/dt2.json"
t_bad_input eval_images_missing "image .*noimages/000000000785\.jpg" \
  "$SSPOSE" eval --gt "$SHARED/test_coco.json" --checkpoint "$CK" --images "$T_TMP/noimages" --out "$T_TMP/dt2.json"
t_bad_input eval_images_without_checkpoint "need --checkpoint" \
  "$SSPOSE" eval --gt "$SHARED/test_coco.json" --results "$T_TMP/dt.json" --images "$SHARED"
t_end
