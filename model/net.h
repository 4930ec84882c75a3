/* The OpenPose body network of SPEC section 3, built from a config and run on
 * any backend. One description (the op list built in model/net.c) serves both
 * devices; only the backend's kernels differ.
 *
 * Memory: one flat parameter buffer and one flat gradient buffer (same
 * layout, so gradients can be all-reduced in buckets straight from it), and
 * activation / activation-gradient arenas sized once per input shape. */
#ifndef SSPOSE_MODEL_NET_H
#define SSPOSE_MODEL_NET_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/config.h"
#include "core/skeleton.h"

#define MODEL_NUM_HEAT (SKEL_NUM_KP + 1)    /* keypoints + background */
#define MODEL_NUM_PAF (2 * SKEL_NUM_LIMBS)  /* limbs x (x, y) */
#define MODEL_NUM_OFFSET (2 * SKEL_NUM_KP)  /* keypoints x (dx, dy) */
#define MODEL_PARAM_ALIGN 64 /* floats: every tensor in the flat buffers starts 256-byte aligned */

typedef enum {
    MODEL_OUT_PAF = 0, /* P_s   [N,38,h,w] */
    MODEL_OUT_HEAT,    /* H_s   [N,19,h,w] */
    MODEL_OUT_OFFSET,  /* O_s   [N,36,h,w]  (offsets on) */
    MODEL_OUT_P2H,     /* Hps_s = p2h(P_s) [N,19,h,w]  (ss = p2h | both) */
    MODEL_OUT_H2P,     /* Php_s = h2p(H_s) [N,38,h,w]  (ss = h2p | both) */
    MODEL_NUM_OUT
} model_out;

/* The outputs' names in files and tools ("paf", "heat", "offset", "p2h", "h2p"):
 * /outputs/stage{t}/<name> of `sspose forward`, the PyTorch references' dict keys. */
extern const char *const model_out_names[MODEL_NUM_OUT];

typedef enum { MODEL_GROUP_BACKBONE = 0, MODEL_GROUP_STAGES = 1 } model_group;

typedef enum {
    MODEL_PARAM_WEIGHT = 0, /* convolution weight */
    MODEL_PARAM_BIAS,       /* convolution bias */
    MODEL_PARAM_BN_WEIGHT,  /* batch-norm gamma (init 1) */
    MODEL_PARAM_BN_BIAS,    /* batch-norm beta (init 0) */
    MODEL_BUF_RUNNING_MEAN, /* buffers: not learnable (init 0) */
    MODEL_BUF_RUNNING_VAR   /* (init 1) */
} model_param_kind;

typedef struct model_param {
    char name[56];     /* "stage2/paf/conv3/weight", "conv1_1/bn/running_var" (SPEC names, '/' separated) */
    int shape[4];      /* [out,in,kh,kw] for weights, [out,1,1,1] for biases */
    int ndim;          /* 4 or 1 */
    size_t offset;     /* into the flat buffers, in floats */
    size_t numel;
    int is_bias;       /* 1-d: a bias, or a batch-norm gamma/beta; no weight decay */
    model_param_kind kind;
    model_group group; /* for learning-rate multipliers */
    int fan_in;        /* in*kh*kw, for He init */
    int relu;          /* the conv is followed by ReLU (He init) or linear (N(0, 0.01)) */
} model_param;

typedef struct model_net model_net;

model_net *model_create(const core_config *cfg, core_backend *be);
void model_destroy(model_net *net);

core_backend *model_backend(model_net *net);
const core_config *model_config(const model_net *net);

/* Parameters (weights and biases listed separately, in network order). */
int model_param_count(const model_net *net);
const model_param *model_param_at(const model_net *net, int i);
const model_param *model_param_find(const model_net *net, const char *name);
size_t model_num_floats(const model_net *net); /* length of the flat buffers (incl. padding and buffers) */
size_t model_num_weights(const model_net *net); /* learnable values, without padding */
float *model_params(model_net *net);           /* device */
float *model_grads(model_net *net);            /* device; model_num_floats() + MODEL_GRAD_SPARE floats */
/* The gradient buffer ends with MODEL_GRAD_SPARE floats that belong to no
 * parameter: the trainer's guard writes this rank's "loss not finite" flag
 * there, so the gradient all-reduce carries it to every rank (core/step_guard.h).
 * model_zero_grads clears it with the rest. */
#define MODEL_GRAD_SPARE 1
float *model_grad_flag(model_net *net);        /* device: model_grads() + model_num_floats() */

/* Buffers: tensors of the network's state that are not learned (batch norm's
 * running mean and variance, model.norm = batch). They live in the flat
 * parameter buffer after every parameter, so whatever copies the parameters
 * (checkpoints, broadcasts, replica checksums) carries them, while the
 * optimizer, the gradient plan and weight decay, which walk model_param_at(),
 * never see them; their gradient floats stay zero. Offsets are into
 * model_params(). */
int model_buf_count(const model_net *net);
const model_param *model_buf_at(const model_net *net, int i);

/* Training mode (the default after create) normalises with the batch's
 * statistics and updates the running ones; eval mode uses the running ones
 * (inference: eval/, infer). Without batch norm both modes are the same network. */
void model_set_train(model_net *net, int train);
int model_is_train(const model_net *net);

/* Synchronised batch norm: fn(ctx, v, n) must replace v[0..n) by its sum over
 * all ranks (every rank calls it at the same points with the same n). v is in
 * the backend's memory (a device pointer on GPUs; the sum may be queued, as
 * comm_reducer_allreduce_doubles does). Without it (one process) the
 * statistics are the local batch's. */
typedef void (*model_sum_fn)(void *ctx, double *v, int n);
void model_set_sum_hook(model_net *net, model_sum_fn fn, void *ctx);

/* He-normal for ReLU convs, N(0, 0.01) for linear outputs, zero biases; batch
 * norm gamma 1, beta 0, running mean 0, running variance 1; from a seed. */
void model_init_params(model_net *net, uint64_t seed);

/* Sizes the arenas for N x 3 x H x W input (H, W multiples of the stride); cheap when unchanged. */
void model_set_input_shape(model_net *net, int n, int h, int w);
/* Device buffer of the current input shape; fill with pixel/255 - 0.5, NCHW RGB. */
float *model_input(model_net *net);
/* Output grid of the current shape. */
void model_output_hw(const model_net *net, int *h, int *w);

/* Forward pass. want_grad zeroes the activation-gradient arena so that the
 * loss and model_backward can accumulate into it. */
void model_forward(model_net *net, int want_grad);
/* Backward pass from the output gradients (written by the loss, accumulated),
 * accumulating into model_grads(). The caller zeroes model_grads() per step. */
void model_backward(model_net *net);

/* Backward progress, so that gradient communication can start while the pass
 * still runs. The backward pass issues model_backward_steps() ops; after the
 * k-th (k = 1 .. steps) the hook gets done = k. On an asynchronous backend the
 * op is then queued, not finished: work ordered after it on the backend's
 * stream (e.g. a CUDA event) sees its result. */
typedef void (*model_backward_fn)(void *ctx, int done);
void model_backward_hooked(model_net *net, model_backward_fn fn, void *ctx);
int model_backward_steps(const model_net *net);
/* The backward position (a `done` value above) after which no later op of the
 * pass writes parameter i's gradient: the last backward use of the parameter,
 * which for the p2h/h2p convolutions shared by all stages is their use in
 * stage 1. 0 when no op uses the parameter (its gradient stays as zeroed). */
int model_param_grad_final(const model_net *net, int i);
void model_zero_grads(model_net *net);

/* stage is 0-based; .data is NULL when the output does not exist in this config. */
core_tensor model_output(model_net *net, int stage, model_out which);
core_tensor model_output_grad(model_net *net, int stage, model_out which);
int model_has_output(const model_net *net, model_out which);

/* A hash of the network's piecewise-linear regime: the sign of every ReLU output
 * and the argmax of every pooling window, for the current activations.
 * Gradient checkers use it to tell a clean finite difference (same regime on
 * both sides) from one that crossed a kink. CPU backend only. */
uint64_t model_kink_signature(model_net *net);

/* Host copies of parameters (for checkpoints and tests). */
void model_params_to_host(model_net *net, float *host);
void model_params_from_host(model_net *net, const float *host);

#endif
