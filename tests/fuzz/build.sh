#!/usr/bin/env bash
# Builds the libFuzzer drivers with clang (ASan + UBSan + libFuzzer) into build/fuzz/.
#   bash tests/fuzz/build.sh
#   build/fuzz/fuzz_coco  tests/fuzz/corpus/json  -max_total_time=60
#   build/fuzz/fuzz_image tests/fuzz/corpus/image -max_total_time=60 -max_len=65536
#   build/fuzz/fuzz_ini tests/fuzz/corpus/ini, build/fuzz/fuzz_results tests/fuzz/corpus/results
#   bash bench/fuzz.sh SECONDS   runs every driver for that long (docs/reliability.md)
# Crashes found go into the corpus (after fixing) so tests/test_data_fuzz_corpus.c replays them.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLANG=${CLANG:-clang}
OUT=build/fuzz
mkdir -p $OUT/obj
FLAGS="-std=c11 -O1 -g -D_GNU_SOURCE -I. -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
       $(pkg-config --cflags hdf5-serial libcjson cairo libjpeg libpng zlib)"
SRC="core/check.c core/skeleton.c core/config.c dataio/coco.c dataio/mask.c dataio/image.c dataio/augment.c dataio/targets.c
     dataio/sample.c eval/coco_json.c eval/cocoeval.c"
objs=""
for s in $SRC; do
  o=$OUT/obj/$(echo $s | tr / _).o
  $CLANG $FLAGS -c $s -o $o
  objs="$objs $o"
done
LIBS="$(pkg-config --libs libcjson cairo libjpeg libpng zlib) -lm -lpthread"
for d in fuzz_coco fuzz_image fuzz_ini fuzz_results; do
  $CLANG $FLAGS -fsanitize=fuzzer tests/fuzz/$d.c $objs $LIBS -o $OUT/$d
done
echo "built $OUT/fuzz_coco $OUT/fuzz_image $OUT/fuzz_ini $OUT/fuzz_results"
