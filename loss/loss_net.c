/* The loss on a network's outputs. Kept apart from loss.c so the loss can be
 * linked and tested on plain tensors without the network. */
#include "core/check.h"
#include "loss/loss.h"

void loss_queue_net(loss_ctx *lc, model_net *net, const loss_targets *t, int want_grad)
{
    const core_config *cfg = model_config(net);
    const int stages = cfg->model.stages;
    CHECK(stages >= 1 && stages <= CORE_MAX_STAGES, "loss: bad stage count %d", stages);
    loss_stage_io io[CORE_MAX_STAGES];
    for (int s = 0; s < stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            io[s].out[o] = model_output(net, s, (model_out)o);
            io[s].grad[o] = want_grad && io[s].out[o].data ? model_output_grad(net, s, (model_out)o)
                                                           : (core_tensor){0};
        }
    loss_queue(lc, stages, io, t, want_grad);
}

double loss_compute_net(loss_ctx *lc, model_net *net, const loss_targets *t, int want_grad, loss_values *v)
{
    loss_queue_net(lc, net, t, want_grad);
    return loss_fetch(lc, v);
}
