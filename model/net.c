/* The network as a flat op list over named activation blobs (Caffe-style):
 * model_create() describes SPEC section 3 once; forward walks the list,
 * backward walks it in reverse. Kernels come from the backend. */
#include "model/net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"

#define MAX_BLOBS 512
#define MAX_OPS 512
#define MAX_CONVS 160

typedef enum { OP_CONV, OP_POOL, OP_CONCAT, OP_SPLIT } op_kind;

typedef struct {
    int c;       /* channels */
    int div;     /* spatial size = input / div */
    size_t off;  /* offset in the arenas, floats (for the current shape) */
} blob;

typedef struct {
    int cin, cout, k, relu;
    int wparam; /* index of the weight in params[]; the bias follows */
} conv_def;

typedef struct {
    op_kind kind;
    int conv;     /* OP_CONV */
    int in[4];    /* input blobs (OP_CONCAT: several) */
    int nin;
    int out[2];   /* output blobs (OP_SPLIT: two) */
    int nout;
} op;

struct model_net {
    core_config cfg;
    core_backend *be;
    blob blobs[MAX_BLOBS];
    int nblobs;
    op ops[MAX_OPS];
    int nops;
    conv_def convs[MAX_CONVS];
    int nconvs;
    model_param *params;
    int nparams, cap_params;
    int *grad_final; /* [nparams]: model_param_grad_final */
    size_t nfloats;
    float *w, *g; /* device flat buffers */
    int input_blob, feature_blob;
    int outputs[CORE_MAX_STAGES][MODEL_NUM_OUT]; /* blob index or -1 */
    /* current shape */
    int n, h, wd;
    size_t arena_floats;
    float *act, *dact;
};

/* ---- construction ---- */

static int add_blob(model_net *m, int c, int div)
{
    CHECK(m->nblobs < MAX_BLOBS, "network too large (blobs)");
    m->blobs[m->nblobs] = (blob){c, div, 0};
    return m->nblobs++;
}

static void add_param(model_net *m, const char *name, const char *suffix, int ndim, const int *shape, model_group g,
                      int fan_in, int relu)
{
    if (m->nparams == m->cap_params) {
        m->cap_params = m->cap_params ? 2 * m->cap_params : 64;
        m->params = core_realloc(m->params, m->cap_params * sizeof *m->params);
    }
    model_param *p = &m->params[m->nparams++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s/%s", name, suffix);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < 4; i++) p->shape[i] = i < ndim ? shape[i] : 1;
    for (int i = 0; i < ndim; i++) p->numel *= (size_t)shape[i];
    /* 256-byte aligned tensors: cuDNN/cuBLAS and vector loops want aligned operands, and the
     * zero padding between tensors stays zero under SGD (zero weight, zero gradient) */
    p->offset = (m->nfloats + MODEL_PARAM_ALIGN - 1) / MODEL_PARAM_ALIGN * MODEL_PARAM_ALIGN;
    m->nfloats = p->offset + p->numel;
    p->is_bias = ndim == 1;
    p->group = g;
    p->fan_in = fan_in;
    p->relu = relu;
}

static int add_conv_def(model_net *m, const char *name, int cin, int cout, int k, int relu, model_group g)
{
    CHECK(m->nconvs < MAX_CONVS, "network too large (convs)");
    conv_def *c = &m->convs[m->nconvs];
    *c = (conv_def){cin, cout, k, relu, m->nparams};
    int ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    add_param(m, name, "weight", 4, ws, g, cin * k * k, relu);
    add_param(m, name, "bias", 1, bs, g, cin * k * k, relu);
    return m->nconvs++;
}

static void add_op(model_net *m, op o)
{
    CHECK(m->nops < MAX_OPS, "network too large (ops)");
    m->ops[m->nops++] = o;
}

/* conv op applying conv definition `cd` to blob `in`; returns the new blob */
static int conv_op(model_net *m, int cd, int in)
{
    CHECK(m->blobs[in].c == m->convs[cd].cin, "internal: conv input has %d channels, expects %d", m->blobs[in].c,
          m->convs[cd].cin);
    int out = add_blob(m, m->convs[cd].cout, m->blobs[in].div);
    add_op(m, (op){.kind = OP_CONV, .conv = cd, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    return out;
}

static int conv(model_net *m, const char *name, int in, int cout, int k, int relu, model_group g)
{
    int cd = add_conv_def(m, name, m->blobs[in].c, cout, k, relu, g);
    return conv_op(m, cd, in);
}

static int pool(model_net *m, int in)
{
    int out = add_blob(m, m->blobs[in].c, m->blobs[in].div * 2);
    add_op(m, (op){.kind = OP_POOL, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    return out;
}

static int concat(model_net *m, const int *ins, int nin)
{
    int c = 0;
    for (int i = 0; i < nin; i++) c += m->blobs[ins[i]].c;
    int out = add_blob(m, c, m->blobs[ins[0]].div);
    op o = {.kind = OP_CONCAT, .nin = nin, .out = {out}, .nout = 1};
    for (int i = 0; i < nin; i++) o.in[i] = ins[i];
    add_op(m, o);
    return out;
}

static void split(model_net *m, int in, int c0, int *out0, int *out1)
{
    *out0 = add_blob(m, c0, m->blobs[in].div);
    *out1 = add_blob(m, m->blobs[in].c - c0, m->blobs[in].div);
    add_op(m, (op){.kind = OP_SPLIT, .in = {in}, .nin = 1, .out = {*out0, *out1}, .nout = 2});
}

/* The subnet (p2h or h2p): conv1 3x3 -> w128, conv2 3x3 -> w128, conv3 1x1 linear. Convs shared over stages. */
static void make_subnet(model_net *m, const char *name, int cin, int cout, int cd[3])
{
    const core_config *c = &m->cfg;
    char nm[48];
    snprintf(nm, sizeof nm, "%s/conv1", name);
    cd[0] = add_conv_def(m, nm, cin, core_width(c, 128), 3, 1, MODEL_GROUP_STAGES);
    snprintf(nm, sizeof nm, "%s/conv2", name);
    cd[1] = add_conv_def(m, nm, core_width(c, 128), core_width(c, 128), 3, 1, MODEL_GROUP_STAGES);
    snprintf(nm, sizeof nm, "%s/conv3", name);
    cd[2] = add_conv_def(m, nm, core_width(c, 128), cout, 1, 0, MODEL_GROUP_STAGES);
}

static int run_subnet(model_net *m, const int cd[3], int in)
{
    return conv_op(m, cd[2], conv_op(m, cd[1], conv_op(m, cd[0], in)));
}

/* One branch of a stage; returns its output blob. */
static int branch(model_net *m, int stage, const char *bname, int in, int cout)
{
    const core_config *c = &m->cfg;
    char nm[48];
    int x = in;
    int nconv = stage == 1 ? 5 : 7;
    for (int i = 1; i <= nconv; i++) {
        snprintf(nm, sizeof nm, "stage%d/%s/conv%d", stage, bname, i);
        int k, co, relu = 1;
        if (stage == 1) {
            k = i <= 3 ? 3 : 1;
            co = i <= 3 ? core_width(c, 128) : core_width(c, 512);
        } else {
            k = i <= 5 ? 7 : 1;
            co = core_width(c, 128);
        }
        if (i == nconv) { co = cout; relu = 0; }
        x = conv(m, nm, x, co, k, relu, MODEL_GROUP_STAGES);
    }
    return x;
}

model_net *model_create(const core_config *cfg, core_backend *be)
{
    model_net *m = core_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    const core_config *c = &m->cfg;
    const model_group B = MODEL_GROUP_BACKBONE;
    for (int s = 0; s < CORE_MAX_STAGES; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) m->outputs[s][o] = -1;

    int x = m->input_blob = add_blob(m, 3, 1);
    x = conv(m, "conv1_1", x, core_width(c, 64), 3, 1, B);
    x = conv(m, "conv1_2", x, core_width(c, 64), 3, 1, B);
    x = pool(m, x);
    x = conv(m, "conv2_1", x, core_width(c, 128), 3, 1, B);
    x = conv(m, "conv2_2", x, core_width(c, 128), 3, 1, B);
    x = pool(m, x);
    x = conv(m, "conv3_1", x, core_width(c, 256), 3, 1, B);
    x = conv(m, "conv3_2", x, core_width(c, 256), 3, 1, B);
    x = conv(m, "conv3_3", x, core_width(c, 256), 3, 1, B);
    x = conv(m, "conv3_4", x, core_width(c, 256), 3, 1, B);
    x = pool(m, x);
    x = conv(m, "conv4_1", x, core_width(c, 512), 3, 1, B);
    x = conv(m, "conv4_2", x, core_width(c, 512), 3, 1, B);
    if (c->model.stride == 16) x = pool(m, x);
    x = conv(m, "conv4_3_CPM", x, core_width(c, 256), 3, 1, B);
    x = conv(m, "conv4_4_CPM", x, core_width(c, 128), 3, 1, B);
    int F = m->feature_blob = x;

    int heat_out = MODEL_NUM_HEAT + (c->model.offsets ? MODEL_NUM_OFFSET : 0);
    int use_p2h = c->model.ss == CORE_SS_P2H || c->model.ss == CORE_SS_BOTH;
    int use_h2p = c->model.ss == CORE_SS_H2P || c->model.ss == CORE_SS_BOTH;
    /* Subnet parameters come after all stages in the flat buffer; their conv defs are
     * created up front only to fix their names, so build the stages first. */
    int prevP = -1, prevHO = -1;
    for (int s = 1; s <= c->model.stages; s++) {
        int in = F;
        if (s > 1) {
            int ins[3] = {prevP, prevHO, F}; /* concat(P, H, O, F): HO holds H then O */
            in = concat(m, ins, 3);
        }
        int P = branch(m, s, "paf", in, MODEL_NUM_PAF);
        int HO = branch(m, s, "heat", in, heat_out);
        m->outputs[s - 1][MODEL_OUT_PAF] = P;
        if (c->model.offsets) {
            int H, O;
            split(m, HO, MODEL_NUM_HEAT, &H, &O);
            m->outputs[s - 1][MODEL_OUT_HEAT] = H;
            m->outputs[s - 1][MODEL_OUT_OFFSET] = O;
        } else {
            m->outputs[s - 1][MODEL_OUT_HEAT] = HO;
        }
        prevP = P;
        prevHO = HO;
    }
    int p2h[3], h2p[3];
    if (use_p2h) make_subnet(m, "p2h", MODEL_NUM_PAF, MODEL_NUM_HEAT, p2h);
    if (use_h2p) make_subnet(m, "h2p", MODEL_NUM_HEAT, MODEL_NUM_PAF, h2p);
    for (int s = 0; s < c->model.stages; s++) {
        if (use_p2h) m->outputs[s][MODEL_OUT_P2H] = run_subnet(m, p2h, m->outputs[s][MODEL_OUT_PAF]);
        if (use_h2p) m->outputs[s][MODEL_OUT_H2P] = run_subnet(m, h2p, m->outputs[s][MODEL_OUT_HEAT]);
    }

    /* Backward runs the ops in reverse, so the op with the smallest forward
     * index among a parameter's users is the last to accumulate into its gradient. */
    m->grad_final = core_calloc((size_t)m->nparams, sizeof *m->grad_final);
    for (int i = 0; i < m->nops; i++) {
        if (m->ops[i].kind != OP_CONV) continue;
        int wp = m->convs[m->ops[i].conv].wparam, done = m->nops - i;
        for (int k = wp; k <= wp + 1; k++)
            if (m->grad_final[k] < done) m->grad_final[k] = done;
    }

    m->w = be->alloc(be, m->nfloats);
    m->g = be->alloc(be, m->nfloats);
    return m;
}

void model_destroy(model_net *m)
{
    if (!m) return;
    m->be->free(m->be, m->w);
    m->be->free(m->be, m->g);
    if (m->act) m->be->free(m->be, m->act);
    if (m->dact) m->be->free(m->be, m->dact);
    free(m->params);
    free(m->grad_final);
    free(m);
}

core_backend *model_backend(model_net *m) { return m->be; }
const core_config *model_config(const model_net *m) { return &m->cfg; }
int model_param_count(const model_net *m) { return m->nparams; }
const model_param *model_param_at(const model_net *m, int i) { return &m->params[i]; }
size_t model_num_floats(const model_net *m) { return m->nfloats; }
float *model_params(model_net *m) { return m->w; }
size_t model_num_weights(const model_net *m)
{
    size_t n = 0;
    for (int i = 0; i < m->nparams; i++) n += m->params[i].numel;
    return n;
}
float *model_grads(model_net *m) { return m->g; }

const model_param *model_param_find(const model_net *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

void model_init_params(model_net *m, uint64_t seed)
{
    float *host = core_malloc(m->nfloats * sizeof(float));
    for (int i = 0; i < m->nparams; i++) {
        const model_param *p = &m->params[i];
        float *dst = host + p->offset;
        if (p->is_bias) {
            memset(dst, 0, p->numel * sizeof(float));
            continue;
        }
        /* one stream per tensor, keyed by its index, so adding a tensor never shifts the others */
        core_rng r;
        core_rng_seed(&r, core_rng_key(seed, (uint64_t)i));
        double std = p->relu ? sqrt(2.0 / p->fan_in) : 0.01;
        for (size_t k = 0; k < p->numel; k++) dst[k] = (float)(std * core_rng_normal(&r));
    }
    model_params_from_host(m, host);
    free(host);
}

void model_params_to_host(model_net *m, float *host) { m->be->download(m->be, host, m->w, m->nfloats); }
void model_params_from_host(model_net *m, const float *host)
{
    m->be->upload(m->be, m->w, host, m->nfloats);
    m->be->sync(m->be);
}

/* ---- shapes and arenas ---- */

static size_t blob_numel(const model_net *m, int b)
{
    const blob *bl = &m->blobs[b];
    return (size_t)m->n * bl->c * (m->h / bl->div) * (m->wd / bl->div);
}

void model_set_input_shape(model_net *m, int n, int h, int w)
{
    int fd = m->cfg.model.stride;
    CHECK(n > 0 && h > 0 && w > 0, "input shape %dx%dx%d is empty", n, h, w);
    CHECK(h % fd == 0 && w % fd == 0, "input %dx%d is not a multiple of the stride %d", h, w, fd);
    if (m->act && n == m->n && h == m->h && w == m->wd) return;
    m->n = n;
    m->h = h;
    m->wd = w;
    size_t off = 0;
    for (int b = 0; b < m->nblobs; b++) {
        m->blobs[b].off = off;
        off += (blob_numel(m, b) + 15) & ~(size_t)15; /* 64-byte aligned blobs */
    }
    if (m->act) m->be->free(m->be, m->act);
    if (m->dact) m->be->free(m->be, m->dact);
    m->arena_floats = off;
    m->act = m->be->alloc(m->be, off);
    m->dact = m->be->alloc(m->be, off);
}

float *model_input(model_net *m)
{
    CHECK(m->act, "model_input before model_set_input_shape");
    return m->act + m->blobs[m->input_blob].off;
}

void model_output_hw(const model_net *m, int *h, int *w)
{
    *h = m->h / m->cfg.model.stride;
    *w = m->wd / m->cfg.model.stride;
}

static float *A(model_net *m, int b) { return m->act + m->blobs[b].off; }
static float *D(model_net *m, int b) { return m->dact + m->blobs[b].off; }

static core_conv_shape conv_shape(const model_net *m, const op *o)
{
    const conv_def *cd = &m->convs[o->conv];
    const blob *in = &m->blobs[o->in[0]];
    core_conv_shape s = {m->n, cd->cin, m->h / in->div, m->wd / in->div, cd->cout, cd->k, cd->relu};
    return s;
}

/* ---- passes ---- */

void model_forward(model_net *m, int want_grad)
{
    CHECK(m->act, "model_forward before model_set_input_shape");
    core_backend *be = m->be;
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        const blob *in = &m->blobs[o->in[0]];
        int hw = (m->h / in->div) * (m->wd / in->div);
        switch (o->kind) {
        case OP_CONV: {
            core_conv_shape s = conv_shape(m, o);
            const conv_def *cd = &m->convs[o->conv];
            const model_param *wp = &m->params[cd->wparam], *bp = &m->params[cd->wparam + 1];
            be->conv_forward(be, &s, A(m, o->in[0]), m->w + wp->offset, m->w + bp->offset, A(m, o->out[0]));
            break;
        }
        case OP_POOL:
            be->pool_forward(be, m->n, in->c, m->h / in->div, m->wd / in->div, A(m, o->in[0]), A(m, o->out[0]));
            break;
        case OP_CONCAT: {
            int off = 0, oc = m->blobs[o->out[0]].c;
            for (int k = 0; k < o->nin; k++) {
                int c = m->blobs[o->in[k]].c;
                be->copy_channels(be, m->n, hw, A(m, o->in[k]), c, 0, A(m, o->out[0]), oc, off, c, 0);
                off += c;
            }
            break;
        }
        case OP_SPLIT: {
            int c0 = m->blobs[o->out[0]].c, c1 = m->blobs[o->out[1]].c;
            be->copy_channels(be, m->n, hw, A(m, o->in[0]), in->c, 0, A(m, o->out[0]), c0, 0, c0, 0);
            be->copy_channels(be, m->n, hw, A(m, o->in[0]), in->c, c0, A(m, o->out[1]), c1, 0, c1, 0);
            break;
        }
        }
    }
    if (want_grad) be->fill(be, m->dact, 0.0f, m->arena_floats);
}

int model_backward_steps(const model_net *m) { return m->nops; }

int model_param_grad_final(const model_net *m, int i)
{
    CHECK(i >= 0 && i < m->nparams, "model_param_grad_final: parameter %d outside 0..%d", i, m->nparams - 1);
    return m->grad_final[i];
}

void model_backward(model_net *m) { model_backward_hooked(m, NULL, NULL); }

void model_backward_hooked(model_net *m, model_backward_fn fn, void *ctx)
{
    core_backend *be = m->be;
    for (int i = m->nops - 1; i >= 0; i--) {
        const op *o = &m->ops[i];
        const blob *in = &m->blobs[o->in[0]];
        int hw = (m->h / in->div) * (m->wd / in->div);
        switch (o->kind) {
        case OP_CONV: {
            core_conv_shape s = conv_shape(m, o);
            const conv_def *cd = &m->convs[o->conv];
            const model_param *wp = &m->params[cd->wparam], *bp = &m->params[cd->wparam + 1];
            /* the image needs no gradient */
            float *dx = o->in[0] == m->input_blob ? NULL : D(m, o->in[0]);
            be->conv_backward(be, &s, A(m, o->in[0]), m->w + wp->offset, A(m, o->out[0]), D(m, o->out[0]), dx,
                              m->g + wp->offset, m->g + bp->offset);
            break;
        }
        case OP_POOL:
            be->pool_backward(be, m->n, in->c, m->h / in->div, m->wd / in->div, A(m, o->in[0]), D(m, o->out[0]),
                              D(m, o->in[0]));
            break;
        case OP_CONCAT: {
            int off = 0, oc = m->blobs[o->out[0]].c;
            for (int k = 0; k < o->nin; k++) {
                int c = m->blobs[o->in[k]].c;
                be->copy_channels(be, m->n, hw, D(m, o->out[0]), oc, off, D(m, o->in[k]), c, 0, c, 1);
                off += c;
            }
            break;
        }
        case OP_SPLIT: {
            int c0 = m->blobs[o->out[0]].c, c1 = m->blobs[o->out[1]].c;
            be->copy_channels(be, m->n, hw, D(m, o->out[0]), c0, 0, D(m, o->in[0]), in->c, 0, c0, 1);
            be->copy_channels(be, m->n, hw, D(m, o->out[1]), c1, 0, D(m, o->in[0]), in->c, c0, c1, 1);
            break;
        }
        }
        if (fn) fn(ctx, m->nops - i);
    }
}

void model_zero_grads(model_net *m) { m->be->fill(m->be, m->g, 0.0f, m->nfloats); }

static core_tensor blob_tensor(model_net *m, int b, float *base)
{
    const blob *bl = &m->blobs[b];
    return core_tensor_view(base + bl->off, m->n, bl->c, m->h / bl->div, m->wd / bl->div, m->be->dev);
}

core_tensor model_output(model_net *m, int stage, model_out which)
{
    core_tensor none = {0};
    if (stage < 0 || stage >= m->cfg.model.stages || m->outputs[stage][which] < 0 || !m->act) return none;
    return blob_tensor(m, m->outputs[stage][which], m->act);
}

core_tensor model_output_grad(model_net *m, int stage, model_out which)
{
    core_tensor none = {0};
    if (stage < 0 || stage >= m->cfg.model.stages || m->outputs[stage][which] < 0 || !m->dact) return none;
    return blob_tensor(m, m->outputs[stage][which], m->dact);
}

int model_has_output(const model_net *m, model_out which) { return m->outputs[0][which] >= 0; }

uint64_t model_kink_signature(model_net *m)
{
    CHECK(m->be->dev == CORE_DEV_CPU, "model_kink_signature needs the CPU backend");
    uint64_t h = 1469598103934665603ULL;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ULL)
    for (int i = 0; i < m->nops; i++) {
        const op *o = &m->ops[i];
        const blob *in = &m->blobs[o->in[0]];
        if (o->kind == OP_CONV && m->convs[o->conv].relu) {
            const float *y = A(m, o->out[0]);
            size_t n = blob_numel(m, o->out[0]);
            for (size_t k = 0; k < n; k++) MIX(y[k] > 0);
        } else if (o->kind == OP_POOL) {
            int h2 = m->h / in->div, w2 = m->wd / in->div;
            const float *x = A(m, o->in[0]);
            for (long p = 0; p < (long)m->n * in->c; p++)
                for (int i2 = 0; i2 < h2 / 2; i2++)
                    for (int j2 = 0; j2 < w2 / 2; j2++) {
                        const float *q = x + (size_t)p * h2 * w2 + (size_t)(2 * i2) * w2 + 2 * j2;
                        float v[4] = {q[0], q[1], q[w2], q[w2 + 1]};
                        int arg = 0;
                        for (int t = 1; t < 4; t++)
                            if (v[t] > v[arg]) arg = t;
                        MIX(arg);
                    }
        }
    }
#undef MIX
    return h;
}
