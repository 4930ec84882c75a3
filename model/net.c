/* The network as a flat op list over named activation blobs (Caffe-style):
 * model_create() describes SPEC section 3 once; forward walks the list,
 * backward walks it in reverse, each op through its row of the op table
 * (model/net_ops.c, model/net_bn.c). Kernels come from the backend. */
#include "model/net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "model/net_impl.h"

/* ---- construction ---- */

const char *const model_out_names[MODEL_NUM_OUT] = {"paf", "heat", "offset", "p2h", "h2p"};

int net_add_blob(model_net *m, int c, int div)
{
    CHECK(m->nblobs < NET_MAX_BLOBS, "network too large (blobs)");
    m->blobs[m->nblobs] = (net_blob){c, div, 0};
    return m->nblobs++;
}

model_param *net_add_param(model_net *m, const char *name, const char *suffix, int ndim, const int *shape,
                           model_group g, int fan_in, int relu, model_param_kind kind)
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
    p->kind = kind;
    p->group = g;
    p->fan_in = fan_in;
    p->relu = relu;
    return p;
}

/* Buffers get their offsets once every parameter is placed (place_bufs). */
model_param *net_add_buf(model_net *m, const char *name, const char *suffix, int c, model_param_kind kind)
{
    if (m->nbufs == m->cap_bufs) {
        m->cap_bufs = m->cap_bufs ? 2 * m->cap_bufs : 32;
        m->bufs = core_realloc(m->bufs, m->cap_bufs * sizeof *m->bufs);
    }
    model_param *p = &m->bufs[m->nbufs++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s/%s", name, suffix);
    p->ndim = 1;
    p->numel = (size_t)c;
    p->shape[0] = c;
    p->shape[1] = p->shape[2] = p->shape[3] = 1;
    p->is_bias = 1;
    p->kind = kind;
    return p;
}

static void place_bufs(model_net *m)
{
    m->nfloats_learn = m->nfloats;
    for (int i = 0; i < m->nbufs; i++) {
        model_param *p = &m->bufs[i];
        p->offset = (m->nfloats + MODEL_PARAM_ALIGN - 1) / MODEL_PARAM_ALIGN * MODEL_PARAM_ALIGN;
        m->nfloats = p->offset + p->numel;
    }
}

static int add_conv_def(model_net *m, const char *name, int cin, int cout, int k, int relu, model_group g)
{
    CHECK(m->nconvs < NET_MAX_CONVS, "network too large (convs)");
    net_conv_def *c = &m->convs[m->nconvs];
    *c = (net_conv_def){cin, cout, k, relu, m->nparams, -1};
    int ws[4] = {cout, cin, k, k}, bs[1] = {cout};
    net_add_param(m, name, "weight", 4, ws, g, cin * k * k, relu, MODEL_PARAM_WEIGHT);
    net_add_param(m, name, "bias", 1, bs, g, cin * k * k, relu, MODEL_PARAM_BIAS);
    /* batch norm after every hidden convolution (those followed by ReLU) */
    if (relu && m->cfg.model.norm == CORE_NORM_BATCH) c->bn = net_bn_define(m, name, cout, g);
    return m->nconvs++;
}

void net_add_op(model_net *m, net_op o)
{
    CHECK(m->nops < NET_MAX_OPS, "network too large (ops)");
    m->ops[m->nops++] = o;
}

/* conv op applying conv definition `cd` to blob `in` (then its batch norm and ReLU); returns the new blob */
static int conv_op(model_net *m, int cd, int in)
{
    const net_conv_def *d = &m->convs[cd];
    CHECK(m->blobs[in].c == d->cin, "internal: conv input has %d channels, expects %d", m->blobs[in].c, d->cin);
    int out = net_add_blob(m, d->cout, m->blobs[in].div);
    net_add_op(m, (net_op){.kind = NET_OP_CONV, .idx = cd, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    if (d->bn >= 0) out = net_bn_apply(m, d->bn, out, d->relu);
    return out;
}

static int conv(model_net *m, const char *name, int in, int cout, int k, int relu, model_group g)
{
    int cd = add_conv_def(m, name, m->blobs[in].c, cout, k, relu, g);
    return conv_op(m, cd, in);
}

static int pool(model_net *m, int in)
{
    int out = net_add_blob(m, m->blobs[in].c, m->blobs[in].div * 2);
    net_add_op(m, (net_op){.kind = NET_OP_POOL, .in = {in}, .nin = 1, .out = {out}, .nout = 1});
    return out;
}

static int concat(model_net *m, const int *ins, int nin)
{
    int c = 0;
    for (int i = 0; i < nin; i++) c += m->blobs[ins[i]].c;
    int out = net_add_blob(m, c, m->blobs[ins[0]].div);
    net_op o = {.kind = NET_OP_CONCAT, .nin = nin, .out = {out}, .nout = 1};
    for (int i = 0; i < nin; i++) o.in[i] = ins[i];
    net_add_op(m, o);
    return out;
}

static void split(model_net *m, int in, int c0, int *out0, int *out1)
{
    *out0 = net_add_blob(m, c0, m->blobs[in].div);
    *out1 = net_add_blob(m, m->blobs[in].c - c0, m->blobs[in].div);
    net_add_op(m, (net_op){.kind = NET_OP_SPLIT, .in = {in}, .nin = 1, .out = {*out0, *out1}, .nout = 2});
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

model_net *net_begin(const core_config *cfg, core_backend *be)
{
    model_net *m = core_calloc(1, sizeof *m);
    m->cfg = *cfg;
    m->be = be;
    for (int s = 0; s < CORE_MAX_STAGES; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) m->outputs[s][o] = -1;
    return m;
}

void net_finish(model_net *m)
{
    /* Each op declares the gradients its backward writes and when they are final;
     * a parameter's gradient is final after the latest of its writers. */
    m->grad_final = core_calloc((size_t)m->nparams, sizeof *m->grad_final);
    for (int i = 0; i < m->nops; i++) {
        const net_op_class *k = net_op_table[m->ops[i].kind];
        int ps[NET_OP_MAX_PARAMS], np = k->params(m, &m->ops[i], ps), done = k->grad_final(m, i);
        for (int j = 0; j < np; j++)
            if (m->grad_final[ps[j]] < done) m->grad_final[ps[j]] = done;
    }
    /* a parameter no op writes would be all-reduced before anything is known of it */
    for (int i = 0; i < m->nparams; i++)
        CHECK(m->grad_final[i] > 0, "internal: no op writes the gradient of parameter %s", m->params[i].name);
    place_bufs(m);
    net_bn_finish(m);
    m->train = 1;
    m->w = m->be->alloc(m->be, m->nfloats);
    m->g = m->be->alloc(m->be, m->nfloats + MODEL_GRAD_SPARE);
}

model_net *model_create(const core_config *cfg, core_backend *be)
{
    model_net *m = net_begin(cfg, be);
    const core_config *c = &m->cfg;
    const model_group B = MODEL_GROUP_BACKBONE;

    int x = m->input_blob = net_add_blob(m, 3, 1);
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

    net_finish(m);
    return m;
}

void model_destroy(model_net *m)
{
    if (!m) return;
    m->be->free(m->be, m->w);
    m->be->free(m->be, m->g);
    if (m->act) m->be->free(m->be, m->act);
    if (m->dact) m->be->free(m->be, m->dact);
    net_bn_destroy(m);
    free(m->params);
    free(m->bufs);
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
int model_buf_count(const model_net *m) { return m->nbufs; }
const model_param *model_buf_at(const model_net *m, int i) { return &m->bufs[i]; }
void model_set_train(model_net *m, int train) { m->train = train != 0; }
int model_is_train(const model_net *m) { return m->train; }
void model_set_sum_hook(model_net *m, model_sum_fn fn, void *ctx)
{
    m->sum_fn = fn;
    m->sum_ctx = ctx;
}

const model_param *model_param_find(const model_net *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return &m->params[i];
    return NULL;
}

void model_init_params(model_net *m, uint64_t seed)
{
    /* zeroed: the alignment padding between tensors must stay 0 (replica checksums, checkpoints) */
    float *host = core_calloc(m->nfloats, sizeof(float));
    for (int i = 0; i < m->nparams; i++) {
        const model_param *p = &m->params[i];
        float *dst = host + p->offset;
        if (p->kind == MODEL_PARAM_BIAS || p->kind == MODEL_PARAM_BN_BIAS || p->kind == MODEL_PARAM_BN_WEIGHT) {
            float v = p->kind == MODEL_PARAM_BN_WEIGHT ? 1.0f : 0.0f;
            for (size_t k = 0; k < p->numel; k++) dst[k] = v;
            continue;
        }
        /* one stream per tensor, keyed by its index, so adding a tensor never shifts the others */
        core_rng r;
        core_rng_seed(&r, core_rng_key(seed, (uint64_t)i));
        double std = p->relu ? sqrt(2.0 / p->fan_in) : 0.01;
        for (size_t k = 0; k < p->numel; k++) dst[k] = (float)(std * core_rng_normal(&r));
    }
    for (int i = 0; i < m->nbufs; i++) {
        const model_param *p = &m->bufs[i];
        float v = p->kind == MODEL_BUF_RUNNING_VAR ? 1.0f : 0.0f;
        for (size_t k = 0; k < p->numel; k++) host[p->offset + k] = v;
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
        off += (net_blob_numel(m, b) + 15) & ~(size_t)15; /* 64-byte aligned blobs */
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
    return net_act(m, m->input_blob);
}

void model_output_hw(const model_net *m, int *h, int *w)
{
    *h = m->h / m->cfg.model.stride;
    *w = m->wd / m->cfg.model.stride;
}

/* ---- passes ---- */

void model_forward(model_net *m, int want_grad)
{
    CHECK(m->act, "model_forward before model_set_input_shape");
    for (int i = 0; i < m->nops; i++) net_op_table[m->ops[i].kind]->forward(m, &m->ops[i]);
    if (want_grad) m->be->fill(m->be, m->dact, 0.0f, m->arena_floats);
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
    for (int i = m->nops - 1; i >= 0; i--) {
        net_op_table[m->ops[i].kind]->backward(m, &m->ops[i]);
        if (fn) fn(ctx, m->nops - i);
    }
}

void model_zero_grads(model_net *m) { m->be->fill(m->be, m->g, 0.0f, m->nfloats + MODEL_GRAD_SPARE); }
float *model_grad_flag(model_net *m) { return m->g + m->nfloats; }

static core_tensor blob_tensor(model_net *m, int b, float *base)
{
    const net_blob *bl = &m->blobs[b];
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
    for (int i = 0; i < m->nops; i++) {
        const net_op_class *k = net_op_table[m->ops[i].kind];
        if (k->kink) k->kink(m, &m->ops[i], &h);
    }
    return h;
}
