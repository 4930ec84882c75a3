#include "trainer/schedule.h"

#include <math.h>

/* Fraction of the way through the cosine, 0 at the first step after warm-up
 * and 1 at the last step (train.steps - 1). */
static double cosine_progress(const core_config *cfg, long step)
{
    long span = (long)cfg->train.steps - 1 - cfg->train.warmup;
    if (span <= 0) return 1;
    double x = (double)(step - cfg->train.warmup) / (double)span;
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

double trainer_lr(const core_config *cfg, long step)
{
    double lr = cfg->train.lr;
    if (cfg->train.schedule_cosine) {
        if (step >= cfg->train.warmup) {
            double f = cfg->train.lr_final;
            return lr * (f + (1 - f) * 0.5 * (1 + cos(M_PI * cosine_progress(cfg, step))));
        }
    } else if (cfg->train.lr_step > 0) {
        lr /= pow(cfg->train.lr_gamma, (double)(step / cfg->train.lr_step));
    }
    /* Warmup ramps linearly from lr*warmup_start to the scheduled value: step 0
     * already moves one increment up, not to 0, so no step is wasted.
     * With warmup_start = 0 this is lr*(step+1)/warmup, bit for bit. */
    if (cfg->train.warmup > 0 && step < cfg->train.warmup) {
        double s = cfg->train.warmup_start;
        lr *= s + (1 - s) * ((double)(step + 1) / cfg->train.warmup);
    }
    return lr;
}

double trainer_lr_mult(const core_config *cfg, model_group group)
{
    return group == MODEL_GROUP_BACKBONE ? cfg->train.lr_mult_backbone : cfg->train.lr_mult_stages;
}
