/* Test fixture for the loss tests: a batch of network outputs, their gradient
 * buffers and targets in CPU memory, sized from a config. */
#ifndef SSPOSE_TESTS_TEST_LOSS_UTIL_H
#define SSPOSE_TESTS_TEST_LOSS_UTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/config.h"
#include "loss/loss.h"

static const int tl_out_c[MODEL_NUM_OUT] = {MODEL_NUM_PAF, MODEL_NUM_HEAT, MODEL_NUM_OFFSET, MODEL_NUM_HEAT,
                                            MODEL_NUM_PAF};

typedef struct {
    int n, h, w, stages;
    loss_stage_io io[CORE_MAX_STAGES];
    loss_targets t;
} tl_batch;

static core_tensor tl_alloc(int n, int c, int h, int w)
{
    float *p = core_calloc((size_t)n * c * h * w, sizeof(float));
    return core_tensor_view(p, n, c, h, w, CORE_DEV_CPU);
}

static int tl_has_out(const core_config *cfg, model_out o)
{
    switch (o) {
    case MODEL_OUT_OFFSET: return cfg->model.offsets;
    case MODEL_OUT_P2H: return cfg->model.ss == CORE_SS_P2H || cfg->model.ss == CORE_SS_BOTH;
    case MODEL_OUT_H2P: return cfg->model.ss == CORE_SS_H2P || cfg->model.ss == CORE_SS_BOTH;
    default: return 1;
    }
}

static void tl_batch_init(tl_batch *b, const core_config *cfg, int n, int h, int w)
{
    memset(b, 0, sizeof *b);
    b->n = n, b->h = h, b->w = w, b->stages = cfg->model.stages;
    for (int s = 0; s < b->stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++)
            if (tl_has_out(cfg, o)) {
                b->io[s].out[o] = tl_alloc(n, tl_out_c[o], h, w);
                b->io[s].grad[o] = tl_alloc(n, tl_out_c[o], h, w);
            }
    b->t.heat = tl_alloc(n, MODEL_NUM_HEAT, h, w);
    b->t.paf = tl_alloc(n, MODEL_NUM_PAF, h, w);
    b->t.offset = tl_alloc(n, MODEL_NUM_OFFSET, h, w);
    b->t.attention = tl_alloc(n, 19, h, w);
    b->t.mask = tl_alloc(n, 1, h, w);
    for (size_t i = 0; i < core_tensor_numel(&b->t.mask); i++) b->t.mask.data[i] = 1;
}

static void tl_batch_free(tl_batch *b)
{
    for (int s = 0; s < b->stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            free(b->io[s].out[o].data);
            free(b->io[s].grad[o].data);
        }
    free(b->t.heat.data), free(b->t.paf.data), free(b->t.offset.data), free(b->t.attention.data),
        free(b->t.mask.data);
}

static void tl_zero_grads(tl_batch *b)
{
    for (int s = 0; s < b->stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++)
            if (b->io[s].grad[o].data) memset(b->io[s].grad[o].data, 0, core_tensor_numel(&b->io[s].grad[o]) * 4);
}

/* element (n, c, i, j) of a tensor */
static inline float *tl_at(core_tensor *x, int n, int c, int i, int j)
{
    return x->data + (((size_t)n * x->c + c) * x->h + i) * x->w + j;
}

/* splitmix64-based uniform in [0,1): reproducible across platforms */
static uint64_t tl_rng_state = 0x1234567ull;
static double tl_rand(void)
{
    uint64_t z = (tl_rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}
static double tl_uniform(double lo, double hi) { return lo + (hi - lo) * tl_rand(); }

/* Random targets with structure: sparse heatmaps crossing pdd_threshold and the
 * offset gate, PAF vectors present on some cells only, masks with zeros, and
 * predictions kept away from ReLU's kink so finite differences are smooth. */
static void tl_fill_random(tl_batch *b)
{
    loss_targets *t = &b->t;
    for (size_t i = 0; i < core_tensor_numel(&t->heat); i++) {
        double r = tl_rand();
        t->heat.data[i] = r < 0.5 ? 0.0f : (float)tl_uniform(0.0, 1.0);
    }
    size_t cells = (size_t)b->h * b->w;
    for (int n = 0; n < b->n; n++)
        for (int l = 0; l < 19; l++)
            for (size_t i = 0; i < cells; i++) {
                int on = tl_rand() < 0.4;
                t->paf.data[((size_t)n * 38 + 2 * l) * cells + i] = on ? (float)tl_uniform(-1, 1) : 0.0f;
                t->paf.data[((size_t)n * 38 + 2 * l + 1) * cells + i] = on ? (float)tl_uniform(-1, 1) : 0.0f;
            }
    for (size_t i = 0; i < core_tensor_numel(&t->offset); i++) t->offset.data[i] = (float)tl_uniform(-0.5, 0.5);
    for (size_t i = 0; i < core_tensor_numel(&t->attention); i++) t->attention.data[i] = (float)tl_rand();
    for (size_t i = 0; i < core_tensor_numel(&t->mask); i++) {
        double r = tl_rand();
        t->mask.data[i] = r < 0.2 ? 0.0f : r < 0.4 ? (float)tl_rand() : 1.0f;
    }
    for (int s = 0; s < b->stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor *x = &b->io[s].out[o];
            if (!x->data) continue;
            for (size_t i = 0; i < core_tensor_numel(x); i++) {
                double v = tl_uniform(-0.5, 1.2);
                if (fabs(v) < 0.05) v = v < 0 ? -0.05 : 0.05;
                x->data[i] = (float)v;
            }
        }
}

static void tl_config(core_config *cfg, const char **sets, int nsets)
{
    core_config_defaults(cfg);
    for (int i = 0; i < nsets; i++) core_config_set(cfg, sets[i]);
    core_config_resolve(cfg);
}

#endif
