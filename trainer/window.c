#include "trainer/window.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/progress.h"

void trainer_window_reset(trainer_window *w, double now)
{
    memset(w, 0, sizeof *w);
    w->start = now;
}

void trainer_window_device(trainer_window *w, const trainer_window_dev *d) { w->dev = *d; }

void trainer_window_add(trainer_window *w, const trainer_step_result *s)
{
    w->t_data += s->t_data;
    w->t_compute += s->t_compute;
    w->t_comm += s->t_comm;
    w->hidden += s->hidden;
    w->steps++;
    w->epoch = s->epoch;
    w->corrupt = s->corrupt;
}

void trainer_window_flush(trainer_window *w, const trainer_window_info *info, trainer_metrics *m, double now)
{
    const core_config *cfg = info->cfg;
    double wall = now - w->start;
    const trainer_window_dev *d = &w->dev;
    double good = d->good > 0 ? (double)d->good : NAN, steps = (double)w->steps;
    loss_values avg = *info->layout;
    for (int s = 0; s < avg.stages; s++)
        for (int t = 0; t < LOSS_NUM_TERMS; t++) avg.term[s][t] = d->terms[s * CORE_GUARD_SLOTS + t] / good;
    avg.total = d->total / good;
    trainer_log_row row = {
        .step = info->step, .epoch = w->epoch, .skipped = info->skipped,
        .lr = info->lr, .loss = avg.total, .grad_norm = d->grad_norm / good,
        .samples_per_s = info->global_batch * w->steps / wall, .values = &avg,
        .t_data = w->t_data / steps, .t_compute = w->t_compute / steps, .t_comm = w->t_comm / steps,
        .t_step = wall / steps, .comm_hidden = w->hidden / steps,
        .clip = cfg->train.clip_norm > 0, .clipped = d->clipped, .clip_scale = d->clip / good,
        .val = info->val, .corrupt = cfg->data.skip_corrupt ? w->corrupt : -1,
    };
    trainer_metrics_write(m, &row);
    char eta[32];
    core_format_duration(row.t_step * (cfg->train.steps - info->step), eta, sizeof eta);
    char hidden[48] = "";
    if (info->world > 1 && cfg->comm.overlap)
        snprintf(hidden, sizeof hidden, " (%.0f%% of the gradient hidden)", 100 * w->hidden / steps);
    core_info("step %ld/%d epoch %ld  loss %.4g  lr %.3g  %.1f samples/s  data %.0f%% comm %.0f%%%s  ETA %s", info->step,
              cfg->train.steps, row.epoch, row.loss, row.lr, row.samples_per_s, 100 * row.t_data / row.t_step,
              100 * row.t_comm / row.t_step, hidden, eta);
    trainer_window_reset(w, now);
}
