/* CPU convolution as im2col + OpenBLAS sgemm, one sample at a time (the column
 * buffer of one sample is already the largest scratch the backend holds).
 *
 * The parameter gradients are reductions over every output pixel of the batch
 * (N*H*W: 1.35 M terms for the paper's conv1_2 at batch 10), too long for one
 * float accumulator: db is summed in double, and dw is summed in double over
 * sgemm products of at most DW_BLOCK columns each, so the float rounding of a
 * product never sees more than DW_BLOCK terms. Both paths (this one and
 * oneDNN's) use these two functions; docs/design.md "CPU convolutions" has the
 * measurements. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/cpu_conv.h"

/* Columns (output pixels) per float sgemm product of the weight gradient:
 * OpenBLAS accumulates a product's K dimension in register blocks added into
 * C, so its float error grows with K; 4096 keeps it near 3e-7 of the result. */
#define DW_BLOCK 4096

struct core_cpu_gemm {
    float *col;     /* im2col scratch, grown on demand */
    size_t col_cap; /* floats */
    float *part;    /* one block's weight-gradient product [cout, kdim] */
    size_t part_cap;
    double *acc;    /* the weight gradient's double accumulator */
    size_t acc_cap;
};

core_cpu_gemm *core_cpu_gemm_create(void) { return core_calloc(1, sizeof(core_cpu_gemm)); }

void core_cpu_gemm_destroy(core_cpu_gemm *g)
{
    if (!g) return;
    free(g->col);
    free(g->part);
    free(g->acc);
    free(g);
}

/* 64-byte alignment keeps sgemm's packing on full cache lines */
static void *grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n > *cap) {
        free(*p);
        *p = NULL;
        size_t bytes = (n * elem + 63) & ~(size_t)63;
        CHECK(posix_memalign(p, 64, bytes) == 0, "out of memory allocating %zu bytes on the CPU", bytes);
        *cap = n;
    }
    return *p;
}

static float *scratch(core_cpu_gemm *g, size_t n) { return grow((void **)&g->col, &g->col_cap, n, sizeof(float)); }

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
                int x0 = p - kx > 0 ? p - kx : 0;             /* first x with sx >= 0 */
                int x1 = w - (kx - p) < w ? w - (kx - p) : w; /* one past last x with sx < w */
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

void core_cpu_conv_relu_mask(const core_conv_shape *s, const float *y, float *dy)
{
    size_t ysz = (size_t)s->n * s->cout * s->h * s->w;
#pragma omp parallel for schedule(static) if (ysz > 65536)
    for (size_t i = 0; i < ysz; i++)
        if (!(y[i] > 0)) dy[i] = 0;
}

/* The sgemm operand [cin*k*k, h*w] of one sample: the input itself for 1x1,
 * otherwise its im2col expansion in the scratch buffer. */
static const float *columns(core_cpu_gemm *g, const core_conv_shape *s, const float *xn)
{
    if (s->k == 1) return xn;
    float *c = scratch(g, (size_t)s->cin * s->k * s->k * s->h * s->w);
    im2col(xn, s->cin, s->h, s->w, s->k, c);
    return c;
}

void core_cpu_gemm_conv_forward(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *w,
                                const float *b, float *y)
{
    int hw = s->h * s->w, kdim = s->cin * s->k * s->k;
    for (int n = 0; n < s->n; n++) {
        const float *xn = x + (size_t)n * s->cin * hw;
        float *yn = y + (size_t)n * s->cout * hw;
        const float *col = columns(g, s, xn);
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

void core_cpu_conv_bias_grad(const core_conv_shape *s, const float *dy, float *db)
{
    size_t hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < s->cout; co++) {
        double acc = 0;
        for (int n = 0; n < s->n; n++) {
            const float *row = dy + ((size_t)n * s->cout + co) * hw;
            for (size_t i = 0; i < hw; i++) acc += row[i];
        }
        db[co] += (float)acc;
    }
}

void core_cpu_gemm_conv_backward_weights(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *dy,
                                         float *dw)
{
    int hw = s->h * s->w, kdim = s->cin * s->k * s->k;
    size_t wn = (size_t)s->cout * kdim;
    float *part = grow((void **)&g->part, &g->part_cap, wn, sizeof(float));
    double *acc = grow((void **)&g->acc, &g->acc_cap, wn, sizeof(double));
    memset(acc, 0, wn * sizeof(double));
    for (int n = 0; n < s->n; n++) {
        const float *col = columns(g, s, x + (size_t)n * s->cin * hw);
        const float *dyn = dy + (size_t)n * s->cout * hw;
        for (int j0 = 0; j0 < hw; j0 += DW_BLOCK) {
            int cols = hw - j0 < DW_BLOCK ? hw - j0 : DW_BLOCK;
            /* part[cout, kdim] = dy[cout, j0:j0+cols] * col[kdim, j0:j0+cols]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->cout, kdim, cols, 1.0f, dyn + j0, hw, col + j0,
                        hw, 0.0f, part, kdim);
#pragma omp parallel for schedule(static) if (wn > 65536)
            for (size_t i = 0; i < wn; i++) acc[i] += part[i];
        }
    }
#pragma omp parallel for schedule(static) if (wn > 65536)
    for (size_t i = 0; i < wn; i++) dw[i] += (float)acc[i];
}

void core_cpu_gemm_conv_backward(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db)
{
    int hw = s->h * s->w, kdim = s->cin * s->k * s->k;
    if (s->relu) core_cpu_conv_relu_mask(s, y, dy);
    core_cpu_conv_bias_grad(s, dy, db);
    core_cpu_gemm_conv_backward_weights(g, s, x, dy, dw);
    if (!dx) return;
    for (int n = 0; n < s->n; n++) {
        const float *dyn = dy + (size_t)n * s->cout * hw;
        float *dxn = dx + (size_t)n * s->cin * hw;
        if (s->k == 1) {
            /* dx[cin, hw] += W^T[cin, cout] * dy[cout, hw] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, s->cin, hw, s->cout, 1.0f, w, kdim, dyn, hw, 1.0f,
                        dxn, hw);
        } else {
            float *dcol = scratch(g, (size_t)kdim * hw);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, kdim, hw, s->cout, 1.0f, w, kdim, dyn, hw, 0.0f,
                        dcol, hw);
            col2im_add(dcol, s->cin, s->h, s->w, s->k, dxn);
        }
    }
}
