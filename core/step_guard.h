/* The step's guard program: the decisions the trainer makes after the loss
 * and the gradient all-reduce (skip or stop on a non-finite step, clip the
 * gradient, count the update, Adam's bias corrections) and the sums its log
 * needs, evaluated where the numbers live. On the CUDA backend it runs as a
 * one-thread kernel and the optimizer kernels read its decision from device
 * memory, so a training step never waits for the host; the host reads the
 * state back once per sync point (a logged, validated or checkpointed step),
 * docs/gpu.md "Host synchronisation".
 *
 * Written once: the functions are __host__ __device__ under nvcc (the CUDA
 * backend's kernel) and plain C elsewhere (the CPU backend, loss_fetch).
 * Device code rounds every double product and sum on its own so nvcc fuses
 * nothing the CPU computes in two roundings. */
#ifndef SSPOSE_CORE_STEP_GUARD_H
#define SSPOSE_CORE_STEP_GUARD_H

#include <math.h>
#include <stddef.h>

#include "core/config.h"

#ifdef __CUDACC__
#define CORE_HD __host__ __device__
#else
#define CORE_HD
#endif

#ifdef __CUDA_ARCH__
#define CORE_DMUL(a, b) __dmul_rn((a), (b))
#define CORE_DADD(a, b) __dadd_rn((a), (b))
#define CORE_DDIV(a, b) __ddiv_rn((a), (b))
#else
#define CORE_DMUL(a, b) ((a) * (b))
#define CORE_DADD(a, b) ((a) + (b))
#define CORE_DDIV(a, b) ((a) / (b))
#endif

#define CORE_GUARD_SLOTS 8 /* loss terms per stage the program can hold (LOSS_NUM_TERMS <= this) */
#define CORE_GUARD_TERMS (CORE_MAX_STAGES * CORE_GUARD_SLOTS)

/* Lives in the backend's memory (core_guard_state_floats floats); every field
 * a double so one download brings it all back. Window fields (w_) cover the
 * steps since the last reset_window, the first non-finite step (b_) those
 * since the last reset_bad. Terms are this rank's: the host averages them
 * over ranks when it reads them. */
typedef struct core_step_state {
    /* the latest step (apply and scale are what the optimizer kernels read) */
    double apply;  /* 1: update the weights; 0: no update (a non-finite step, or halted) */
    double scale;  /* the gradient's factor in the update: clipping, 1 when not clipped */
    double bc1, bc2; /* Adam's bias corrections 1 - beta1^t, 1 - beta2^t of this update */
    double gsq;    /* squared global gradient norm */
    double total;  /* this rank's loss */
    double terms[CORE_GUARD_TERMS]; /* this rank's unweighted terms, [stage * CORE_GUARD_SLOTS + slot] */
    /* the run */
    double updates; /* optimizer updates made (the Adam step count) */
    double skipped; /* non-finite steps skipped (train.skip_nonfinite) */
    double halted;  /* a non-finite step without train.skip_nonfinite: no update since; the host stops the run */
    /* the log window */
    double w_steps, w_good, w_clipped, w_total, w_grad_norm, w_clip;
    double w_terms[CORE_GUARD_TERMS];
    /* the first non-finite step since reset_bad, and how many there were */
    double b_count, b_step, b_kind, b_param, b_skipped, b_total;
    double b_terms[CORE_GUARD_TERMS];
} core_step_state;

enum { CORE_GUARD_BAD_LOSS = 1, CORE_GUARD_BAD_GRAD = 2 };

/* Its size in the backend's float units (alloc, upload, download count floats). */
#define CORE_GUARD_STATE_FLOATS (sizeof(core_step_state) / sizeof(float))

/* Phase 1, right after the loss is queued: this rank's terms and total from
 * the loss kernels' per-sample sums, and whether they are finite. The flag
 * goes into the spare float of the gradient buffer, so the gradient
 * all-reduce carries every rank's verdict to every rank. */
typedef struct core_guard_loss_args {
    const double *sums; /* [stage][slot][sample] per-sample sums (loss/loss.c's layout), backend memory */
    int stages, slots, n;
    unsigned active;    /* bit k: slot k is a term of this config */
    double weight[CORE_GUARD_SLOTS];
    double per_term;    /* 1, or 1/(h*w) with loss.normalize = cells */
    float *flag;        /* the gradient buffer's spare float; NULL: none */
} core_guard_loss_args;

/* Phase 2, after the gradient all-reduce: the step's decision. */
typedef struct core_guard_args {
    long step;              /* 1-based, for the record of a non-finite step */
    const float *flag;      /* the reduced spare float: non-zero when some rank's loss is not finite */
    const double *param_sq; /* per-parameter sums of squares of the reduced gradient (sumsq_segments) */
    int nparams;
    double clip_norm;       /* train.clip_norm; <= 0: off */
    int skip_nonfinite;
    double beta1, beta2;    /* Adam's (bias corrections); unused by SGD */
    int reset_window, reset_bad;
} core_guard_args;

/* Unweighted terms (mean over samples, times per_term) into terms[stage * CORE_GUARD_SLOTS + slot],
 * inactive ones 0; returns the weighted total, summed in (stage, slot) order. */
CORE_HD static inline double core_guard_terms(const double *sums, int stages, int slots, int n, unsigned active,
                                              const double *weight, double per_term, double *terms)
{
    double total = 0;
    for (int s = 0; s < stages; s++)
        for (int k = 0; k < CORE_GUARD_SLOTS; k++) {
            double t = 0;
            if (k < slots && (active >> k & 1)) {
                const double *v = sums + ((size_t)s * slots + k) * n;
                double acc = 0;
                for (int i = 0; i < n; i++) acc = CORE_DADD(acc, v[i]);
                t = CORE_DMUL(CORE_DDIV(acc, (double)n), per_term);
                total = CORE_DADD(total, CORE_DMUL(weight[k], t));
            }
            terms[s * CORE_GUARD_SLOTS + k] = t;
        }
    return total;
}

CORE_HD static inline void core_guard_loss(const core_guard_loss_args *a, core_step_state *s)
{
    s->total = core_guard_terms(a->sums, a->stages, a->slots, a->n, a->active, a->weight, a->per_term, s->terms);
    if (a->flag) *a->flag = isfinite(s->total) ? 0.0f : 1.0f;
}

/* torch.nn.utils.clip_grad_norm_'s factor max/(norm + 1e-6), 1 when off or within the bound. */
CORE_HD static inline double core_guard_clip(double clip_norm, double norm)
{
    return clip_norm > 0 && norm > clip_norm ? CORE_DDIV(clip_norm, CORE_DADD(norm, 1e-6)) : 1.0;
}

CORE_HD static inline void core_guard_step(const core_guard_args *a, core_step_state *s)
{
    if (a->reset_window) {
        s->w_steps = s->w_good = s->w_clipped = s->w_total = s->w_grad_norm = s->w_clip = 0;
        for (int k = 0; k < CORE_GUARD_TERMS; k++) s->w_terms[k] = 0;
    }
    if (a->reset_bad) s->b_count = s->b_step = s->b_kind = s->b_param = s->b_skipped = s->b_total = 0;
    s->w_steps = CORE_DADD(s->w_steps, 1.0);
    s->apply = 0;
    s->scale = 1;
    if (s->halted) return; /* the record of the step that halted the run stays as it is */

    double gsq = 0;
    int bad_param = -1;
    for (int p = 0; p < a->nparams; p++) {
        gsq = CORE_DADD(gsq, a->param_sq[p]);
        if (bad_param < 0 && !isfinite(a->param_sq[p])) bad_param = p;
    }
    s->gsq = gsq;
    const int loss_bad = !(*a->flag == 0.0f); /* a NaN flag counts too */
    if (loss_bad || !isfinite(gsq)) {
        if (a->skip_nonfinite)
            s->skipped = CORE_DADD(s->skipped, 1.0);
        else
            s->halted = 1;
        if (s->b_count == 0) {
            s->b_step = (double)a->step;
            s->b_kind = loss_bad ? CORE_GUARD_BAD_LOSS : CORE_GUARD_BAD_GRAD;
            s->b_param = bad_param;
            s->b_skipped = s->skipped;
            s->b_total = s->total;
            for (int k = 0; k < CORE_GUARD_TERMS; k++) s->b_terms[k] = s->terms[k];
        }
        s->b_count = CORE_DADD(s->b_count, 1.0);
        return;
    }
    const double norm = sqrt(gsq), clip = core_guard_clip(a->clip_norm, norm);
    s->apply = 1;
    s->scale = clip;
    s->updates = CORE_DADD(s->updates, 1.0);
    s->bc1 = CORE_DADD(1.0, -pow(a->beta1, s->updates));
    s->bc2 = CORE_DADD(1.0, -pow(a->beta2, s->updates));
    s->w_good = CORE_DADD(s->w_good, 1.0);
    s->w_clipped = CORE_DADD(s->w_clipped, clip < 1 ? 1.0 : 0.0);
    s->w_total = CORE_DADD(s->w_total, s->total);
    s->w_grad_norm = CORE_DADD(s->w_grad_norm, norm);
    s->w_clip = CORE_DADD(s->w_clip, clip);
    for (int k = 0; k < CORE_GUARD_TERMS; k++) s->w_terms[k] = CORE_DADD(s->w_terms[k], s->terms[k]);
}

#endif
