#!/usr/bin/env bash
# End to end: sspose synth -> sspose data -> the loader, on 1 and 2 ranks.
. tests/lib.sh
TOOL=${SSPOSE_BUILD:-build}/tests/tool_loader
"$SSPOSE" synth --out "$T_TMP/syn" --images 10 --seed 3 >/dev/null || { t_fail synth_to_shards "synth failed"; t_end; }
if ! "$SSPOSE" data --ann "$T_TMP/syn/annotations.json" --images "$T_TMP/syn/images" --out "$T_TMP/shard" \
     --samples-per-shard 7 --threads 2 --set model.input=184 >"$T_TMP/data.log" 2>&1; then
  t_fail synth_to_shards "sspose data failed on synth output: $(tail -n 2 "$T_TMP/data.log" | tr '\n' '|')"; t_end
fi
n=$(ls "$T_TMP"/shard-*.h5 | wc -l)
[ "$n" -ge 2 ] && t_ok synth_to_shards || t_fail synth_to_shards "expected several shards, got $n"

"$TOOL" --glob "$T_TMP/shard-*.h5" --batch 4 --steps 6 --seed 9 --threads 2 >"$T_TMP/w1" 2>"$T_TMP/w1.err" &&
"$TOOL" --glob "$T_TMP/shard-*.h5" --world 2 --rank 0 --batch 2 --steps 6 --seed 9 --threads 1 >"$T_TMP/r0" 2>/dev/null &&
"$TOOL" --glob "$T_TMP/shard-*.h5" --world 2 --rank 1 --batch 2 --steps 6 --seed 9 --threads 0 >"$T_TMP/r1" 2>/dev/null ||
  { t_fail loader_on_synth_shards "tool_loader failed: $(cat "$T_TMP/w1.err")"; t_end; }
# the two ranks' shares, side by side, are the one-rank global batch
paste -d' ' <(cut -d' ' -f5,6 "$T_TMP/r0" | head -6) <(cut -d' ' -f5,6 "$T_TMP/r1" | head -6) >"$T_TMP/union"
if diff <(cut -d' ' -f5- "$T_TMP/w1" | head -6) "$T_TMP/union" >/dev/null; then t_ok loader_on_synth_shards
else t_fail loader_on_synth_shards "2-rank shares differ from the 1-rank batch"; fi
grep -q "per core" "$T_TMP/w1.err" && t_ok loader_reports_rate || t_fail loader_reports_rate "no samples/s line"
t_end
