/* The log window (rank 0): per-step results accumulated between two
 * metrics.jsonl lines (train.log_every), then written as one row of means and
 * one progress line. */
#ifndef SSPOSE_TRAINER_WINDOW_H
#define SSPOSE_TRAINER_WINDOW_H

#include "core/config.h"
#include "loss/loss.h"
#include "trainer/metrics.h"

/* The host's side of one step as every rank agreed on it (means over ranks).
 * The loss, the gradient norm and clipping stay on the device for the window
 * (core/step_guard.h) and come back once per row: trainer_window_device. */
typedef struct trainer_step_result {
    double t_data, t_compute, t_comm;    /* seconds: data and compute means over ranks (compute includes the update) */
    double hidden;                       /* fraction of the gradient reduced under backward, mean over ranks */
    long corrupt;                        /* corrupt samples skipped so far, all ranks (data.skip_corrupt) */
    long epoch;
} trainer_step_result;

/* The device's window sums (core_step_state's w_ fields), the terms and total
 * already averaged over ranks. Non-finite steps enter none of them. */
typedef struct trainer_window_dev {
    double terms[CORE_GUARD_TERMS], total, grad_norm, clip;
    long good, clipped;
} trainer_window_dev;

typedef struct trainer_window {
    double t_data, t_compute, t_comm, hidden;
    long steps;
    long epoch;   /* of the window's last step */
    long corrupt; /* of the window's last step */
    double start; /* wall clock at the window's start */
    trainer_window_dev dev;
} trainer_window;

void trainer_window_reset(trainer_window *w, double now);
void trainer_window_add(trainer_window *w, const trainer_step_result *s);
/* The device's sums for the window, before trainer_window_flush. */
void trainer_window_device(trainer_window *w, const trainer_window_dev *d);

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
