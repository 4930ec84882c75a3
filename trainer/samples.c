#include "trainer/samples.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void trainer_samples_load(dataio_shard *sh, long index, int count, core_backend *be, int grid_h, int grid_w,
                          core_input_norm norm, float *input_dev, trainer_samples *out)
{
    const dataio_shard_attrs *a = dataio_shard_info(sh);
    const int S = a->input_size;
    const size_t hw = (size_t)grid_h * grid_w, img = (size_t)3 * S * S;
    float *host_img = core_malloc(img * sizeof(float));
    float *host[DATAIO_NDS];
    out->be = be;
    for (int d = 0; d < DATAIO_NDS; d++) {
        size_t n = (size_t)count * dataio_ds_channels[d] * hw;
        host[d] = core_malloc(n * sizeof(float));
        out->dev[d] = be->alloc(be, n);
    }
    dataio_sample s;
    dataio_shard_sample_init(sh, &s);
    for (int i = 0; i < count; i++) {
        dataio_shard_read(sh, index + i, &s);
        dataio_sample_input(&s, norm, host_img);
        be->upload(be, input_dev + (size_t)i * img, host_img, img);
        const float *src[DATAIO_NDS] = {s.mask, s.heatmap, s.paf, s.offset, s.attention};
        for (int d = 0; d < DATAIO_NDS; d++) {
            size_t n = dataio_ds_channels[d] * hw;
            memcpy(host[d] + (size_t)i * n, src[d], n * sizeof(float));
        }
    }
    dataio_sample_free(&s);
    for (int d = 0; d < DATAIO_NDS; d++) {
        be->upload(be, out->dev[d], host[d], (size_t)count * dataio_ds_channels[d] * hw);
        free(host[d]);
    }
    free(host_img);
    core_tensor *dst[DATAIO_NDS] = {&out->t.mask, &out->t.heat, &out->t.paf, &out->t.offset, &out->t.attention};
    for (int d = 0; d < DATAIO_NDS; d++)
        *dst[d] = core_tensor_view(out->dev[d], count, dataio_ds_channels[d], grid_h, grid_w, be->dev);
}

void trainer_samples_free(trainer_samples *s)
{
    for (int d = 0; d < DATAIO_NDS; d++)
        if (s->dev[d]) s->be->free(s->be, s->dev[d]);
    memset(s->dev, 0, sizeof s->dev);
}
