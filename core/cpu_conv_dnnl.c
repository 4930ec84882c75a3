/* CPU convolution through oneDNN's C API (Debian's libdnnl, OpenMP runtime).
 *
 * The backend's tensors are plain NCHW/OIHW; oneDNN's fast kernels want
 * channel-blocked layouts. Each primitive is created with format_tag_any,
 * and plain operands are reordered into scratch buffers in the layout it
 * chose (and back). The reorders cost a few percent of a 3x3/7x7 convolution
 * and are what PyTorch's CPU convolutions pay too.
 *
 * The backward-data primitive overwrites its output, while the backend
 * interface accumulates into dx: the result lands in scratch and goes out
 * through a reorder with a sum post-op (dst = src + dst), which is also the
 * layout conversion, so accumulation costs no extra pass.
 *
 * The parameter gradients are reductions over N*H*W terms. oneDNN's
 * backward-weights kernel sums each element's terms in one float accumulator
 * per thread: 2-4e-5 off a double reference over a paper batch (10 x 368 px),
 * 7e-6 over one 368 px sample, ~2e-6 over one sample of up to DW_MAX_HW pixels.
 * So db is summed in double (core_cpu_conv_bias_grad), and dw comes from
 * oneDNN one sample at a time, summed in double, where a sample has at most
 * DW_MAX_HW pixels (the stage and p2h convolutions, where oneDNN is fastest),
 * and from the blocked sgemm of core/cpu_conv_gemm.c on larger maps (the VGG
 * layers at 92-368 px). docs/design.md, "CPU convolutions", has the numbers.
 *
 * Everything is cached per shape (a network uses a handful of shapes per input
 * size): primitives, reorders and memory objects. Scratch buffers and the
 * primitives' scratchpad (user-managed) are shared by all shapes since calls
 * run one at a time.
 *
 * Determinism: oneDNN's CPU kernels partition work statically by the thread
 * count fixed at primitive creation and reduce in a fixed order; no atomics.
 * tests/test_cpu_conv.c checks bit-identical repeats. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/cpu_conv.h"

#ifdef SSPOSE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#define DNNL_CHECK(call) do { dnnl_status_t st_ = (call); if (st_ != dnnl_success) \
        core_die_at(__FILE__, __LINE__, "oneDNN call failed (%s): %s", dnnl_status2str(st_), #call); } while (0)

/* One oneDNN primitive with its view of the shared scratchpad. */
typedef struct {
    dnnl_primitive_t p;
    dnnl_memory_t pad; /* NULL when the primitive needs no scratchpad */
} prim;

/* A reorder between a plain operand and a layout chosen by a primitive.
 * p.p == NULL when both layouts agree and no accumulation is asked: the
 * plain pointer is used directly. */
typedef struct {
    prim p;
    dnnl_memory_t from, to;
    int sum;
} xfer;

/* Largest H*W whose weight gradient oneDNN computes (per sample); 48x48. */
#define DW_MAX_HW 2304

enum { BUF_X, BUF_W, BUF_Y, BUF_DY, BUF_DX, BUF_DW, BUF_DWP, BUF_COUNT };

typedef struct entry {
    core_conv_shape s;
    dnnl_memory_desc_t x_md, w_md, b_md, y_md; /* plain user layouts */
    dnnl_primitive_desc_t fwd_pd;
    /* forward */
    prim fwd;
    xfer f_x, f_w, f_y;
    dnnl_memory_t f_src, f_wei, f_bias, f_dst;
    /* backward data, created on first use with dx */
    int have_bd;
    prim bd;
    xfer d_dy, d_w, d_dx;
    dnnl_memory_t d_ddst, d_wei, d_dsrc;
    /* backward weights (entries of batch-1 shapes only), created on first use */
    int have_bw;
    prim bw;
    xfer w_x, w_dy, w_dw;
    dnnl_memory_t w_src, w_ddst, w_dwei;
    struct entry *next;
} entry;

struct core_cpu_dnnl {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    entry *entries;
    core_cpu_gemm *gemm; /* weight gradients of large maps (see the top of this file) */
    double *acc;         /* weight-gradient accumulator */
    size_t acc_cap;      /* bytes */
    void *buf[BUF_COUNT];
    size_t cap[BUF_COUNT]; /* bytes */
    void *pad;             /* shared primitive scratchpad */
    size_t pad_cap;
};

int core_cpu_dnnl_built(void) { return 1; }

static void *aligned_grow(void **p, size_t *cap, size_t bytes)
{
    if (bytes > *cap) {
        free(*p);
        *p = NULL;
        /* 64 bytes: one AVX-512 vector, what oneDNN's kernels assume for their buffers */
        size_t rounded = (bytes + 63) & ~(size_t)63;
        CHECK(posix_memalign(p, 64, rounded) == 0, "out of memory allocating %zu bytes for oneDNN", rounded);
        *cap = rounded;
    }
    return *p;
}

static void *buf(core_cpu_dnnl *d, int which, const dnnl_memory_desc_t *md)
{
    return aligned_grow(&d->buf[which], &d->cap[which], dnnl_memory_desc_get_size(md));
}

static dnnl_memory_t mem_new(core_cpu_dnnl *d, const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    DNNL_CHECK(dnnl_memory_create(&m, md, d->eng, DNNL_MEMORY_NONE));
    return m;
}

static void mem_free(dnnl_memory_t m)
{
    if (m) DNNL_CHECK(dnnl_memory_destroy(m));
}

/* Setting the handle each call (rather than at creation) lets scratch buffers
 * grow and user pointers change; for padded blocked layouts oneDNN zeroes the
 * padding here, which its kernels rely on. */
static void mem_set(dnnl_memory_t m, const void *p) { DNNL_CHECK(dnnl_memory_set_data_handle(m, (void *)p)); }

static prim prim_new(core_cpu_dnnl *d, dnnl_primitive_desc_t pd)
{
    prim r = {0};
    DNNL_CHECK(dnnl_primitive_create(&r.p, pd));
    const dnnl_memory_desc_t *pmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (pmd && dnnl_memory_desc_get_size(pmd) > 0) r.pad = mem_new(d, pmd);
    return r;
}

static void prim_free(prim *r)
{
    if (r->p) DNNL_CHECK(dnnl_primitive_destroy(r->p));
    mem_free(r->pad);
    memset(r, 0, sizeof *r);
}

/* Attributes every primitive here gets: user scratchpad, optional post-ops. */
static dnnl_primitive_attr_t attr_new(int relu, int sum)
{
    dnnl_primitive_attr_t a;
    DNNL_CHECK(dnnl_primitive_attr_create(&a));
    DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user));
    if (relu || sum) {
        dnnl_post_ops_t po;
        DNNL_CHECK(dnnl_post_ops_create(&po));
        if (sum) DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        if (relu) DNNL_CHECK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        DNNL_CHECK(dnnl_primitive_attr_set_post_ops(a, po));
        DNNL_CHECK(dnnl_post_ops_destroy(po));
    }
    return a;
}

static xfer xfer_new(core_cpu_dnnl *d, const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, int sum)
{
    xfer x = {0};
    x.sum = sum;
    if (!sum && dnnl_memory_desc_equal(from, to)) return x;
    dnnl_primitive_attr_t a = attr_new(0, sum);
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_reorder_primitive_desc_create(&pd, from, d->eng, to, d->eng, a));
    x.p = prim_new(d, pd);
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(a));
    x.from = mem_new(d, from);
    x.to = mem_new(d, to);
    return x;
}

static void xfer_free(xfer *x)
{
    prim_free(&x->p);
    mem_free(x->from);
    mem_free(x->to);
    memset(x, 0, sizeof *x);
}

static void exec(core_cpu_dnnl *d, prim *p, int nargs, dnnl_exec_arg_t *args)
{
    if (p->pad) {
        const dnnl_memory_desc_t *pmd;
        DNNL_CHECK(dnnl_memory_get_memory_desc(p->pad, &pmd));
        mem_set(p->pad, aligned_grow(&d->pad, &d->pad_cap, dnnl_memory_desc_get_size(pmd)));
        args[nargs].arg = DNNL_ARG_SCRATCHPAD;
        args[nargs].memory = p->pad;
        nargs++;
    }
    DNNL_CHECK(dnnl_primitive_execute(p->p, d->stream, nargs, args));
    DNNL_CHECK(dnnl_stream_wait(d->stream));
}

/* Runs the reorder from -> to (to += from when sum); returns `to`, or `from`
 * itself when no reorder is needed. */
static const void *xfer_run(core_cpu_dnnl *d, xfer *x, const void *from, void *to)
{
    if (!x->p.p) return from;
    mem_set(x->from, from);
    mem_set(x->to, to);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, x->from}, {DNNL_ARG_TO, x->to}};
    exec(d, &x->p, 2, args);
    return to;
}

static const dnnl_memory_desc_t *pd_md(dnnl_primitive_desc_t pd, dnnl_query_t what)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, what, 0);
    CHECK(md, "oneDNN primitive descriptor has no memory descriptor for query %d", (int)what);
    return md;
}

static const dnnl_dims_t STRIDES = {1, 1};

/* The same tensor with the layout left to the primitive (format_tag any), so
 * oneDNN can pick its blocked format; xfer_new converts between the two. */
static dnnl_memory_desc_t any_layout(const dnnl_memory_desc_t *plain)
{
    dnnl_memory_desc_t md;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&md, plain->ndims, plain->dims, dnnl_f32, dnnl_format_tag_any));
    return md;
}

static entry *entry_get(core_cpu_dnnl *d, const core_conv_shape *s)
{
    for (entry *e = d->entries; e; e = e->next)
        if (!memcmp(&e->s, s, sizeof *s)) return e;
    CHECK(s->k % 2 == 1 && s->n > 0 && s->cin > 0 && s->cout > 0 && s->h > 0 && s->w > 0,
          "oneDNN conv: unsupported shape n=%d cin=%d h=%d w=%d cout=%d k=%d", s->n, s->cin, s->h, s->w, s->cout,
          s->k);
    entry *e = core_calloc(1, sizeof *e);
    e->s = *s;
    dnnl_dims_t xd = {s->n, s->cin, s->h, s->w}, wd = {s->cout, s->cin, s->k, s->k}, bd = {s->cout},
                yd = {s->n, s->cout, s->h, s->w};
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&e->x_md, 4, xd, dnnl_f32, dnnl_nchw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&e->w_md, 4, wd, dnnl_f32, dnnl_oihw));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&e->b_md, 1, bd, dnnl_f32, dnnl_x));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&e->y_md, 4, yd, dnnl_f32, dnnl_nchw));
    dnnl_memory_desc_t xa = any_layout(&e->x_md), wa = any_layout(&e->w_md), ya = any_layout(&e->y_md);
    dnnl_dims_t pad = {s->k / 2, s->k / 2};
    dnnl_convolution_desc_t cd;
    /* direct, never Winograd: its rounding differs from every other path's */
    DNNL_CHECK(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct, &xa, &wa,
                                                  &e->b_md, &ya, STRIDES, pad, pad));
    dnnl_primitive_attr_t a = attr_new(s->relu, 0);
    DNNL_CHECK(dnnl_primitive_desc_create(&e->fwd_pd, &cd, a, d->eng, NULL));
    DNNL_CHECK(dnnl_primitive_attr_destroy(a));
    e->fwd = prim_new(d, e->fwd_pd);
    const dnnl_memory_desc_t *src = pd_md(e->fwd_pd, dnnl_query_src_md), *wei = pd_md(e->fwd_pd, dnnl_query_weights_md),
                             *dst = pd_md(e->fwd_pd, dnnl_query_dst_md);
    e->f_x = xfer_new(d, &e->x_md, src, 0);
    e->f_w = xfer_new(d, &e->w_md, wei, 0);
    e->f_y = xfer_new(d, dst, &e->y_md, 0);
    e->f_src = mem_new(d, src);
    e->f_wei = mem_new(d, wei);
    e->f_bias = mem_new(d, &e->b_md);
    e->f_dst = mem_new(d, dst);
    e->next = d->entries;
    d->entries = e;
    return e;
}

/* Without a bias: db is summed in double by core_cpu_conv_bias_grad. */
static void entry_make_bw(core_cpu_dnnl *d, entry *e)
{
    const core_conv_shape *s = &e->s;
    dnnl_memory_desc_t xa = any_layout(&e->x_md), wa = any_layout(&e->w_md), ya = any_layout(&e->y_md);
    dnnl_dims_t pad = {s->k / 2, s->k / 2};
    dnnl_convolution_desc_t cd;
    DNNL_CHECK(dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &xa, &wa, NULL, &ya,
                                                           STRIDES, pad, pad));
    dnnl_primitive_attr_t a = attr_new(0, 0);
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, a, d->eng, e->fwd_pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(a));
    e->bw = prim_new(d, pd);
    const dnnl_memory_desc_t *src = pd_md(pd, dnnl_query_src_md), *dw = pd_md(pd, dnnl_query_diff_weights_md),
                             *ddst = pd_md(pd, dnnl_query_diff_dst_md);
    e->w_x = xfer_new(d, &e->x_md, src, 0);
    e->w_dy = xfer_new(d, &e->y_md, ddst, 0);
    e->w_dw = xfer_new(d, dw, &e->w_md, 0);
    e->w_src = mem_new(d, src);
    e->w_ddst = mem_new(d, ddst);
    e->w_dwei = mem_new(d, dw);
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    e->have_bw = 1;
}

static void entry_make_bd(core_cpu_dnnl *d, entry *e)
{
    const core_conv_shape *s = &e->s;
    dnnl_memory_desc_t xa = any_layout(&e->x_md), wa = any_layout(&e->w_md), ya = any_layout(&e->y_md);
    dnnl_dims_t pad = {s->k / 2, s->k / 2};
    dnnl_convolution_desc_t cd;
    DNNL_CHECK(dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xa, &wa, &ya, STRIDES, pad,
                                                        pad));
    dnnl_primitive_attr_t a = attr_new(0, 0);
    dnnl_primitive_desc_t pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&pd, &cd, a, d->eng, e->fwd_pd));
    DNNL_CHECK(dnnl_primitive_attr_destroy(a));
    e->bd = prim_new(d, pd);
    const dnnl_memory_desc_t *dsrc = pd_md(pd, dnnl_query_diff_src_md), *wei = pd_md(pd, dnnl_query_weights_md),
                             *ddst = pd_md(pd, dnnl_query_diff_dst_md);
    e->d_dy = xfer_new(d, &e->y_md, ddst, 0);
    e->d_w = xfer_new(d, &e->w_md, wei, 0);
    e->d_dx = xfer_new(d, dsrc, &e->x_md, 1);
    e->d_ddst = mem_new(d, ddst);
    e->d_wei = mem_new(d, wei);
    e->d_dsrc = mem_new(d, dsrc);
    DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    e->have_bd = 1;
}

static void entry_free(entry *e)
{
    prim_free(&e->fwd);
    prim_free(&e->bd);
    prim_free(&e->bw);
    xfer *xs[] = {&e->f_x, &e->f_w, &e->f_y, &e->d_dy, &e->d_w, &e->d_dx, &e->w_x, &e->w_dy, &e->w_dw};
    for (size_t i = 0; i < sizeof xs / sizeof *xs; i++) xfer_free(xs[i]);
    dnnl_memory_t ms[] = {e->f_src, e->f_wei,  e->f_bias, e->f_dst, e->d_ddst,
                          e->d_wei, e->d_dsrc, e->w_src,  e->w_ddst, e->w_dwei};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) mem_free(ms[i]);
    if (e->fwd_pd) DNNL_CHECK(dnnl_primitive_desc_destroy(e->fwd_pd));
    free(e);
}

core_cpu_dnnl *core_cpu_dnnl_create(void)
{
    core_cpu_dnnl *d = core_calloc(1, sizeof *d);
    DNNL_CHECK(dnnl_engine_create(&d->eng, dnnl_cpu, 0));
    DNNL_CHECK(dnnl_stream_create(&d->stream, d->eng, dnnl_stream_default_flags));
    d->gemm = core_cpu_gemm_create();
    return d;
}

void core_cpu_dnnl_destroy(core_cpu_dnnl *d)
{
    if (!d) return;
    while (d->entries) {
        entry *e = d->entries;
        d->entries = e->next;
        entry_free(e);
    }
    for (int i = 0; i < BUF_COUNT; i++) free(d->buf[i]);
    free(d->pad);
    core_cpu_gemm_destroy(d->gemm);
    free(d->acc);
    DNNL_CHECK(dnnl_stream_destroy(d->stream));
    DNNL_CHECK(dnnl_engine_destroy(d->eng));
    free(d);
}

static const dnnl_memory_desc_t *mem_md(dnnl_memory_t m)
{
    const dnnl_memory_desc_t *md;
    DNNL_CHECK(dnnl_memory_get_memory_desc(m, &md));
    return md;
}

void core_cpu_dnnl_conv_forward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                const float *b, float *y)
{
    entry *e = entry_get(d, s);
    const void *src = xfer_run(d, &e->f_x, x, buf(d, BUF_X, mem_md(e->f_src)));
    const void *wei = xfer_run(d, &e->f_w, w, buf(d, BUF_W, mem_md(e->f_wei)));
    void *dst = e->f_y.p.p ? buf(d, BUF_Y, mem_md(e->f_dst)) : y;
    mem_set(e->f_src, src);
    mem_set(e->f_wei, wei);
    mem_set(e->f_bias, b);
    mem_set(e->f_dst, dst);
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, e->f_src}, {DNNL_ARG_WEIGHTS, e->f_wei}, {DNNL_ARG_BIAS, e->f_bias},
                               {DNNL_ARG_DST, e->f_dst}};
    exec(d, &e->fwd, 4, args);
    xfer_run(d, &e->f_y, dst, y);
}

/* dw += sum over samples of oneDNN's per-sample weight gradient, summed in double. */
static void backward_weights_per_sample(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *dy,
                                        float *dw)
{
    core_conv_shape s1 = *s;
    s1.n = 1;
    s1.relu = 0; /* backward weights does not depend on it: one entry serves both */
    entry *e = entry_get(d, &s1);
    if (!e->have_bw) entry_make_bw(d, e);
    size_t hw = (size_t)s->h * s->w, wn = (size_t)s->cout * s->cin * s->k * s->k;
    double *acc = aligned_grow((void **)&d->acc, &d->acc_cap, wn * sizeof(double));
    memset(acc, 0, wn * sizeof(double));
    for (int n = 0; n < s->n; n++) {
        const void *src = xfer_run(d, &e->w_x, x + (size_t)n * s->cin * hw, buf(d, BUF_X, mem_md(e->w_src)));
        const void *ddst = xfer_run(d, &e->w_dy, dy + (size_t)n * s->cout * hw, buf(d, BUF_DY, mem_md(e->w_ddst)));
        void *dwei = buf(d, BUF_DW, mem_md(e->w_dwei));
        mem_set(e->w_src, src);
        mem_set(e->w_ddst, ddst);
        mem_set(e->w_dwei, dwei);
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->w_src}, {DNNL_ARG_DIFF_DST, e->w_ddst},
                                   {DNNL_ARG_DIFF_WEIGHTS, e->w_dwei}};
        exec(d, &e->bw, 3, args);
        const float *plain = xfer_run(d, &e->w_dw, dwei, buf(d, BUF_DWP, &e->w_md));
#pragma omp parallel for schedule(static) if (wn > 65536)
        for (size_t i = 0; i < wn; i++) acc[i] += plain[i];
    }
#pragma omp parallel for schedule(static) if (wn > 65536)
    for (size_t i = 0; i < wn; i++) dw[i] += (float)acc[i];
}

void core_cpu_dnnl_conv_backward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db)
{
    entry *e = entry_get(d, s);
    if (s->relu) core_cpu_conv_relu_mask(s, y, dy);
    core_cpu_conv_bias_grad(s, dy, db);
    if ((size_t)s->h * s->w <= DW_MAX_HW) backward_weights_per_sample(d, s, x, dy, dw);
    else core_cpu_gemm_conv_backward_weights(d->gemm, s, x, dy, dw);

    if (!dx) return;
    if (!e->have_bd) entry_make_bd(d, e);
    const void *bddst = xfer_run(d, &e->d_dy, dy, buf(d, BUF_DY, mem_md(e->d_ddst)));
    const void *wei = xfer_run(d, &e->d_w, w, buf(d, BUF_W, mem_md(e->d_wei)));
    void *dsrc = buf(d, BUF_DX, mem_md(e->d_dsrc));
    mem_set(e->d_ddst, bddst);
    mem_set(e->d_wei, wei);
    mem_set(e->d_dsrc, dsrc);
    dnnl_exec_arg_t dargs[4] = {{DNNL_ARG_DIFF_DST, e->d_ddst}, {DNNL_ARG_WEIGHTS, e->d_wei},
                                {DNNL_ARG_DIFF_SRC, e->d_dsrc}};
    exec(d, &e->bd, 3, dargs);
    xfer_run(d, &e->d_dx, dsrc, dx);
}

#else /* !SSPOSE_DNNL */

int core_cpu_dnnl_built(void) { return 0; }
core_cpu_dnnl *core_cpu_dnnl_create(void)
{
    CORE_DIE("the oneDNN convolution path is not built into this binary (install libdnnl-dev and rebuild)");
}
void core_cpu_dnnl_destroy(core_cpu_dnnl *d) { (void)d; }
void core_cpu_dnnl_conv_forward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                const float *b, float *y)
{
    CORE_DIE("the oneDNN convolution path is not built into this binary");
}
void core_cpu_dnnl_conv_backward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db)
{
    CORE_DIE("the oneDNN convolution path is not built into this binary");
}

#endif
