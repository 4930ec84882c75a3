/* The CPU convolution paths (core/cpu_conv.h): im2col+sgemm and oneDNN, each
 * against a direct double-precision convolution and against each other, on
 * shapes that stress the blocked layouts (channel counts off multiples of 16,
 * odd H/W, padding wider than the image, batch 2, k = 1/3/7, ReLU on/off);
 * accumulation into pre-filled dx/dw/db and dx == NULL; central finite
 * differences of the oneDNN path; bit-identical repeats; SSPOSE_CPU_CONV. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/cpu_conv.h"
#include "core/rng.h"
#include "tests/test.h"

#define THREADS 2

static core_rng rng;
static core_cpu_gemm *gemm;
static core_cpu_dnnl *dnnl; /* NULL when not built */

#define NEED_DNNL() do { if (!dnnl) T_SKIP("built without oneDNN (no libdnnl-dev, or make DNNL=0)"); } while (0)

static const core_conv_shape SHAPES[] = {
    /* n, cin, h, w, cout, k, relu */
    {1, 3, 9, 11, 16, 3, 1},  /* the image layer: 3 input channels */
    {2, 5, 7, 5, 7, 3, 0},    /* nothing a multiple of 16 */
    {1, 17, 13, 9, 19, 1, 0}, /* 1x1, linear */
    {2, 32, 8, 8, 32, 1, 1},  /* 1x1, full blocks */
    {1, 21, 11, 13, 16, 7, 1},
    {2, 16, 5, 7, 33, 7, 0},
    {1, 38, 6, 6, 20, 3, 1},  /* p2h conv1-like */
    {2, 48, 10, 10, 40, 3, 1},
    {1, 4, 3, 2, 5, 7, 1},    /* the 7x7 window is wider than the image */
    {2, 1, 1, 1, 1, 3, 0},    /* 1x1 image, one channel */
};
#define NSHAPES ((int)(sizeof SHAPES / sizeof *SHAPES))

static float *randv(size_t n, double scale)
{
    float *v = core_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) v[i] = (float)(scale * (2 * core_rng_uniform(&rng) - 1));
    return v;
}

static float *fdup(const float *v, size_t n)
{
    float *c = core_malloc((n ? n : 1) * sizeof(float));
    memcpy(c, v, n * sizeof(float));
    return c;
}

static size_t xsize(const core_conv_shape *s) { return (size_t)s->n * s->cin * s->h * s->w; }
static size_t ysize(const core_conv_shape *s) { return (size_t)s->n * s->cout * s->h * s->w; }
static size_t wsize(const core_conv_shape *s) { return (size_t)s->cout * s->cin * s->k * s->k; }

/* Gradients of sum(g * y_lin) for an already-masked g: dx, dw, db (overwritten). */
static void ref_backward(const core_conv_shape *s, const float *x, const float *w, const float *g, double *dx,
                         double *dw, double *db)
{
    int p = s->k / 2;
    memset(dx, 0, xsize(s) * sizeof(double));
    memset(dw, 0, wsize(s) * sizeof(double));
    memset(db, 0, s->cout * sizeof(double));
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int i = 0; i < s->h; i++)
                for (int j = 0; j < s->w; j++) {
                    double gv = g[((n * s->cout + co) * s->h + i) * s->w + j];
                    if (gv == 0) continue;
                    db[co] += gv;
                    for (int ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < s->k; ky++)
                            for (int kx = 0; kx < s->k; kx++) {
                                int yy = i + ky - p, xx = j + kx - p;
                                if (yy < 0 || yy >= s->h || xx < 0 || xx >= s->w) continue;
                                size_t wi = ((size_t)(co * s->cin + ci) * s->k + ky) * s->k + kx;
                                size_t xi = ((size_t)(n * s->cin + ci) * s->h + yy) * s->w + xx;
                                dw[wi] += gv * x[xi];
                                dx[xi] += gv * w[wi];
                            }
                }
}

static void forward(core_cpu_conv_path path, const core_conv_shape *s, const float *x, const float *w,
                    const float *b, float *y)
{
    if (path == CORE_CPU_CONV_DNNL) core_cpu_dnnl_conv_forward(dnnl, s, x, w, b, y);
    else core_cpu_gemm_conv_forward(gemm, s, x, w, b, y);
}

static void backward(core_cpu_conv_path path, const core_conv_shape *s, const float *x, const float *w,
                     const float *y, float *dy, float *dx, float *dw, float *db)
{
    if (path == CORE_CPU_CONV_DNNL) core_cpu_dnnl_conv_backward(dnnl, s, x, w, y, dy, dx, dw, db);
    else core_cpu_gemm_conv_backward(gemm, s, x, w, y, dy, dx, dw, db);
}

/* max |got - (base + ref)| / (max |base + ref| + 1e-3): float results of sums
 * of up to ~1000 products of O(1) terms sit within a few 1e-7 of the double
 * reference; 1e-5 leaves room and still catches any wrong tap or channel. */
static double rel_err(const float *got, const float *base, const double *ref, size_t n)
{
    double maxerr = 0, maxref = 0;
    for (size_t i = 0; i < n; i++) {
        double want = (base ? base[i] : 0) + ref[i];
        double e = fabs(got[i] - want);
        if (!(e <= maxerr)) maxerr = e; /* NaN sticks */
        if (fabs(want) > maxref) maxref = fabs(want);
    }
    return maxerr / (maxref + 1e-3);
}

#define TOL 1e-5

/* One path on one shape against the reference: forward, then backward with
 * pre-filled dx/dw/db (accumulation) and, separately, with dx == NULL. */
static void check_path(core_cpu_conv_path path, const core_conv_shape *s)
{
    const char *pn = core_cpu_conv_path_name(path);
    size_t xs = xsize(s), ys = ysize(s), ws = wsize(s);
    float *x = randv(xs, 1), *w = randv(ws, 0.5), *b = randv(s->cout, 0.5), *y = randv(ys, 9);
    double *yr = core_malloc(ys * sizeof(double));
    forward(path, s, x, w, b, y);
    t_conv_ref(s, x, w, b, yr);
    double e = rel_err(y, NULL, yr, ys);
    T_CHECKF(e <= TOL, "%s forward n%d cin%d %dx%d cout%d k%d relu%d: rel err %.3g", pn, s->n, s->cin, s->h, s->w,
             s->cout, s->k, s->relu, e);

    float *g = randv(ys, 1), *dy = fdup(g, ys);
    float *dx0 = randv(xs, 1), *dw0 = randv(ws, 1), *db0 = randv(s->cout, 1);
    float *dx = fdup(dx0, xs), *dw = fdup(dw0, ws), *db = fdup(db0, s->cout);
    backward(path, s, x, w, y, dy, dx, dw, db);
    /* the masked gradient, exactly: where our own forward output is not positive */
    int mask_ok = 1;
    for (size_t i = 0; i < ys; i++) {
        float want = s->relu && !(y[i] > 0) ? 0.0f : g[i];
        if (dy[i] != want) mask_ok = 0;
        g[i] = want;
    }
    T_CHECKF(mask_ok, "%s: dy is not the ReLU-masked gradient", pn);
    double *dxr = core_malloc(xs * sizeof(double)), *dwr = core_malloc(ws * sizeof(double)),
           *dbr = core_malloc(s->cout * sizeof(double));
    ref_backward(s, x, w, g, dxr, dwr, dbr);
    double ex = rel_err(dx, dx0, dxr, xs), ew = rel_err(dw, dw0, dwr, ws), eb = rel_err(db, db0, dbr, s->cout);
    T_CHECKF(ex <= TOL && ew <= TOL && eb <= TOL,
             "%s backward n%d cin%d %dx%d cout%d k%d relu%d: rel err dx %.3g dw %.3g db %.3g", pn, s->n, s->cin,
             s->h, s->w, s->cout, s->k, s->relu, ex, ew, eb);

    /* dx == NULL: the input gradient is skipped, dw/db still accumulate */
    memcpy(dy, g, ys * sizeof(float));
    memcpy(dw, dw0, ws * sizeof(float));
    memcpy(db, db0, s->cout * sizeof(float));
    backward(path, s, x, w, y, dy, NULL, dw, db);
    ew = rel_err(dw, dw0, dwr, ws);
    eb = rel_err(db, db0, dbr, s->cout);
    T_CHECKF(ew <= TOL && eb <= TOL, "%s backward dx=NULL k%d: rel err dw %.3g db %.3g", pn, s->k, ew, eb);

    float *all[] = {x, w, b, y, g, dy, dx0, dw0, db0, dx, dw, db};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(yr);
    free(dxr);
    free(dwr);
    free(dbr);
}

static void gemm_matches_direct(void)
{
    for (int i = 0; i < NSHAPES; i++) check_path(CORE_CPU_CONV_GEMM, &SHAPES[i]);
}

static void dnnl_matches_direct(void)
{
    NEED_DNNL();
    for (int i = 0; i < NSHAPES; i++) check_path(CORE_CPU_CONV_DNNL, &SHAPES[i]);
}

/* Both paths on the same inputs agree closely (their rounding differs). */
static void dnnl_matches_gemm(void)
{
    NEED_DNNL();
    for (int i = 0; i < NSHAPES; i++) {
        const core_conv_shape *s = &SHAPES[i];
        size_t xs = xsize(s), ys = ysize(s), ws = wsize(s);
        float *x = randv(xs, 1), *w = randv(ws, 0.5), *b = randv(s->cout, 0.5);
        float *y[2], *dy[2], *dx[2], *dw[2], *db[2];
        float *g = randv(ys, 1), *dx0 = randv(xs, 1), *dw0 = randv(ws, 1), *db0 = randv(s->cout, 1);
        for (int p = 0; p < 2; p++) {
            y[p] = core_malloc(ys * sizeof(float));
            dy[p] = fdup(g, ys);
            dx[p] = fdup(dx0, xs);
            dw[p] = fdup(dw0, ws);
            db[p] = fdup(db0, s->cout);
            forward(p ? CORE_CPU_CONV_DNNL : CORE_CPU_CONV_GEMM, s, x, w, b, y[p]);
        }
        /* backward from one forward output, so both apply the same mask */
        for (int p = 0; p < 2; p++)
            backward(p ? CORE_CPU_CONV_DNNL : CORE_CPU_CONV_GEMM, s, x, w, y[0], dy[p], dx[p], dw[p], db[p]);
        double *tmp = core_malloc((xs > ws ? (xs > ys ? xs : ys) : (ws > ys ? ws : ys)) * sizeof(double));
#define CMP(name, arr, n)                                                                                       \
    do {                                                                                                        \
        for (size_t q = 0; q < (n); q++) tmp[q] = arr[0][q];                                                    \
        double e_ = rel_err(arr[1], NULL, tmp, (n));                                                            \
        T_CHECKF(e_ <= TOL, "shape %d: %s dnnl vs gemm rel err %.3g", i, name, e_);                             \
    } while (0)
        CMP("y", y, ys);
        CMP("dy", dy, ys);
        CMP("dx", dx, xs);
        CMP("dw", dw, ws);
        CMP("db", db, (size_t)s->cout);
#undef CMP
        free(tmp);
        for (int p = 0; p < 2; p++) {
            free(y[p]);
            free(dy[p]);
            free(dx[p]);
            free(dw[p]);
            free(db[p]);
        }
        free(x), free(w), free(b), free(g), free(dx0), free(dw0), free(db0);
    }
}

/* ---- precision at the networks' shapes ----
 * The parameter gradients reduce over N*H*W (1.35 M terms for the paper's
 * conv1_1/conv1_2 at batch 10, 368 px), the input gradient over cout*k*k and
 * the output over cin*k*k (up to 221*49). Each shape below keeps one of those
 * lengths as in configs/paper.ini or configs/tiny.ini and shrinks the other
 * dimensions, so the double reference stays affordable; the reference covers
 * every db element and CHECK_CH output/input channels of y, dw and dx. Every
 * tensor is bounded on its own: max |got - ref| <= 1e-5 max |ref|. */
typedef struct {
    const char *name;
    core_conv_shape s;
} named_shape;

static const named_shape PREC_SHAPES[] = {
    /* n, cin, h, w, cout, k, relu */
    {"paper conv1_1 (N*H*W 1.35M)", {10, 3, 368, 368, 8, 3, 0}},
    {"paper conv1_2 pixels, 8 channels", {10, 8, 368, 368, 8, 3, 0}},
    {"paper conv2_2 pixels (N*H*W 339k)", {10, 8, 184, 184, 16, 3, 0}},
    {"paper conv4_2 channels (K 4608)", {1, 512, 8, 8, 512, 3, 0}},
    {"paper stage>=2 conv1 (K 10829 fwd)", {1, 221, 9, 9, 128, 7, 0}},
    {"paper stage>=2 conv2 pixels (N*H*W 21k, K 6272)", {10, 128, 46, 46, 16, 7, 0}},
    {"paper stage1 conv4 1x1", {10, 128, 46, 46, 512, 1, 0}},
    {"tiny conv1_2 (batch 4, 128 px)", {4, 16, 128, 128, 16, 3, 0}},
    {"tiny stage>=2 conv1", {4, 125, 16, 16, 32, 7, 0}},
};
#define CHECK_CH 3

/* y, dw and dx of the checked channels and all of db, in double. g is dy. */
static void ref_subset(const core_conv_shape *s, const float *x, const float *w, const float *b, const float *g,
                       const int *ch_out, const int *ch_in, double *y, double *dw, double *dx, double *db)
{
    int p = s->k / 2, kk = s->k * s->k;
    size_t hw = (size_t)s->h * s->w;
#pragma omp parallel for schedule(static)
    for (int co = 0; co < s->cout; co++) {
        double acc = 0;
        for (int n = 0; n < s->n; n++)
            for (size_t i = 0; i < hw; i++) acc += g[((size_t)n * s->cout + co) * hw + i];
        db[co] = acc;
    }
    /* one (channel, sample/input channel) pair per iteration; taps outside the image skipped */
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int c = 0; c < CHECK_CH; c++)
        for (int ci = 0; ci < s->cin; ci++)
            for (int t = 0; t < kk; t++) {
                int co = ch_out[c], ky = t / s->k, kx = t % s->k;
                double acc = 0;
                for (int n = 0; n < s->n; n++) {
                    const float *gp = g + ((size_t)n * s->cout + co) * hw, *xp = x + ((size_t)n * s->cin + ci) * hw;
                    for (int i = 0; i < s->h; i++) {
                        int yy = i + ky - p;
                        if (yy < 0 || yy >= s->h) continue;
                        for (int j = 0; j < s->w; j++) {
                            int xx = j + kx - p;
                            if (xx >= 0 && xx < s->w) acc += (double)gp[i * s->w + j] * xp[yy * s->w + xx];
                        }
                    }
                }
                dw[((size_t)c * s->cin + ci) * kk + t] = acc;
            }
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int c = 0; c < CHECK_CH; c++)
        for (int n = 0; n < s->n; n++) {
            double *yo = y + ((size_t)c * s->n + n) * hw, *xo = dx + ((size_t)c * s->n + n) * hw;
            for (size_t i = 0; i < hw; i++) yo[i] = b[ch_out[c]], xo[i] = 0;
            for (int t = 0; t < kk; t++) {
                int ky = t / s->k, kx = t % s->k;
                for (int i = 0; i < s->h; i++) {
                    int yy = i + ky - p;
                    if (yy < 0 || yy >= s->h) continue;
                    for (int j = 0; j < s->w; j++) {
                        int xx = j + kx - p;
                        if (xx < 0 || xx >= s->w) continue;
                        /* y[co](i,j) += w[co,ci,t] x[ci](yy,xx); dx[ci](yy,xx) += w[co,ci,t] g[co](i,j) */
                        double sy = 0, sx = 0;
                        for (int q = 0; q < s->cin; q++)
                            sy += (double)w[(((size_t)ch_out[c] * s->cin + q) * kk) + t] *
                                  x[((size_t)n * s->cin + q) * hw + yy * s->w + xx];
                        for (int q = 0; q < s->cout; q++)
                            sx += (double)w[(((size_t)q * s->cin + ch_in[c]) * kk) + t] *
                                  g[((size_t)n * s->cout + q) * hw + i * s->w + j];
                        yo[i * s->w + j] += sy;
                        xo[yy * s->w + xx] += sx;
                    }
                }
            }
        }
}

/* max |got - ref| / max |ref| over one tensor's checked elements */
static double tensor_err(const float *got, const double *ref, size_t n)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(got[i] - ref[i]);
        if (!(d <= e)) e = d;
        if (fabs(ref[i]) > m) m = fabs(ref[i]);
    }
    return e / (m > 0 ? m : 1);
}

#define PREC_TOL 1e-5

static void check_precision(core_cpu_conv_path path, const named_shape *ns)
{
    const core_conv_shape *s = &ns->s;
    size_t hw = (size_t)s->h * s->w, xs = xsize(s), ys = ysize(s), ws = wsize(s), kk = (size_t)s->k * s->k;
    /* inputs as the network sees them: post-ReLU activations (the image is centred), a
     * gradient with both signs and a mean, so the sums cancel partly, as dy's do */
    float *x = randv(xs, 0.5), *w = randv(ws, 1.0 / sqrt((double)s->cin * kk)), *b = randv(s->cout, 0.1);
    float *g = randv(ys, 1);
    for (size_t i = 0; i < xs; i++) x[i] = s->cin == 3 ? x[i] : x[i] + 0.5f;
    for (size_t i = 0; i < ys; i++) g[i] += 0.1f;
    int ch_out[CHECK_CH], ch_in[CHECK_CH];
    for (int c = 0; c < CHECK_CH; c++) {
        ch_out[c] = (int)(core_rng_uniform(&rng) * s->cout);
        ch_in[c] = (int)(core_rng_uniform(&rng) * s->cin);
    }
    double *yr = core_malloc(CHECK_CH * s->n * hw * sizeof(double)), *dxr = core_malloc(CHECK_CH * s->n * hw * sizeof(double)),
           *dwr = core_malloc(CHECK_CH * s->cin * kk * sizeof(double)), *dbr = core_malloc(s->cout * sizeof(double));
    ref_subset(s, x, w, b, g, ch_out, ch_in, yr, dwr, dxr, dbr);
    float *y = core_malloc(ys * sizeof(float)), *dx = core_calloc(xs, sizeof(float)), *dw = core_calloc(ws, sizeof(float)),
          *db = core_calloc(s->cout, sizeof(float));
    forward(path, s, x, w, b, y);
    backward(path, s, x, w, y, g, dx, dw, db);
    /* gather the checked channels into reference order */
    float *gy = core_malloc(CHECK_CH * s->n * hw * sizeof(float)), *gx = core_malloc(CHECK_CH * s->n * hw * sizeof(float)),
          *gw = core_malloc(CHECK_CH * s->cin * kk * sizeof(float));
    for (int c = 0; c < CHECK_CH; c++) {
        for (int n = 0; n < s->n; n++) {
            memcpy(gy + ((size_t)c * s->n + n) * hw, y + ((size_t)n * s->cout + ch_out[c]) * hw, hw * sizeof(float));
            memcpy(gx + ((size_t)c * s->n + n) * hw, dx + ((size_t)n * s->cin + ch_in[c]) * hw, hw * sizeof(float));
        }
        memcpy(gw + (size_t)c * s->cin * kk, dw + (size_t)ch_out[c] * s->cin * kk, s->cin * kk * sizeof(float));
    }
    double ey = tensor_err(gy, yr, CHECK_CH * s->n * hw), ex = tensor_err(gx, dxr, CHECK_CH * s->n * hw),
           ew = tensor_err(gw, dwr, CHECK_CH * s->cin * kk), eb = tensor_err(db, dbr, s->cout);
    printf("# %s %s: relative error y %.2g dx %.2g dw %.2g db %.2g\n", core_cpu_conv_path_name(path), ns->name, ey,
           ex, ew, eb);
    T_CHECKF(ey <= PREC_TOL, "%s %s: y error %.3g", core_cpu_conv_path_name(path), ns->name, ey);
    T_CHECKF(ex <= PREC_TOL, "%s %s: dx error %.3g", core_cpu_conv_path_name(path), ns->name, ex);
    T_CHECKF(ew <= PREC_TOL, "%s %s: dw error %.3g", core_cpu_conv_path_name(path), ns->name, ew);
    T_CHECKF(eb <= PREC_TOL, "%s %s: db error %.3g", core_cpu_conv_path_name(path), ns->name, eb);
    float *all[] = {x, w, b, g, y, dx, dw, db, gy, gx, gw};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(yr), free(dxr), free(dwr), free(dbr);
}

static void gemm_precision_at_network_shapes(void)
{
    for (size_t i = 0; i < sizeof PREC_SHAPES / sizeof *PREC_SHAPES; i++) check_precision(CORE_CPU_CONV_GEMM, &PREC_SHAPES[i]);
}

static void dnnl_precision_at_network_shapes(void)
{
    NEED_DNNL();
    for (size_t i = 0; i < sizeof PREC_SHAPES / sizeof *PREC_SHAPES; i++) check_precision(CORE_CPU_CONV_DNNL, &PREC_SHAPES[i]);
}

/* L = sum(r * y) through the oneDNN forward, in double over float outputs. */
static double objective(const core_conv_shape *s, const float *x, const float *w, const float *b, const float *r,
                        float *y, unsigned char *mask)
{
    core_cpu_dnnl_conv_forward(dnnl, s, x, w, b, y);
    double L = 0;
    for (size_t i = 0; i < ysize(s); i++) {
        L += (double)r[i] * y[i];
        if (mask) mask[i] = s->relu && y[i] > 0;
    }
    return L;
}

/* Central differences of L against the oneDNN backward. The conv is linear in
 * each argument, so away from ReLU kinks the difference is exact up to float
 * rounding of the outputs the step touches; steps whose two sides see a
 * different ReLU pattern are skipped (and must be rare). */
static void dnnl_finite_differences(void)
{
    NEED_DNNL();
    static const core_conv_shape fd_shapes[] = {
        {2, 5, 7, 9, 6, 3, 1}, {1, 19, 5, 6, 17, 7, 1}, {2, 18, 4, 5, 20, 1, 0}, {1, 3, 6, 7, 16, 3, 0}};
    const double eps = 1e-2;
    static const char *names[3] = {"x", "w", "b"};
    for (size_t si = 0; si < sizeof fd_shapes / sizeof *fd_shapes; si++) {
        const core_conv_shape *s = &fd_shapes[si];
        size_t xs = xsize(s), ys = ysize(s), ws = wsize(s);
        float *x = randv(xs, 1), *w = randv(ws, 0.5), *b = randv(s->cout, 0.5), *r = randv(ys, 1);
        float *y = core_malloc(ys * sizeof(float)), *dy = fdup(r, ys);
        float *dx = core_calloc(xs, sizeof(float)), *dw = core_calloc(ws, sizeof(float)),
              *db = core_calloc(s->cout, sizeof(float));
        unsigned char *m0 = core_malloc(ys), *m1 = core_malloc(ys);
        core_cpu_dnnl_conv_forward(dnnl, s, x, w, b, y);
        core_cpu_dnnl_conv_backward(dnnl, s, x, w, y, dy, dx, dw, db);
        int checked = 0, skipped = 0;
        for (int which = 0; which < 3; which++) {
            float *v = which == 0 ? x : which == 1 ? w : b, *grad = which == 0 ? dx : which == 1 ? dw : db;
            size_t nv = which == 0 ? xs : which == 1 ? ws : (size_t)s->cout;
            for (int t = 0; t < 12; t++) {
                size_t i = (size_t)(core_rng_uniform(&rng) * nv) % nv;
                float keep = v[i];
                v[i] = keep + (float)eps;
                double lp = objective(s, x, w, b, r, y, m0);
                v[i] = keep - (float)eps;
                double lm = objective(s, x, w, b, r, y, m1);
                v[i] = keep;
                if (memcmp(m0, m1, ys)) { skipped++; continue; }
                double fd = (lp - lm) / ((double)(keep + (float)eps) - (double)(keep - (float)eps));
                checked++;
                T_CHECKF(fabs(fd - grad[i]) <= 1e-3 * fabs(fd) + 2e-4,
                         "shape %zu %s[%zu]: finite difference %.6g, backward %.6g", si, names[which], i, fd, grad[i]);
            }
        }
        T_CHECKF(checked >= 24, "shape %zu: only %d of %d steps avoided a ReLU kink", si, checked, checked + skipped);
        free(x), free(w), free(b), free(r), free(y), free(dy), free(dx), free(dw), free(db), free(m0), free(m1);
    }
}

/* Same inputs, same thread count -> the same bits, from a fresh instance too
 * (the trainer's exact resume and rank-count equivalence rest on this). */
static void run_once(core_cpu_conv_path path, core_cpu_dnnl *d, const core_conv_shape *s, const float *x,
                     const float *w, const float *b, const float *g, float *out)
{
    size_t xs = xsize(s), ys = ysize(s), ws = wsize(s);
    float *y = out, *dy = out + ys, *dx = dy + ys, *dw = dx + xs, *db = dw + ws;
    memcpy(dy, g, ys * sizeof(float));
    memset(dx, 0, (xs + ws + s->cout) * sizeof(float));
    if (path == CORE_CPU_CONV_DNNL) {
        core_cpu_dnnl_conv_forward(d, s, x, w, b, y);
        core_cpu_dnnl_conv_backward(d, s, x, w, y, dy, dx, dw, db);
    } else {
        core_cpu_gemm_conv_forward(gemm, s, x, w, b, y);
        core_cpu_gemm_conv_backward(gemm, s, x, w, y, dy, dx, dw, db);
    }
}

static void bit_identical_repeats(void)
{
    static const core_conv_shape shapes[] = {
        {1, 64, 23, 23, 64, 3, 1}, {2, 32, 17, 17, 48, 7, 1}, {1, 128, 12, 12, 38, 1, 0}, {1, 3, 40, 40, 16, 3, 1}};
    for (int pi = 0; pi < 2; pi++) {
        core_cpu_conv_path path = pi ? CORE_CPU_CONV_DNNL : CORE_CPU_CONV_GEMM;
        if (path == CORE_CPU_CONV_DNNL && !dnnl) continue;
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const core_conv_shape *s = &shapes[si];
            size_t xs = xsize(s), ys = ysize(s), ws = wsize(s), tot = 2 * ys + xs + ws + s->cout;
            float *x = randv(xs, 1), *w = randv(ws, 0.5), *b = randv(s->cout, 0.5), *g = randv(ys, 1);
            float *o1 = core_malloc(tot * sizeof(float)), *o2 = core_malloc(tot * sizeof(float)),
                  *o3 = core_malloc(tot * sizeof(float));
            run_once(path, dnnl, s, x, w, b, g, o1);
            run_once(path, dnnl, s, x, w, b, g, o2);
            core_cpu_dnnl *fresh = path == CORE_CPU_CONV_DNNL ? core_cpu_dnnl_create() : NULL;
            run_once(path, fresh, s, x, w, b, g, o3);
            core_cpu_dnnl_destroy(fresh);
            T_CHECKF(!memcmp(o1, o2, tot * sizeof(float)) && !memcmp(o1, o3, tot * sizeof(float)),
                     "%s shape %zu: repeated runs differ", core_cpu_conv_path_name(path), si);
            free(x), free(w), free(b), free(g), free(o1), free(o2), free(o3);
        }
    }
}

/* ---- SSPOSE_CPU_CONV ---- */

static core_backend *backend_with(const char *mode)
{
    if (mode) setenv("SSPOSE_CPU_CONV", mode, 1);
    else unsetenv("SSPOSE_CPU_CONV");
    core_backend *be = core_cpu_backend_create(THREADS);
    unsetenv("SSPOSE_CPU_CONV");
    return be;
}

/* The backend's result on shape s equals the chosen path's bit for bit. */
static int backend_uses(core_backend *be, const core_conv_shape *s, core_cpu_conv_path path)
{
    size_t xs = xsize(s), ys = ysize(s), ws = wsize(s);
    float *x = randv(xs, 1), *w = randv(ws, 0.5), *b = randv(s->cout, 0.5);
    float *y1 = core_malloc(ys * sizeof(float)), *y2 = core_malloc(ys * sizeof(float));
    be->conv_forward(be, s, x, w, b, y1);
    forward(path, s, x, w, b, y2);
    int same = !memcmp(y1, y2, ys * sizeof(float));
    free(x), free(w), free(b), free(y1), free(y2);
    return same;
}

static void env_override_honoured(void)
{
    const char *modes[] = {"gemm", "dnnl", "auto", NULL};
    for (int m = 0; m < 4; m++) {
        if (!dnnl && (m == 1)) continue; /* "dnnl" without oneDNN dies: checked below */
        core_backend *be = backend_with(modes[m]);
        for (int i = 0; i < NSHAPES; i++) {
            const core_conv_shape *s = &SHAPES[i];
            core_cpu_conv_path want = m == 0 || !dnnl ? CORE_CPU_CONV_GEMM
                                      : m == 1        ? CORE_CPU_CONV_DNNL
                                                      : core_cpu_conv_auto_rule(s);
            core_cpu_conv_path got = core_cpu_conv_pick(be, s);
            T_CHECKF(got == want, "SSPOSE_CPU_CONV=%s shape %d: picked %s, expected %s", modes[m] ? modes[m] : "(unset)",
                     i, core_cpu_conv_path_name(got), core_cpu_conv_path_name(want));
            T_CHECKF(backend_uses(be, s, want), "SSPOSE_CPU_CONV=%s shape %d: result is not the %s path's",
                     modes[m] ? modes[m] : "(unset)", i, core_cpu_conv_path_name(want));
        }
        core_backend_destroy(be);
    }
}

/* The rule uses oneDNN for 3x3 and 7x7 and sgemm for 1x1, whatever the batch. */
static void auto_rule_by_kernel_size(void)
{
    for (int n = 1; n <= 4; n++) {
        core_conv_shape s = {n, 128, 46, 46, 128, 1, 1};
        T_CHECK(core_cpu_conv_auto_rule(&s) == CORE_CPU_CONV_GEMM);
        s.k = 3;
        T_CHECK(core_cpu_conv_auto_rule(&s) == CORE_CPU_CONV_DNNL);
        s.k = 7;
        T_CHECK(core_cpu_conv_auto_rule(&s) == CORE_CPU_CONV_DNNL);
    }
}

static const char *child_mode;
static void child_create(void) { backend_with(child_mode); }

static void env_override_bad_value_dies(void)
{
    char err[1024];
    child_mode = "fast";
    int rc = t_run_child(child_create, err, sizeof err);
    T_CHECKF(rc != 0 && strstr(err, "SSPOSE_CPU_CONV must be gemm, dnnl or auto") && strchr(err, '\n') == strrchr(err, '\n'),
             "exit %d, stderr '%.200s'", rc, err);
    if (!dnnl) {
        child_mode = "dnnl";
        rc = t_run_child(child_create, err, sizeof err);
        T_CHECKF(rc != 0 && strstr(err, "built without oneDNN"), "dnnl without oneDNN: exit %d, stderr '%.200s'", rc, err);
    }
}

int main(void)
{
    core_set_quiet(1);
    core_rng_seed(&rng, 11);
    /* fixes the OpenMP/OpenBLAS thread count that both paths then use */
    core_backend *be = core_cpu_backend_create(THREADS);
    gemm = core_cpu_gemm_create();
    dnnl = core_cpu_dnnl_built() ? core_cpu_dnnl_create() : NULL;
    /* first, while no OpenMP worker exists: a forked child of a threaded parent trips LeakSanitizer */
    T_RUN(env_override_bad_value_dies);
    T_RUN(gemm_matches_direct);
    T_RUN(dnnl_matches_direct);
    T_RUN(dnnl_matches_gemm);
    T_RUN(dnnl_finite_differences);
    T_RUN(gemm_precision_at_network_shapes);
    T_RUN(dnnl_precision_at_network_shapes);
    T_RUN(bit_identical_repeats);
    T_RUN(auto_rule_by_kernel_size);
    T_RUN(env_override_honoured);
    core_cpu_dnnl_destroy(dnnl);
    core_cpu_gemm_destroy(gemm);
    core_backend_destroy(be);
    T_EXIT();
}
