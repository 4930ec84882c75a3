/* CPU backend: convolutions through oneDNN or im2col + OpenBLAS sgemm, picked
 * per shape (core/cpu_conv.h, docs/design.md "CPU convolutions"); everything
 * else as OpenMP loops. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/cpu_conv.h"

typedef enum { MODE_AUTO, MODE_GEMM, MODE_DNNL } conv_mode;

typedef struct {
    conv_mode mode;       /* SSPOSE_CPU_CONV at create time */
    core_cpu_gemm *gemm;
    core_cpu_dnnl *dnnl;  /* NULL when oneDNN is not built or the mode is gemm */
} cpu_state;

static float *cpu_alloc(core_backend *be, size_t n)
{
    /* 64-byte alignment keeps sgemm and vector loops on full cache lines */
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    bytes = (bytes + 63) & ~(size_t)63;
    CHECK(posix_memalign(&p, 64, bytes) == 0, "out of memory allocating %zu bytes on the CPU", bytes);
    memset(p, 0, bytes);
    return p;
}

static void cpu_free(core_backend *be, float *p)
{
    be->host_waits++; /* the CUDA backend's free waits for the stream: count it alike */
    free(p);
}
static void cpu_copy(core_backend *be, float *dst, const float *src, size_t n)
{
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}
/* The calls an asynchronous backend would wait in, counted alike (core_backend.host_waits). */
static void cpu_download(core_backend *be, float *dst, const float *src, size_t n)
{
    be->host_waits++;
    cpu_copy(be, dst, src, n);
}
static void cpu_sync(core_backend *be) { be->host_waits++; }

static void cpu_fill(core_backend *be, float *x, float v, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static void cpu_axpy(core_backend *be, float a, const float *x, float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void cpu_scale(core_backend *be, float *x, float a, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] *= a;
}

static double cpu_sumsq(core_backend *be, const float *x, size_t n)
{
    be->host_waits++;
    double s = 0;
    /* fixed chunking keeps the sum identical run to run for a given thread count */
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* Chunks of SEG_CHUNK floats, each summed in order, then added in order per
 * segment: the sums do not depend on the thread count. */
#define SEG_CHUNK 65536
static void cpu_sumsq_segments(core_backend *be, const float *x, int nseg, const size_t *off, double *out)
{
    size_t nchunks = 0;
    for (int s = 0; s < nseg; s++) nchunks += (off[s + 1] - off[s] + SEG_CHUNK - 1) / SEG_CHUNK;
    const size_t cap = nchunks ? nchunks : 1;
    double *part = core_malloc(cap * sizeof *part);
    size_t *start = core_malloc(cap * sizeof *start), *end = core_malloc(cap * sizeof *end);
    size_t k = 0;
    for (int s = 0; s < nseg; s++)
        for (size_t i = off[s]; i < off[s + 1]; i += SEG_CHUNK) {
            start[k] = i;
            end[k++] = i + SEG_CHUNK < off[s + 1] ? i + SEG_CHUNK : off[s + 1];
        }
#pragma omp parallel for schedule(static) if (nchunks > 4)
    for (size_t c = 0; c < nchunks; c++) {
        double acc = 0;
        for (size_t i = start[c]; i < end[c]; i++) acc += (double)x[i] * x[i];
        part[c] = acc;
    }
    k = 0;
    for (int s = 0; s < nseg; s++) {
        double acc = 0;
        for (size_t i = off[s]; i < off[s + 1]; i += SEG_CHUNK) acc += part[k++];
        out[s] = acc;
    }
    free(part);
    free(start);
    free(end);
}

static void cpu_guard_loss(core_backend *be, const core_guard_loss_args *a, core_step_state *s)
{
    core_guard_loss(a, s);
}
static void cpu_guard_step(core_backend *be, const core_guard_args *a, core_step_state *s) { core_guard_step(a, s); }

static void cpu_conv_forward(core_backend *be, const core_conv_shape *s, const float *x, const float *w,
                             const float *b, float *y)
{
    cpu_state *st = be->impl;
    if (core_cpu_conv_pick(be, s) == CORE_CPU_CONV_DNNL)
        core_cpu_dnnl_conv_forward(st->dnnl, s, x, w, b, y);
    else
        core_cpu_gemm_conv_forward(st->gemm, s, x, w, b, y);
}

static void cpu_conv_backward(core_backend *be, const core_conv_shape *s, const float *x, const float *w,
                              const float *y, float *dy, float *dx, float *dw, float *db)
{
    cpu_state *st = be->impl;
    if (core_cpu_conv_pick(be, s) == CORE_CPU_CONV_DNNL)
        core_cpu_dnnl_conv_backward(st->dnnl, s, x, w, y, dy, dx, dw, db);
    else
        core_cpu_gemm_conv_backward(st->gemm, s, x, w, y, dy, dx, dw, db);
}

static void cpu_pool_forward(core_backend *be, int n, int c, int h, int w, const float *x, float *y)
{
    int oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                const float *r0 = xp + (size_t)(2 * i) * w + 2 * j, *r1 = r0 + w;
                float m = r0[0];
                if (r0[1] > m) m = r0[1];
                if (r1[0] > m) m = r1[0];
                if (r1[1] > m) m = r1[1];
                yp[i * ow + j] = m;
            }
    }
}

static void cpu_pool_backward(core_backend *be, int n, int c, int h, int w, const float *x, const float *dy,
                              float *dx)
{
    int oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *dxp = dx + (size_t)p * h * w;
        const float *dyp = dy + (size_t)p * oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                size_t base = (size_t)(2 * i) * w + 2 * j;
                size_t idx[4] = {base, base + 1, base + w, base + w + 1};
                size_t best = idx[0];
                for (int q = 1; q < 4; q++)
                    if (xp[idx[q]] > xp[best]) best = idx[q];
                dxp[best] += dyp[i * ow + j];
            }
    }
}

static void cpu_copy_channels(core_backend *be, int n, int hw, const float *src, int src_c, int src_off, float *dst,
                              int dst_c, int dst_off, int count, int accumulate)
{
    size_t plane = (size_t)count * hw;
    for (int i = 0; i < n; i++) {
        const float *s = src + ((size_t)i * src_c + src_off) * hw;
        float *d = dst + ((size_t)i * dst_c + dst_off) * hw;
        if (accumulate) {
#pragma omp parallel for schedule(static) if (plane > 65536)
            for (size_t k = 0; k < plane; k++) d[k] += s[k];
        } else {
            memcpy(d, s, plane * sizeof(float));
        }
    }
}

/* The gate's decision (backend.h): 0 = no update; else *sc = the gradient's factor. */
static int gate_open(const core_step_state *gate, float *sc)
{
    *sc = gate ? (float)gate->scale : 1.0f;
    return !gate || gate->apply != 0;
}

static void cpu_sgd_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g, float *m,
                         float lr, float momentum, float wd)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * sc; /* exact for sc = 1; the clipped gradient as x *= sc would make it */
        float v = momentum * m[i] + lr * (gi + wd * w[i]);
        m[i] = v;
        w[i] -= v;
    }
}

/* ---- optimizer updates beyond Caffe's SGD ---- */

static void cpu_sgd_nesterov_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g,
                                  float *m, float lr, float momentum, float wd)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * sc;
        float d = lr * (gi + wd * w[i]);
        float v = momentum * m[i] + d;
        m[i] = v;
        w[i] -= momentum * v + d;
    }
}

static void cpu_adam_step(core_backend *be, const core_step_state *gate, const core_adam_args *a, size_t n, float *w,
                          const float *g, float *m, float *v)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
    const float step_size = gate ? (float)(a->lr / gate->bc1) : a->step_size;
    const float inv_sqrt_bc2 = gate ? (float)(1 / sqrt(gate->bc2)) : a->inv_sqrt_bc2;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * sc;
        float wi = w[i] * a->decay;
        float d = gi + a->l2 * w[i];
        float mi = a->beta1 * m[i] + a->one_minus_beta1 * d;
        float vi = a->beta2 * v[i] + a->one_minus_beta2 * (d * d);
        m[i] = mi;
        v[i] = vi;
        w[i] = wi - step_size * (mi / (sqrtf(vi) * inv_sqrt_bc2 + a->eps));
    }
}

/* ---- batch normalisation and ReLU ---- */

static void cpu_chan_sums(core_backend *be, int n, int c, int hw, const float *a, const float *b, double *out)
{
    /* one channel per iteration, cells in a fixed order: the sums do not depend on the thread count */
#pragma omp parallel for schedule(static)
    for (int ch = 0; ch < c; ch++) {
        double sa = 0, sab = 0;
        for (int i = 0; i < n; i++) {
            const float *pa = a + ((size_t)i * c + ch) * hw, *pb = b + ((size_t)i * c + ch) * hw;
            double ra = 0, rab = 0;
            for (int k = 0; k < hw; k++) {
                ra += pa[k];
                rab += (double)pa[k] * pb[k];
            }
            sa += ra;
            sab += rab;
        }
        out[ch] = sa;
        out[c + ch] = sab;
    }
}

static void cpu_bn_step(core_backend *be, core_bn_phase phase, const core_bn_args *a)
{
    for (int ch = 0; ch < a->c; ch++) core_bn_channel(phase, a, ch);
}

static void cpu_chan_affine(core_backend *be, int n, int c, int hw, const float *x, const float *scale,
                            const float *shift, int relu, float *y)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        int ch = (int)(p % c);
        float a = scale[ch], s = shift[ch];
        const float *xp = x + (size_t)p * hw;
        float *yp = y + (size_t)p * hw;
        if (relu) {
            for (int k = 0; k < hw; k++) {
                float v = a * xp[k] + s;
                yp[k] = v > 0 ? v : 0.0f;
            }
        } else {
            for (int k = 0; k < hw; k++) yp[k] = a * xp[k] + s;
        }
    }
}

static void cpu_chan_affine_grad(core_backend *be, int n, int c, int hw, const float *dy, const float *x,
                                 const float *coef, float *dx)
{
#pragma omp parallel for schedule(static)
    for (long p = 0; p < (long)n * c; p++) {
        int ch = (int)(p % c);
        float A = coef[ch], B = coef[c + ch], M = coef[2 * c + ch], C = coef[3 * c + ch];
        const float *dyp = dy + (size_t)p * hw, *xp = x + (size_t)p * hw;
        float *dxp = dx + (size_t)p * hw;
        for (int k = 0; k < hw; k++) dxp[k] += A * dyp[k] + B * (xp[k] - M) + C;
    }
}

static void cpu_relu_mask(core_backend *be, size_t n, const float *y, float *dy)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0)) dy[i] = 0.0f;
}

static void cpu_destroy(core_backend *be)
{
    cpu_state *st = be->impl;
    core_cpu_gemm_destroy(st->gemm);
    core_cpu_dnnl_destroy(st->dnnl);
    free(st);
    free(be);
}

const char *core_cpu_conv_path_name(core_cpu_conv_path p) { return p == CORE_CPU_CONV_DNNL ? "dnnl" : "gemm"; }

/* From bench/cpu_conv (docs/design.md, "CPU convolutions"): oneDNN's blocked
 * direct kernels win on every 3x3 and 7x7 shape of the network, forward and
 * backward together; on 1x1 convolutions its batch-1 backward-weights kernel
 * and its per-call reorders cost more than one sgemm on the layers with few
 * outputs or small maps, and all 1x1 layers together are under 1% of the conv
 * time. A fixed rule, not run-time timing, so that a resumed run or another
 * rank never picks differently; it depends on k alone, so every batch size
 * runs the same arithmetic per layer (DP equivalence, exact resume). */
core_cpu_conv_path core_cpu_conv_auto_rule(const core_conv_shape *s)
{
    return s->k == 1 ? CORE_CPU_CONV_GEMM : CORE_CPU_CONV_DNNL;
}

core_cpu_conv_path core_cpu_conv_pick(core_backend *be, const core_conv_shape *s)
{
    CHECK(be->dev == CORE_DEV_CPU, "core_cpu_conv_pick called on the %s backend", be->name);
    const cpu_state *st = be->impl;
    if (!st->dnnl) return CORE_CPU_CONV_GEMM;
    if (st->mode == MODE_DNNL) return CORE_CPU_CONV_DNNL;
    return core_cpu_conv_auto_rule(s);
}

core_backend *core_cpu_backend_create(int threads)
{
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    core_backend *be = core_calloc(1, sizeof *be);
    be->name = "cpu";
    be->dev = CORE_DEV_CPU;
    cpu_state *st = core_calloc(1, sizeof *st);
    be->impl = st;
    const char *env = getenv("SSPOSE_CPU_CONV");
    if (!env || !*env || !strcmp(env, "auto")) st->mode = MODE_AUTO;
    else if (!strcmp(env, "gemm")) st->mode = MODE_GEMM;
    else if (!strcmp(env, "dnnl")) st->mode = MODE_DNNL;
    else CORE_DIE("SSPOSE_CPU_CONV must be gemm, dnnl or auto, got '%s'", env);
    CHECK(st->mode != MODE_DNNL || core_cpu_dnnl_built(),
          "SSPOSE_CPU_CONV=dnnl but this binary was built without oneDNN (install libdnnl-dev and rebuild)");
    st->gemm = core_cpu_gemm_create();
    if (st->mode != MODE_GEMM && core_cpu_dnnl_built()) st->dnnl = core_cpu_dnnl_create();
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_download;
    be->copy = cpu_copy;
    be->sync = cpu_sync;
    be->fill = cpu_fill;
    be->axpy = cpu_axpy;
    be->scale = cpu_scale;
    be->sumsq = cpu_sumsq;
    be->sumsq_segments = cpu_sumsq_segments;
    be->guard_loss = cpu_guard_loss;
    be->guard_step = cpu_guard_step;
    be->conv_forward = cpu_conv_forward;
    be->conv_backward = cpu_conv_backward;
    be->pool_forward = cpu_pool_forward;
    be->pool_backward = cpu_pool_backward;
    be->copy_channels = cpu_copy_channels;
    be->sgd_step = cpu_sgd_step;
    be->sgd_nesterov_step = cpu_sgd_nesterov_step;
    be->adam_step = cpu_adam_step;
    be->chan_sums = cpu_chan_sums;
    be->bn_step = cpu_bn_step;
    be->chan_affine = cpu_chan_affine;
    be->chan_affine_grad = cpu_chan_affine_grad;
    be->relu_mask = cpu_relu_mask;
    be->destroy = cpu_destroy;
    return be;
}
