/* The optimizer (docs/training.md, "Optimizers"): train.optimizer = sgd
 * (Caffe's momentum rule, optionally Nesterov), adam or adamw, over runs of
 * consecutive parameters sharing a learning-rate multiplier and a weight
 * decay. Its state is device buffers laid out like model_params(), saved in
 * checkpoints under /optim/<state>/<param> with the number of updates made. */
#ifndef SSPOSE_TRAINER_OPTIM_H
#define SSPOSE_TRAINER_OPTIM_H

#include "core/config.h"
#include "model/checkpoint.h"
#include "model/net.h"

typedef struct trainer_optim trainer_optim;

/* The optimizer's treatment of one parameter tensor: whether it is stepped at
 * all, and the weight decay it gets. The one place that decides it. */
typedef struct trainer_param_role {
    int trainable;
    double weight_decay;
} trainer_param_role;
trainer_param_role trainer_optim_role(const core_config *cfg, const model_param *p);

trainer_optim *trainer_optim_create(const core_config *cfg, model_net *net);
void trainer_optim_destroy(trainer_optim *o);

/* One update of the parameters from the all-reduced gradients with the base
 * learning rate `lr` (the schedule's value; group multipliers apply).
 * gate: the step's guard state in the backend's memory (core/step_guard.h):
 * the kernels skip the update unless it says apply, scale the gradient by its
 * clipping factor and take Adam's step count from it, all on the device; the
 * host's update count is then refreshed with trainer_optim_set_updates at the
 * next sync point. NULL: always applied, unscaled, counted here (tools). */
void trainer_optim_step(trainer_optim *o, double lr, const core_step_state *gate);
/* The update count as the device's guard state has it (checkpoints, resume). */
void trainer_optim_set_updates(trainer_optim *o, int64_t updates);
int64_t trainer_optim_updates(const trainer_optim *o);

/* The state for checkpoints: save passes it as is; load fills its buffers and `updates`. */
model_ckpt_optim *trainer_optim_state(trainer_optim *o);
/* After a load: checks and adopts the loaded update count; 0, or -1 with a reason. */
int trainer_optim_loaded(trainer_optim *o, char *err, size_t errlen);

#endif
