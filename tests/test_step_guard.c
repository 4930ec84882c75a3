/* The step's guard program (core/step_guard.h) on the CPU backend: the terms
 * it makes on the device equal loss_fetch's, its decisions (skip, stop,
 * clip, count), its window and non-finite record; the per-segment sums of
 * squares it reads; and the gated optimizer updates that read its decision.
 * tests/test_gpu_ops.c checks the CUDA kernels against these. */
#include "tests/test.h"
#include "tests/test_loss_util.h"

static core_backend *be;

/* ---- phase 1: the loss's terms and flag ---- */
static void guard_terms_equal_loss_fetch(void)
{
    const char *sets[] = {"model.stages=3", "model.ss=both", "model.offsets=1", "loss.alpha=2",
                          "loss.normalize=cells", "loss.beta=1,2,3"};
    core_config cfg;
    tl_config(&cfg, sets, 6);
    tl_batch b;
    tl_batch_init(&b, &cfg, 3, 6, 5);
    tl_fill_random(&b);
    tl_zero_grads(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = loss_compute(lc, b.stages, b.io, &b.t, 0, &v);

    loss_queue(lc, b.stages, b.io, &b.t, 0);
    core_guard_loss_args a;
    loss_guard_args(lc, &a);
    float flag = -1;
    a.flag = &flag;
    core_step_state s;
    memset(&s, 0, sizeof s);
    be->guard_loss(be, &a, &s);
    T_CHECKF(s.total == total, "guard total %.17g, loss_fetch %.17g", s.total, total);
    T_CHECKF(flag == 0.0f, "finite loss flagged %g", flag);
    for (int st = 0; st < b.stages; st++)
        for (int k = 0; k < LOSS_NUM_TERMS; k++)
            T_CHECKF(s.terms[st * CORE_GUARD_SLOTS + k] == v.term[st][k], "stage %d term %s: guard %.17g, fetch %.17g",
                     st + 1, loss_term_names[k], s.terms[st * CORE_GUARD_SLOTS + k], v.term[st][k]);
    T_CHECK(s.total > 0);

    /* one NaN per-sample sum (stage 2's paf of sample 1) poisons that term, the total and the flag */
    loss_sums_device(lc)[(1 * LOSS_NUM_TERMS + LOSS_PAF) * 3 + 1] = NAN;
    be->guard_loss(be, &a, &s);
    T_CHECK(isnan(s.terms[1 * CORE_GUARD_SLOTS + LOSS_PAF]) && isnan(s.total));
    T_CHECK(s.terms[0 * CORE_GUARD_SLOTS + LOSS_PAF] == v.term[0][LOSS_PAF]);
    T_CHECKF(flag == 1.0f, "NaN loss flag %g", flag);
    loss_queue_done(lc);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* ---- phase 2: the step's decision ---- */
typedef struct {
    double sq[3];
    float flag;
    core_guard_args a;
    core_step_state s;
} guard_fx;

static void fx_init(guard_fx *f, int skip, double clip)
{
    memset(f, 0, sizeof *f);
    f->a.flag = &f->flag;
    f->a.param_sq = f->sq;
    f->a.nparams = 3;
    f->a.clip_norm = clip;
    f->a.skip_nonfinite = skip;
    f->a.beta1 = 0.9;
    f->a.beta2 = 0.999;
    f->s.updates = 7; /* a resumed run's count */
    f->s.total = 2.5;
    for (int k = 0; k < CORE_GUARD_TERMS; k++) f->s.terms[k] = k;
}

static void fx_step(guard_fx *f, long step, double s0, double s1, double s2, float flag)
{
    f->sq[0] = s0, f->sq[1] = s1, f->sq[2] = s2;
    f->flag = flag;
    f->a.step = step;
    be->guard_step(be, &f->a, &f->s);
    f->a.reset_window = f->a.reset_bad = 0;
}

static void guard_finite_steps_update_count_and_window(void)
{
    guard_fx f;
    fx_init(&f, 0, 0);
    fx_step(&f, 8, 1, 4, 4, 0);
    T_CHECK(f.s.apply == 1 && f.s.scale == 1 && f.s.gsq == 9 && f.s.updates == 8);
    T_CHECKF(f.s.bc1 == 1 - pow(0.9, 8) && f.s.bc2 == 1 - pow(0.999, 8), "bias corrections %.17g %.17g", f.s.bc1,
             f.s.bc2);
    fx_step(&f, 9, 16, 0, 0, 0);
    T_CHECK(f.s.w_steps == 2 && f.s.w_good == 2 && f.s.w_grad_norm == 3 + 4 && f.s.w_total == 5);
    T_CHECK(f.s.w_terms[5] == 10 && f.s.w_clip == 2 && f.s.w_clipped == 0 && f.s.b_count == 0);
    f.a.reset_window = 1;
    fx_step(&f, 10, 0, 1, 0, 0);
    T_CHECKF(f.s.w_steps == 1 && f.s.w_good == 1 && f.s.w_grad_norm == 1 && f.s.w_terms[5] == 5,
             "reset window: steps %g good %g", f.s.w_steps, f.s.w_good);
    T_CHECK(f.s.updates == 10 && f.s.skipped == 0 && f.s.halted == 0);
}

static void guard_clips_like_torch(void)
{
    guard_fx f;
    fx_init(&f, 0, 2.0);
    fx_step(&f, 1, 9, 0, 16, 0); /* norm 5 */
    T_CHECKF(f.s.scale == 2.0 / (5 + 1e-6), "clip factor %.17g", f.s.scale);
    T_CHECK(f.s.apply == 1 && f.s.w_clipped == 1 && f.s.w_clip == f.s.scale);
    fx_step(&f, 2, 1, 0, 0, 0); /* norm 1: within the bound */
    T_CHECK(f.s.scale == 1 && f.s.w_clipped == 1);
}

static void guard_skips_nonfinite_and_records_the_first(void)
{
    guard_fx f;
    fx_init(&f, 1, 0);
    fx_step(&f, 4, 1, INFINITY, NAN, 0); /* the first non-finite parameter is index 1 */
    T_CHECK(f.s.apply == 0 && f.s.updates == 7 && f.s.skipped == 1 && f.s.halted == 0);
    T_CHECKF(f.s.b_count == 1 && f.s.b_step == 4 && f.s.b_kind == CORE_GUARD_BAD_GRAD && f.s.b_param == 1,
             "record: count %g step %g kind %g param %g", f.s.b_count, f.s.b_step, f.s.b_kind, f.s.b_param);
    T_CHECK(f.s.w_steps == 1 && f.s.w_good == 0 && f.s.w_total == 0);
    fx_step(&f, 5, 1, 1, 1, 0);
    T_CHECK(f.s.apply == 1 && f.s.updates == 8);
    fx_step(&f, 6, 1, 1, 1, 0.5f); /* some rank's loss: the flag after the all-reduce */
    T_CHECK(f.s.apply == 0 && f.s.skipped == 2 && f.s.b_count == 2 && f.s.b_step == 4 && f.s.b_skipped == 1);
    f.a.reset_bad = 1;
    fx_step(&f, 7, 1, 1, 1, NAN);
    T_CHECKF(f.s.b_count == 1 && f.s.b_step == 7 && f.s.b_kind == CORE_GUARD_BAD_LOSS && f.s.b_skipped == 3,
             "after reset: count %g step %g kind %g", f.s.b_count, f.s.b_step, f.s.b_kind);
    T_CHECK(f.s.b_terms[5] == 5 && f.s.b_total == 2.5);
    T_CHECK(f.s.w_steps == 4 && f.s.w_good == 1);
}

static void guard_halts_without_skip(void)
{
    guard_fx f;
    fx_init(&f, 0, 0);
    fx_step(&f, 3, 1, 1, 1, 1.0f);
    T_CHECK(f.s.apply == 0 && f.s.halted == 1 && f.s.skipped == 0 && f.s.b_step == 3);
    fx_step(&f, 4, 1, 1, 1, 0); /* a finite step after the halt still makes no update */
    fx_step(&f, 5, NAN, 1, 1, 0);
    T_CHECK(f.s.apply == 0 && f.s.updates == 7 && f.s.b_count == 1 && f.s.b_step == 3);
    T_CHECK(f.s.b_kind == CORE_GUARD_BAD_LOSS);
}

/* ---- the segment sums the guard reads ---- */
static void sumsq_segments_per_segment_and_thread_independent(void)
{
    const size_t off[] = {0, 5, 5, 70000, 200003};
    const int nseg = 4;
    size_t n = off[nseg];
    float *x = be->alloc(be, n);
    uint64_t st = 99;
    for (size_t i = 0; i < n; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(st >> 40) / (double)(1ull << 24) - 0.5);
    }
    double out[4], out1[4];
    be->sumsq_segments(be, x, nseg, off, out);
    for (int s = 0; s < nseg; s++) {
        long double ref = 0;
        for (size_t i = off[s]; i < off[s + 1]; i++) ref += (long double)x[i] * x[i];
        T_NEAR(out[s], (double)ref, 1e-12, 0);
    }
    T_CHECK(out[1] == 0);
    core_backend *one = core_cpu_backend_create(1);
    one->sumsq_segments(one, x, nseg, off, out1);
    T_CHECKF(!memcmp(out, out1, sizeof out), "1 thread and 2 threads differ");
    core_backend_destroy(one);
    x[69999] = NAN;
    x[150000] = INFINITY;
    be->sumsq_segments(be, x, nseg, off, out);
    T_CHECK(isfinite(out[0]) && isnan(out[2]) && isinf(out[3]));
    be->free(be, x);
}

/* ---- the gated optimizer updates ---- */
static void gated_updates_match_prescaled_and_skip(void)
{
    const size_t n = 70001;
    float *w0 = be->alloc(be, n), *g = be->alloc(be, n), *gs = be->alloc(be, n), *m0 = be->alloc(be, n),
          *v0 = be->alloc(be, n);
    for (size_t i = 0; i < n; i++) {
        w0[i] = (float)sin(0.37 * i);
        g[i] = (float)(1e-2 * cos(0.11 * i));
        m0[i] = (float)(1e-3 * sin(0.05 * i));
        v0[i] = (float)(1e-5 * (1.1 + cos(0.07 * i)));
    }
    const float scale = 0.3f;
    memcpy(gs, g, n * sizeof *g);
    be->scale(be, gs, scale, n); /* how the trainer clipped before the gate */
    core_step_state gate;
    memset(&gate, 0, sizeof gate);
    gate.apply = 1, gate.scale = scale, gate.updates = 5;
    gate.bc1 = 1 - pow(0.9, 5), gate.bc2 = 1 - pow(0.999, 5);
    core_adam_args a = {0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1e-4f, 0.99999f, 0, 0, 1e-3};
    a.step_size = (float)(a.lr / (1 - pow(0.9, 5)));
    a.inv_sqrt_bc2 = (float)(1 / sqrt(1 - pow(0.999, 5)));
    float *w[2], *m[2], *v[2];
    for (int k = 0; k < 2; k++) {
        w[k] = be->alloc(be, n), m[k] = be->alloc(be, n), v[k] = be->alloc(be, n);
    }
    for (int kind = 0; kind < 3; kind++) {
        for (int k = 0; k < 2; k++) {
            memcpy(w[k], w0, n * 4), memcpy(m[k], m0, n * 4), memcpy(v[k], v0, n * 4);
        }
        /* [0]: the gate's scale; [1]: no gate on the prescaled gradient */
        if (kind == 0) {
            be->sgd_step(be, &gate, n, w[0], g, m[0], 0.01f, 0.9f, 5e-4f);
            be->sgd_step(be, NULL, n, w[1], gs, m[1], 0.01f, 0.9f, 5e-4f);
        } else if (kind == 1) {
            be->sgd_nesterov_step(be, &gate, n, w[0], g, m[0], 0.01f, 0.9f, 5e-4f);
            be->sgd_nesterov_step(be, NULL, n, w[1], gs, m[1], 0.01f, 0.9f, 5e-4f);
        } else {
            be->adam_step(be, &gate, &a, n, w[0], g, m[0], v[0]);
            be->adam_step(be, NULL, &a, n, w[1], gs, m[1], v[1]);
        }
        T_CHECKF(!memcmp(w[0], w[1], n * 4) && !memcmp(m[0], m[1], n * 4) && !memcmp(v[0], v[1], n * 4),
                 "optimizer %d: the gated update differs from the prescaled one", kind);
        T_CHECKF(memcmp(w[0], w0, n * 4) != 0, "optimizer %d did not update", kind);
    }
    gate.apply = 0;
    for (int k = 0; k < 1; k++) memcpy(w[k], w0, n * 4), memcpy(m[k], m0, n * 4), memcpy(v[k], v0, n * 4);
    be->sgd_step(be, &gate, n, w[0], g, m[0], 0.01f, 0.9f, 5e-4f);
    be->sgd_nesterov_step(be, &gate, n, w[0], g, m[0], 0.01f, 0.9f, 5e-4f);
    be->adam_step(be, &gate, &a, n, w[0], g, m[0], v[0]);
    T_CHECKF(!memcmp(w[0], w0, n * 4) && !memcmp(m[0], m0, n * 4) && !memcmp(v[0], v0, n * 4),
             "a closed gate changed the state");
    for (int k = 0; k < 2; k++) be->free(be, w[k]), be->free(be, m[k]), be->free(be, v[k]);
    be->free(be, w0), be->free(be, g), be->free(be, gs), be->free(be, m0), be->free(be, v0);
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(2);
    T_RUN(guard_terms_equal_loss_fetch);
    T_RUN(guard_finite_steps_update_count_and_window);
    T_RUN(guard_clips_like_torch);
    T_RUN(guard_skips_nonfinite_and_records_the_first);
    T_RUN(guard_halts_without_skip);
    T_RUN(sumsq_segments_per_segment_and_thread_independent);
    T_RUN(gated_updates_match_prescaled_and_skip);
    core_backend_destroy(be);
    T_EXIT();
}
