/* One batch-norm layer (model/net_bn.c, the op table's BN row) built alone
 * through the model's construction primitives, against central differences of
 *   L = sum(r * y) + sum(q * y^2)
 * (the square makes dL/dy depend on y, so the gradient through the batch
 * statistics is exercised with a non-constant upstream gradient): the input
 * gradient, gamma and beta, in training mode (batch statistics) and eval mode
 * (running statistics), without and with the fused ReLU. A single layer is
 * smooth away from ReLU kinks and well conditioned, so the differences resolve
 * every coordinate; the whole network's training-mode gradients are checked
 * against float64 PyTorch in tests/test_bn_torch.py.
 * Also: synchronised statistics. The batch split over two simulated ranks,
 * whose sum hooks add the other half's sums, gives the full batch's outputs,
 * input gradients and (summed) gamma/beta gradients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "model/net_impl.h"
#include "tests/test.h"

static core_backend *be;

enum { C = 3, HW = 8 }; /* 8x8 planes: the smallest input the stride-8 shape check allows */

typedef struct {
    model_net *net;
    int in, out;
} layer;

static layer make_layer(int relu, int train)
{
    core_config c;
    core_config_defaults(&c);
    c.model.norm = CORE_NORM_BATCH;
    c.model.bn_momentum = 0.25;
    c.model.bn_eps = 1e-3;
    layer L;
    L.net = net_begin(&c, be);
    L.in = L.net->input_blob = net_add_blob(L.net, C, 1);
    int def = net_bn_define(L.net, "x", C, MODEL_GROUP_BACKBONE);
    L.out = net_bn_apply(L.net, def, L.in, relu);
    net_finish(L.net);
    model_init_params(L.net, 1);
    model_set_train(L.net, train);
    return L;
}

/* gamma, beta and running statistics away from their identity values */
static void randomize(layer *L, uint64_t seed)
{
    core_rng r;
    core_rng_seed(&r, seed);
    float *w = model_params(L->net);
    const model_param *g = model_param_at(L->net, 0), *b = model_param_at(L->net, 1);
    const model_param *rm = model_buf_at(L->net, 0), *rv = model_buf_at(L->net, 1);
    for (int k = 0; k < C; k++) {
        w[g->offset + k] = (float)(1 + 0.5 * core_rng_normal(&r));
        w[b->offset + k] = (float)(0.3 * core_rng_normal(&r));
        w[rm->offset + k] = (float)(0.5 * core_rng_normal(&r));
        w[rv->offset + k] = (float)(0.5 + core_rng_uniform(&r));
    }
}

static void fill(float *x, size_t n, uint64_t seed, double offset)
{
    core_rng r;
    core_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(offset + (2 * core_rng_uniform(&r) - 1) * (1 + (i % 3)));
}

static double objective(layer *L, const float *r, const float *q, size_t n)
{
    const float *y = net_act(L->net, L->out);
    double l = 0;
    for (size_t i = 0; i < n; i++) l += (double)r[i] * y[i] + (double)q[i] * y[i] * y[i];
    return l;
}

/* forward, dL/dy into the output gradient, backward from zeroed parameter gradients */
static void forward_backward(layer *L, const float *r, const float *q, size_t n)
{
    model_forward(L->net, 1);
    const float *y = net_act(L->net, L->out);
    float *dy = net_dact(L->net, L->out);
    for (size_t i = 0; i < n; i++) dy[i] = r[i] + 2 * q[i] * y[i];
    model_zero_grads(L->net);
    model_backward(L->net);
}

/* Richardson-extrapolated central difference of L in x[i]; NaN when a ReLU flips on the way */
static double numeric(layer *L, float *x, const float *r, const float *q, size_t n, uint64_t sig0)
{
    float old = *x;
    double d[2];
    const float h[2] = {8e-2f, 4e-2f}; /* Richardson removes the h^2 term; larger steps, less rounding */
    for (int k = 0; k < 2; k++) {
        *x = old + h[k];
        model_forward(L->net, 0);
        double lp = objective(L, r, q, n);
        int same = model_kink_signature(L->net) == sig0;
        *x = old - h[k];
        model_forward(L->net, 0);
        double lm = objective(L, r, q, n);
        same = same && model_kink_signature(L->net) == sig0;
        *x = old;
        if (!same) return NAN;
        d[k] = (lp - lm) / ((double)(old + h[k]) - (double)(old - h[k]));
    }
    return (4 * d[1] - d[0]) / 3;
}

static void check_layer(int relu, int train, int n)
{
    layer L = make_layer(relu, train);
    randomize(&L, 5);
    model_set_input_shape(L.net, n, HW, HW);
    size_t count = (size_t)n * C * HW * HW;
    float *x = model_input(L.net), *r = malloc(count * sizeof(float)), *q = malloc(count * sizeof(float));
    fill(x, count, 7, 0.7); /* an offset, so the mean matters */
    fill(r, count, 8, 0);
    fill(q, count, 9, 0);
    for (size_t i = 0; i < count; i++) q[i] *= 0.2f;
    forward_backward(&L, r, q, count);
    uint64_t sig0 = model_kink_signature(L.net);
    float *dx = malloc(count * sizeof(float)), *g = malloc(model_num_floats(L.net) * sizeof(float));
    memcpy(dx, net_dact(L.net, L.in), count * sizeof(float));
    memcpy(g, model_grads(L.net), model_num_floats(L.net) * sizeof(float));

    /* float rounding of L (~1e-6 over a few hundred terms) divided by the step leaves ~1e-4
     * absolute in a difference: each tensor is bounded by 1e-3 of the value plus 2e-4 of its largest */
    double gmax = 0, dxmax = 0;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < C; k++) gmax = fmax(gmax, fabs(g[model_param_at(L.net, p)->offset + k]));
    for (size_t i = 0; i < count; i++) dxmax = fmax(dxmax, fabs(dx[i]));
    int checked = 0, kinks = 0;
    double worst = 0;
    /* every gamma and beta, and every 7th input */
    for (int p = 0; p < 2; p++) {
        const model_param *mp = model_param_at(L.net, p);
        for (int k = 0; k < C; k++) {
            double fd = numeric(&L, model_params(L.net) + mp->offset + k, r, q, count, sig0);
            if (isnan(fd)) { kinks++; continue; }
            double e = fabs(fd - g[mp->offset + k]) / (1e-3 * fabs(fd) + 2e-4 * gmax);
            worst = fmax(worst, e);
            T_CHECKF(e <= 1, "relu %d train %d: %s[%d]: analytic %.7g, numeric %.7g", relu, train, mp->name, k,
                     g[mp->offset + k], fd);
            checked++;
        }
    }
    for (size_t i = 0; i < count; i += 7) {
        double fd = numeric(&L, x + i, r, q, count, sig0);
        if (isnan(fd)) { kinks++; continue; }
        double e = fabs(fd - dx[i]) / (1e-3 * fabs(fd) + 2e-4 * dxmax);
        worst = fmax(worst, e);
        T_CHECKF(e <= 1, "relu %d train %d: dx[%zu]: analytic %.7g, numeric %.7g", relu, train, i, dx[i], fd);
        checked++;
    }
    T_CHECKF(checked >= (int)(count / 7) * 3 / 4, "relu %d: only %d coordinates checked (%d on kinks)", relu,
             checked, kinks);
    if (getenv("T_VERBOSE")) printf("relu %d train %d: %d checked, %d kinks, worst %.2g of the bound\n", relu, train, checked,
                                    kinks, worst);
    free(r), free(q), free(dx), free(g);
    model_destroy(L.net);
}

static void test_grad_train(void) { check_layer(0, 1, 2); }
static void test_grad_train_relu(void) { check_layer(1, 1, 3); }
static void test_grad_eval(void) { check_layer(0, 0, 2); }
static void test_grad_eval_relu(void) { check_layer(1, 0, 2); }

/* The running statistics after one training-mode pass: torch's rule, unbiased variance. */
static void test_running_statistics(void)
{
    layer L = make_layer(1, 1);
    randomize(&L, 6);
    int n = 2;
    size_t count = (size_t)n * C * HW * HW, M = (size_t)n * HW * HW;
    model_set_input_shape(L.net, n, HW, HW);
    float *x = model_input(L.net);
    fill(x, count, 3, -0.4);
    const float *w = model_params(L.net);
    const model_param *rm = model_buf_at(L.net, 0), *rv = model_buf_at(L.net, 1);
    float m0[C], v0[C];
    memcpy(m0, w + rm->offset, sizeof m0);
    memcpy(v0, w + rv->offset, sizeof v0);
    model_forward(L.net, 0);
    for (int k = 0; k < C; k++) {
        double s = 0, s2 = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW * HW; j++) s += x[((size_t)i * C + k) * HW * HW + j];
        double mean = s / M;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < HW * HW; j++) {
                double d = x[((size_t)i * C + k) * HW * HW + j] - mean;
                s2 += d * d;
            }
        double want_m = 0.75 * m0[k] + 0.25 * mean, want_v = 0.75 * v0[k] + 0.25 * s2 / (M - 1);
        T_CHECKF(fabs(w[rm->offset + k] - want_m) <= 1e-6 * (1 + fabs(want_m)), "running mean[%d] %.8g, want %.8g", k,
                 w[rm->offset + k], want_m);
        T_CHECKF(fabs(w[rv->offset + k] - want_v) <= 1e-6 * want_v, "running var[%d] %.8g, want %.8g", k,
                 w[rv->offset + k], want_v);
    }
    /* eval mode leaves them alone */
    float m1[C];
    memcpy(m1, w + rm->offset, sizeof m1);
    model_set_train(L.net, 0);
    model_forward(L.net, 0);
    T_CHECK(memcmp(m1, w + rm->offset, sizeof m1) == 0);
    model_destroy(L.net);
}

/* ---- synchronised statistics over two simulated ranks ---- */
#define MAX_CALLS 8
typedef struct {
    double mine[MAX_CALLS][2 * C + 1], other[MAX_CALLS][2 * C + 1];
    int have_other, calls;
} sim_rank;

/* records this half's sums, then adds the other half's from the previous round */
static void sim_sum(void *ctx, double *v, int n)
{
    sim_rank *s = ctx;
    CHECK(s->calls < MAX_CALLS && n <= 2 * C + 1, "test: unexpected sum hook call");
    memcpy(s->mine[s->calls], v, (size_t)n * sizeof(double));
    if (s->have_other)
        for (int i = 0; i < n; i++) v[i] += s->other[s->calls][i];
    s->calls++;
}

static void test_synchronised_statistics(void)
{
    int n = 4, h = n / 2;
    size_t per = (size_t)C * HW * HW, count = n * per;
    float *x = malloc(count * sizeof(float)), *r = malloc(count * sizeof(float)), *q = malloc(count * sizeof(float));
    fill(x, count, 11, 0.3);
    fill(r, count, 12, 0);
    fill(q, count, 13, 0);
    for (size_t i = 0; i < count; i++) q[i] *= 0.2f;

    layer full = make_layer(1, 1);
    randomize(&full, 4);
    model_set_input_shape(full.net, n, HW, HW);
    memcpy(model_input(full.net), x, count * sizeof(float));
    forward_backward(&full, r, q, count);

    layer half[2];
    sim_rank sim[2];
    memset(sim, 0, sizeof sim);
    for (int k = 0; k < 2; k++) {
        half[k] = make_layer(1, 1);
        randomize(&half[k], 4);
        model_set_sum_hook(half[k].net, sim_sum, &sim[k]);
        model_set_input_shape(half[k].net, h, HW, HW);
    }
    /* round 1 learns each half's forward sums; round 2 its backward sums under the global
     * statistics; round 3 runs with every call completed by the other half's */
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 2; k++) {
            memcpy(model_input(half[k].net), x + k * h * per, h * per * sizeof(float));
            /* each round's forward moves the running statistics: start from the same ones */
            randomize(&half[k], 4);
            sim[k].calls = 0;
            forward_backward(&half[k], r + k * h * per, q + k * h * per, h * per);
        }
        for (int k = 0; k < 2; k++) {
            memcpy(sim[k].other, sim[1 - k].mine, sizeof sim[k].other);
            sim[k].have_other = 1;
        }
    }
    T_CHECKF(sim[0].calls == 2, "%d sum hook calls per pass, expected forward + backward", sim[0].calls);
    double worst = 0;
    for (int k = 0; k < 2; k++) {
        const float *y = net_act(half[k].net, half[k].out), *yf = net_act(full.net, full.out) + k * h * per;
        const float *dx = net_dact(half[k].net, half[k].in), *dxf = net_dact(full.net, full.in) + k * h * per;
        for (size_t i = 0; i < h * per; i++) {
            worst = fmax(worst, fabs(y[i] - yf[i]));
            T_CHECKF(fabs(y[i] - yf[i]) <= 1e-5 * (1 + fabs(yf[i])), "half %d: y[%zu] %.8g vs %.8g", k, i, y[i], yf[i]);
            T_CHECKF(fabs(dx[i] - dxf[i]) <= 1e-5 * (1 + fabs(dxf[i])), "half %d: dx[%zu] %.8g vs %.8g", k, i, dx[i],
                     dxf[i]);
            if (t_cur_failed) break;
        }
    }
    /* parameter gradients: each half holds its share; the gradient all-reduce sums them */
    for (int p = 0; p < 2; p++) {
        const model_param *mp = model_param_at(full.net, p);
        for (int k = 0; k < C; k++) {
            double sum = (double)model_grads(half[0].net)[mp->offset + k] + model_grads(half[1].net)[mp->offset + k];
            double want = model_grads(full.net)[mp->offset + k];
            T_CHECKF(fabs(sum - want) <= 1e-5 * (1 + fabs(want)), "%s[%d]: halves sum to %.8g, full batch %.8g",
                     mp->name, k, sum, want);
        }
    }
    /* and the running statistics move identically on both halves and as on the full batch */
    for (int b = 0; b < 2; b++) {
        const model_param *mb = model_buf_at(full.net, b);
        for (int k = 0; k < C; k++) {
            float f = model_params(full.net)[mb->offset + k];
            T_CHECK(model_params(half[0].net)[mb->offset + k] == model_params(half[1].net)[mb->offset + k]);
            T_CHECKF(fabs(model_params(half[0].net)[mb->offset + k] - f) <= 1e-6 * (1 + fabs(f)), "%s[%d]", mb->name, k);
        }
    }
    free(x), free(r), free(q);
    model_destroy(full.net);
    model_destroy(half[0].net);
    model_destroy(half[1].net);
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(1);
    T_RUN(test_grad_train);
    T_RUN(test_grad_train_relu);
    T_RUN(test_grad_eval);
    T_RUN(test_grad_eval_relu);
    T_RUN(test_running_statistics);
    T_RUN(test_synchronised_statistics);
    core_backend_destroy(be);
    T_EXIT();
}
