/* Learning-rate schedule: optional linear warmup (from lr*train.warmup_start),
 * then train.schedule = step: Caffe's "step" policy (divide by train.lr_gamma
 * every train.lr_step steps), or cosine: from lr down to lr*train.lr_final at
 * the last step (train.steps - 1); times a per-group multiplier
 * (train.lr_mult_backbone, train.lr_mult_stages).
 * A pure function of the step, so resume needs no schedule state. */
#ifndef SSPOSE_TRAINER_SCHEDULE_H
#define SSPOSE_TRAINER_SCHEDULE_H

#include "core/config.h"
#include "model/net.h"

/* Base learning rate for the update made at 0-based step `step`. */
double trainer_lr(const core_config *cfg, long step);
/* Multiplier of a parameter group. */
double trainer_lr_mult(const core_config *cfg, model_group group);

#endif
