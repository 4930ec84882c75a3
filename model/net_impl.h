/* Private to model/: the network's op list, blobs and the op table.
 *
 * The network is a flat list of ops over named activation blobs (Caffe-style).
 * Every op kind is one row of the op table (net_op_class): its forward and
 * backward kernels, the parameters whose gradients its backward accumulates,
 * the backward position after which those gradients are final, and its share
 * of the kink signature. Nothing outside the table switches on the kind, so a
 * new op with parameters cannot be forgotten by the gradient all-reduce plan
 * (model_param_grad_final) or by the gradient checkers (model_kink_signature). */
#ifndef SSPOSE_MODEL_NET_IMPL_H
#define SSPOSE_MODEL_NET_IMPL_H

#include "model/net.h"

#define NET_MAX_BLOBS 768
#define NET_MAX_OPS 768
#define NET_MAX_CONVS 160
#define NET_OP_MAX_PARAMS 2

typedef enum { NET_OP_CONV, NET_OP_POOL, NET_OP_CONCAT, NET_OP_SPLIT, NET_OP_BN, NET_OP_KINDS } net_op_kind;

typedef struct {
    int c;       /* channels */
    int div;     /* spatial size = input / div */
    size_t off;  /* offset in the arenas, floats (for the current shape) */
} net_blob;

typedef struct {
    int cin, cout, k;
    int relu;   /* a ReLU follows: fused into the conv, or into its batch norm (bn >= 0) */
    int wparam; /* index of the weight in params[]; the bias follows */
    int bn;     /* index of its batch-norm definition, or -1 */
} net_conv_def;

/* A batch-norm layer's parameters (shared by every use, like the subnets' convs). */
typedef struct {
    int c;
    int gparam; /* gamma's index in params[]; beta follows */
    int rbuf;   /* running mean's index in bufs[]; the running variance follows */
} net_bn_def;

/* One use of a batch-norm layer: what backward needs from its forward. */
typedef struct {
    int def;
    int relu;
    size_t scratch; /* floats into net->bn_dev: scale, shift | backward coefficients (4c) */
    size_t stats;   /* doubles into net->bn_stats: mean[c] | invstd[c] | cells (all ranks; 0 in eval mode),
                     * what the forward normalised with, for the backward */
} net_bn_use;

typedef struct {
    net_op_kind kind;
    int idx;      /* NET_OP_CONV: conv def; NET_OP_BN: bn use */
    int in[4];    /* input blobs (NET_OP_CONCAT: several) */
    int nin;
    int out[2];   /* output blobs (NET_OP_SPLIT: two) */
    int nout;
} net_op;

struct model_net {
    core_config cfg;
    core_backend *be;
    net_blob blobs[NET_MAX_BLOBS];
    int nblobs;
    net_op ops[NET_MAX_OPS];
    int nops;
    net_conv_def convs[NET_MAX_CONVS];
    int nconvs;
    net_bn_def bns[NET_MAX_CONVS];
    int nbns;
    net_bn_use *bn_uses;
    int nbn_uses, cap_bn_uses;
    model_param *params;
    int nparams, cap_params;
    model_param *bufs; /* non-learnable tensors (running statistics), after the params in the flat buffer */
    int nbufs, cap_bufs;
    int *grad_final; /* [nparams]: model_param_grad_final */
    size_t nfloats;       /* the flat buffers, buffers included */
    size_t nfloats_learn; /* where the buffers start */
    float *w, *g;         /* device flat buffers */
    float *bn_dev;        /* device scratch of the batch-norm uses */
    size_t bn_dev_floats;
    double *bn_stats;     /* device: every use's statistics (net_bn_use.stats) */
    double *bn_sums;      /* device: one layer's per-channel sums, 2 * bn_maxc + 1 */
    int bn_maxc;
    int train;            /* 1: batch statistics (default); 0: running statistics */
    model_sum_fn sum_fn;  /* sums small device arrays over ranks (synchronised batch norm) */
    void *sum_ctx;
    int input_blob, feature_blob;
    int outputs[CORE_MAX_STAGES][MODEL_NUM_OUT]; /* blob index or -1 */
    /* current shape */
    int n, h, wd;
    size_t arena_floats;
    float *act, *dact;
};

/* FNV-1a step of the kink signature. */
#define NET_MIX(h, v) ((h) = ((h) ^ (uint64_t)(v)) * 1099511628211ULL)

typedef struct {
    const char *name;
    void (*forward)(model_net *, const net_op *);
    void (*backward)(model_net *, const net_op *);
    /* The parameters whose gradients backward accumulates (at most NET_OP_MAX_PARAMS). */
    int (*params)(const model_net *, const net_op *, int *out);
    /* The backward position (model_backward_hooked's `done`) after which this op,
     * at forward index i, no longer writes the gradients `params` lists. */
    int (*grad_final)(const model_net *, int i);
    /* Mixes the op's piecewise-linear regime (ReLU signs, pooling argmax) into h. */
    void (*kink)(model_net *, const net_op *, uint64_t *h);
} net_op_class;

extern const net_op_class *const net_op_table[NET_OP_KINDS];

/* The batch-norm row of the op table (model/net_bn.c). */
extern const net_op_class net_op_bn;

/* Helpers shared by the op implementations. */
static inline float *net_act(model_net *m, int b) { return m->act + m->blobs[b].off; }
static inline float *net_dact(model_net *m, int b) { return m->dact + m->blobs[b].off; }
static inline int net_blob_hw(const model_net *m, int b)
{
    return (m->h / m->blobs[b].div) * (m->wd / m->blobs[b].div);
}
static inline size_t net_blob_numel(const model_net *m, int b)
{
    return (size_t)m->n * m->blobs[b].c * net_blob_hw(m, b);
}
/* grad_final of an op that writes its gradients during its own backward step. */
int net_grad_final_own_step(const model_net *m, int i);
/* Kink of an op whose output is ReLU'd (y > 0 signs). */
void net_kink_relu_output(model_net *m, const net_op *o, uint64_t *h);

/* Adds a batch-norm layer of c channels for the conv named `name` (model/net_bn.c). */
int net_bn_define(model_net *m, const char *name, int c, model_group g);
/* Appends a use of bn def `def` on blob `in`; returns the output blob. */
int net_bn_apply(model_net *m, int def, int in, int relu);
/* After construction: places the bn uses' device scratch. */
void net_bn_finish(model_net *m);
void net_bn_destroy(model_net *m);

/* model/net.c construction: net_begin, then blobs and ops, then net_finish (the
 * gradient plan, buffer placement, the flat buffers). model_create builds SPEC
 * section 3 this way; tests build single layers (tests/test_model_bn.c). */
model_net *net_begin(const core_config *cfg, core_backend *be);
void net_finish(model_net *m);
/* construction primitives */
int net_add_blob(model_net *m, int c, int div);
void net_add_op(model_net *m, net_op o);
model_param *net_add_param(model_net *m, const char *name, const char *suffix, int ndim, const int *shape,
                           model_group g, int fan_in, int relu, model_param_kind kind);
model_param *net_add_buf(model_net *m, const char *name, const char *suffix, int c, model_param_kind kind);

#endif
