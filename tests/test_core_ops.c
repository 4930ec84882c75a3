/* CPU backend ops: forward against direct double-precision references, and
 * backward against central finite differences of a random linear objective
 * L = sum(r * y), whose exact gradient with respect to y is r. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/rng.h"
#include "tests/test.h"

static core_backend *be;
static core_rng rng;

static float *randv(size_t n, double scale)
{
    float *v = be->alloc(be, n);
    for (size_t i = 0; i < n; i++) v[i] = (float)(scale * (2 * core_rng_uniform(&rng) - 1));
    return v;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void check_conv_forward(int n, int cin, int h, int w, int cout, int k, int relu)
{
    core_conv_shape s = {n, cin, h, w, cout, k, relu};
    size_t xs = (size_t)n * cin * h * w, ws = (size_t)cout * cin * k * k, ys = (size_t)n * cout * h * w;
    float *x = randv(xs, 1), *wt = randv(ws, 0.5), *b = randv(cout, 0.5), *y = be->alloc(be, ys);
    double *yr = malloc(ys * sizeof(double));
    be->conv_forward(be, &s, x, wt, b, y);
    t_conv_ref(&s, x, wt, b, yr);
    double maxerr = 0;
    for (size_t i = 0; i < ys; i++) maxerr = fmax(maxerr, fabs(y[i] - yr[i]) / (1 + fabs(yr[i])));
    T_CHECKF(maxerr < 1e-5, "conv k=%d relu=%d forward max rel err %.3g", k, relu, maxerr);
    free(yr);
    be->free(be, x); be->free(be, wt); be->free(be, b); be->free(be, y);
}

static void test_conv_forward_matches_direct(void)
{
    check_conv_forward(2, 3, 7, 6, 5, 3, 0);
    check_conv_forward(1, 4, 5, 9, 3, 7, 1);
    check_conv_forward(3, 6, 4, 4, 2, 1, 0);
    check_conv_forward(1, 2, 2, 2, 3, 7, 0); /* kernel larger than the image */
}

/* L(x, w, b) = sum(r * conv(x)) in double */
static double conv_objective(const core_conv_shape *s, const float *x, const float *w, const float *b, const float *r)
{
    size_t ys = (size_t)s->n * s->cout * s->h * s->w;
    double *y = malloc(ys * sizeof(double));
    t_conv_ref(s, x, w, b, y);
    double l = 0;
    for (size_t i = 0; i < ys; i++) l += y[i] * r[i];
    free(y);
    return l;
}

/* Central differences on up to `samples` coordinates of v; coordinates where the perturbation
 * flips a ReLU (the objective is not differentiable there) are skipped. */
static int fd_check(const char *what, const core_conv_shape *s, float *x, float *w, float *b, const float *r, float *v,
                    size_t len, const float *grad, int samples)
{
    const double eps = 1e-3;
    int checked = 0;
    for (int t = 0; t < samples; t++) {
        size_t i = core_rng_below(&rng, len);
        float old = v[i];
        v[i] = old + (float)eps;
        double lp = conv_objective(s, x, w, b, r);
        v[i] = old - (float)eps;
        double lm = conv_objective(s, x, w, b, r);
        v[i] = old;
        double fd = (lp - lm) / (2 * eps);
        double l0 = conv_objective(s, x, w, b, r);
        /* a kink shows as asymmetric one-sided slopes */
        if (s->relu && fabs((lp - l0) - (l0 - lm)) > 1e-6 * (1 + fabs(l0))) continue;
        checked++;
        if (!(fabs(fd - grad[i]) <= 2e-3 * (1 + fabs(fd)))) {
            T_FAILF("%s[%zu]: analytic %.6g, numeric %.6g (k=%d relu=%d)", what, i, grad[i], fd, s->k, s->relu);
            return -1;
        }
    }
    T_CHECKF(checked >= samples / 2, "%s: only %d of %d coordinates away from ReLU kinks", what, checked, samples);
    return 0;
}

static void check_conv_backward(int n, int cin, int h, int w, int cout, int k, int relu)
{
    core_conv_shape s = {n, cin, h, w, cout, k, relu};
    size_t xs = (size_t)n * cin * h * w, ws = (size_t)cout * cin * k * k, ys = (size_t)n * cout * h * w;
    float *x = randv(xs, 1), *wt = randv(ws, 0.5), *b = randv(cout, 0.5), *y = be->alloc(be, ys);
    float *r = randv(ys, 1), *dy = be->alloc(be, ys);
    /* gradients start non-zero to prove accumulation */
    float *dx = randv(xs, 1), *dw = randv(ws, 1), *db = randv(cout, 1);
    float *dx0 = malloc(xs * 4), *dw0 = malloc(ws * 4), *db0 = malloc(cout * 4);
    memcpy(dx0, dx, xs * 4); memcpy(dw0, dw, ws * 4); memcpy(db0, db, cout * 4);
    be->conv_forward(be, &s, x, wt, b, y);
    memcpy(dy, r, ys * 4);
    be->conv_backward(be, &s, x, wt, y, dy, dx, dw, db);
    for (size_t i = 0; i < xs; i++) dx[i] -= dx0[i];
    for (size_t i = 0; i < ws; i++) dw[i] -= dw0[i];
    for (int i = 0; i < cout; i++) db[i] -= db0[i];
    if (fd_check("dx", &s, x, wt, b, r, x, xs, dx, 40) == 0 && fd_check("dw", &s, x, wt, b, r, wt, ws, dw, 40) == 0)
        fd_check("db", &s, x, wt, b, r, b, cout, db, cout < 10 ? cout : 10);
    free(dx0); free(dw0); free(db0);
    be->free(be, x); be->free(be, wt); be->free(be, b); be->free(be, y);
    be->free(be, r); be->free(be, dy); be->free(be, dx); be->free(be, dw); be->free(be, db);
}

static void test_conv_backward_finite_difference(void)
{
    check_conv_backward(2, 3, 5, 6, 4, 3, 0);
    check_conv_backward(2, 3, 5, 6, 4, 3, 1);
    check_conv_backward(1, 5, 6, 5, 3, 7, 1);
    check_conv_backward(2, 6, 3, 4, 5, 1, 0);
    check_conv_backward(1, 4, 4, 4, 6, 1, 1);
}

static void test_conv_backward_no_dx(void)
{
    /* dx = NULL (the image) must still give dw, db */
    core_conv_shape s = {1, 3, 4, 4, 2, 3, 0};
    float *x = randv(48, 1), *w = randv(54, 1), *b = randv(2, 1), *y = be->alloc(be, 32), *dy = randv(32, 1);
    float *dw = be->alloc(be, 54), *db = be->alloc(be, 2);
    be->conv_forward(be, &s, x, w, b, y);
    be->conv_backward(be, &s, x, w, y, dy, NULL, dw, db);
    double sdy = 0;
    for (int i = 0; i < 16; i++) sdy += dy[i];
    T_NEAR(db[0], sdy, 1e-5, 1e-5);
    be->free(be, x); be->free(be, w); be->free(be, b); be->free(be, y); be->free(be, dy);
    be->free(be, dw); be->free(be, db);
}

static void test_pool_forward_backward(void)
{
    int n = 2, c = 3, h = 6, w = 8;
    size_t xs = (size_t)n * c * h * w, ys = xs / 4;
    float *x = randv(xs, 1), *y = be->alloc(be, ys), *dy = randv(ys, 1), *dx = be->alloc(be, xs);
    be->pool_forward(be, n, c, h, w, x, y);
    be->pool_backward(be, n, c, h, w, x, dy, dx);
    for (int p = 0; p < n * c; p++)
        for (int i = 0; i < h / 2; i++)
            for (int j = 0; j < w / 2; j++) {
                const float *xp = x + (size_t)p * h * w;
                float m = -INFINITY;
                int arg = -1;
                for (int q = 0; q < 4; q++) {
                    int idx = (2 * i + q / 2) * w + 2 * j + q % 2;
                    if (xp[idx] > m) { m = xp[idx]; arg = idx; }
                }
                T_CHECK(y[(size_t)p * (h / 2) * (w / 2) + i * (w / 2) + j] == m);
                T_CHECK(dx[(size_t)p * h * w + arg] == dy[(size_t)p * (h / 2) * (w / 2) + i * (w / 2) + j]);
            }
    /* the gradient's total is conserved */
    double sx = 0, sy = 0;
    for (size_t i = 0; i < xs; i++) sx += dx[i];
    for (size_t i = 0; i < ys; i++) sy += dy[i];
    T_NEAR(sx, sy, 1e-5, 1e-5);
    /* ties go to the first element of the window */
    float tx[4] = {1, 1, 1, 1}, ty[1], tdy[1] = {2}, tdx[4] = {0};
    be->pool_forward(be, 1, 1, 2, 2, tx, ty);
    be->pool_backward(be, 1, 1, 2, 2, tx, tdy, tdx);
    T_CHECK(tdx[0] == 2 && tdx[1] == 0 && tdx[2] == 0 && tdx[3] == 0);
    be->free(be, x); be->free(be, y); be->free(be, dy); be->free(be, dx);
}

static void test_copy_channels_roundtrip(void)
{
    int n = 2, hw = 5, ca = 3, cb = 4;
    float *a = randv((size_t)n * ca * hw, 1), *b = randv((size_t)n * cb * hw, 1);
    float *cat = be->alloc(be, (size_t)n * (ca + cb) * hw);
    be->copy_channels(be, n, hw, a, ca, 0, cat, ca + cb, 0, ca, 0);
    be->copy_channels(be, n, hw, b, cb, 0, cat, ca + cb, ca, cb, 0);
    for (int s = 0; s < n; s++)
        for (int c = 0; c < ca + cb; c++)
            for (int i = 0; i < hw; i++) {
                float want = c < ca ? a[(s * ca + c) * hw + i] : b[(s * cb + c - ca) * hw + i];
                T_CHECK(cat[(s * (ca + cb) + c) * hw + i] == want);
            }
    /* accumulate mode adds */
    float *acc = be->alloc(be, (size_t)n * cb * hw);
    be->copy_channels(be, n, hw, cat, ca + cb, ca, acc, cb, 0, cb, 1);
    be->copy_channels(be, n, hw, cat, ca + cb, ca, acc, cb, 0, cb, 1);
    for (size_t i = 0; i < (size_t)n * cb * hw; i++) T_CHECK(acc[i] == 2 * b[i]);
    be->free(be, a); be->free(be, b); be->free(be, cat); be->free(be, acc);
}

static void test_sgd_momentum_weight_decay(void)
{
    float w[3] = {1, -2, 0.5f}, g[3] = {0.1f, 0.2f, -0.3f}, m[3] = {0.01f, 0, -0.02f};
    float lr = 0.1f, mom = 0.9f, wd = 0.01f;
    float we[3], me[3];
    for (int i = 0; i < 3; i++) {
        me[i] = mom * m[i] + lr * (g[i] + wd * w[i]);
        we[i] = w[i] - me[i];
    }
    be->sgd_step(be, NULL, 3, w, g, m, lr, mom, wd);
    for (int i = 0; i < 3; i++) {
        T_NEAR(m[i], me[i], 1e-6, 1e-7);
        T_NEAR(w[i], we[i], 1e-6, 1e-7);
    }
}

static void test_elementwise_and_sumsq(void)
{
    size_t n = 100003;
    float *x = randv(n, 2), *y = randv(n, 2);
    float *y0 = malloc(n * 4);
    memcpy(y0, y, n * 4);
    be->axpy(be, -0.5f, x, y, n);
    for (size_t i = 0; i < n; i += 997) T_NEAR(y[i], y0[i] - 0.5f * x[i], 1e-6, 1e-6);
    be->scale(be, y, 2.0f, n);
    for (size_t i = 0; i < n; i += 997) T_NEAR(y[i], 2 * (y0[i] - 0.5f * x[i]), 1e-6, 1e-6);
    T_NEAR(be->sumsq(be, x, n), dot(x, x, n), 1e-9, 0);
    x[n / 2] = NAN;
    T_CHECK(isnan(be->sumsq(be, x, n)));
    x[n / 2] = INFINITY;
    T_CHECK(!isfinite(be->sumsq(be, x, n)));
    be->fill(be, x, 3.0f, n);
    T_NEAR(be->sumsq(be, x, n), 9.0 * n, 1e-12, 0);
    free(y0);
    be->free(be, x); be->free(be, y);
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(1); /* tiny tensors: threads would only add contention */
    core_rng_seed(&rng, 42);
    T_RUN(test_conv_forward_matches_direct);
    T_RUN(test_conv_backward_finite_difference);
    T_RUN(test_conv_backward_no_dx);
    T_RUN(test_pool_forward_backward);
    T_RUN(test_copy_channels_roundtrip);
    T_RUN(test_sgd_momentum_weight_decay);
    T_RUN(test_elementwise_and_sumsq);
    core_backend_destroy(be);
    T_EXIT();
}
