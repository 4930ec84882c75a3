/* Batch normalisation after every hidden convolution (model.norm = batch):
 * conv -> BN -> ReLU, the BN row of the op table.
 *
 * The heavy passes (per-channel sums, the affine maps) are backend kernels;
 * the statistics are a few numbers per channel, computed here in double on the
 * host. In training mode they are the batch's, summed over every rank through
 * the model's sum hook (synchronised BN: "R ranks x b" normalises exactly like
 * "1 rank x R*b"); in eval mode they are the running estimates, which training
 * updates as torch.nn.BatchNorm2d does (momentum, unbiased variance).
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
    u->mean = core_calloc((size_t)d->c, sizeof(double));
    u->invstd = core_calloc((size_t)d->c, sizeof(double));
    int out = net_add_blob(m, d->c, m->blobs[in].div);
    net_add_op(m, (net_op){.kind = NET_OP_BN, .idx = m->nbn_uses, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    m->nbn_uses++;
    return out;
}

void net_bn_finish(model_net *m)
{
    if (!m->nbn_uses) return;
    size_t off = 0;
    for (int i = 0; i < m->nbn_uses; i++) {
        m->bn_uses[i].scratch = off;
        off += ((size_t)8 * m->bns[m->bn_uses[i].def].c + 63) & ~(size_t)63;
    }
    m->bn_dev_floats = off;
    m->bn_dev = m->be->alloc(m->be, off);
    m->bn_host = core_calloc((size_t)8 * m->bn_maxc + 1, sizeof(double));
    m->bn_hostf = core_calloc((size_t)8 * m->bn_maxc, sizeof(float));
}

void net_bn_destroy(model_net *m)
{
    for (int i = 0; i < m->nbn_uses; i++) {
        free(m->bn_uses[i].mean);
        free(m->bn_uses[i].invstd);
    }
    free(m->bn_uses);
    if (m->bn_dev) m->be->free(m->be, m->bn_dev);
    free(m->bn_host);
    free(m->bn_hostf);
}

/* gamma and beta (host floats, c each) into g[0..2c) */
static void download_affine(model_net *m, const net_bn_def *d, float *g)
{
    const model_param *gp = &m->params[d->gparam];
    m->be->download(m->be, g, m->w + gp->offset, (size_t)d->c);
    m->be->download(m->be, g + d->c, m->w + gp[1].offset, (size_t)d->c);
}

/* Batch statistics over all ranks, and the running estimates' update. */
static void batch_stats(model_net *m, net_bn_use *u, const net_bn_def *d, const float *x, int hw)
{
    int c = d->c;
    double *s = m->bn_host;
    m->be->chan_sums(m->be, m->n, c, hw, x, x, s);
    s[2 * c] = (double)m->n * hw;
    if (m->sum_fn) m->sum_fn(m->sum_ctx, s, 2 * c + 1);
    double M = s[2 * c], eps = m->cfg.model.bn_eps, mom = m->cfg.model.bn_momentum;
    /* torch's running variance is the unbiased estimate */
    double unbias = M > 1 ? M / (M - 1) : 1.0;
    float *run = m->bn_hostf; /* running mean [0, c), running var [c, 2c) */
    const model_param *rb = &m->bufs[d->rbuf];
    m->be->download(m->be, run, m->w + rb->offset, (size_t)c);
    m->be->download(m->be, run + c, m->w + rb[1].offset, (size_t)c);
    for (int ch = 0; ch < c; ch++) {
        double mean = s[ch] / M, var = s[c + ch] / M - mean * mean;
        if (var < 0) var = 0;
        u->mean[ch] = mean;
        u->invstd[ch] = 1.0 / sqrt(var + eps);
        run[ch] = (float)((1 - mom) * run[ch] + mom * mean);
        run[c + ch] = (float)((1 - mom) * run[c + ch] + mom * var * unbias);
    }
    m->be->upload(m->be, m->w + rb->offset, run, (size_t)c);
    m->be->upload(m->be, m->w + rb[1].offset, run + c, (size_t)c);
    u->count = M;
}

static void running_stats(model_net *m, net_bn_use *u, const net_bn_def *d)
{
    int c = d->c;
    float *run = m->bn_hostf;
    const model_param *rb = &m->bufs[d->rbuf];
    m->be->download(m->be, run, m->w + rb->offset, (size_t)c);
    m->be->download(m->be, run + c, m->w + rb[1].offset, (size_t)c);
    for (int ch = 0; ch < c; ch++) {
        u->mean[ch] = run[ch];
        u->invstd[ch] = 1.0 / sqrt((double)run[c + ch] + m->cfg.model.bn_eps);
    }
    u->count = 0;
}

static void bn_forward(model_net *m, const net_op *o)
{
    net_bn_use *u = &m->bn_uses[o->idx];
    const net_bn_def *d = &m->bns[u->def];
    int c = d->c, hw = net_blob_hw(m, o->in[0]);
    const float *x = net_act(m, o->in[0]);
    if (m->train)
        batch_stats(m, u, d, x, hw);
    else
        running_stats(m, u, d);
    float *ga = m->bn_hostf + 2 * c, *ss = m->bn_hostf + 4 * c; /* gamma, beta | scale, shift */
    download_affine(m, d, ga);
    for (int ch = 0; ch < c; ch++) {
        double scale = ga[ch] * u->invstd[ch];
        ss[ch] = (float)scale;
        ss[c + ch] = (float)(ga[c + ch] - u->mean[ch] * scale);
    }
    float *dev = m->bn_dev + u->scratch;
    m->be->upload(m->be, dev, ss, 2 * (size_t)c);
    m->be->chan_affine(m->be, m->n, c, hw, x, dev, dev + c, u->relu, net_act(m, o->out[0]));
}

static void bn_backward(model_net *m, const net_op *o)
{
    net_bn_use *u = &m->bn_uses[o->idx];
    const net_bn_def *d = &m->bns[u->def];
    int c = d->c, hw = net_blob_hw(m, o->in[0]);
    const float *x = net_act(m, o->in[0]);
    float *dy = net_dact(m, o->out[0]);
    if (u->relu) m->be->relu_mask(m->be, net_blob_numel(m, o->out[0]), net_act(m, o->out[0]), dy);
    double *s = m->bn_host; /* sum dy [0, c), sum dy*x [c, 2c) */
    m->be->chan_sums(m->be, m->n, c, hw, dy, x, s);

    /* this rank's parameter gradients: the gradient all-reduce combines them */
    float *f = m->bn_hostf, *dev = m->bn_dev + u->scratch;
    for (int ch = 0; ch < c; ch++) {
        f[ch] = (float)(u->invstd[ch] * (s[c + ch] - u->mean[ch] * s[ch])); /* sum dy*xhat */
        f[c + ch] = (float)s[ch];                                            /* sum dy */
    }
    const model_param *gp = &m->params[d->gparam];
    m->be->upload(m->be, dev + 6 * (size_t)c, f, 2 * (size_t)c);
    m->be->axpy(m->be, 1.0f, dev + 6 * (size_t)c, m->g + gp->offset, (size_t)c);
    m->be->axpy(m->be, 1.0f, dev + 7 * (size_t)c, m->g + gp[1].offset, (size_t)c);

    /* dx through the statistics, which depend on every cell of the global batch */
    if (m->train && m->sum_fn) m->sum_fn(m->sum_ctx, s, 2 * c);
    float *ga = f + 2 * c, *coef = f + 4 * c; /* gamma, beta | A, B, M, C */
    download_affine(m, d, ga);
    for (int ch = 0; ch < c; ch++) {
        double gs = ga[ch] * u->invstd[ch];
        double mdy = 0, mdyx = 0;
        if (m->train) {
            mdy = s[ch] / u->count;
            mdyx = u->invstd[ch] * (s[c + ch] - u->mean[ch] * s[ch]) / u->count;
        }
        coef[ch] = (float)gs;
        coef[c + ch] = (float)(-gs * u->invstd[ch] * mdyx);
        coef[2 * c + ch] = (float)u->mean[ch];
        coef[3 * c + ch] = (float)(-gs * mdy);
    }
    m->be->upload(m->be, dev + 2 * (size_t)c, coef, 4 * (size_t)c);
    m->be->chan_affine_grad(m->be, m->n, c, hw, dy, x, dev + 2 * (size_t)c, net_dact(m, o->in[0]));
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
