/* Batch normalisation's per-channel statistics (model/net_bn.c), computed
 * where the sums are: one loop over channels on the CPU backend, one thread
 * per channel in a CUDA kernel, so a training step with batch norm never
 * brings its statistics to the host (docs/gpu.md, "Host waits in a training
 * step"). Written once: __host__ __device__ under nvcc, plain C elsewhere;
 * every double product, sum and quotient rounded on its own (core/step_guard.h's
 * macros), so both devices compute the same bits.
 *
 * Training forward, per channel over the M cells of the (global) batch:
 *   mean = S1/M, var = max(S2/M - mean^2, 0), invstd = 1/sqrt(var + eps),
 *   running = (1 - momentum)*running + momentum*(mean | var*M/(M-1)),
 *   scale = gamma*invstd, shift = beta - mean*scale.
 * Eval forward: mean and var are the running estimates.
 * Backward with T1 = sum dy, T2 = sum dy*x over the cells:
 *   dgamma += invstd*(T2 - mean*T1), dbeta += T1   (this rank's sums: the gradient all-reduce adds them)
 *   dx += A*dy + B*(x - mean) + C with A = gamma*invstd, B = -A*invstd*mdyx, C = -A*mdy,
 *   mdy = T1/M, mdyx = invstd*(T2 - mean*T1)/M over the global sums (0 in eval mode). */
#ifndef SSPOSE_CORE_BN_MATH_H
#define SSPOSE_CORE_BN_MATH_H

#include "core/step_guard.h"

typedef enum {
    CORE_BN_COUNT = 0,   /* sums[2c] = count: this rank's cells, before the sums are all-reduced */
    CORE_BN_FORWARD,     /* statistics (or the running ones), running update, scale and shift */
    CORE_BN_PARAM_GRADS, /* dgamma, dbeta from this rank's backward sums */
    CORE_BN_COEF,        /* dx's coefficients from the (all-reduced) backward sums */
} core_bn_phase;

/* Every pointer is the backend's memory. */
typedef struct core_bn_args {
    int c;
    int train;                 /* batch statistics (1) or the running estimates (0) */
    double eps, momentum;
    double count;              /* COUNT: this rank's cells per channel (N*H*W) */
    double *sums;              /* FORWARD: S1[c] | S2[c] | M; backward phases: T1[c] | T2[c] */
    const float *gamma, *beta; /* the layer's parameters */
    float *run_mean, *run_var; /* its buffers (updated in training FORWARD) */
    double *stats;             /* this use's mean[c] | invstd[c] | M (written by FORWARD, read by backward) */
    float *out;                /* FORWARD: scale[c] | shift[c]; COEF: A[c] | B[c] | mean[c] | C[c] */
    float *dgamma, *dbeta;     /* PARAM_GRADS: accumulated */
} core_bn_args;

CORE_HD static inline void core_bn_channel(core_bn_phase phase, const core_bn_args *a, int ch)
{
    const int c = a->c;
    if (phase == CORE_BN_COUNT) {
        if (ch == 0) a->sums[2 * c] = a->count;
        return;
    }
    if (phase == CORE_BN_FORWARD) {
        double mean, invstd, count = 0;
        if (a->train) {
            count = a->sums[2 * c];
            mean = CORE_DDIV(a->sums[ch], count);
            double var = CORE_DADD(CORE_DDIV(a->sums[c + ch], count), -CORE_DMUL(mean, mean));
            if (var < 0) var = 0;
            invstd = CORE_DDIV(1.0, sqrt(CORE_DADD(var, a->eps)));
            /* torch's running variance is the unbiased estimate */
            const double unbias = count > 1 ? CORE_DDIV(count, CORE_DADD(count, -1.0)) : 1.0;
            const double keep = CORE_DADD(1.0, -a->momentum);
            a->run_mean[ch] = (float)CORE_DADD(CORE_DMUL(keep, (double)a->run_mean[ch]), CORE_DMUL(a->momentum, mean));
            a->run_var[ch] = (float)CORE_DADD(CORE_DMUL(keep, (double)a->run_var[ch]),
                                              CORE_DMUL(CORE_DMUL(a->momentum, var), unbias));
        } else {
            mean = a->run_mean[ch];
            invstd = CORE_DDIV(1.0, sqrt(CORE_DADD((double)a->run_var[ch], a->eps)));
        }
        a->stats[ch] = mean;
        a->stats[c + ch] = invstd;
        if (ch == 0) a->stats[2 * c] = count;
        const double scale = CORE_DMUL((double)a->gamma[ch], invstd);
        a->out[ch] = (float)scale;
        a->out[c + ch] = (float)CORE_DADD((double)a->beta[ch], -CORE_DMUL(mean, scale));
        return;
    }
    const double mean = a->stats[ch], invstd = a->stats[c + ch], t1 = a->sums[ch], t2 = a->sums[c + ch];
    const double dyxhat = CORE_DMUL(invstd, CORE_DADD(t2, -CORE_DMUL(mean, t1))); /* sum dy*xhat */
    if (phase == CORE_BN_PARAM_GRADS) {
        a->dgamma[ch] += (float)dyxhat;
        a->dbeta[ch] += (float)t1;
        return;
    }
    const double gs = CORE_DMUL((double)a->gamma[ch], invstd), count = a->stats[2 * c];
    double mdy = 0, mdyx = 0;
    if (a->train) {
        mdy = CORE_DDIV(t1, count);
        mdyx = CORE_DDIV(dyxhat, count);
    }
    a->out[ch] = (float)gs;
    a->out[c + ch] = (float)CORE_DMUL(CORE_DMUL(-gs, invstd), mdyx);
    a->out[2 * c + ch] = (float)mean;
    a->out[3 * c + ch] = (float)CORE_DMUL(-gs, mdy);
}

#endif
