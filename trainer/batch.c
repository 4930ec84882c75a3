#include "trainer/batch.h"

#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/check.h"
#include "core/cuda_backend.h"

struct trainer_batches {
    dataio_loader *L;
    model_net *net;
    core_backend *be;
    /* The batch returned last: on the CPU the targets are views of it; on a GPU
     * its pinned buffers feed asynchronous uploads. Released at the next call. */
    const dataio_batch *held;
    float *dev[5];            /* other backends: device copies of heatmap, paf, offset, attention, mask */
    size_t dev_n[5];
    int size, stride;
};

static void *pinned_alloc(size_t bytes, void *ctx)
{
    (void)ctx;
    return core_cuda_host_alloc(bytes);
}

static void pinned_free(void *p, void *ctx)
{
    (void)ctx;
    core_cuda_host_free(p);
}

trainer_batches *trainer_batches_open(const core_config *cfg, model_net *net, int rank, int world,
                                      const dataio_loader_state *resume)
{
    trainer_batches *b = core_calloc(1, sizeof *b);
    b->net = net;
    b->be = model_backend(net);
    b->size = cfg->model.input;
    b->stride = cfg->model.stride;
    dataio_loader_opts o;
    memset(&o, 0, sizeof o);
    o.pattern = cfg->data.train;
    o.rank = rank;
    o.world = world;
    o.batch = cfg->train.batch;
    o.seed = (uint64_t)cfg->train.seed;
    o.flip = cfg->data.flip;
    o.threads = cfg->data.threads;
    o.prefetch = cfg->data.prefetch;
    o.input_norm = cfg->model.input_norm;
    o.skip_corrupt = cfg->data.skip_corrupt;
    o.mix_shards = cfg->data.mix_shards;
    if (b->be->dev == CORE_DEV_CUDA) {
        /* Pinned batch buffers: the uploads below return at once and run on the
         * stream ahead of the forward pass while the workers decode the next batches. */
        o.alloc = pinned_alloc;
        o.free = pinned_free;
    }
    b->L = dataio_loader_open(&o, resume);
    return b;
}

void trainer_batches_close(trainer_batches *b)
{
    if (!b) return;
    if (b->held) {
        b->be->sync(b->be); /* pending uploads may still read it */
        dataio_loader_release(b->L, b->held);
    }
    for (int i = 0; i < 5; i++)
        if (b->dev[i]) b->be->free(b->be, b->dev[i]);
    dataio_loader_close(b->L);
    free(b);
}

long trainer_batches_dataset_size(const trainer_batches *b) { return (long)dataio_loader_total(b->L); }

long trainer_batches_corrupt(const trainer_batches *b)
{
    dataio_loader_stats st;
    dataio_loader_get_stats(b->L, &st);
    return (long)st.corrupt;
}

void trainer_batches_state(const trainer_batches *b, dataio_loader_state *st) { dataio_loader_get_state(b->L, st); }

static core_tensor target(trainer_batches *b, int slot, float *host, int n, int c, int h, int w)
{
    if (b->be->dev == CORE_DEV_CPU) return core_tensor_view(host, n, c, h, w, CORE_DEV_CPU);
    size_t count = (size_t)n * c * h * w;
    if (b->dev_n[slot] < count) {
        if (b->dev[slot]) b->be->free(b->be, b->dev[slot]);
        b->dev[slot] = b->be->alloc(b->be, count);
        b->dev_n[slot] = count;
    }
    b->be->upload(b->be, b->dev[slot], host, count);
    return core_tensor_view(b->dev[slot], n, c, h, w, b->be->dev);
}

long trainer_batches_next(trainer_batches *b, loss_targets *t)
{
    if (b->held) {
        /* Waits for the copies from the held batch only (the copy stream), not
         * for the compute stream: its pinned buffers may then go back to the loader. */
        core_cuda_upload_wait(b->be);
        dataio_loader_release(b->L, b->held);
        b->held = NULL;
    }
    const dataio_batch *x = dataio_loader_next(b->L);
    CHECK(x->size == b->size, "the shards of data.train hold %dx%d crops but model.input = %d", x->size, x->size, b->size);
    model_set_input_shape(b->net, x->n, x->size, x->size);
    int h, w;
    model_output_hw(b->net, &h, &w);
    CHECK(x->grid_h == h && x->grid_w == w,
          "the shards' target grid is %dx%d but the network outputs %dx%d (model.stride = %d): the shards were made "
          "with another stride", x->grid_h, x->grid_w, h, w, b->stride);
    b->be->upload(b->be, model_input(b->net), x->image, (size_t)x->n * 3 * x->size * x->size);
    t->heat = target(b, 0, x->heatmap, x->n, MODEL_NUM_HEAT, h, w);
    t->paf = target(b, 1, x->paf, x->n, MODEL_NUM_PAF, h, w);
    t->offset = target(b, 2, x->offset, x->n, MODEL_NUM_OFFSET, h, w);
    t->attention = target(b, 3, x->attention, x->n, MODEL_NUM_HEAT, h, w);
    t->mask = target(b, 4, x->mask, x->n, 1, h, w);
    b->held = x;
    return (long)x->epoch;
}
