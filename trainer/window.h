/* The log window (rank 0): per-step results accumulated between two
 * metrics.jsonl lines (train.log_every), then written as one row of means and
 * one progress line. */
#ifndef SSPOSE_TRAINER_WINDOW_H
#define SSPOSE_TRAINER_WINDOW_H

#include "core/config.h"
#include "loss/loss.h"
#include "trainer/metrics.h"

#define TRAINER_NTERMS (CORE_MAX_STAGES * LOSS_NUM_TERMS)

/* One step as every rank agreed on it (means over ranks where noted). */
typedef struct trainer_step_result {
    double total, terms[TRAINER_NTERMS]; /* losses: means over the global batch */
    double t_data, t_compute, t_comm;    /* seconds: data and compute means over ranks (compute includes the update) */
    double hidden;                       /* fraction of the gradient reduced under backward, mean over ranks */
    double grad_norm;                    /* global norm before clipping */
    double clip;                         /* factor the gradient was scaled by (1: not clipped) */
    int bad;                             /* skipped as non-finite: no loss or norm enters the means */
    long corrupt;                        /* corrupt samples skipped so far, all ranks (data.skip_corrupt) */
    long epoch;
} trainer_step_result;

typedef struct trainer_window {
    double terms[TRAINER_NTERMS], total, t_data, t_compute, t_comm, grad_norm, hidden, clip;
    long steps, good, clipped;
    long epoch;   /* of the window's last step */
    long corrupt; /* of the window's last step */
    double start; /* wall clock at the window's start */
} trainer_window;

void trainer_window_reset(trainer_window *w, double now);
void trainer_window_add(trainer_window *w, const trainer_step_result *s);

/* What a row needs besides the window: the run's step, batch and loss layout. */
typedef struct trainer_window_info {
    const core_config *cfg;
    long step, skipped;
    double lr, global_batch;
    const loss_values *layout; /* stages, active terms and weights of the run */
    int world;
    const trainer_val_result *val; /* the step's validation (trainer/validate.h), or NULL */
} trainer_window_info;

/* Writes the window's row to metrics.jsonl, prints the progress line, resets. */
void trainer_window_flush(trainer_window *w, const trainer_window_info *info, trainer_metrics *m, double now);

#endif
