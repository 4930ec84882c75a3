#!/usr/bin/env bash
# sspose data: help, bad input (one clear line, non-zero exit, no crash) and
# skipped-but-usable input (counted warnings, shards still written).
. tests/lib.sh
SH=../shared/data/coco-sample
ANN=$SH/test_coco.json
D=$T_TMP/cli
mkdir -p "$D"

if $SSPOSE data --help | grep -q -- '--samples-per-shard'; then t_ok help; else t_fail help "no usage text"; fi

t_bad_input no_ann 'ann is required' $SSPOSE data --images $SH --out $D/x
t_bad_input missing_ann "cannot open '$D/none.json'" $SSPOSE data --ann $D/none.json --images $SH --out $D/x
head -c 20000 $ANN > $D/trunc.json
t_bad_input truncated_json 'not valid JSON.*truncated' $SSPOSE data --ann $D/trunc.json --images $SH --out $D/x
printf '{"images": [1, 2,, ]}' > $D/bad.json
t_bad_input malformed_json 'not valid JSON' $SSPOSE data --ann $D/bad.json --images $SH --out $D/x
printf '{"info": {}}' > $D/nococo.json
t_bad_input not_coco "needs 'images' and 'annotations'" $SSPOSE data --ann $D/nococo.json --images $SH --out $D/x
t_bad_input missing_images_dir 'cannot read the images folder' $SSPOSE data --ann $ANN --images $D/nodir --out $D/x
t_bad_input missing_out_dir 'cannot write to the output folder' $SSPOSE data --ann $ANN --images $SH --out $D/nodir/x
t_bad_input bad_copies 'bad value for --copies' $SSPOSE data --ann $ANN --images $SH --out $D/x --copies 0
t_bad_input bad_threads 'bad value for --threads' $SSPOSE data --ann $ANN --images $SH --out $D/x --threads two
t_bad_input bad_set "unknown config key 'data.nope'" $SSPOSE data --ann $ANN --images $SH --out $D/x --set data.nope=1
t_bad_input bad_stride 'must be a multiple of model.stride' $SSPOSE data --ann $ANN --images $SH --out $D/x --set model.input=100
t_bad_input bad_scale_range 'scale_min' $SSPOSE data --ann $ANN --images $SH --out $D/x --set data.scale_min=2
t_bad_input stray_arg 'unexpected argument' $SSPOSE data --ann $ANN --images $SH --out $D/x extra
# only small or keypoint-less persons: nothing to sample
printf '{"images":[{"id":1,"file_name":"000000000785.jpg","width":640,"height":425}],"annotations":[{"id":1,"image_id":1,"category_id":1,"num_keypoints":3,"keypoints":[%s],"bbox":[0,0,50,50],"area":2500}]}' \
  "$(python3 -c 'print(",".join(["10,10,2"]*3+["0,0,0"]*14))')" > $D/small.json
t_bad_input no_main_person 'no main person' $SSPOSE data --ann $D/small.json --images $SH --out $D/x

# images that are missing, corrupt or truncated are skipped and counted
IMG=$D/imgs
mkdir -p $IMG
cp $SH/000000000785.jpg $IMG/                                       # fine (1 main person)
head -c 30000 $SH/000000196141.jpg > $IMG/000000196141.jpg           # truncated JPEG
head -c 3000 /dev/urandom > $IMG/000000197388.jpg                    # not an image at all
                                                                     # 000000040083.jpg missing
$SSPOSE data --ann $ANN --images $IMG --out $D/part --threads 2 >$D/part.out 2>$D/part.err; rc=$?
if [ $rc -ne 0 ]; then t_fail skip_bad_images "exit $rc: $(cat $D/part.err)"
elif ! grep -q 'wrote 1 samples' $D/part.out; then t_fail skip_bad_images "summary: $(cat $D/part.out)"
elif ! grep -q 'skipped 3 (1 image file missing, 2 corrupt image)' $D/part.out; then
  t_fail skip_bad_images "skip summary: $(grep skipped $D/part.out)"
elif [ "$(grep -c 'warning' $D/part.err)" -ne 3 ]; then t_fail skip_bad_images "warnings: $(cat $D/part.err)"
elif ! grep -q 'truncated JPEG' $D/part.err; then t_fail skip_bad_images "no truncation warning: $(cat $D/part.err)"
elif [ ! -f $D/part-00000.h5 ]; then t_fail skip_bad_images "no shard"
else t_ok skip_bad_images; fi

# every image unusable: a clear last line and a non-zero exit, no crash, no shard
mkdir -p $D/empty
$SSPOSE data --ann $ANN --images $D/empty --out $D/none >/dev/null 2>$D/none.err; rc=$?
if [ $rc -eq 0 ] || [ $rc -ge 124 ]; then t_fail all_images_missing "exit $rc"
elif ! tail -n 1 $D/none.err | grep -q 'error: data: no sample written'; then t_fail all_images_missing "$(tail -n 2 $D/none.err)"
elif ls $D/none-* >/dev/null 2>&1; then t_fail all_images_missing "a shard was left behind"
else t_ok all_images_missing; fi

# annotation-level problems are counted and the rest converted
python3 - "$ANN" > $D/edited.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a = d["annotations"]
a.append(dict(a[0], id=900001, image_id=424242))                     # unknown image
k = list(a[1]["keypoints"]); k[0] = 5000.0; k[2] = 2
a[1] = dict(a[1], keypoints=k)                                         # a keypoint far outside the image
a.append(dict(a[0], id=900002, bbox=[10, 10, 0, 0]))                   # zero-size box
a.append(dict(a[0], id=900003, keypoints="oops"))                      # malformed
json.dump(d, sys.stdout)
PY
$SSPOSE data --ann $D/edited.json --images $SH --out $D/edit --threads 2 >$D/edit.out 2>$D/edit.err; rc=$?
if [ $rc -ne 0 ]; then t_fail skip_bad_annotations "exit $rc: $(cat $D/edit.err)"
elif ! grep -q 'wrote 12 samples' $D/edit.out; then t_fail skip_bad_annotations "$(cat $D/edit.out)"
elif ! grep -q 'skipped 4 (1 malformed annotation, 1 annotation of an unknown image, 1 zero-size box, 1 keypoints outside the image)' $D/edit.out; then
  t_fail skip_bad_annotations "$(grep skipped $D/edit.out)"
else t_ok skip_bad_annotations; fi

# issue 14 item 7: one absurd box used to abort the whole run ("degenerate augmentation");
# now it is skipped, named once with image and annotation id, and counted at the end
python3 - "$ANN" > $D/hugebox.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
a = d["annotations"]
a.append(dict(a[0], id=900004, bbox=[0, 0, 1e30, 1e30]))
json.dump(d, sys.stdout)
PY
img=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['annotations'][0]['image_id'])" "$ANN")
$SSPOSE data --ann $D/hugebox.json --images $SH --out $D/huge --threads 2 >$D/huge.out 2>$D/huge.err; rc=$?
if [ $rc -ne 0 ]; then t_fail skip_huge_box "exit $rc: $(cat $D/huge.err)"
elif [ "$(grep -c 'annotation 900004 in image '"$img"': box \[0, 0, 1e+30, 1e+30\]' $D/huge.err)" -ne 1 ]; then
  t_fail skip_huge_box "not named once: $(cat $D/huge.err)"
elif ! grep -q 'wrote 12 samples' $D/huge.out || ! grep -q 'skipped 1 (1 box outside the image)' $D/huge.out; then
  t_fail skip_huge_box "$(cat $D/huge.out)"
else t_ok skip_huge_box; fi

# a second run into the same prefix is refused (its shards would mix with the first's);
# --overwrite replaces them and removes the first run's extra shards (issue 14, item 6)
$SSPOSE data --ann $ANN --images $SH --out $D/stale --samples-per-shard 5 >/dev/null 2>&1
n_first=$(ls $D/stale-*.h5 | wc -l)
t_bad_input existing_prefix_refused "stale-00000.h5' already exists .*pass --overwrite" \
  $SSPOSE data --ann $ANN --images $SH --out $D/stale --samples-per-shard 50
$SSPOSE data --ann $ANN --images $SH --out $D/stale --samples-per-shard 50 --overwrite >$D/stale.out 2>$D/stale.err; rc=$?
if [ $rc -eq 0 ] && [ "$n_first" -gt 1 ] && [ "$(ls $D/stale-*.h5)" = "$D/stale-00000.h5" ] \
   && grep -q "removed $((n_first - 1)) shard(s) of the earlier run" $D/stale.out; then
  t_ok overwrite_removes_stale_shards; else t_fail overwrite_removes_stale_shards "rc $rc first $n_first: $(ls $D/stale-*) $(cat $D/stale.err)"; fi
# a shard name that is the annotation file itself is refused before anything is written
cp $ANN $D/ann-00000.h5
t_bad_input shard_is_annotation_file "shard '$D/ann-00000.h5' is the same file as the input --ann" \
  $SSPOSE data --ann $D/ann-00000.h5 --images $SH --out $D/ann --overwrite
cmp -s $ANN $D/ann-00000.h5 && t_ok annotation_file_intact || t_fail annotation_file_intact "changed"

# progress: plain periodic lines off a terminal
$SSPOSE data --ann $ANN --images $SH --out $D/prog --copies 2 --progress-every 0.01 --threads 1 >$D/prog.out 2>&1
if grep -qE '^data: [0-9]+/24 \([0-9]+%\), [0-9.]+ samples/s, ETA' $D/prog.out && grep -q 'elapsed' $D/prog.out; then
  t_ok progress_lines; else t_fail progress_lines "$(head -c 400 $D/prog.out)"; fi
# progress: a bar redrawn in place on a terminal (script(1) gives the command a pty)
if command -v script >/dev/null; then
  script -qec "$SSPOSE data --ann $ANN --images $SH --out $D/tty --copies 2 --threads 1" /dev/null >$D/tty.out 2>&1
  if grep -q $'\r''data \[#*\.*\] *[0-9]*/24 .*samples/s' $D/tty.out && grep -q 'in 0:' $D/tty.out; then t_ok progress_bar_tty
  else t_fail progress_bar_tty "$(head -c 400 $D/tty.out | cat -v)"; fi
else t_skip progress_bar_tty "no script(1)"; fi
t_end
