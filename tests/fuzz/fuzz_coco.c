/* libFuzzer driver: COCO JSON parsing, segmentations and mask painting.
 * Build and run (docs/data.md, "Fuzzing"):
 *   tests/fuzz/build.sh && build/fuzz/fuzz_coco tests/fuzz/corpus/json -max_total_time=60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/check.h"
#include "dataio/augment.h"
#include "dataio/coco.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) core_set_quiet(1), once = 1;
    dataio_skips sk = {{0}, 1};
    dataio_coco c;
    char err[256];
    if (dataio_coco_parse((const char *)data, size, &c, &sk, err, sizeof err) == 0) {
        int idx[64];
        for (int i = 0; i < c.nimages; i++) {
            const dataio_coco_image *ci = &c.images[i];
            if ((size_t)ci->width * ci->height <= 1 << 20) free(dataio_mask_miss(ci)); /* keep each run small */
            if (ci->nanns <= 64) dataio_coco_main_persons(ci, idx);
        }
        dataio_coco_free(&c);
    }
    return 0;
}
