/* Hand-computed values of every loss term on small tensors, the beta schedules,
 * the preset term sets and numerical safety. */
#include "tests/test.h"
#include "tests/test_loss_util.h"

#include <omp.h>

#include "core/skeleton.h"

static core_backend *be;

static double run(loss_ctx *lc, tl_batch *b, int want_grad, loss_values *v)
{
    tl_zero_grads(b);
    return loss_compute(lc, b->stages, b->io, &b->t, want_grad, v);
}

/* 1 stage, explicit beta, default gamma (9), delta = gamma + 1 */
#define ONE_STAGE "model.stages=1", "loss.beta=0.25"

static void test_heat_hand(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=0", "model.ss=off"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 1, 2, 2);
    *tl_at(&b.t.heat, 0, 0, 0, 0) = 1.0f;               /* nose target at cell (0,0) */
    *tl_at(&b.io[0].out[MODEL_OUT_HEAT], 0, 0, 0, 0) = 0.5f; /* (0.5)^2 */
    *tl_at(&b.io[0].out[MODEL_OUT_HEAT], 0, 18, 1, 1) = -2.0f; /* background (-2)^2 at a half-masked cell */
    *tl_at(&b.t.mask, 0, 0, 1, 1) = 0.5f;
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = run(lc, &b, 1, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 0.25 + 0.5 * 4.0, 1e-12, 0);
    T_NEAR(v.term[0][LOSS_PAF], 0, 0, 0);
    T_NEAR(total, 9 * 2.25, 1e-12, 0);
    /* d total/dH = gamma * 2 * M * (H - TH) */
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_HEAT], 0, 0, 0, 0), 9 * 2 * -0.5, 1e-6, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_HEAT], 0, 18, 1, 1), 9 * 2 * 0.5 * -2.0, 1e-6, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* A right-knee prediction where only the left knee is labelled costs beta_s; the left knee's
 * own error costs 1; a target at exactly pdd_threshold is not active. */
static void test_pdd_knee(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=0", "model.ss=off"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    T_CHECK(skel_heat_mirror(9) == 12);
    tl_batch b;
    tl_batch_init(&b, &cfg, 1, 2, 2);
    core_tensor *H = &b.io[0].out[MODEL_OUT_HEAT];
    *tl_at(&b.t.heat, 0, 12, 0, 0) = 1.0f; /* left knee labelled at (0,0) */
    *tl_at(H, 0, 9, 0, 0) = 1.0f;          /* right knee predicted there */
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    run(lc, &b, 1, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 0.25 + 1.0, 1e-12, 0); /* beta*1^2 + left knee missed: 1*1^2 */
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_HEAT], 0, 9, 0, 0), 9 * 2 * 0.25, 1e-6, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_HEAT], 0, 12, 0, 0), 9 * 2 * -1.0, 1e-6, 0);
    /* predicting the left knee right: only the mirror confusion remains */
    *tl_at(H, 0, 12, 0, 0) = 1.0f;
    run(lc, &b, 0, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 0.25, 1e-12, 0);
    /* both knees labelled there: no confusion, full weight */
    *tl_at(&b.t.heat, 0, 9, 0, 0) = 0.5f;
    run(lc, &b, 0, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 0.25, 1e-12, 0); /* (1 - 0.5)^2 at weight 1 */
    /* mirror target exactly at the threshold (0.1) is not active: weight 1 */
    *tl_at(&b.t.heat, 0, 9, 0, 0) = 0.0f;
    *tl_at(&b.t.heat, 0, 12, 0, 0) = 0.1f;
    *tl_at(H, 0, 12, 0, 0) = 0.1f;
    run(lc, &b, 0, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 1.0, 1e-7, 0);
    *tl_at(&b.t.heat, 0, 12, 0, 0) = 0.125f;
    *tl_at(H, 0, 12, 0, 0) = 0.125f;
    run(lc, &b, 0, &v);
    T_NEAR(v.term[0][LOSS_HEAT], 0.25, 1e-7, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* beta_s per stage from the named schedule: the knee confusion costs beta_s in stage s. */
static void test_pdd_schedule_per_stage(void)
{
    const char *names[] = {"uniform", "linear", "quadratic_a", "quadratic_b"};
    const double want[4][6] = {{1, 1, 1, 1, 1, 1},
                               {0, .2, .4, .6, .8, 1},
                               {0, .45, .69, .85, .95, 1},
                               {0, .05, .15, .31, .65, 1}};
    for (int k = 0; k < 4; k++) {
        core_config cfg;
        char beta[64];
        snprintf(beta, sizeof beta, "loss.beta=%s", names[k]);
        const char *sets[] = {"model.stages=6", beta, "model.offsets=0", "model.ss=off"};
        tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
        tl_batch b;
        tl_batch_init(&b, &cfg, 1, 1, 2);
        *tl_at(&b.t.heat, 0, 12, 0, 1) = 0.9f;
        for (int s = 0; s < 6; s++) {
            *tl_at(&b.io[s].out[MODEL_OUT_HEAT], 0, 9, 0, 1) = 1.0f;
            *tl_at(&b.io[s].out[MODEL_OUT_HEAT], 0, 12, 0, 1) = 0.9f;
        }
        loss_ctx *lc = loss_create(&cfg, be);
        loss_values v;
        run(lc, &b, 0, &v);
        for (int s = 0; s < 6; s++) T_NEAR(v.term[s][LOSS_HEAT], want[k][s], 1e-7, 1e-12);
        loss_destroy(lc);
        tl_batch_free(&b);
    }
}

static void test_beta_resampling(void)
{
    double v[CORE_MAX_STAGES];
    T_CHECK(core_beta_schedule("linear", 3, v) == 0);
    T_NEAR(v[0], 0, 0, 1e-12); T_NEAR(v[1], 0.5, 0, 1e-12); T_NEAR(v[2], 1, 0, 1e-12);
    T_CHECK(core_beta_schedule("quadratic_b", 3, v) == 0);
    T_NEAR(v[1], (0.15 + 0.31) / 2, 0, 1e-12);
    T_CHECK(core_beta_schedule("quadratic_a", 11, v) == 0); /* x = s/2 on the 6-point grid */
    T_NEAR(v[1], 0.225, 0, 1e-12); T_NEAR(v[2], 0.45, 0, 1e-12); T_NEAR(v[10], 1, 0, 1e-12);
    T_CHECK(core_beta_schedule("1,2,3", 5, v) == 0);
    for (int s = 0; s < 5; s++) T_NEAR(v[s], 1 + 0.5 * s, 0, 1e-12);
    T_CHECK(core_beta_schedule("0.3, 0.7", 1, v) == 0); /* one stage is the last */
    T_NEAR(v[0], 0.7, 0, 1e-12);
    T_CHECK(core_beta_schedule("0,.05,.15,.31,.65,1", 6, v) == 0);
    T_NEAR(v[3], 0.31, 0, 1e-12);
    T_CHECK(core_beta_schedule("cubic", 6, v) == -1);
    T_CHECK(core_beta_schedule("1,-2", 6, v) == -1);
    T_CHECK(core_beta_schedule("", 6, v) == -1);
    /* the config resolves beta_values for its stage count */
    core_config cfg;
    const char *sets[] = {"model.stages=3", "loss.beta=linear"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    T_NEAR(cfg.loss.beta_values[1], 0.5, 0, 1e-12);
}

static void test_paf_salm_hand(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=0", "model.ss=off", "loss.alpha=10"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    T_CHECK(skel_paf_mirror(2) == 8 && skel_paf_mirror(3) == 9);
    tl_batch b;
    tl_batch_init(&b, &cfg, 1, 2, 2);
    core_tensor *P = &b.io[0].out[MODEL_OUT_PAF];
    /* limb 4 (l_hip -> l_knee) labelled at (0,0); limb 1 (its mirror) predicted there */
    *tl_at(&b.t.paf, 0, 8, 0, 0) = 0.6f;
    *tl_at(&b.t.paf, 0, 9, 0, 0) = 0.8f;
    *tl_at(P, 0, 2, 0, 0) = 0.5f;
    *tl_at(&b.t.attention, 0, 1, 0, 0) = 0.5f; /* limb 1's attention: weight 10*0.5+1 = 6 */
    *tl_at(&b.t.attention, 0, 4, 0, 0) = 1.0f; /* limb 4's: weight 11 */
    /* limb 0 at (1,1): only its y channel carries a vector, the x channel (0) still counts as part of it */
    *tl_at(&b.t.paf, 0, 1, 1, 1) = -1.0f;
    *tl_at(P, 0, 0, 1, 1) = 0.5f;
    *tl_at(&b.t.mask, 0, 0, 1, 1) = 0.5f;
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = run(lc, &b, 1, &v);
    double want = 0.25 * 6 * 0.25         /* mirror confusion: beta * (alpha*TA+1) * 0.5^2 */
                  + 11 * (0.36 + 0.64)    /* limb 4 missed: (alpha*1+1) * |(0.6,0.8)|^2 */
                  + 0.5 * (0.25 + 1.0);   /* limb 0 at a half-masked cell, TA = 0 */
    T_NEAR(v.term[0][LOSS_PAF], want, 1e-7, 0);
    T_NEAR(total, 10 * want, 1e-7, 0); /* delta = gamma + 1 = 10 */
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_PAF], 0, 2, 0, 0), 10 * 2 * 0.25 * 6 * 0.5, 1e-6, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_PAF], 0, 9, 0, 0), 10 * 2 * 11 * -0.8, 1e-6, 0);
    loss_destroy(lc);

    /* alpha = 0: plain (PDD-weighted, masked) L2, and the attention tensor is not needed */
    const char *sets0[] = {ONE_STAGE, "model.offsets=0", "model.ss=off", "loss.alpha=0"};
    tl_config(&cfg, sets0, (int)(sizeof sets0 / sizeof *sets0));
    lc = loss_create(&cfg, be);
    free(b.t.attention.data);
    b.t.attention = (core_tensor){0};
    run(lc, &b, 0, &v);
    T_NEAR(v.term[0][LOSS_PAF], 0.25 * 0.25 + 1.0 + 0.5 * 1.25, 1e-7, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* alpha = 0 equals a direct sum of M*W*(P-TP)^2 on random data. */
static void test_alpha0_plain_l2(void)
{
    core_config cfg;
    const char *sets[] = {"model.stages=2", "loss.beta=0.3,0.6", "model.offsets=0", "model.ss=off", "loss.alpha=0"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 2, 3, 4);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    run(lc, &b, 0, &v);
    for (int s = 0; s < 2; s++) {
        double beta = s ? 0.6 : 0.3, sum = 0;
        for (int n = 0; n < 2; n++)
            for (int c = 0; c < 38; c++)
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 4; j++) {
                        int mc = skel_paf_mirror(c), own = c & ~1, mir = mc & ~1;
                        int act_own = *tl_at(&b.t.paf, n, own, i, j) != 0 || *tl_at(&b.t.paf, n, own + 1, i, j) != 0;
                        int act_mir = *tl_at(&b.t.paf, n, mir, i, j) != 0 || *tl_at(&b.t.paf, n, mir + 1, i, j) != 0;
                        double w = (act_mir && !act_own) ? beta : 1.0;
                        double d = (double)*tl_at(&b.io[s].out[MODEL_OUT_PAF], n, c, i, j) - *tl_at(&b.t.paf, n, c, i, j);
                        sum += *tl_at(&b.t.mask, n, 0, i, j) * w * d * d;
                    }
        T_NEAR(v.term[s][LOSS_PAF], sum / 2, 1e-7, 0); /* beta is a float in the kernel */
    }
    loss_destroy(lc);
    tl_batch_free(&b);
}

static void test_offset_hand(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=1", "model.ss=off", "loss.offset_weight=2"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 1, 1, 3);
    core_tensor *O = &b.io[0].out[MODEL_OUT_OFFSET];
    *tl_at(&b.t.heat, 0, 3, 0, 0) = 0.5f;  /* above the gate */
    *tl_at(&b.t.heat, 0, 3, 0, 1) = 0.4f;  /* at the gate: off */
    *tl_at(&b.t.heat, 0, 3, 0, 2) = 0.41f; /* just above */
    for (int j = 0; j < 3; j++) {
        *tl_at(&b.t.offset, 0, 6, 0, j) = 0.25f;
        *tl_at(&b.t.offset, 0, 7, 0, j) = -0.5f;
        *tl_at(&b.io[0].out[MODEL_OUT_HEAT], 0, 3, 0, j) = *tl_at(&b.t.heat, 0, 3, 0, j);
    }
    *tl_at(O, 0, 6, 0, 2) = 0.5f;
    for (int j = 0; j < 3; j++) *tl_at(&b.t.mask, 0, 0, 0, j) = 0; /* offsets ignore the mask */
    /* an offset of another keypoint where that keypoint's target is 0: gated off */
    *tl_at(O, 0, 0, 0, 0) = 3.0f;
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = run(lc, &b, 1, &v);
    double want = (0.0625 + 0.25) + (0.0625 + 0.25);
    T_NEAR(v.term[0][LOSS_OFFSET], want, 1e-7, 0);
    T_NEAR(total, 2 * want, 1e-7, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_OFFSET], 0, 6, 0, 2), 2 * 2 * 0.25, 1e-6, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_OFFSET], 0, 6, 0, 1), 0, 0, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_OFFSET], 0, 0, 0, 0), 0, 0, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* L_ps uses the heatmap weights on p2h's output; L_kl by hand on one channel. */
static void test_ps_kl_hand(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=0", "model.ss=p2h", "loss.kl_eps=1e-12"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 2, 2, 2);
    core_tensor *H = &b.io[0].out[MODEL_OUT_HEAT], *Q = &b.io[0].out[MODEL_OUT_P2H];
    /* sample 0: knee confusion on Hps only */
    *tl_at(&b.t.heat, 0, 12, 0, 0) = 1.0f;
    *tl_at(H, 0, 12, 0, 0) = 1.0f;
    *tl_at(Q, 0, 12, 0, 0) = 1.0f;
    *tl_at(Q, 0, 9, 0, 0) = 1.0f;
    /* sample 1, channel 5: H = (3,1,0,-2), Hps = (1,1,0,0): P = (.75,.25,0,0), Q = (.5,.5,0,0) */
    *tl_at(H, 1, 5, 0, 0) = 3, *tl_at(H, 1, 5, 0, 1) = 1, *tl_at(H, 1, 5, 1, 1) = -2;
    *tl_at(Q, 1, 5, 0, 0) = 1, *tl_at(Q, 1, 5, 0, 1) = 1;
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = run(lc, &b, 1, &v);
    double kl1 = 0.75 * log(1.5) + 0.25 * log(0.5);
    /* sample 0: channel 9 of Hps is (1,0,0,0) against H's (0,0,0,0) (uniform) and the other way
     * round is not needed: KL(P||Q) with P uniform over 4 cells, Q = (1,0,0,0)+eps normalised */
    double e = 1e-12, sq = 1 + 4 * e;
    double kl0 = 0.25 * log(0.25 / ((1 + e) / sq)) + 3 * 0.25 * log(0.25 / (e / sq));
    T_NEAR(v.term[0][LOSS_PS], (0.25 /* beta, sample 0 */ + 2.0 /* sample 1 */) / 2, 1e-7, 0);
    T_NEAR(v.term[0][LOSS_KL], (kl0 + kl1) / 2, 1e-6, 0);
    T_NEAR(total, 9 * v.term[0][LOSS_HEAT] + v.term[0][LOSS_PS] + v.term[0][LOSS_KL], 1e-12, 0);
    /* gradient of KL into H at the negative cell is zero (relu); into Hps where Hps = 0 too */
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_HEAT], 1, 5, 1, 1), 9 * 2 * 0.5 * -2.0, 1e-6, 0);
    /* dKL/dHps_i = (1/sum q - P_i/q_i) / N at Hps = 1: (1/2 - .75/1)/2 plus the L_ps gradient 2*(1-0)/2 */
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_P2H], 1, 5, 0, 0), (0.5 - 0.75) / 2 + 1.0, 1e-5, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_P2H], 1, 5, 1, 0), 0, 0, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

static void test_h2p_hand(void)
{
    core_config cfg;
    const char *sets[] = {ONE_STAGE, "model.offsets=0", "model.ss=h2p", "loss.alpha=0"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 1, 1, 2);
    core_tensor *P = &b.io[0].out[MODEL_OUT_PAF], *X = &b.io[0].out[MODEL_OUT_H2P];
    *tl_at(&b.t.paf, 0, 8, 0, 0) = 1.0f;
    *tl_at(X, 0, 2, 0, 0) = 1.0f; /* h2p's mirror confusion: no PDD weight in L_hp */
    *tl_at(X, 0, 8, 0, 1) = 2.0f; /* a half-masked cell */
    *tl_at(&b.t.mask, 0, 0, 0, 1) = 0.5f;
    *tl_at(P, 0, 8, 0, 1) = 0.5f;
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    run(lc, &b, 1, &v);
    T_CHECK(v.active == (1u << LOSS_HEAT | 1u << LOSS_PAF | 1u << LOSS_HP | 1u << LOSS_CONSISTENCY));
    T_NEAR(v.term[0][LOSS_HP], 1.0 + 1.0 + 0.5 * 4.0, 1e-7, 0);
    T_NEAR(v.term[0][LOSS_CONSISTENCY], 1.0 + 1.5 * 1.5, 1e-7, 0);
    T_NEAR(v.term[0][LOSS_PS], 0, 0, 0);
    /* both sides of the consistency get gradients: dP += -2(Php - P) on top of the PAF term */
    double gp = 10 * 2 * 0.5 * (0.5 - 0) + -2 * (2.0 - 0.5);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_PAF], 0, 8, 0, 1), gp, 1e-6, 0);
    T_NEAR(*tl_at(&b.io[0].grad[MODEL_OUT_H2P], 0, 8, 0, 1), 2 * 0.5 * 2.0 + 2 * 1.5, 1e-6, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

static void test_term_sets_and_weights(void)
{
    core_config cfg;
    const char *base[] = {"loss.gamma=1", "loss.delta=1", "loss.alpha=0", "loss.beta=uniform", "model.offsets=0",
                          "model.ss=off"};
    tl_config(&cfg, base, (int)(sizeof base / sizeof *base));
    T_CHECK(loss_active_terms(&cfg) == (1u << LOSS_HEAT | 1u << LOSS_PAF));
    T_NEAR(loss_term_weight(&cfg, LOSS_HEAT), 1, 0, 0);
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 1, 0, 0);
    for (int s = 0; s < cfg.model.stages; s++) T_NEAR(cfg.loss.beta_values[s], 1, 0, 0);

    core_config_defaults(&cfg); /* the paper's defaults */
    core_config_resolve(&cfg);
    T_CHECK(loss_active_terms(&cfg) ==
            (1u << LOSS_HEAT | 1u << LOSS_PAF | 1u << LOSS_OFFSET | 1u << LOSS_PS | 1u << LOSS_KL));
    T_NEAR(loss_term_weight(&cfg, LOSS_HEAT), 9, 0, 0);
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 10, 0, 0); /* delta < 0 means gamma + 1 */
    T_NEAR(loss_term_weight(&cfg, LOSS_OFFSET), 1, 0, 0);
    T_NEAR(cfg.loss.alpha, 10, 0, 0);
    T_CHECK(!strcmp(cfg.loss.beta, "quadratic_b"));
    T_NEAR(cfg.loss.beta_values[3], 0.31, 0, 1e-12);
    core_config_set(&cfg, "loss.gamma=4");
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 5, 0, 0);
    core_config_set(&cfg, "loss.delta=2.5");
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 2.5, 0, 0);
    core_config_set(&cfg, "model.ss=both");
    T_CHECK(loss_active_terms(&cfg) == (1u << LOSS_NUM_TERMS) - 1);
    core_config_set(&cfg, "model.ss=h2p");
    core_config_set(&cfg, "model.offsets=0");
    T_CHECK(loss_active_terms(&cfg) == (1u << LOSS_HEAT | 1u << LOSS_PAF | 1u << LOSS_HP | 1u << LOSS_CONSISTENCY));
}

/* configs/baseline.ini and configs/paper.ini give the SPEC's term sets. */
static void test_preset_files(void)
{
    FILE *f = fopen("configs/baseline.ini", "r");
    if (!f) T_SKIP("configs/baseline.ini not in this tree yet");
    fclose(f);
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_load(&cfg, "configs/baseline.ini");
    core_config_resolve(&cfg);
    T_CHECK(loss_active_terms(&cfg) == (1u << LOSS_HEAT | 1u << LOSS_PAF));
    T_NEAR(loss_term_weight(&cfg, LOSS_HEAT), 1, 0, 0);
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 1, 0, 0);
    T_NEAR(cfg.loss.alpha, 0, 0, 0);
    for (int s = 0; s < cfg.model.stages; s++) T_NEAR(cfg.loss.beta_values[s], 1, 0, 0);
    core_config_defaults(&cfg);
    core_config_load(&cfg, "configs/paper.ini");
    core_config_resolve(&cfg);
    T_CHECK(loss_active_terms(&cfg) ==
            (1u << LOSS_HEAT | 1u << LOSS_PAF | 1u << LOSS_OFFSET | 1u << LOSS_PS | 1u << LOSS_KL));
    T_NEAR(loss_term_weight(&cfg, LOSS_HEAT), 9, 0, 0);
    T_NEAR(loss_term_weight(&cfg, LOSS_PAF), 10, 0, 0);
    T_NEAR(cfg.loss.alpha, 10, 0, 0);
    T_CHECK(!strcmp(cfg.loss.beta, "quadratic_b"));
}

/* The baseline on a full batch: exactly gamma*heat + delta*paf with no PDD (uniform) and no attention. */
static void test_baseline_total(void)
{
    core_config cfg;
    const char *base[] = {"loss.gamma=1", "loss.delta=1", "loss.alpha=0", "loss.beta=uniform", "model.offsets=0",
                          "model.ss=off", "model.stages=3"};
    tl_config(&cfg, base, (int)(sizeof base / sizeof *base));
    tl_batch b;
    tl_batch_init(&b, &cfg, 2, 2, 3);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    double total = run(lc, &b, 0, &v);
    double want = 0;
    for (int s = 0; s < 3; s++)
        for (int o = 0; o < 2; o++) {
            core_tensor *x = &b.io[s].out[o], *t = o == MODEL_OUT_PAF ? &b.t.paf : &b.t.heat;
            for (int n = 0; n < 2; n++)
                for (int c = 0; c < x->c; c++)
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 3; j++) {
                            double d = (double)*tl_at(x, n, c, i, j) - *tl_at(t, n, c, i, j);
                            want += *tl_at(&b.t.mask, n, 0, i, j) * d * d / 2;
                        }
        }
    T_NEAR(total, want, 1e-12, 0);
    loss_destroy(lc);
    tl_batch_free(&b);
}

static int all_finite(tl_batch *b, loss_values *v)
{
    if (!isfinite(v->total)) return 0;
    for (int s = 0; s < b->stages; s++) {
        for (int k = 0; k < LOSS_NUM_TERMS; k++)
            if (!isfinite(v->term[s][k])) return 0;
        for (int o = 0; o < MODEL_NUM_OUT; o++)
            for (size_t i = 0; b->io[s].grad[o].data && i < core_tensor_numel(&b->io[s].grad[o]); i++)
                if (!isfinite(b->io[s].grad[o].data[i])) return 0;
    }
    return 1;
}

static void test_numerical_safety(void)
{
    core_config cfg;
    const char *sets[] = {"model.stages=2", "model.ss=both", "model.offsets=1"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 2, 3, 3);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    const float fills[] = {0.0f, -3.0f, 1e30f, -1e30f};
    for (int f = 0; f < 4; f++) {
        for (int s = 0; s < 2; s++)
            for (int o = 0; o < MODEL_NUM_OUT; o++)
                for (size_t i = 0; i < core_tensor_numel(&b.io[s].out[o]); i++) b.io[s].out[o].data[i] = fills[f];
        run(lc, &b, 1, &v);
        T_CHECKF(all_finite(&b, &v), "non-finite loss or gradient for predictions all %g", fills[f]);
        T_CHECKF(v.term[0][LOSS_KL] == 0 || fabs(v.term[0][LOSS_KL]) < 1e-9, "KL of equal inputs is %g",
                 v.term[0][LOSS_KL]);
    }
    /* an empty mask: masked terms are exactly zero (not NaN), and their gradients too */
    tl_fill_random(&b);
    for (size_t i = 0; i < core_tensor_numel(&b.t.mask); i++) b.t.mask.data[i] = 0;
    run(lc, &b, 1, &v);
    T_CHECK(all_finite(&b, &v));
    for (int s = 0; s < 2; s++) {
        T_CHECK(v.term[s][LOSS_HEAT] == 0 && v.term[s][LOSS_PAF] == 0 && v.term[s][LOSS_PS] == 0 &&
                v.term[s][LOSS_HP] == 0);
    }
    const char *off[] = {"model.stages=2", "model.ss=off", "model.offsets=0"};
    loss_destroy(lc);
    tl_config(&cfg, off, (int)(sizeof off / sizeof *off));
    lc = loss_create(&cfg, be);
    tl_batch b2;
    tl_batch_init(&b2, &cfg, 1, 2, 2);
    tl_fill_random(&b2);
    for (size_t i = 0; i < core_tensor_numel(&b2.t.mask); i++) b2.t.mask.data[i] = 0;
    double total = run(lc, &b2, 1, &v);
    T_CHECK(total == 0);
    for (int s = 0; s < 2; s++)
        for (int o = 0; o < 2; o++)
            for (size_t i = 0; i < core_tensor_numel(&b2.io[s].grad[o]); i++) T_CHECK(b2.io[s].grad[o].data[i] == 0);
    loss_destroy(lc);
    tl_batch_free(&b);
    tl_batch_free(&b2);
}

/* Gradients are accumulated, not overwritten; values are identical run to run. */
static void test_accumulate_and_determinism(void)
{
    core_config cfg;
    const char *sets[] = {"model.stages=2", "model.ss=both"};
    tl_config(&cfg, sets, (int)(sizeof sets / sizeof *sets));
    tl_batch b;
    tl_batch_init(&b, &cfg, 3, 46, 46); /* large enough for the parallel paths */
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v1, v2;
    run(lc, &b, 1, &v1);
    size_t nh = core_tensor_numel(&b.io[1].grad[MODEL_OUT_HEAT]);
    float *g1 = malloc(nh * sizeof(float));
    memcpy(g1, b.io[1].grad[MODEL_OUT_HEAT].data, nh * sizeof(float));
    loss_compute(lc, 2, b.io, &b.t, 1, &v2); /* no zeroing: adds a second copy */
    T_CHECK(memcmp(&v1, &v2, sizeof v1) == 0);
    /* the reduction order does not depend on the thread count */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    loss_values v3;
    loss_compute(lc, 2, b.io, &b.t, 0, &v3);
    omp_set_num_threads(threads > 1 ? threads : 2);
    T_CHECK(memcmp(&v1, &v3, sizeof v1) == 0);
    for (size_t i = 0; i < nh; i++) T_NEAR(b.io[1].grad[MODEL_OUT_HEAT].data[i], 2 * g1[i], 1e-6, 0);
    free(g1);
    loss_destroy(lc);
    tl_batch_free(&b);
}

/* loss.normalize = cells is the SPEC sum divided by the grid's h*w, term by term,
 * in the total and in every output gradient (same batch, both settings). */
static void test_normalize_cells(void)
{
    const int n = 2, h = 3, w = 5;
    const char *base[] = {"model.stages=2", "loss.beta=linear", "model.ss=both", "model.offsets=1", "loss.normalize=sum"};
    core_config cs, cc;
    tl_config(&cs, base, 5);
    base[4] = "loss.normalize=cells";
    tl_config(&cc, base, 5);
    T_CHECK(!cs.loss.normalize_cells && cc.loss.normalize_cells);
    tl_batch b, bc;
    tl_batch_init(&b, &cs, n, h, w);
    tl_fill_random(&b);
    tl_batch_init(&bc, &cs, n, h, w);
    loss_ctx *ls = loss_create(&cs, be), *lc = loss_create(&cc, be);
    loss_values vs, vc;
    double ts = run(ls, &b, 1, &vs);
    /* the same outputs and targets into the second batch's tensors */
    for (int s = 0; s < b.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++)
            if (b.io[s].out[o].data)
                memcpy(bc.io[s].out[o].data, b.io[s].out[o].data, core_tensor_numel(&b.io[s].out[o]) * sizeof(float));
    core_tensor *src[] = {&b.t.heat, &b.t.paf, &b.t.offset, &b.t.attention, &b.t.mask};
    core_tensor *dst[] = {&bc.t.heat, &bc.t.paf, &bc.t.offset, &bc.t.attention, &bc.t.mask};
    for (int i = 0; i < 5; i++) memcpy(dst[i]->data, src[i]->data, core_tensor_numel(src[i]) * sizeof(float));
    double tc = run(lc, &bc, 1, &vc);
    T_NEAR(tc, ts / (h * w), 1e-12, 0);
    int terms = 0;
    for (int s = 0; s < 2; s++)
        for (int t = 0; t < LOSS_NUM_TERMS; t++)
            if (vs.active >> t & 1) {
                T_NEAR(vc.term[s][t], vs.term[s][t] / (h * w), 1e-12, 0);
                terms++;
            }
    T_CHECKF(terms == 2 * LOSS_NUM_TERMS, "%d terms compared", terms);
    for (int s = 0; s < 2; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            const core_tensor *gs = &b.io[s].grad[o], *gc = &bc.io[s].grad[o];
            if (!gs->data) continue;
            double m = 0;
            for (size_t i = 0; i < core_tensor_numel(gs); i++) m = fmax(m, fabs(gs->data[i]));
            T_CHECK(m > 0);
            for (size_t i = 0; i < core_tensor_numel(gs); i++)
                T_NEAR(gc->data[i], gs->data[i] / (h * w), 1e-5, 1e-6 * m / (h * w));
        }
    loss_destroy(ls);
    loss_destroy(lc);
    tl_batch_free(&b);
    tl_batch_free(&bc);
}

int main(void)
{
    core_set_quiet(1);
    be = core_cpu_backend_create(2);
    T_RUN(test_heat_hand);
    T_RUN(test_pdd_knee);
    T_RUN(test_pdd_schedule_per_stage);
    T_RUN(test_beta_resampling);
    T_RUN(test_paf_salm_hand);
    T_RUN(test_alpha0_plain_l2);
    T_RUN(test_offset_hand);
    T_RUN(test_ps_kl_hand);
    T_RUN(test_h2p_hand);
    T_RUN(test_term_sets_and_weights);
    T_RUN(test_preset_files);
    T_RUN(test_baseline_total);
    T_RUN(test_numerical_safety);
    T_RUN(test_accumulate_and_determinism);
    T_RUN(test_normalize_cells);
    core_backend_destroy(be);
    T_EXIT();
}
