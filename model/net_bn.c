/* Batch normalisation after every hidden convolution (model.norm = batch):
 * conv -> BN -> ReLU, the BN row of the op table.
 *
 * Everything runs on the backend, nothing comes to the host: the per-channel
 * sums and the affine maps are kernels, and so are the statistics, a few
 * numbers per channel in double (core/bn_math.h, be->bn_step). In training
 * mode they are the batch's, summed over every rank through the model's sum
 * hook on the device buffer (synchronised BN: "R ranks x b" normalises exactly
 * like "1 rank x R*b"); in eval mode they are the running estimates, which
 * training updates as torch.nn.BatchNorm2d does (momentum, unbiased variance).
 *
 * Training forward, per channel over the M cells of the global batch:
 *   mean = S1/M, var = S2/M - mean^2 (S1 = sum x, S2 = sum x^2, double),
 *   y = relu(gamma*(x - mean)*invstd + beta), invstd = 1/sqrt(var + eps).
 * Backward, with global T1 = sum dy, T2 = sum dy*xhat:
 *   dgamma += local sum dy*xhat, dbeta += local sum dy (the gradient all-reduce sums them),
 *   dx += gamma*invstd*(dy - T1/M - xhat*T2/M).
 * Sums over all cells in double keep the one-pass variance exact to ~1e-16 of
 * mean^2/var, far below float rounding. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "model/net_impl.h"

int net_bn_define(model_net *m, const char *name, int c, model_group g)
{
    CHECK(m->nbns < NET_MAX_CONVS, "network too large (batch norms)");
    char nm[48];
    snprintf(nm, sizeof nm, "%s/bn", name);
    int shape[1] = {c};
    net_bn_def *d = &m->bns[m->nbns];
    d->c = c;
    d->gparam = m->nparams;
    net_add_param(m, nm, "weight", 1, shape, g, 1, 0, MODEL_PARAM_BN_WEIGHT);
    net_add_param(m, nm, "bias", 1, shape, g, 1, 0, MODEL_PARAM_BN_BIAS);
    d->rbuf = m->nbufs;
    net_add_buf(m, nm, "running_mean", c, MODEL_BUF_RUNNING_MEAN);
    net_add_buf(m, nm, "running_var", c, MODEL_BUF_RUNNING_VAR);
    if (c > m->bn_maxc) m->bn_maxc = c;
    return m->nbns++;
}

int net_bn_apply(model_net *m, int def, int in, int relu)
{
    const net_bn_def *d = &m->bns[def];
    CHECK(m->blobs[in].c == d->c, "internal: batch norm input has %d channels, expects %d", m->blobs[in].c, d->c);
    if (m->nbn_uses == m->cap_bn_uses) {
        m->cap_bn_uses = m->cap_bn_uses ? 2 * m->cap_bn_uses : 32;
        m->bn_uses = core_realloc(m->bn_uses, m->cap_bn_uses * sizeof *m->bn_uses);
    }
    net_bn_use *u = &m->bn_uses[m->nbn_uses];
    memset(u, 0, sizeof *u);
    u->def = def;
    u->relu = relu;
    int out = net_add_blob(m, d->c, m->blobs[in].div);
    net_add_op(m, (net_op){.kind = NET_OP_BN, .idx = m->nbn_uses, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    m->nbn_uses++;
    return out;
}

void net_bn_finish(model_net *m)
{
    if (!m->nbn_uses) return;
    size_t off = 0, stats = 0;
    for (int i = 0; i < m->nbn_uses; i++) {
        int c = m->bns[m->bn_uses[i].def].c;
        m->bn_uses[i].scratch = off;
        off += ((size_t)6 * c + 63) & ~(size_t)63;
        m->bn_uses[i].stats = stats;
        stats += (size_t)2 * c + 1;
    }
    m->bn_dev_floats = off;
    m->bn_dev = m->be->alloc(m->be, off);
    /* backend memory counts floats: two per double */
    m->bn_stats = (double *)m->be->alloc(m->be, 2 * stats);
    m->bn_sums = (double *)m->be->alloc(m->be, 2 * ((size_t)2 * m->bn_maxc + 1));
}

void net_bn_destroy(model_net *m)
{
    free(m->bn_uses);
    if (m->bn_dev) m->be->free(m->be, m->bn_dev);
    if (m->bn_stats) m->be->free(m->be, (float *)m->bn_stats);
    if (m->bn_sums) m->be->free(m->be, (float *)m->bn_sums);
}

/* The statistics' arguments of one use: its layer's parameters and buffers in
 * the flat buffers, its statistics, the shared sums. */
static core_bn_args bn_args(model_net *m, const net_bn_use *u, const net_bn_def *d)
{
    const model_param *gp = &m->params[d->gparam], *rb = &m->bufs[d->rbuf];
    core_bn_args a = {
        .c = d->c, .train = m->train, .eps = m->cfg.model.bn_eps, .momentum = m->cfg.model.bn_momentum,
        .sums = m->bn_sums, .gamma = m->w + gp->offset, .beta = m->w + gp[1].offset,
        .run_mean = m->w + rb->offset, .run_var = m->w + rb[1].offset, .stats = m->bn_stats + u->stats,
        .dgamma = m->g + gp->offset, .dbeta = m->g + gp[1].offset,
    };
    return a;
}

static void bn_forward(model_net *m, const net_op *o)
{
    net_bn_use *u = &m->bn_uses[o->idx];
    const net_bn_def *d = &m->bns[u->def];
    int c = d->c, hw = net_blob_hw(m, o->in[0]);
    const float *x = net_act(m, o->in[0]);
    float *ss = m->bn_dev + u->scratch; /* scale | shift */
    core_bn_args a = bn_args(m, u, d);
    a.out = ss;
    if (m->train) {
        /* batch statistics over all ranks: sums and cell count, summed by the hook */
        m->be->chan_sums(m->be, m->n, c, hw, x, x, m->bn_sums);
        a.count = (double)m->n * hw;
        m->be->bn_step(m->be, CORE_BN_COUNT, &a);
        if (m->sum_fn) m->sum_fn(m->sum_ctx, m->bn_sums, 2 * c + 1);
    }
    m->be->bn_step(m->be, CORE_BN_FORWARD, &a);
    m->be->chan_affine(m->be, m->n, c, hw, x, ss, ss + c, u->relu, net_act(m, o->out[0]));
}

static void bn_backward(model_net *m, const net_op *o)
{
    net_bn_use *u = &m->bn_uses[o->idx];
    const net_bn_def *d = &m->bns[u->def];
    int c = d->c, hw = net_blob_hw(m, o->in[0]);
    const float *x = net_act(m, o->in[0]);
    float *dy = net_dact(m, o->out[0]);
    if (u->relu) m->be->relu_mask(m->be, net_blob_numel(m, o->out[0]), net_act(m, o->out[0]), dy);
    m->be->chan_sums(m->be, m->n, c, hw, dy, x, m->bn_sums); /* sum dy [0, c), sum dy*x [c, 2c) */
    core_bn_args a = bn_args(m, u, d);
    /* this rank's parameter gradients: the gradient all-reduce combines them */
    m->be->bn_step(m->be, CORE_BN_PARAM_GRADS, &a);
    /* dx through the statistics, which depend on every cell of the global batch */
    if (m->train && m->sum_fn) m->sum_fn(m->sum_ctx, m->bn_sums, 2 * c);
    float *coef = m->bn_dev + u->scratch + 2 * (size_t)c; /* A | B | M | C */
    a.out = coef;
    m->be->bn_step(m->be, CORE_BN_COEF, &a);
    m->be->chan_affine_grad(m->be, m->n, c, hw, dy, x, coef, net_dact(m, o->in[0]));
}

static int bn_params(const model_net *m, const net_op *o, int *out)
{
    out[0] = m->bns[m->bn_uses[o->idx].def].gparam;
    out[1] = out[0] + 1;
    return 2;
}

static void bn_kink(model_net *m, const net_op *o, uint64_t *h)
{
    if (m->bn_uses[o->idx].relu) net_kink_relu_output(m, o, h);
}

const net_op_class net_op_bn = {"bn", bn_forward, bn_backward, bn_params, net_grad_final_own_step, bn_kink};
