/* Central finite differences of the total loss against the analytic gradient
 * with respect to every element of every network output, per feature set.
 * Outputs are float32 by the op interface, but the loss is accumulated in
 * double and each step uses the exactly representable float perturbation, so
 * the quadratic terms' differences are exact up to double rounding. */
#include "tests/test.h"
#include "tests/test_loss_util.h"

static core_backend *be;

/* total, optionally without the KL terms (to check kl_detach) */
static double eval_total(loss_ctx *lc, tl_batch *b, int drop_kl)
{
    loss_values v;
    double t = loss_compute(lc, b->stages, b->io, &b->t, 0, &v);
    if (drop_kl)
        for (int s = 0; s < b->stages; s++) t -= v.term[s][LOSS_KL];
    return t;
}

/* Checks every element of every output. The gradient with kl_detach is checked against the
 * finite difference of the loss without L_kl for H (p is a constant there) and of the full loss
 * for everything else. Returns the worst relative error seen. */
static double check_config(const char **sets, int nsets, int n, int h, int w)
{
    core_config cfg;
    tl_config(&cfg, sets, nsets);
    tl_batch b;
    tl_batch_init(&b, &cfg, n, h, w);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    tl_zero_grads(&b);
    loss_compute(lc, b.stages, b.io, &b.t, 1, &v);
    double worst = 0;
    int checked = 0;
    for (int s = 0; s < b.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor *x = &b.io[s].out[o], *g = &b.io[s].grad[o];
            if (!x->data) continue;
            /* scale of this output's gradient, for the absolute part of the tolerance */
            double gmax = 0;
            for (size_t i = 0; i < core_tensor_numel(g); i++) gmax = fmax(gmax, fabs(g->data[i]));
            int drop_kl = cfg.loss.kl_detach && o == MODEL_OUT_HEAT;
            for (size_t i = 0; i < core_tensor_numel(x); i++) {
                float x0 = x->data[i];
                const double step = 1e-4; /* KL has third derivatives ~ 1/x^3 near |x| = 0.05 */
                float xp = (float)(x0 + step), xm = (float)(x0 - step);
                x->data[i] = xp;
                double lp = eval_total(lc, &b, drop_kl);
                x->data[i] = xm;
                double lm = eval_total(lc, &b, drop_kl);
                x->data[i] = x0;
                double fd = (lp - lm) / ((double)xp - (double)xm);
                double an = g->data[i];
                double err = fabs(fd - an) / (fabs(fd) + 1e-3 * gmax + 1e-9);
                if (err > worst) worst = err;
                if (err > 1e-4 && !t_cur_failed)
                    T_FAILF("stage %d output %d element %zu: analytic %.9g, finite difference %.9g", s + 1, o, i, an,
                            fd);
                checked++;
            }
        }
    T_CHECK(checked > 0);
    loss_destroy(lc);
    tl_batch_free(&b);
    return worst;
}

#define CHECK_SETS(...) do { const char *sets_[] = {__VA_ARGS__}; \
        check_config(sets_, (int)(sizeof sets_ / sizeof *sets_), 2, 3, 3); } while (0)

static void test_grad_paper_p2h(void) { CHECK_SETS("model.stages=2", "loss.beta=0.3,0.8", "model.ss=p2h", "model.offsets=1"); }
static void test_grad_kl_detach(void)
{
    CHECK_SETS("model.stages=2", "loss.beta=0.3,0.8", "model.ss=p2h", "model.offsets=1", "loss.kl_detach=1");
}
static void test_grad_h2p(void) { CHECK_SETS("model.stages=2", "loss.beta=linear", "model.ss=h2p", "model.offsets=0"); }
static void test_grad_both(void)
{
    CHECK_SETS("model.stages=3", "loss.beta=quadratic_b", "model.ss=both", "model.offsets=1", "loss.gamma=2",
               "loss.delta=3", "loss.alpha=4", "loss.offset_weight=0.5", "loss.kl_eps=1e-3");
}
static void test_grad_baseline(void)
{
    CHECK_SETS("model.stages=2", "loss.gamma=1", "loss.delta=1", "loss.alpha=0", "loss.beta=uniform",
               "model.offsets=0", "model.ss=off");
}

/* loss.normalize = cells: every term divided by h*w, gradients included (all terms on). */
static void test_grad_normalize_cells(void)
{
    CHECK_SETS("model.stages=2", "loss.beta=linear", "model.ss=both", "model.offsets=1", "loss.normalize=cells");
}

/* The KL gradient alone at larger channels, including cells on the ReLU's negative side. */
static void test_grad_kl_kernel(void)
{
    const int n = 2, c = 3, hw = 7;
    float h[42], q[42], gh[42] = {0}, gq[42] = {0};
    for (int i = 0; i < n * c * hw; i++) {
        h[i] = (float)tl_uniform(-0.5, 2.0);
        q[i] = (float)tl_uniform(-0.5, 2.0);
        if (fabsf(h[i]) < 0.05f) h[i] = 0.05f;
        if (fabsf(q[i]) < 0.05f) q[i] = 0.05f;
    }
    double ps[2];
    loss_kl_args a = {n, c, hw, h, q, 1e-6f, 1.0f, gh, gq};
    loss_kernels_cpu.kl(be, &a, ps);
    T_CHECK(ps[0] > 0 && ps[1] > 0);
    loss_kl_args e = {n, c, hw, h, q, 1e-6f, 1.0f, NULL, NULL};
    for (int which = 0; which < 2; which++)
        for (int i = 0; i < n * c * hw; i++) {
            float *x = which ? &q[i] : &h[i];
            float x0 = *x, xp = x0 + 1e-3f, xm = x0 - 1e-3f;
            double lp[2], lm[2];
            *x = xp;
            loss_kernels_cpu.kl(be, &e, lp);
            *x = xm;
            loss_kernels_cpu.kl(be, &e, lm);
            *x = x0;
            int smp = i / (c * hw);
            double fd = (lp[smp] - lm[smp]) / ((double)xp - xm);
            double an = which ? gq[i] : gh[i];
            T_NEAR(an, fd, 1e-4, 1e-6);
        }
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(2);
    T_RUN(test_grad_paper_p2h);
    T_RUN(test_grad_kl_detach);
    T_RUN(test_grad_h2p);
    T_RUN(test_grad_both);
    T_RUN(test_grad_baseline);
    T_RUN(test_grad_kl_kernel);
    T_RUN(test_grad_normalize_cells);
    core_backend_destroy(be);
    T_EXIT();
}
