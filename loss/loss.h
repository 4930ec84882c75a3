/* The loss stack of SPEC section 4, composed once from the kernels of
 * loss/kernels.h, so it runs unchanged on every backend.
 *
 * Per stage s (1..S) and sample n the terms are
 *   heat   sum M*W*(H - TH)^2                     weight gamma
 *   paf    sum M*W*(alpha*TA + 1)*(P - TP)^2       weight delta (config < 0: gamma + 1)
 *   offset sum [TH_k > 0.4]*(O - TO)^2             weight loss.offset_weight   (model.offsets)
 *   ps     sum M*W*(Hps - TH)^2                    weight 1                    (ss = p2h | both)
 *   kl     sum_c KL(norm(relu(H)+eps) || norm(relu(Hps)+eps))   weight 1      (ss = p2h | both)
 *   hp     sum M*(Php - TP)^2                      weight 1                    (ss = h2p | both)
 *   consistency  sum (Php - P)^2                   weight 1                    (ss = h2p | both)
 * total = mean_n sum_s sum_terms weight*term. W is the PDD weight (beta_s).
 * loss.normalize = cells (not SPEC's default) divides every term, and so its
 * gradient, by the output grid's h*w (docs/training.md, "Loss normalisation"). */
#ifndef SSPOSE_LOSS_LOSS_H
#define SSPOSE_LOSS_LOSS_H

#include "core/backend.h"
#include "core/config.h"
#include "core/step_guard.h"
#include "loss/kernels.h"
#include "model/net.h"

/* Offsets are trained where the keypoint's heatmap target exceeds this (SPEC section 4). */
#define LOSS_OFFSET_GATE 0.4f

typedef enum {
    LOSS_HEAT = 0,
    LOSS_PAF,
    LOSS_OFFSET,
    LOSS_PS,
    LOSS_KL,
    LOSS_HP,
    LOSS_CONSISTENCY,
    LOSS_NUM_TERMS
} loss_term;

/* "heat", "paf", "offset", "ps", "kl", "hp", "consistency" (HDF5 names of `sspose forward`) */
extern const char *const loss_term_names[LOSS_NUM_TERMS];

/* Targets of one batch, device float tensors of the loss's backend, values as in SPEC
 * section 2 (already de-quantised): heat [N,19,h,w], paf [N,38,h,w], offset [N,36,h,w]
 * (needed when model.offsets), attention [N,19,h,w] (may be absent, .data = NULL,
 * when loss.alpha = 0), mask [N,1,h,w]. */
typedef struct loss_targets {
    core_tensor heat, paf, offset, attention, mask;
} loss_targets;

/* The network outputs of one stage and their gradient buffers (MODEL_OUT_* order).
 * An output whose feature is off has .data = NULL; a NULL gradient buffer means
 * no gradient for that output (the term's value is still computed). */
typedef struct loss_stage_io {
    core_tensor out[MODEL_NUM_OUT];
    core_tensor grad[MODEL_NUM_OUT];
} loss_stage_io;

typedef struct loss_values {
    int stages;
    unsigned active;                              /* bit t set: term t is part of this config */
    double weight[LOSS_NUM_TERMS];                /* its coefficient in the total */
    double term[CORE_MAX_STAGES][LOSS_NUM_TERMS]; /* mean over samples of the unweighted term */
    double total;                                 /* mean_n sum_s sum_t weight*term */
} loss_values;

typedef struct loss_ctx loss_ctx;

loss_ctx *loss_create(const core_config *cfg, core_backend *be);
void loss_destroy(loss_ctx *lc);

/* Which terms a config has (bit per loss_term) and their coefficients. */
unsigned loss_active_terms(const core_config *cfg);
double loss_term_weight(const core_config *cfg, loss_term t);

/* Evaluates every active term of `stages` stages; with want_grad, accumulates
 * d(total)/d(output) into the stages' grad tensors. Returns the total. */
double loss_compute(loss_ctx *lc, int stages, const loss_stage_io *io, const loss_targets *t, int want_grad,
                    loss_values *v);

/* The same on a network after model_forward(net, want_grad): reads model_output and
 * accumulates into model_output_grad (which model_forward(net, 1) zeroed). */
double loss_compute_net(loss_ctx *lc, model_net *net, const loss_targets *t, int want_grad, loss_values *v);

/* loss_compute(_net) in two halves: loss_queue(_net) queues every kernel (the
 * gradients too) without waiting for the device; loss_fetch brings all the
 * values back in one download and returns the total. The trainer queues the
 * backward pass in between, so the GPU never idles for the host there. The
 * inputs must not change before loss_fetch; one evaluation at a time. */
void loss_queue(loss_ctx *lc, int stages, const loss_stage_io *io, const loss_targets *t, int want_grad);
void loss_queue_net(loss_ctx *lc, model_net *net, const loss_targets *t, int want_grad);
double loss_fetch(loss_ctx *lc, loss_values *v);

/* The trainer's path, without loss_fetch's download: the queued evaluation as
 * the guard program's phase-1 arguments (core/step_guard.h; args.flag is left
 * NULL for the caller), then loss_queue_done to end it. The values come back
 * with the guard state at the next sync point. */
void loss_guard_args(const loss_ctx *lc, core_guard_loss_args *a);
void loss_queue_done(loss_ctx *lc);
/* The per-sample sums in the backend's memory, [stage][term][sample] (test faults poison them). */
double *loss_sums_device(loss_ctx *lc);
/* A loss_values with this config's stages, active terms and weights, terms 0. */
void loss_values_layout(const loss_ctx *lc, int stages, loss_values *v);
/* Fills v->term from the guard program's [stage * CORE_GUARD_SLOTS + term] array (v's stages). */
void loss_values_from_terms(loss_values *v, const double *terms);

#endif
