#!/usr/bin/env bash
# sspose synth: flags, bad input, byte-for-byte reproducibility from --seed.
. tests/lib.sh

"$SSPOSE" synth --help | grep -q -- '--images' && t_ok synth_help || t_fail synth_help "no usage text"

t_bad_input synth_no_args 'synth: --out' "$SSPOSE" synth
t_bad_input synth_no_images 'synth: --images' "$SSPOSE" synth --out "$T_TMP/x"
t_bad_input synth_zero_images 'bad value for --images' "$SSPOSE" synth --out "$T_TMP/x" --images 0
t_bad_input synth_text_images 'bad value for --images' "$SSPOSE" synth --out "$T_TMP/x" --images many
t_bad_input synth_bad_seed 'bad value for --seed' "$SSPOSE" synth --out "$T_TMP/x" --images 1 --seed -3
t_bad_input synth_bad_threads 'bad value for --threads' "$SSPOSE" synth --out "$T_TMP/x" --images 1 --threads 0
t_bad_input synth_unknown_flag 'unknown option' "$SSPOSE" synth --out "$T_TMP/x" --images 1 --colour red
t_bad_input synth_missing_value 'needs a value' "$SSPOSE" synth --images 1 --out
t_bad_input synth_stray_arg 'unexpected argument' "$SSPOSE" synth --out "$T_TMP/x" --images 1 extra
echo plain > "$T_TMP/afile"
t_bad_input synth_out_is_file 'cannot create directory.*not a directory' "$SSPOSE" synth --out "$T_TMP/afile" --images 1
t_bad_input synth_out_under_file 'cannot create directory' "$SSPOSE" synth --out "$T_TMP/afile/sub" --images 1
mkdir -p "$T_TMP/ro/images"; chmod 0555 "$T_TMP/ro" "$T_TMP/ro/images"
if [ "$(id -u)" = 0 ]; then
  t_skip synth_out_readonly "root ignores directory permissions"
else
  t_bad_input synth_out_readonly 'cannot (write|create)' "$SSPOSE" synth --out "$T_TMP/ro" --images 1
fi
chmod 0755 "$T_TMP/ro" "$T_TMP/ro/images"
t_bad_input synth_out_in_proc "cannot create directory" "$SSPOSE" synth --out /proc/sspose_synth_test --images 1
# every image's temp file blocked: several rendering threads fail at once, one line still
mkdir -p "$T_TMP/blocked/images"
for i in 1 2 3 4 5 6 7 8; do mkdir -p "$T_TMP/blocked/images/00000000000$i.jpg.tmp"; done
t_bad_input synth_parallel_write_error "cannot write" "$SSPOSE" synth --out "$T_TMP/blocked" --images 8 --threads 4
if [ -e "$T_TMP/x" ]; then t_fail synth_no_output_on_error "bad flags still created $T_TMP/x"; else t_ok synth_no_output_on_error; fi

# Same seed -> identical bytes; another seed -> other images and annotations.
"$SSPOSE" synth --out "$T_TMP/a" --images 6 --seed 7 --threads 1 >/dev/null &&
"$SSPOSE" synth --out "$T_TMP/b" --images 6 --seed 7 --threads 3 >/dev/null &&
"$SSPOSE" synth --out "$T_TMP/c" --images 6 --seed 8 >/dev/null || t_fail synth_runs "synth failed"
n=$(ls "$T_TMP/a/images" | grep -c '\.jpg$')
[ "$n" = 6 ] && [ -s "$T_TMP/a/annotations.json" ] && t_ok synth_writes_files || t_fail synth_writes_files "$n images"
if [ -n "$(find "$T_TMP/a" -name "*.tmp")" ]; then t_fail synth_no_temp_left "temporary files left"; else t_ok synth_no_temp_left; fi
# (a and b also differ in thread count: the output must not depend on it)
diff -r "$T_TMP/a" "$T_TMP/b" >/dev/null && t_ok synth_same_seed_same_bytes || t_fail synth_same_seed_same_bytes "outputs differ"
if cmp -s "$T_TMP/a/annotations.json" "$T_TMP/c/annotations.json" ||
   cmp -s "$T_TMP/a/images/000000000001.jpg" "$T_TMP/c/images/000000000001.jpg"; then
  t_fail synth_other_seed_differs "seed 8 gave the same output as seed 7"
else t_ok synth_other_seed_differs; fi
# A larger run starts with the same images: image i depends only on (seed, i).
"$SSPOSE" synth --out "$T_TMP/d" --images 8 --seed 7 >/dev/null &&
cmp -s "$T_TMP/a/images/000000000006.jpg" "$T_TMP/d/images/000000000006.jpg" &&
  t_ok synth_image_depends_on_index_only || t_fail synth_image_depends_on_index_only "image 6 changed with --images"
t_end
