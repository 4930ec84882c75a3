/* The trained network as an eval_forward_fn (eval/predict.h). Kept apart from
 * predict.c so that the map pipeline links without the model. */
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/cuda_backend.h"
#include "eval/predict.h"
#include "model/checkpoint.h"
#include "model/net.h"

struct eval_model {
    core_config cfg;
    core_backend *be;
    model_net *net;
    float *heat, *paf, *offset; /* host copies of the last stage's maps */
    size_t cap;                 /* floats per map plane set, for reallocation */
    int borrowed;               /* net and backend belong to the caller (eval_model_wrap) */
};

eval_model *eval_model_load(const char *checkpoint, const char *const *sets, int nsets, const char *device)
{
    char *text = model_ckpt_read_config(checkpoint);
    eval_model *m = core_calloc(1, sizeof *m);
    core_config_defaults(&m->cfg);
    core_config_parse_text(&m->cfg, text, checkpoint);
    free(text);
    for (int i = 0; i < nsets; i++) core_config_set(&m->cfg, sets[i]);
    core_config_resolve(&m->cfg);
    if (!device || !*device) device = m->cfg.comm.device;
    int cuda;
    if (!strcmp(device, "auto")) cuda = core_cuda_device_count() > 0;
    else if (!strcmp(device, "cuda")) cuda = 1;
    else if (!strcmp(device, "cpu")) cuda = 0;
    else CORE_DIE("unknown device '%s' (auto, cpu or cuda)", device);
    m->be = cuda ? core_cuda_backend_create(0) : core_cpu_backend_create(0);
    core_cuda_set_math(m->be, m->cfg.comm.tf32, 1);
    m->net = model_create(&m->cfg, m->be);
    char err[512];
    if (model_ckpt_try_load(checkpoint, m->net, NULL, NULL, NULL, NULL, err, sizeof err) != 0)
        CORE_DIE("checkpoint %s: %s", checkpoint, err);
    /* inference normalises with the running statistics, never with one image's own */
    model_set_train(m->net, 0);
    return m;
}

eval_model *eval_model_wrap(model_net *net, const core_config *cfg)
{
    eval_model *m = core_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = model_backend(net);
    m->net = net;
    m->borrowed = 1;
    return m;
}

const core_config *eval_model_config(const eval_model *m) { return &m->cfg; }

void eval_model_free(eval_model *m)
{
    if (!m) return;
    if (!m->borrowed) {
        model_destroy(m->net);
        core_backend_destroy(m->be);
    }
    free(m->heat);
    free(m->paf);
    free(m->offset);
    free(m);
}

static void fetch(eval_model *m, model_out which, int channels, float *host)
{
    core_tensor t = model_output(m->net, m->cfg.model.stages - 1, which);
    CHECK(t.data && t.n == 1 && t.c == channels, "network output %d has %d channels, expected %d", (int)which, t.c,
          channels);
    m->be->download(m->be, host, t.data, core_tensor_numel(&t));
}

void eval_model_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out)
{
    eval_model *m = ctx;
    model_set_input_shape(m->net, 1, H, W);
    m->be->upload(m->be, model_input(m->net), input, (size_t)3 * H * W);
    model_forward(m->net, 0);
    int gh, gw;
    model_output_hw(m->net, &gh, &gw);
    const size_t plane = (size_t)gh * gw;
    if (plane > m->cap) {
        free(m->heat);
        free(m->paf);
        free(m->offset);
        m->heat = core_malloc(plane * MODEL_NUM_HEAT * sizeof(float));
        m->paf = core_malloc(plane * MODEL_NUM_PAF * sizeof(float));
        m->offset = m->cfg.model.offsets ? core_malloc(plane * MODEL_NUM_OFFSET * sizeof(float)) : NULL;
        m->cap = plane;
    }
    fetch(m, MODEL_OUT_HEAT, MODEL_NUM_HEAT, m->heat);
    fetch(m, MODEL_OUT_PAF, MODEL_NUM_PAF, m->paf);
    if (m->cfg.model.offsets) fetch(m, MODEL_OUT_OFFSET, MODEL_NUM_OFFSET, m->offset);
    eval_grid g = {gh, gw, m->cfg.model.stride, m->heat, m->paf, m->cfg.model.offsets ? m->offset : NULL};
    *out = g;
}
