/* The op table: convolution, max-pooling, channel concat and split (batch
 * norm is in model/net_bn.c). Each row is everything the network needs to
 * know about one op kind; see model/net_impl.h. */
#include "core/check.h"
#include "model/net_impl.h"

int net_grad_final_own_step(const model_net *m, int i) { return m->nops - i; }

void net_kink_relu_output(model_net *m, const net_op *o, uint64_t *h)
{
    const float *y = net_act(m, o->out[0]);
    size_t n = net_blob_numel(m, o->out[0]);
    for (size_t k = 0; k < n; k++) NET_MIX(*h, y[k] > 0);
}

static int no_params(const model_net *m, const net_op *o, int *out)
{
    (void)m, (void)o, (void)out;
    return 0;
}

/* ---- convolution (bias and ReLU fused; linear when batch norm follows) ---- */

static core_conv_shape conv_shape(const model_net *m, const net_op *o)
{
    const net_conv_def *cd = &m->convs[o->idx];
    const net_blob *in = &m->blobs[o->in[0]];
    core_conv_shape s = {m->n, cd->cin, m->h / in->div, m->wd / in->div, cd->cout, cd->k, cd->relu && cd->bn < 0};
    return s;
}

static void conv_forward(model_net *m, const net_op *o)
{
    core_conv_shape s = conv_shape(m, o);
    const model_param *wp = &m->params[m->convs[o->idx].wparam], *bp = wp + 1;
    m->be->conv_forward(m->be, &s, net_act(m, o->in[0]), m->w + wp->offset, m->w + bp->offset, net_act(m, o->out[0]));
}

static void conv_backward(model_net *m, const net_op *o)
{
    core_conv_shape s = conv_shape(m, o);
    const model_param *wp = &m->params[m->convs[o->idx].wparam], *bp = wp + 1;
    /* the image needs no gradient */
    float *dx = o->in[0] == m->input_blob ? NULL : net_dact(m, o->in[0]);
    m->be->conv_backward(m->be, &s, net_act(m, o->in[0]), m->w + wp->offset, net_act(m, o->out[0]),
                         net_dact(m, o->out[0]), dx, m->g + wp->offset, m->g + bp->offset);
}

static int conv_params(const model_net *m, const net_op *o, int *out)
{
    out[0] = m->convs[o->idx].wparam;
    out[1] = out[0] + 1;
    return 2;
}

static void conv_kink(model_net *m, const net_op *o, uint64_t *h)
{
    const net_conv_def *cd = &m->convs[o->idx];
    if (cd->relu && cd->bn < 0) net_kink_relu_output(m, o, h);
}

static const net_op_class op_conv = {"conv", conv_forward, conv_backward, conv_params, net_grad_final_own_step,
                                     conv_kink};

/* ---- 2x2 max-pooling ---- */

static void pool_forward(model_net *m, const net_op *o)
{
    const net_blob *in = &m->blobs[o->in[0]];
    m->be->pool_forward(m->be, m->n, in->c, m->h / in->div, m->wd / in->div, net_act(m, o->in[0]),
                        net_act(m, o->out[0]));
}

static void pool_backward(model_net *m, const net_op *o)
{
    const net_blob *in = &m->blobs[o->in[0]];
    m->be->pool_backward(m->be, m->n, in->c, m->h / in->div, m->wd / in->div, net_act(m, o->in[0]),
                         net_dact(m, o->out[0]), net_dact(m, o->in[0]));
}

static void pool_kink(model_net *m, const net_op *o, uint64_t *h)
{
    const net_blob *in = &m->blobs[o->in[0]];
    int h2 = m->h / in->div, w2 = m->wd / in->div;
    const float *x = net_act(m, o->in[0]);
    for (long p = 0; p < (long)m->n * in->c; p++)
        for (int i2 = 0; i2 < h2 / 2; i2++)
            for (int j2 = 0; j2 < w2 / 2; j2++) {
                const float *q = x + (size_t)p * h2 * w2 + (size_t)(2 * i2) * w2 + 2 * j2;
                float v[4] = {q[0], q[1], q[w2], q[w2 + 1]};
                int arg = 0;
                for (int t = 1; t < 4; t++)
                    if (v[t] > v[arg]) arg = t;
                NET_MIX(*h, arg);
            }
}

static const net_op_class op_pool = {"pool", pool_forward, pool_backward, no_params, net_grad_final_own_step,
                                     pool_kink};

/* ---- channel concat and split (copies; backward accumulates) ---- */

static void concat_pass(model_net *m, const net_op *o, int backward)
{
    int hw = net_blob_hw(m, o->in[0]), off = 0, oc = m->blobs[o->out[0]].c;
    for (int k = 0; k < o->nin; k++) {
        int c = m->blobs[o->in[k]].c;
        if (backward)
            m->be->copy_channels(m->be, m->n, hw, net_dact(m, o->out[0]), oc, off, net_dact(m, o->in[k]), c, 0, c, 1);
        else
            m->be->copy_channels(m->be, m->n, hw, net_act(m, o->in[k]), c, 0, net_act(m, o->out[0]), oc, off, c, 0);
        off += c;
    }
}

static void concat_forward(model_net *m, const net_op *o) { concat_pass(m, o, 0); }
static void concat_backward(model_net *m, const net_op *o) { concat_pass(m, o, 1); }

static const net_op_class op_concat = {"concat", concat_forward, concat_backward, no_params,
                                       net_grad_final_own_step, NULL};

static void split_forward(model_net *m, const net_op *o)
{
    int hw = net_blob_hw(m, o->in[0]), ic = m->blobs[o->in[0]].c;
    int c0 = m->blobs[o->out[0]].c, c1 = m->blobs[o->out[1]].c;
    const float *x = net_act(m, o->in[0]);
    m->be->copy_channels(m->be, m->n, hw, x, ic, 0, net_act(m, o->out[0]), c0, 0, c0, 0);
    m->be->copy_channels(m->be, m->n, hw, x, ic, c0, net_act(m, o->out[1]), c1, 0, c1, 0);
}

static void split_backward(model_net *m, const net_op *o)
{
    int hw = net_blob_hw(m, o->in[0]), ic = m->blobs[o->in[0]].c;
    int c0 = m->blobs[o->out[0]].c, c1 = m->blobs[o->out[1]].c;
    float *dx = net_dact(m, o->in[0]);
    m->be->copy_channels(m->be, m->n, hw, net_dact(m, o->out[0]), c0, 0, dx, ic, 0, c0, 1);
    m->be->copy_channels(m->be, m->n, hw, net_dact(m, o->out[1]), c1, 0, dx, ic, c0, c1, 1);
}

static const net_op_class op_split = {"split", split_forward, split_backward, no_params, net_grad_final_own_step,
                                      NULL};

const net_op_class *const net_op_table[NET_OP_KINDS] = {
    [NET_OP_CONV] = &op_conv,
    [NET_OP_POOL] = &op_pool,
    [NET_OP_CONCAT] = &op_concat,
    [NET_OP_SPLIT] = &op_split,
    [NET_OP_BN] = &net_op_bn,
};
