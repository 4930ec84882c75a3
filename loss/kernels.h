/* The device-specific part of the loss: two kernels behind a vtable.
 * loss/loss.c composes every term of SPEC section 4 from them, once for all
 * devices; a backend only supplies these kernels (loss/kernels_cpu.c here, a
 * CUDA file beside it on GPU builds).
 *
 * Shared contract of every implementation:
 *  - Tensor pointers are device pointers of the backend, NCHW float32, contiguous.
 *  - Per-sample sums are written as doubles to `out`, n doubles in the backend's
 *    memory (device memory on CUDA), asynchronously like any op: no host wait, so
 *    the loss needs one download per evaluation, not one per term. They must be
 *    deterministic: the same inputs give bit-identical sums on every call (fixed
 *    reduction order, no atomics on the sums).
 *  - Gradients are ACCUMULATED (g += ...) into the given buffers, already scaled
 *    by `coef`, so several terms can add into the same network output gradient.
 *  - ReLU's derivative at exactly 0 is 0 (as in PyTorch). */
#ifndef SSPOSE_LOSS_KERNELS_H
#define SSPOSE_LOSS_KERNELS_H

#include "core/backend.h"

#ifdef __cplusplus
extern "C" { /* loss/kernels_cuda.cu defines loss_kernels_cuda with C linkage */
#endif

#define LOSS_MAX_CHANNELS 64

/* How a cell of the target counts as "active" for the PDD weight. */
typedef enum {
    LOSS_PDD_NONE = 0,   /* no PDD weight */
    LOSS_PDD_SCALAR = 1, /* heatmaps: target[c] > pdd_thr */
    LOSS_PDD_VECTOR = 2, /* PAFs: the vector (target[2l], target[2l+1]) is non-zero */
} loss_pdd_mode;

/* One weighted squared error: per sample n,
 *   sum_{c,i} w[n,c,i] * (pred[n,c,i] - target[n,c,i])^2
 * with w the product of the factors that are switched on:
 *   mask[n,i]                                   (mask != NULL)
 *   beta where mirror[c]'s target is active and c's own is not, else 1   (pdd != NONE)
 *   alpha * att[n, c / att_group, i] + 1        (att != NULL; att has att_c channels)
 *   [gate[n, c / gate_group, i] > gate_thr]     (gate != NULL; gate has gate_c channels)
 * Gradients: grad_pred += coef*2w(pred-target), grad_target -= the same (each when non-NULL). */
typedef struct loss_l2_args {
    int n, c, hw;
    const float *pred, *target; /* [n,c,hw] */
    const float *mask;          /* [n,hw] or NULL */
    loss_pdd_mode pdd;
    float pdd_thr, beta;
    int mirror[LOSS_MAX_CHANNELS]; /* channel -> mirror channel (used when pdd != NONE) */
    const float *att;              /* [n,att_c,hw] or NULL */
    int att_c, att_group;
    float alpha;
    const float *gate; /* [n,gate_c,hw] or NULL */
    int gate_c, gate_group;
    float gate_thr;
    float coef;
    float *grad_pred, *grad_target; /* NULL: no gradient wanted */
} loss_l2_args;

/* KL divergence per channel: p = relu(h)+eps, q = relu(hps)+eps, each normalised to
 * sum 1 over the hw cells of its (n,c); per sample sum_c sum_i P log(P/Q).
 * Gradients (scaled by coef, accumulated):
 *   dL/dh_i   = [h_i > 0]   * (log(P_i/Q_i) - KL_c) / sum(p)
 *   dL/dhps_i = [hps_i > 0] * (1/sum(q) - P_i/q_i)
 * grad_h == NULL is kl_detach (p constant). */
typedef struct loss_kl_args {
    int n, c, hw;
    const float *h, *hps; /* [n,c,hw] */
    float eps;
    float coef;
    float *grad_h, *grad_hps;
} loss_kl_args;

typedef struct loss_kernels {
    const char *name;
    /* out: a->n doubles in the backend's memory, overwritten (asynchronously) */
    void (*l2)(core_backend *be, const loss_l2_args *a, double *out);
    void (*kl)(core_backend *be, const loss_kl_args *a, double *out);
} loss_kernels;

extern const loss_kernels loss_kernels_cpu;

/* Whether this build has loss kernels for a device. */
int loss_kernels_built(core_device dev);
/* The kernels for a backend's device; dies with a clear line when the device has none built. */
const loss_kernels *loss_kernels_for(const core_backend *be);

#ifdef __cplusplus
}
#endif

#endif
