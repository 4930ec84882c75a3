/* Test tool: mask_miss of every image of a COCO JSON, for comparison with pycocotools.
 *   tool_data_mask ANN.json OUTDIR   writes OUTDIR/<image_id>.bin (h*w bytes, row-major, 1 = keep, 0 = masked)
 * and prints "skips <n>" (annotations or segmentations refused). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "dataio/augment.h"
#include "dataio/coco.h"

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: tool_data_mask ANN.json OUTDIR");
    dataio_skips skips = {{0}, 100};
    dataio_coco c;
    dataio_coco_load(argv[1], &c, &skips);
    for (int i = 0; i < c.nimages; i++) {
        const dataio_coco_image *ci = &c.images[i];
        size_t n = (size_t)ci->width * ci->height;
        uint8_t *m = dataio_mask_miss(ci);
        if (!m) {
            m = malloc(n);
            memset(m, 1, n);
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%lld.bin", argv[2], (long long)ci->id);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(m, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
        free(m);
    }
    long total = 0;
    for (int r = 0; r < DATAIO_SKIP_N; r++) total += skips.count[r];
    printf("skips %ld\n", total);
    dataio_coco_free(&c);
    return 0;
}
