/* Test tool: our shard reader from the command line.
 *   tool_data_shard SHARD                 prints "count N persons P size S stride F"
 *   tool_data_shard SHARD I OUT [flip]    writes sample I as float32: rgb [S,S,3], mask, heatmap,
 *                                         paf, offset, attention, keypoints [P,18,3], then meta
 *                                         (image_id, person, scale, cx, cy, rotation, flipped) as 7 float64;
 *                                         "flip" mirrors it with dataio_flip_sample first. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "dataio/shard.h"

static void put(FILE *f, const float *x, size_t n) { CHECK(fwrite(x, sizeof(float), n, f) == n, "write failed"); }

int main(int argc, char **argv)
{
    CHECK(argc == 2 || argc == 4 || argc == 5, "usage: tool_data_shard SHARD [I OUT [flip]]");
    dataio_shard *r = dataio_shard_open(argv[1]);
    const dataio_shard_attrs *a = dataio_shard_info(r);
    if (argc == 2) {
        printf("count %ld persons %d size %d stride %d\n", dataio_shard_count(r), a->max_persons, a->input_size,
               a->stride);
        dataio_shard_close(r);
        return 0;
    }
    long i = strtol(argv[2], NULL, 10);
    dataio_sample s;
    dataio_shard_sample_init(r, &s);
    dataio_shard_read(r, i, &s);
    if (argc == 5 && !strcmp(argv[4], "flip")) dataio_flip_sample(&s);
    FILE *f = fopen(argv[3], "wb");
    CHECK(f, "cannot write %s", argv[3]);
    size_t px = (size_t)s.size * s.size * 3, hw = (size_t)s.grid_h * s.grid_w;
    float *rgb = malloc(sizeof(float) * px);
    for (size_t k = 0; k < px; k++) rgb[k] = s.rgb[k];
    put(f, rgb, px);
    put(f, s.mask, hw);
    put(f, s.heatmap, 19 * hw);
    put(f, s.paf, 38 * hw);
    put(f, s.offset, 36 * hw);
    put(f, s.attention, 19 * hw);
    put(f, s.keypoints, (size_t)s.max_persons * 54);
    double m[7] = {(double)s.meta.image_id, s.meta.person, s.meta.scale, s.meta.center_x, s.meta.center_y,
                   s.meta.rotation, s.meta.flipped};
    CHECK(fwrite(m, sizeof m, 1, f) == 1 && fclose(f) == 0, "write failed");
    free(rgb);
    dataio_sample_free(&s);
    dataio_shard_close(r);
    return 0;
}
