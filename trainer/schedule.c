#include "trainer/schedule.h"

#include <math.h>

double trainer_lr(const core_config *cfg, long step)
{
    double lr = cfg->train.lr;
    if (cfg->train.lr_step > 0) lr /= pow(cfg->train.lr_gamma, (double)(step / cfg->train.lr_step));
    /* Warmup ramps linearly to the scheduled value: step 0 uses lr/warmup, not 0,
     * so no step is wasted. */
    if (cfg->train.warmup > 0 && step < cfg->train.warmup) lr *= (double)(step + 1) / cfg->train.warmup;
    return lr;
}

double trainer_lr_mult(const core_config *cfg, model_group group)
{
    return group == MODEL_GROUP_BACKBONE ? cfg->train.lr_mult_backbone : cfg->train.lr_mult_stages;
}
