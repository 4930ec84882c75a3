/* CPU backend: convolutions as im2col + OpenBLAS sgemm, everything else as
 * OpenMP loops. Chosen over oneDNN by measurement on this project's shapes
 * (see bench/cpu_step and docs/design.md). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"

typedef struct {
    float *col;      /* im2col scratch, grown on demand */
    size_t col_cap;  /* floats */
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

static void cpu_free(core_backend *be, float *p) { free(p); }
static void cpu_copy(core_backend *be, float *dst, const float *src, size_t n)
{
    if (dst != src) memcpy(dst, src, n * sizeof(float));
}
static void cpu_sync(core_backend *be) {}

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
    double s = 0;
    /* fixed chunking keeps the sum identical run to run for a given thread count */
#pragma omp parallel for reduction(+ : s) schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static float *scratch(core_backend *be, size_t n)
{
    cpu_state *st = be->impl;
    if (n > st->col_cap) {
        free(st->col);
        st->col = cpu_alloc(be, n);
        st->col_cap = n;
    }
    return st->col;
}

/* col[(c*k*k + ky*k + kx), (y*w + x)] = in[c, y+ky-p, x+kx-p] (0 outside) */
static void im2col(const float *in, int c, int h, int w, int k, float *col)
{
    int p = k / 2, hw = h * w;
#pragma omp parallel for schedule(static) collapse(2)
    for (int ci = 0; ci < c; ci++)
        for (int kk = 0; kk < k * k; kk++) {
            int ky = kk / k, kx = kk % k;
            float *dst = col + ((size_t)ci * k * k + kk) * hw;
            const float *src = in + (size_t)ci * hw;
            for (int y = 0; y < h; y++) {
                int sy = y + ky - p;
                float *drow = dst + (size_t)y * w;
                if (sy < 0 || sy >= h) { memset(drow, 0, w * sizeof(float)); continue; }
                const float *srow = src + (size_t)sy * w;
                int x0 = p - kx > 0 ? p - kx : 0;                /* first x with sx >= 0 */
                int x1 = w - (kx - p) < w ? w - (kx - p) : w;    /* one past last x with sx < w */
                for (int x = 0; x < x0; x++) drow[x] = 0;
                if (x1 > x0) memcpy(drow + x0, srow + x0 + kx - p, (x1 - x0) * sizeof(float));
                for (int x = x1 > x0 ? x1 : x0; x < w; x++) drow[x] = 0;
            }
        }
}

/* in[c, y+ky-p, x+kx-p] += col[...]: parallel over input channels so no two threads touch one plane. */
static void col2im_add(const float *col, int c, int h, int w, int k, float *in)
{
    int p = k / 2, hw = h * w;
#pragma omp parallel for schedule(static)
    for (int ci = 0; ci < c; ci++) {
        float *dst = in + (size_t)ci * hw;
        for (int kk = 0; kk < k * k; kk++) {
            int ky = kk / k, kx = kk % k;
            const float *src = col + ((size_t)ci * k * k + kk) * hw;
            for (int y = 0; y < h; y++) {
                int sy = y + ky - p;
                if (sy < 0 || sy >= h) continue;
                const float *crow = src + (size_t)y * w;
                float *drow = dst + (size_t)sy * w;
                int x0 = p - kx > 0 ? p - kx : 0;
                int x1 = w - (kx - p) < w ? w - (kx - p) : w;
                for (int x = x0; x < x1; x++) drow[x + kx - p] += crow[x];
            }
        }
    }
}

static void cpu_conv_forward(core_backend *be, const core_conv_shape *s, const float *x, const float *w,
                             const float *b, float *y)
{
    int hw = s->h * s->w, kdim = s->cin * s->k * s->k;
    for (int n = 0; n < s->n; n++) {
        const float *xn = x + (size_t)n * s->cin * hw;
        float *yn = y + (size_t)n * s->cout * hw;
        const float *col = xn;
        if (s->k != 1) {
            float *c = scratch(be, (size_t)kdim * hw);
            im2col(xn, s->cin, s->h, s->w, s->k, c);
            col = c;
        }
        /* y[cout, hw] = W[cout, kdim] * col[kdim, hw] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s->cout, hw, kdim, 1.0f, w, kdim, col, hw, 0.0f, yn,
                    hw);
#pragma omp parallel for schedule(static)
        for (int co = 0; co < s->cout; co++) {
            float *row = yn + (size_t)co * hw, bv = b[co];
            if (s->relu)
                for (int i = 0; i < hw; i++) { float v = row[i] + bv; row[i] = v > 0 ? v : 0; }
            else
                for (int i = 0; i < hw; i++) row[i] += bv;
        }
    }
}

static void cpu_conv_backward(core_backend *be, const core_conv_shape *s, const float *x, const float *w,
                              const float *y, float *dy, float *dx, float *dw, float *db)
{
    int hw = s->h * s->w, kdim = s->cin * s->k * s->k;
    size_t ysz = (size_t)s->n * s->cout * hw;
    if (s->relu) {
#pragma omp parallel for schedule(static) if (ysz > 65536)
        for (size_t i = 0; i < ysz; i++)
            if (!(y[i] > 0)) dy[i] = 0;
    }
    for (int n = 0; n < s->n; n++) {
        const float *xn = x + (size_t)n * s->cin * hw;
        const float *dyn = dy + (size_t)n * s->cout * hw;
#pragma omp parallel for schedule(static)
        for (int co = 0; co < s->cout; co++) {
            const float *row = dyn + (size_t)co * hw;
            double acc = 0;
            for (int i = 0; i < hw; i++) acc += row[i];
            db[co] += (float)acc;
        }
        const float *col = xn;
        if (s->k != 1) {
            float *c = scratch(be, (size_t)kdim * hw);
            im2col(xn, s->cin, s->h, s->w, s->k, c);
            col = c;
        }
        /* dW[cout, kdim] += dy[cout, hw] * col[kdim, hw]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->cout, kdim, hw, 1.0f, dyn, hw, col, hw, 1.0f, dw,
                    kdim);
        if (!dx) continue;
        float *dxn = dx + (size_t)n * s->cin * hw;
        if (s->k == 1) {
            /* dx[cin, hw] += W^T[cin, cout] * dy[cout, hw] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->cin, hw, s->cout, 1.0f, w, kdim, dyn, hw, 1.0f,
                        dxn, hw);
        } else {
            float *dcol = scratch(be, (size_t)kdim * hw);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, hw, s->cout, 1.0f, w, kdim, dyn, hw, 0.0f,
                        dcol, hw);
            col2im_add(dcol, s->cin, s->h, s->w, s->k, dxn);
        }
    }
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

static void cpu_sgd_step(core_backend *be, size_t n, float *w, const float *g, float *m, float lr, float momentum,
                         float wd)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = momentum * m[i] + lr * (g[i] + wd * w[i]);
        m[i] = v;
        w[i] -= v;
    }
}

static void cpu_destroy(core_backend *be)
{
    cpu_state *st = be->impl;
    free(st->col);
    free(st);
    free(be);
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
    be->impl = core_calloc(1, sizeof(cpu_state));
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->upload = cpu_copy;
    be->download = cpu_copy;
    be->copy = cpu_copy;
    be->sync = cpu_sync;
    be->fill = cpu_fill;
    be->axpy = cpu_axpy;
    be->scale = cpu_scale;
    be->sumsq = cpu_sumsq;
    be->conv_forward = cpu_conv_forward;
    be->conv_backward = cpu_conv_backward;
    be->pool_forward = cpu_pool_forward;
    be->pool_backward = cpu_pool_backward;
    be->copy_channels = cpu_copy_channels;
    be->sgd_step = cpu_sgd_step;
    be->destroy = cpu_destroy;
    return be;
}
