/* RUNDIR/metrics.jsonl (rank 0): one JSON object per logged step,
 *   {"step":120,"epoch":3,"lr":0.001,"loss":123.4,
 *    "terms":{"stage1":{"heat":..,"paf":..,...},...},   unweighted means over the global batch
 *    "weights":{"heat":9,"paf":10,...},                 their coefficients in "loss"
 *    "grad_norm":..,                                    before clipping, mean over the window's good steps
 *    "clipped":2,"clip_scale":0.8,                      with train.clip_norm > 0: steps clipped in the
 *                                                       window, mean factor applied (1: none clipped)
 *    "samples_per_s":..,"skipped":0,
 *    "time":{"data":..,"compute":..,"comm":..,"step":..},  seconds per step, mean over ranks and the window
 *    "comm_hidden":0.9,   fraction of the gradient all-reduced while backward still ran
 *    "val":{"ap":..,"ap50":..,"ap75":..,"ar":..,"images":48,"time_s":..}}
 *                         only on validation steps (train.val_every, trainer/validate.h)
 * On resume, lines past the resumed step are dropped so the file never holds a
 * step twice. */
#ifndef SSPOSE_TRAINER_METRICS_H
#define SSPOSE_TRAINER_METRICS_H

#include <stdio.h>

#include "loss/loss.h"
#include "trainer/validate.h"

typedef struct trainer_log_row {
    long step, epoch, skipped;
    double lr, loss, grad_norm, samples_per_s;
    const loss_values *values; /* means over the global batch, averaged over the window */
    double t_data, t_compute, t_comm, t_step;
    double comm_hidden;
    int clip;          /* train.clip_norm > 0: write clipped and clip_scale */
    long clipped;      /* steps of the window whose gradient was scaled down */
    double clip_scale; /* mean factor over the window's good steps */
    long corrupt;      /* corrupt samples skipped so far (data.skip_corrupt); -1: not reported */
    const trainer_val_result *val; /* this step's validation, or NULL */
} trainer_log_row;

typedef struct trainer_metrics trainer_metrics;

/* Opens RUNDIR/metrics.jsonl for appending; keeps only lines with step <= keep_upto
 * (pass -1 to start an empty file). */
trainer_metrics *trainer_metrics_open(const char *rundir, long keep_upto);
void trainer_metrics_write(trainer_metrics *m, const trainer_log_row *row);
void trainer_metrics_close(trainer_metrics *m);

#endif
