/* Composition of SPEC section 4 from the loss kernels: which terms exist, with
 * which weights, on which tensors. Nothing here touches device memory directly. */
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/skeleton.h"
#include "core/step_guard.h"
#include "loss/loss.h"

_Static_assert(LOSS_NUM_TERMS <= CORE_GUARD_SLOTS, "the guard program holds CORE_GUARD_SLOTS terms per stage");

const char *const loss_term_names[LOSS_NUM_TERMS] = {"heat", "paf", "offset", "ps", "kl", "hp", "consistency"};

struct loss_ctx {
    core_backend *be;
    const loss_kernels *k;
    core_config cfg; /* a copy: the caller's config may change between runs (alpha sweeps) */
    unsigned active;
    double weight[LOSS_NUM_TERMS];
    /* Per-sample sums of every (stage, term), [stage][term][sample] doubles:
     * in the backend's memory, written by the kernels without a host wait,
     * then brought back in one download per evaluation. */
    double *sums_dev, *sums_host;
    size_t sums_cap;
    /* the evaluation queued by loss_queue, for loss_fetch */
    int q_stages, q_n;
    double q_per_term;
};

unsigned loss_active_terms(const core_config *cfg)
{
    unsigned a = 1u << LOSS_HEAT | 1u << LOSS_PAF;
    if (cfg->model.offsets) a |= 1u << LOSS_OFFSET;
    if (cfg->model.ss == CORE_SS_P2H || cfg->model.ss == CORE_SS_BOTH) a |= 1u << LOSS_PS | 1u << LOSS_KL;
    if (cfg->model.ss == CORE_SS_H2P || cfg->model.ss == CORE_SS_BOTH) a |= 1u << LOSS_HP | 1u << LOSS_CONSISTENCY;
    return a;
}

double loss_term_weight(const core_config *cfg, loss_term t)
{
    switch (t) {
    case LOSS_HEAT: return cfg->loss.gamma;
    case LOSS_PAF: return cfg->loss.delta < 0 ? cfg->loss.gamma + 1 : cfg->loss.delta;
    case LOSS_OFFSET: return cfg->loss.offset_weight;
    default: return 1;
    }
}

loss_ctx *loss_create(const core_config *cfg, core_backend *be)
{
    loss_ctx *lc = core_calloc(1, sizeof *lc);
    lc->be = be;
    lc->k = loss_kernels_for(be);
    lc->cfg = *cfg;
    lc->active = loss_active_terms(cfg);
    for (int t = 0; t < LOSS_NUM_TERMS; t++) lc->weight[t] = loss_term_weight(cfg, t);
    return lc;
}

void loss_destroy(loss_ctx *lc)
{
    if (!lc) return;
    if (lc->sums_dev) lc->be->free(lc->be, (float *)lc->sums_dev);
    free(lc->sums_host);
    free(lc);
}

static void check_shape(const char *what, const core_tensor *x, int n, int c, int h, int w)
{
    CHECK(x->data, "loss: %s is missing", what);
    CHECK(x->n == n && x->c == c && x->h == h && x->w == w, "loss: %s has shape [%d,%d,%d,%d], expected [%d,%d,%d,%d]",
          what, x->n, x->c, x->h, x->w, n, c, h, w);
}

/* Room for stages x terms x n sums (backend memory counts floats: two per double). */
static void reserve_sums(loss_ctx *lc, int stages, int n)
{
    size_t need = (size_t)stages * LOSS_NUM_TERMS * n;
    if (lc->sums_cap >= need) return;
    if (lc->sums_dev) lc->be->free(lc->be, (float *)lc->sums_dev);
    free(lc->sums_host);
    lc->sums_dev = (double *)lc->be->alloc(lc->be, 2 * need);
    lc->sums_host = core_malloc(need * sizeof(double));
    lc->sums_cap = need;
}

/* Where the kernels put stage s's term t (n samples). */
static double *sums_of(loss_ctx *lc, int s, loss_term t, int n)
{
    return lc->sums_dev + ((size_t)s * LOSS_NUM_TERMS + t) * n;
}

static float *grad_or_null(const loss_stage_io *io, model_out o, int want_grad)
{
    return want_grad ? io->grad[o].data : NULL;
}

void loss_queue(loss_ctx *lc, int stages, const loss_stage_io *io, const loss_targets *t, int want_grad)
{
    const core_config *cfg = &lc->cfg;
    CHECK(stages >= 1 && stages <= CORE_MAX_STAGES && stages == cfg->model.stages,
          "loss: %d stages given, the config has %d", stages, cfg->model.stages);
    const int n = t->heat.n, h = t->heat.h, w = t->heat.w, hw = h * w;
    CHECK(n >= 1, "loss: empty batch");
    check_shape("heatmap target", &t->heat, n, MODEL_NUM_HEAT, h, w);
    check_shape("paf target", &t->paf, n, MODEL_NUM_PAF, h, w);
    check_shape("mask target", &t->mask, n, 1, h, w);
    const int use_att = cfg->loss.alpha != 0;
    if (use_att) check_shape("attention target", &t->attention, n, SKEL_NUM_LIMBS, h, w);
    if (lc->active & 1u << LOSS_OFFSET) check_shape("offset target", &t->offset, n, MODEL_NUM_OFFSET, h, w);

    reserve_sums(lc, stages, n);
    /* d(total)/d(term_n) = weight / N: the batch loss is a mean over samples.
     * loss.normalize = cells divides every term by the grid's cells as well, so
     * the gradient scale (and the lr that suits it) no longer grows with h*w. */
    const double per_term = cfg->loss.normalize_cells ? 1.0 / hw : 1.0;
    const double inv_n = cfg->loss.normalize_cells ? 1.0 / ((double)n * hw) : 1.0 / n;

    lc->q_stages = stages, lc->q_n = n, lc->q_per_term = per_term;

    for (int s = 0; s < stages; s++) {
        const loss_stage_io *st = &io[s];
        const double beta = cfg->loss.beta_values[s];
        check_shape("heatmap output", &st->out[MODEL_OUT_HEAT], n, MODEL_NUM_HEAT, h, w);
        check_shape("paf output", &st->out[MODEL_OUT_PAF], n, MODEL_NUM_PAF, h, w);

        /* heatmaps: M * W * (H - TH)^2 */
        loss_l2_args a = {0};
        a.n = n, a.c = MODEL_NUM_HEAT, a.hw = hw;
        a.pred = st->out[MODEL_OUT_HEAT].data, a.target = t->heat.data, a.mask = t->mask.data;
        a.pdd = LOSS_PDD_SCALAR, a.pdd_thr = (float)cfg->loss.pdd_threshold, a.beta = (float)beta;
        for (int c = 0; c < MODEL_NUM_HEAT; c++) a.mirror[c] = skel_heat_mirror(c);
        a.coef = (float)(lc->weight[LOSS_HEAT] * inv_n);
        a.grad_pred = grad_or_null(st, MODEL_OUT_HEAT, want_grad);
        lc->k->l2(lc->be, &a, sums_of(lc, s, LOSS_HEAT, n));

        /* PAFs: M * W * (alpha*TA + 1) * (P - TP)^2, TA of the limb owning the channel */
        loss_l2_args b = {0};
        b.n = n, b.c = MODEL_NUM_PAF, b.hw = hw;
        b.pred = st->out[MODEL_OUT_PAF].data, b.target = t->paf.data, b.mask = t->mask.data;
        b.pdd = LOSS_PDD_VECTOR, b.beta = (float)beta;
        for (int c = 0; c < MODEL_NUM_PAF; c++) b.mirror[c] = skel_paf_mirror(c);
        if (use_att) b.att = t->attention.data, b.att_c = SKEL_NUM_LIMBS, b.att_group = 2, b.alpha = (float)cfg->loss.alpha;
        b.coef = (float)(lc->weight[LOSS_PAF] * inv_n);
        b.grad_pred = grad_or_null(st, MODEL_OUT_PAF, want_grad);
        lc->k->l2(lc->be, &b, sums_of(lc, s, LOSS_PAF, n));

        if (lc->active & 1u << LOSS_OFFSET) {
            /* offsets: [TH_k > 0.4] * (O - TO)^2, unmasked */
            check_shape("offset output", &st->out[MODEL_OUT_OFFSET], n, MODEL_NUM_OFFSET, h, w);
            loss_l2_args o = {0};
            o.n = n, o.c = MODEL_NUM_OFFSET, o.hw = hw;
            o.pred = st->out[MODEL_OUT_OFFSET].data, o.target = t->offset.data;
            o.gate = t->heat.data, o.gate_c = MODEL_NUM_HEAT, o.gate_group = 2, o.gate_thr = LOSS_OFFSET_GATE;
            o.coef = (float)(lc->weight[LOSS_OFFSET] * inv_n);
            o.grad_pred = grad_or_null(st, MODEL_OUT_OFFSET, want_grad);
            lc->k->l2(lc->be, &o, sums_of(lc, s, LOSS_OFFSET, n));
        }

        if (lc->active & 1u << LOSS_PS) {
            check_shape("p2h output", &st->out[MODEL_OUT_P2H], n, MODEL_NUM_HEAT, h, w);
            /* L_ps: the heatmap term's weights on Hps */
            loss_l2_args p = a;
            p.pred = st->out[MODEL_OUT_P2H].data;
            p.coef = (float)(lc->weight[LOSS_PS] * inv_n);
            p.grad_pred = grad_or_null(st, MODEL_OUT_P2H, want_grad);
            lc->k->l2(lc->be, &p, sums_of(lc, s, LOSS_PS, n));

            loss_kl_args k = {0};
            k.n = n, k.c = MODEL_NUM_HEAT, k.hw = hw;
            k.h = st->out[MODEL_OUT_HEAT].data, k.hps = st->out[MODEL_OUT_P2H].data;
            k.eps = (float)cfg->loss.kl_eps;
            k.coef = (float)(lc->weight[LOSS_KL] * inv_n);
            k.grad_h = cfg->loss.kl_detach ? NULL : grad_or_null(st, MODEL_OUT_HEAT, want_grad);
            k.grad_hps = grad_or_null(st, MODEL_OUT_P2H, want_grad);
            lc->k->kl(lc->be, &k, sums_of(lc, s, LOSS_KL, n));
        }

        if (lc->active & 1u << LOSS_HP) {
            check_shape("h2p output", &st->out[MODEL_OUT_H2P], n, MODEL_NUM_PAF, h, w);
            /* L_hp = M * (Php - TP)^2 */
            loss_l2_args q = {0};
            q.n = n, q.c = MODEL_NUM_PAF, q.hw = hw;
            q.pred = st->out[MODEL_OUT_H2P].data, q.target = t->paf.data, q.mask = t->mask.data;
            q.coef = (float)(lc->weight[LOSS_HP] * inv_n);
            q.grad_pred = grad_or_null(st, MODEL_OUT_H2P, want_grad);
            lc->k->l2(lc->be, &q, sums_of(lc, s, LOSS_HP, n));

            /* consistency (Php - P)^2: both sides are predictions and both get gradients */
            loss_l2_args r = {0};
            r.n = n, r.c = MODEL_NUM_PAF, r.hw = hw;
            r.pred = st->out[MODEL_OUT_H2P].data, r.target = st->out[MODEL_OUT_PAF].data;
            r.coef = (float)(lc->weight[LOSS_CONSISTENCY] * inv_n);
            r.grad_pred = grad_or_null(st, MODEL_OUT_H2P, want_grad);
            r.grad_target = grad_or_null(st, MODEL_OUT_PAF, want_grad);
            lc->k->l2(lc->be, &r, sums_of(lc, s, LOSS_CONSISTENCY, n));
        }
    }

}

void loss_values_layout(const loss_ctx *lc, int stages, loss_values *v)
{
    memset(v, 0, sizeof *v);
    v->stages = stages;
    v->active = lc->active;
    for (int k = 0; k < LOSS_NUM_TERMS; k++) v->weight[k] = (lc->active >> k & 1) ? lc->weight[k] : 0;
}

void loss_values_from_terms(loss_values *v, const double *terms)
{
    for (int s = 0; s < v->stages; s++)
        for (int k = 0; k < LOSS_NUM_TERMS; k++) v->term[s][k] = terms[s * CORE_GUARD_SLOTS + k];
}

void loss_guard_args(const loss_ctx *lc, core_guard_loss_args *a)
{
    CHECK(lc->q_stages > 0, "loss_guard_args without loss_queue");
    memset(a, 0, sizeof *a);
    a->sums = lc->sums_dev;
    a->stages = lc->q_stages;
    a->slots = LOSS_NUM_TERMS;
    a->n = lc->q_n;
    a->active = lc->active;
    for (int k = 0; k < LOSS_NUM_TERMS; k++) a->weight[k] = lc->weight[k];
    a->per_term = lc->q_per_term;
}

double *loss_sums_device(loss_ctx *lc) { return lc->sums_dev; }

void loss_queue_done(loss_ctx *lc) { lc->q_stages = 0; }

double loss_fetch(loss_ctx *lc, loss_values *v)
{
    const int stages = lc->q_stages, n = lc->q_n;
    CHECK(stages > 0, "loss_fetch without loss_queue");
    loss_values_layout(lc, stages, v);

    /* The one host wait of the evaluation: every sum at once; the terms as the
     * trainer's guard program makes them on the device (core/step_guard.h). */
    size_t count = (size_t)stages * LOSS_NUM_TERMS * n;
    lc->be->download(lc->be, (float *)lc->sums_host, (const float *)lc->sums_dev, 2 * count);
    core_guard_loss_args a;
    loss_guard_args(lc, &a);
    double terms[CORE_GUARD_TERMS];
    v->total = core_guard_terms(lc->sums_host, stages, a.slots, n, a.active, a.weight, a.per_term, terms);
    loss_values_from_terms(v, terms);
    lc->q_stages = 0;
    return v->total;
}

double loss_compute(loss_ctx *lc, int stages, const loss_stage_io *io, const loss_targets *t, int want_grad,
                    loss_values *v)
{
    loss_queue(lc, stages, io, t, want_grad);
    return loss_fetch(lc, v);
}
