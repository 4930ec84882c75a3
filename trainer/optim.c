#include "trainer/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "trainer/schedule.h"

/* Consecutive trainable tensors sharing (lr multiplier, weight decay): one kernel call each. */
typedef struct {
    size_t offset, n;
    double mult, wd;
} optim_run;

struct trainer_optim {
    const core_config *cfg;
    model_net *net;
    core_backend *be;
    optim_run *runs;
    int nruns;
    model_ckpt_optim st; /* kind, updates, named state buffers */
};

static const char *const KIND_NAMES[] = {"sgd", "adam", "adamw"};

/* Biases get no weight decay (as in CMU's Caffe OpenPose, decay_mult 0); every
 * tensor of today's network is trainable. A parameter that is not (running
 * statistics, frozen layers) answers trainable = 0 here and nothing else changes. */
trainer_param_role trainer_optim_role(const core_config *cfg, const model_param *p)
{
    trainer_param_role r = {1, p->is_bias ? 0 : cfg->train.weight_decay};
    return r;
}

static int build_runs(const core_config *cfg, model_net *net, optim_run **out)
{
    int np = model_param_count(net), nr = 0;
    optim_run *r = core_calloc((size_t)np, sizeof *r);
    for (int i = 0; i < np; i++) {
        const model_param *p = model_param_at(net, i);
        trainer_param_role role = trainer_optim_role(cfg, p);
        if (!role.trainable) continue;
        double mult = trainer_lr_mult(cfg, p->group);
        optim_run *last = nr ? &r[nr - 1] : NULL;
        if (last && last->mult == mult && last->wd == role.weight_decay && last->offset + last->n == p->offset)
            last->n += p->numel;
        else
            r[nr++] = (optim_run){p->offset, p->numel, mult, role.weight_decay};
    }
    *out = r;
    return nr;
}

trainer_optim *trainer_optim_create(const core_config *cfg, model_net *net)
{
    trainer_optim *o = core_calloc(1, sizeof *o);
    o->cfg = cfg;
    o->net = net;
    o->be = model_backend(net);
    o->nruns = build_runs(cfg, net, &o->runs);
    o->st.kind = KIND_NAMES[cfg->train.optimizer_kind];
    if (cfg->train.optimizer_kind == CORE_OPT_SGD) {
        o->st.nstate = 1;
        o->st.names[0] = "momentum"; /* SPEC section 6 */
    } else {
        o->st.nstate = 2;
        o->st.names[0] = "exp_avg";
        o->st.names[1] = "exp_avg_sq";
    }
    size_t n = model_num_floats(net);
    for (int i = 0; i < o->st.nstate; i++) o->st.state[i] = o->be->alloc(o->be, n);
    return o;
}

void trainer_optim_destroy(trainer_optim *o)
{
    if (!o) return;
    for (int i = 0; i < o->st.nstate; i++) o->be->free(o->be, o->st.state[i]);
    free(o->runs);
    free(o);
}

model_ckpt_optim *trainer_optim_state(trainer_optim *o) { return &o->st; }

int trainer_optim_loaded(trainer_optim *o, char *err, size_t errlen)
{
    /* SGD's update needs no count (and older files lack it); Adam's bias correction does. */
    if (o->st.updates < 0) {
        if (o->cfg->train.optimizer_kind != CORE_OPT_SGD) {
            snprintf(err, errlen, "no /optim 'updates' attribute (needed by %s)", o->st.kind);
            return -1;
        }
        o->st.updates = 0;
    }
    return 0;
}

/* t: this update's count, or 0 when a gate holds it on the device (the
 * kernels then make step_size and inv_sqrt_bc2 from lr and the gate's bias
 * corrections). */
static void adam_args(const core_config *cfg, double lr, double wd, int64_t t, core_adam_args *a)
{
    const double b1 = cfg->train.beta1, b2 = cfg->train.beta2;
    const int decoupled = cfg->train.optimizer_kind == CORE_OPT_ADAMW;
    a->beta1 = (float)b1;
    a->one_minus_beta1 = (float)(1 - b1);
    a->beta2 = (float)b2;
    a->one_minus_beta2 = (float)(1 - b2);
    a->eps = (float)cfg->train.eps;
    a->l2 = decoupled ? 0.0f : (float)wd;
    a->decay = decoupled ? (float)(1 - lr * wd) : 1.0f;
    a->step_size = t > 0 ? (float)(lr / (1 - pow(b1, (double)t))) : 0.0f;
    a->inv_sqrt_bc2 = t > 0 ? (float)(1 / sqrt(1 - pow(b2, (double)t))) : 0.0f;
    a->lr = lr;
}

void trainer_optim_set_updates(trainer_optim *o, int64_t updates) { o->st.updates = updates; }
int64_t trainer_optim_updates(const trainer_optim *o) { return o->st.updates; }

void trainer_optim_step(trainer_optim *o, double lr, const core_step_state *gate)
{
    const core_config *cfg = o->cfg;
    float *w = model_params(o->net);
    const float *g = model_grads(o->net);
    core_backend *be = o->be;
    int64_t t = gate ? 0 : ++o->st.updates; /* with a gate the device counts (see optim.h) */
    for (int i = 0; i < o->nruns; i++) {
        const optim_run *r = &o->runs[i];
        const double lr_r = lr * r->mult;
        float *m = o->st.state[0] + r->offset;
        if (cfg->train.optimizer_kind == CORE_OPT_SGD) {
            if (cfg->train.nesterov)
                be->sgd_nesterov_step(be, gate, r->n, w + r->offset, g + r->offset, m, (float)lr_r,
                                      (float)cfg->train.momentum, (float)r->wd);
            else
                be->sgd_step(be, gate, r->n, w + r->offset, g + r->offset, m, (float)lr_r, (float)cfg->train.momentum,
                             (float)r->wd);
        } else {
            core_adam_args a;
            adam_args(cfg, lr_r, r->wd, t, &a);
            be->adam_step(be, gate, &a, r->n, w + r->offset, g + r->offset, m, o->st.state[1] + r->offset);
        }
    }
}
