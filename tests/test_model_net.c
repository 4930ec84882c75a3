/* The whole network: structure per SPEC section 3 and backward pass against
 * finite differences of L = sum_s sum_outputs sum(r * output). The network is
 * piecewise linear in each parameter (conv, ReLU, max-pool), so away from a
 * kink the central difference is exact up to float rounding; coordinates whose
 * one-sided slopes disagree sit on a kink and are skipped. With batch norm
 * (model.norm = batch) the network is smooth between kinks rather than linear:
 * the same check then bounds the error by the measured curvature too; its
 * structure, initial values and the train/eval switch are checked as well. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "model/checkpoint.h"
#include "model/net.h"
#include "tests/test.h"

static core_backend *be;

static core_norm_mode g_norm; /* model.norm of tiny_config */

static core_config tiny_config(int stride, int offsets, core_ss_mode ss)
{
    core_config c;
    core_config_defaults(&c);
    c.model.norm = g_norm;
    c.model.width = 0.0625;
    c.model.stages = 3;
    c.model.stride = stride;
    /* batch statistics over a few cells per channel only are degenerate (two cells normalise to +-1) */
    c.model.input = (g_norm == CORE_NORM_BATCH ? 4 : 2) * stride;
    /* a large eps bounds 1/sqrt(var + eps): near-constant channels of this 4-channel net would
     * otherwise amplify float rounding beyond what a finite difference can resolve (the value of
     * eps is checked against torch in tests/test_bn_torch.py) */
    c.model.bn_eps = 0.5;
    c.model.offsets = offsets;
    c.model.ss = ss;
    core_config_resolve(&c);
    return c;
}

static void fill_input(model_net *net, uint64_t seed, size_t n)
{
    core_rng r;
    core_rng_seed(&r, seed);
    float *x = model_input(net);
    for (size_t i = 0; i < n; i++) x[i] = (float)(core_rng_uniform(&r) - 0.5);
}

/* r for every output, in a fixed order; returns the objective in double */
static double objective(model_net *net, float **r)
{
    const core_config *c = model_config(net);
    double l = 0;
    int k = 0;
    for (int s = 0; s < c->model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output(net, s, o);
            if (!t.data) continue;
            size_t n = core_tensor_numel(&t);
            for (size_t i = 0; i < n; i++) l += (double)t.data[i] * r[k][i];
            k++;
        }
    return l;
}

/* Piecewise linear networks (no batch norm): two coordinates of every tensor,
 * each by the largest central difference that crosses no kink. */
static void check_coordinates(model_net *net, float **r, const float *grad, core_rng *prr)
{
    core_rng rr = *prr;
    float *w = model_params(net);
    uint64_t sig0 = model_kink_signature(net);
    double l0 = objective(net, r);
    int checked = 0, kinks = 0;
    double err2 = 0, ref2 = 0; /* aggregate relative error over all checked coordinates */
    /* two coordinates of every tensor, so every layer (incl. shared subnets) is covered */
    for (int p = 0; p < model_param_count(net); p++) {
        const model_param *mp = model_param_at(net, p);
        for (int t = 0; t < 2; t++) {
            size_t i = mp->offset + core_rng_below(&rr, mp->numel);
            float old = w[i];
            /* the largest step that crosses no kink on either side gives an exact difference */
            double fd = NAN, noise = 0;
            for (float eps = 1e-2f; eps >= 6e-4f && isnan(fd); eps *= 0.25f) { /* finer steps drown in rounding */
                w[i] = old + eps;
                model_forward(net, 0);
                double lp = objective(net, r);
                int same = model_kink_signature(net) == sig0;
                w[i] = old - eps;
                model_forward(net, 0);
                double lm = objective(net, r);
                same = same && model_kink_signature(net) == sig0;
                w[i] = old;
                if (same) {
                    double step = (double)(old + eps) - (double)(old - eps);
                    fd = (lp - lm) / step;
                    /* linear between the two sides, so any curvature is float rounding */
                    noise = fabs((lp - l0) - (l0 - lm)) / step;
                }
            }
            if (isnan(fd)) { kinks++; continue; }
            checked++;
            err2 += (fd - grad[i]) * (fd - grad[i]);
            ref2 += fd * fd;
            if (!(fabs(fd - grad[i]) <= 5e-2 * fabs(fd) + 10 * noise + 1e-4)) {
                T_FAILF("%s[%zu]: analytic %.6g, numeric %.6g (rounding noise %.2g)", mp->name, i - mp->offset,
                        grad[i], fd, noise);
            }
        }
    }
    T_CHECKF(checked > model_param_count(net), "only %d coordinates checked (%d on kinks)", checked, kinks);
    double rel = sqrt(err2 / (ref2 + 1e-30));
    T_CHECKF(rel < 2e-3, "relative L2 error of the gradient over %d coordinates: %.3g", checked, rel);
    if (getenv("T_VERBOSE")) printf("checked %d kinks %d rel %.3g\n", checked, kinks, rel);
}

static void check_network_gradients(int stride, int offsets, core_ss_mode ss, uint64_t seed, int train)
{
    core_config c = tiny_config(stride, offsets, ss);
    model_net *net = model_create(&c, be);
    model_set_train(net, train);
    /* He scale on every conv (the linear heads' N(0, 0.01) would hide the cross-stage paths
     * below the tolerance) and non-zero biases, so every path carries weight */
    {
        core_rng ri;
        core_rng_seed(&ri, seed + 3);
        float *w = model_params(net);
        for (int p = 0; p < model_param_count(net); p++) {
            const model_param *mp = model_param_at(net, p);
            double sd = mp->is_bias ? 0.1 : sqrt(2.0 / mp->fan_in);
            double mean = mp->kind == MODEL_PARAM_BN_WEIGHT ? 1 : 0;
            for (size_t i = 0; i < mp->numel; i++) w[mp->offset + i] = (float)(mean + sd * core_rng_normal(&ri));
        }
        /* running statistics of the right order for the eval-mode check (inputs have std ~1) */
        for (int b = 0; b < model_buf_count(net); b++) {
            const model_param *mb = model_buf_at(net, b);
            for (size_t i = 0; i < mb->numel; i++)
                w[mb->offset + i] = mb->kind == MODEL_BUF_RUNNING_VAR ? (float)(0.5 + core_rng_uniform(&ri))
                                                                      : (float)(0.3 * core_rng_normal(&ri));
        }
    }
    int N = 2, S = c.model.input;
    model_set_input_shape(net, N, S, S);
    fill_input(net, seed + 1, (size_t)N * 3 * S * S);

    core_rng rr;
    core_rng_seed(&rr, seed + 2);
    float *r[CORE_MAX_STAGES * MODEL_NUM_OUT];
    int nr = 0;
    model_forward(net, 1);
    for (int s = 0; s < c.model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output(net, s, o);
            if (!t.data) continue;
            size_t n = core_tensor_numel(&t);
            r[nr] = malloc(n * sizeof(float));
            /* earlier stages' own outputs weigh little, so the gradient reaching them is dominated by
             * the cross-stage paths (concat, split) that a direct-only check would not see */
            float wgt = (s == c.model.stages - 1 || o == MODEL_OUT_P2H || o == MODEL_OUT_H2P) ? 1.0f : 0.05f;
            for (size_t i = 0; i < n; i++) r[nr][i] = wgt * (float)(2 * core_rng_uniform(&rr) - 1);
            /* dL/d(output) = r */
            core_tensor g = model_output_grad(net, s, o);
            be->axpy(be, 1.0f, r[nr], g.data, n);
            nr++;
        }
    model_zero_grads(net);
    model_backward(net);
    size_t nf = model_num_floats(net);
    float *grad = malloc(nf * sizeof(float));
    memcpy(grad, model_grads(net), nf * sizeof(float));

    check_coordinates(net, r, grad, &rr);
    for (int k = 0; k < nr; k++) free(r[k]);
    free(grad);
    model_destroy(net);
}

static void test_grad_offsets_p2h_stride8(void) { check_network_gradients(8, 1, CORE_SS_P2H, 11, 1); }
static void test_grad_offsets_both_stride16(void) { check_network_gradients(16, 1, CORE_SS_BOTH, 12, 1); }
static void test_grad_baseline_h2p_stride8(void) { check_network_gradients(8, 0, CORE_SS_H2P, 13, 1); }

/* Batch norm in eval mode: an affine map per channel, so the network stays piecewise linear. (Training
 * mode's gradients through the batch statistics are checked against float64 autograd in
 * tests/test_bn_torch.py.) */
static void test_grad_bn_eval_both_stride8(void)
{
    g_norm = CORE_NORM_BATCH;
    check_network_gradients(8, 1, CORE_SS_BOTH, 23, 0);
    g_norm = CORE_NORM_NONE;
}

/* Where batch norm sits, what it is called, how it starts, and that eval mode uses the running statistics. */
static void test_bn_structure_init_modes(void)
{
    core_config c = tiny_config(8, 1, CORE_SS_BOTH);
    c.model.norm = CORE_NORM_BATCH;
    model_net *net = model_create(&c, be);
    model_init_params(net, 3);
    int nbn = 0, nconv = 0;
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        if (p->kind != MODEL_PARAM_WEIGHT) continue;
        nconv++;
        char base[64], nm[96];
        snprintf(base, sizeof base, "%.*s", (int)(strlen(p->name) - strlen("/weight")), p->name);
        snprintf(nm, sizeof nm, "%s/bn/weight", base);
        const model_param *g = model_param_find(net, nm);
        /* every conv followed by ReLU has one; the outputs' last convs do not */
        T_CHECKF(!g == !p->relu, "%s: relu %d, batch norm %s", p->name, p->relu, g ? "yes" : "no");
        if (!g) continue;
        nbn++;
        T_CHECK(g->ndim == 1 && g->shape[0] == p->shape[0] && g->is_bias && g->group == p->group);
        for (size_t k = 0; k < g->numel; k++) T_CHECK(model_params(net)[g->offset + k] == 1.0f);
        snprintf(nm, sizeof nm, "%s/bn/bias", base);
        const model_param *b = model_param_find(net, nm);
        T_CHECK(b && b == g + 1 && b->kind == MODEL_PARAM_BN_BIAS);
        for (size_t k = 0; k < b->numel; k++) T_CHECK(model_params(net)[b->offset + k] == 0.0f);
    }
    /* 3 stages: backbone 12, stage 1 2x4, stages 2-3 2x6 each, subnets 2x2 */
    T_CHECKF(nbn == 12 + 8 + 24 + 4 && nconv == nbn + 6 + 2, "%d batch norms over %d convs", nbn, nconv);
    T_CHECK(model_buf_count(net) == 2 * nbn);
    size_t learn_end = 0;
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        if (p->offset + p->numel > learn_end) learn_end = p->offset + p->numel;
    }
    for (int i = 0; i < model_buf_count(net); i++) {
        const model_param *p = model_buf_at(net, i);
        T_CHECK(p->offset >= learn_end && p->offset % MODEL_PARAM_ALIGN == 0 &&
                p->offset + p->numel <= model_num_floats(net));
        T_CHECK(strstr(p->name, i % 2 ? "/bn/running_var" : "/bn/running_mean") != NULL);
        float want = i % 2 ? 1.0f : 0.0f;
        for (size_t k = 0; k < p->numel; k++) T_CHECK(model_params(net)[p->offset + k] == want);
    }
    T_CHECK(model_num_weights(net) < model_num_floats(net));

    /* eval mode with running mean 0, var 1 and gamma 1, beta 0 is the network without
     * normalisation up to 1/sqrt(1 + eps) per layer: compare against norm=none */
    core_config c0 = c;
    c0.model.norm = CORE_NORM_NONE;
    c.model.bn_eps = 1e-12;
    model_net *bn = model_create(&c, be), *plain = model_create(&c0, be);
    model_init_params(bn, 4);
    for (int i = 0; i < model_param_count(plain); i++) {
        const model_param *p = model_param_at(plain, i), *q = model_param_find(bn, p->name);
        memcpy(model_params(plain) + p->offset, model_params(bn) + q->offset, p->numel * sizeof(float));
    }
    model_set_input_shape(bn, 2, 16, 16);
    model_set_input_shape(plain, 2, 16, 16);
    fill_input(bn, 5, 2 * 3 * 16 * 16);
    fill_input(plain, 5, 2 * 3 * 16 * 16);
    T_CHECK(model_is_train(bn));
    model_set_train(bn, 0);
    model_forward(bn, 0);
    model_forward(plain, 0);
    core_tensor a = model_output(bn, 2, MODEL_OUT_HEAT), b = model_output(plain, 2, MODEL_OUT_HEAT);
    double worst = 0, top = 0;
    for (size_t k = 0; k < core_tensor_numel(&a); k++) {
        worst = fmax(worst, fabs(a.data[k] - b.data[k]));
        top = fmax(top, fabs(b.data[k]));
    }
    T_CHECKF(worst <= 1e-5 * top && top > 0, "eval mode with identity statistics: %.3g of %.3g", worst, top);
    /* training mode normalises with the batch's statistics: a different function */
    model_set_train(bn, 1);
    model_forward(bn, 0);
    worst = 0;
    for (size_t k = 0; k < core_tensor_numel(&a); k++) worst = fmax(worst, fabs(a.data[k] - b.data[k]));
    T_CHECKF(worst > 1e-2 * top, "training mode matches the unnormalised net (%.3g of %.3g)", worst, top);
    model_destroy(bn);
    model_destroy(plain);
    model_destroy(net);
}

static void test_structure_paper(void)
{
    core_config c;
    core_config_defaults(&c);
    model_net *net = model_create(&c, be);
    const model_param *p = model_param_find(net, "stage2/heat/conv1/weight");
    T_CHECK(p && p->shape[0] == 128 && p->shape[1] == 38 + 55 + 128 && p->shape[2] == 7);
    p = model_param_find(net, "stage1/heat/conv5/weight");
    T_CHECK(p && p->shape[0] == 55 && p->shape[1] == 512 && p->shape[2] == 1 && !p->relu);
    p = model_param_find(net, "stage6/paf/conv7/bias");
    T_CHECK(p && p->ndim == 1 && p->shape[0] == 38);
    p = model_param_find(net, "p2h/conv3/weight");
    T_CHECK(p && p->shape[0] == 19 && p->shape[1] == 128 && p->shape[2] == 1);
    T_CHECK(model_param_find(net, "h2p/conv1/weight") == NULL);
    T_CHECK(model_param_find(net, "stage7/paf/conv1/weight") == NULL);
    p = model_param_find(net, "conv4_4_CPM/weight");
    T_CHECK(p && p->group == MODEL_GROUP_BACKBONE && p->shape[0] == 128 && p->shape[1] == 256);
    /* flat layout: tensors in order, aligned, packed up to the alignment */
    size_t off = 0;
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *q = model_param_at(net, i);
        T_CHECK(q->offset % MODEL_PARAM_ALIGN == 0 && q->offset >= off && q->offset < off + MODEL_PARAM_ALIGN);
        off = q->offset + q->numel;
    }
    T_CHECK(off == model_num_floats(net));
    model_destroy(net);
}

static void test_output_shapes_stride16(void)
{
    core_config c = tiny_config(16, 1, CORE_SS_P2H);
    model_net *net = model_create(&c, be);
    model_set_input_shape(net, 3, 64, 32);
    model_init_params(net, 1);
    model_forward(net, 0);
    int h, w;
    model_output_hw(net, &h, &w);
    T_CHECK(h == 4 && w == 2);
    core_tensor t = model_output(net, 2, MODEL_OUT_OFFSET);
    T_CHECK(t.data && t.n == 3 && t.c == 36 && t.h == 4 && t.w == 2);
    t = model_output(net, 0, MODEL_OUT_P2H);
    T_CHECK(t.data && t.c == 19);
    T_CHECK(model_output(net, 0, MODEL_OUT_H2P).data == NULL);
    T_CHECK(model_output(net, 3, MODEL_OUT_PAF).data == NULL);
    model_destroy(net);
}

static void test_init_statistics_and_determinism(void)
{
    core_config c;
    core_config_defaults(&c);
    c.model.width = 0.5;
    model_net *a = model_create(&c, be), *b = model_create(&c, be);
    model_init_params(a, 7);
    model_init_params(b, 7);
    T_CHECK(memcmp(model_params(a), model_params(b), model_num_floats(a) * sizeof(float)) == 0);
    /* He-normal: std sqrt(2/fan_in) for ReLU convs; N(0, 0.01) for linear outputs; zero biases */
    const char *names[] = {"conv3_1/weight", "stage2/paf/conv7/weight", "stage1/heat/conv2/bias"};
    for (int k = 0; k < 3; k++) {
        const model_param *p = model_param_find(a, names[k]);
        const float *v = model_params(a) + p->offset;
        double s = 0, s2 = 0;
        for (size_t i = 0; i < p->numel; i++) { s += v[i]; s2 += (double)v[i] * v[i]; }
        double mean = s / p->numel, sd = sqrt(s2 / p->numel - mean * mean);
        double want = p->is_bias ? 0 : p->relu ? sqrt(2.0 / p->fan_in) : 0.01;
        T_CHECKF(fabs(sd - want) <= 0.05 * want + 1e-12, "%s: std %.5g, want %.5g", names[k], sd, want);
    }
    model_init_params(b, 8);
    T_CHECK(memcmp(model_params(a), model_params(b), model_num_floats(a) * sizeof(float)) != 0);
    model_destroy(a);
    model_destroy(b);
}

/* Parameters and running statistics survive save and load bit for bit; a checkpoint without
 * the running statistics is refused with a reason, not loaded half. */
static void test_bn_checkpoint_round_trip(void)
{
    core_config c = tiny_config(8, 1, CORE_SS_P2H);
    c.model.norm = CORE_NORM_BATCH;
    model_net *a = model_create(&c, be), *b = model_create(&c, be);
    model_init_params(a, 9);
    /* a training-mode pass moves the running statistics off their initial 0 and 1 */
    model_set_input_shape(a, 2, 32, 32);
    fill_input(a, 3, 2 * 3 * 32 * 32);
    model_forward(a, 0);
    const model_param *rv = model_buf_at(a, 1);
    T_CHECK(strstr(rv->name, "running_var") && model_params(a)[rv->offset] != 1.0f);
    char path[1024], text[64] = "model.norm = batch\n";
    snprintf(path, sizeof path, "%s/bn_ck.h5", t_tmpdir());
    model_ckpt_save(path, a, NULL, 7, text, NULL, NULL);
    int64_t step = 0;
    char err[600];
    T_CHECKF(model_ckpt_try_load(path, b, NULL, &step, NULL, NULL, err, sizeof err) == 0, "%.300s", err);
    T_CHECK(step == 7);
    T_CHECK(memcmp(model_params(a), model_params(b), model_num_floats(a) * sizeof(float)) == 0);
    /* a net without batch norm has none of those tensors to load; one with it needs them */
    core_config c0 = c;
    c0.model.norm = CORE_NORM_NONE;
    model_net *plain = model_create(&c0, be);
    model_init_params(plain, 1);
    snprintf(path, sizeof path, "%s/plain_ck.h5", t_tmpdir());
    model_ckpt_save(path, plain, NULL, 1, text, NULL, NULL);
    T_CHECK(model_ckpt_try_load(path, b, NULL, NULL, NULL, NULL, err, sizeof err) != 0 && strstr(err, "bn/"));
    model_destroy(plain);
    model_destroy(a);
    model_destroy(b);
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(1); /* tiny tensors: threads would only add contention */
    T_RUN(test_structure_paper);
    T_RUN(test_output_shapes_stride16);
    T_RUN(test_init_statistics_and_determinism);
    T_RUN(test_grad_offsets_p2h_stride8);
    T_RUN(test_grad_offsets_both_stride16);
    T_RUN(test_grad_baseline_h2p_stride8);
    T_RUN(test_bn_structure_init_modes);
    T_RUN(test_grad_bn_eval_both_stride8);
    T_RUN(test_bn_checkpoint_round_trip);
    core_backend_destroy(be);
    T_EXIT();
}
