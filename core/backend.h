/* The op interface: everything the network, the loss and the optimizer need
 * from a device. The network and loss are written once against it; a backend
 * (core/cpu_backend.c, core/cuda_backend.cu) only supplies kernels.
 *
 * Conventions, shared by every backend:
 *  - All float pointers are device pointers of this backend, NCHW float32.
 *  - Calls may be asynchronous (the CUDA backend queues them on its stream);
 *    results are visible to the host only after download() or sync().
 *  - Backward ops ACCUMULATE into their input-gradient outputs (dx += ...),
 *    so a blob consumed by several ops gets the sum of their gradients;
 *    parameter gradients (dw, db) are accumulated too.
 *  - Convolutions are stride 1 with "same" zero padding (k odd, pad = k/2),
 *    optionally fused with bias and ReLU, as SPEC section 3 uses nothing else.
 *  - Max-pooling is 2x2 stride 2 over even H and W; ties go to the first
 *    element in row-major order of the window.
 */
#ifndef SSPOSE_CORE_BACKEND_H
#define SSPOSE_CORE_BACKEND_H

#include <stddef.h>

#include "core/bn_math.h"
#include "core/step_guard.h"
#include "core/tensor.h"

typedef struct core_conv_shape {
    int n, cin, h, w; /* input */
    int cout, k;      /* output channels, square kernel size (odd) */
    int relu;         /* y = relu(conv(x) + b) when set, else linear */
} core_conv_shape;

/* One Adam/AdamW update of a run of parameters; the host folds the step count
 * into the bias corrections so the kernels stay elementwise:
 *   d = g + l2*w                      (l2: Adam's L2 weight decay, 0 for AdamW)
 *   w *= decay                        (decay: AdamW's 1 - lr*wd, 1 for Adam)
 *   m = beta1*m + (1-beta1)*d;  v = beta2*v + (1-beta2)*d*d
 *   w -= step_size * m / (sqrt(v)*inv_sqrt_bc2 + eps)
 * with step_size = lr/(1-beta1^t), inv_sqrt_bc2 = 1/sqrt(1-beta2^t), t = 1, 2, ... */
typedef struct core_adam_args {
    float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
    float l2, decay;
    float step_size, inv_sqrt_bc2;
    double lr; /* this run's learning rate, for the step size a gate's bias correction gives */
} core_adam_args;

typedef struct core_backend core_backend;
struct core_backend {
    const char *name;  /* "cpu", "cuda" */
    core_device dev;
    void *impl;        /* backend-private state: stream, handles, workspace */
    /* Calls that made the host wait for the work queued so far (download, sync,
     * sumsq, free): what a training step must avoid between sync
     * points (docs/gpu.md). The CPU backend counts the same calls, so the CPU
     * suite checks the trainer's pattern. */
    long host_waits;

    /* memory: counts are in floats; alloc returns zeroed memory or dies */
    float *(*alloc)(core_backend *, size_t n);
    void (*free)(core_backend *, float *p);
    void (*upload)(core_backend *, float *dst, const float *host_src, size_t n);
    void (*download)(core_backend *, float *host_dst, const float *src, size_t n); /* synchronous */
    void (*copy)(core_backend *, float *dst, const float *src, size_t n);
    void (*sync)(core_backend *);

    /* elementwise and reductions */
    void (*fill)(core_backend *, float *x, float v, size_t n);
    void (*axpy)(core_backend *, float a, const float *x, float *y, size_t n); /* y += a*x */
    void (*scale)(core_backend *, float *x, float a, size_t n);                /* x *= a */
    /* Returns sum(x^2) in double, or NaN/Inf when any element is non-finite. Synchronous. */
    double (*sumsq)(core_backend *, const float *x, size_t n);
    /* out[s] = sum of x[i]^2 over [off[s], off[s+1]) in double, NaN/Inf when an element is
     * non-finite, for s < nseg; off: nseg+1 HOST offsets, out: nseg doubles in this backend's
     * memory. Asynchronous, deterministic (a fixed reduction order per segment). */
    void (*sumsq_segments)(core_backend *, const float *x, int nseg, const size_t *off, double *out);

    /* ---- the step's guard program (core/step_guard.h), on the device, asynchronous ----
     * The args' pointers and the state are this backend's memory. */
    void (*guard_loss)(core_backend *, const core_guard_loss_args *a, core_step_state *s);
    void (*guard_step)(core_backend *, const core_guard_args *a, core_step_state *s);

    /* layers */
    void (*conv_forward)(core_backend *, const core_conv_shape *s, const float *x, const float *w, const float *b,
                         float *y);
    /* y: the forward output (for the ReLU mask). dy is overwritten with the masked gradient when relu.
     * dx (may be NULL: input needs no gradient), dw, db are accumulated. */
    void (*conv_backward)(core_backend *, const core_conv_shape *s, const float *x, const float *w, const float *y,
                          float *dy, float *dx, float *dw, float *db);
    void (*pool_forward)(core_backend *, int n, int c, int h, int w, const float *x, float *y);
    void (*pool_backward)(core_backend *, int n, int c, int h, int w, const float *x, const float *dy, float *dx);
    /* For each sample, channels [src_off, src_off+count) of src (src_c channels) go to
     * channels [dst_off, ...) of dst (dst_c channels); hw = H*W. accumulate: dst += src. */
    void (*copy_channels)(core_backend *, int n, int hw, const float *src, int src_c, int src_off, float *dst,
                          int dst_c, int dst_off, int count, int accumulate);

    /* The updates read `gate` (a core_step_state in this backend's memory, or NULL) on
     * the device: nothing changes unless gate->apply, and the gradient enters as
     * g * (float)gate->scale (clipping). NULL: always applied, g as it is.
     *
     * SGD with momentum and L2 weight decay (Caffe's rule):
     *   m = momentum*m + lr*(g + wd*w);  w -= m */
    void (*sgd_step)(core_backend *, const core_step_state *gate, size_t n, float *w, const float *g, float *m,
                     float lr, float momentum, float wd);

    /* ---- optimizer updates beyond Caffe's SGD (trainer/optim.c; docs/training.md "Optimizers") ---- */
    /* Nesterov momentum in Caffe's form (lr inside the momentum buffer):
     *   d = g + wd*w;  m = momentum*m + lr*d;  w -= momentum*m + lr*d
     * equal to torch.optim.SGD(nesterov=True) while lr is constant (m = lr*buf). */
    void (*sgd_nesterov_step)(core_backend *, const core_step_state *gate, size_t n, float *w, const float *g,
                              float *m, float lr, float momentum, float wd);
    /* Adam / AdamW (torch.optim's rules); m, v: first and second moments. With a gate,
     * step_size = (float)(lr / gate->bc1) and inv_sqrt_bc2 = (float)(1 / sqrt(gate->bc2))
     * replace the args' (the step count lives on the device). */
    void (*adam_step)(core_backend *, const core_step_state *gate, const struct core_adam_args *a, size_t n,
                      float *w, const float *g, float *m, float *v);
    /* ---- batch normalisation and ReLU (model/net_bn.c, docs/design.md "Batch norm") ----
     * Per-channel reductions and affine maps over N x C x HW, and the statistics
     * between them (a few numbers per channel, in double: bn_step). */
    /* out[ch] = sum of a, out[c + ch] = sum of a*b over the N*HW cells of channel ch
     * (b may alias a), accumulated in double in a fixed order; out: 2c doubles in this
     * backend's memory. Asynchronous. */
    void (*chan_sums)(core_backend *, int n, int c, int hw, const float *a, const float *b, double *out);
    /* One phase of the per-channel statistics (core/bn_math.h) over a->c channels. Asynchronous. */
    void (*bn_step)(core_backend *, core_bn_phase phase, const core_bn_args *a);
    /* y = scale[ch]*x + shift[ch], then max(0, .) when relu; scale, shift: c floats each. */
    void (*chan_affine)(core_backend *, int n, int c, int hw, const float *x, const float *scale, const float *shift,
                        int relu, float *y);
    /* dx += A[ch]*dy + B[ch]*(x - M[ch]) + C[ch], coef = [A | B | M | C], 4c floats. */
    void (*chan_affine_grad)(core_backend *, int n, int c, int hw, const float *dy, const float *x,
                             const float *coef, float *dx);
    /* dy = 0 where !(y > 0) (so a NaN output passes no gradient, as conv_backward's mask). */
    void (*relu_mask)(core_backend *, size_t n, const float *y, float *dy);

    void (*destroy)(core_backend *);
};

/* The CPU backend (OpenBLAS + OpenMP); threads <= 0 keeps the library default. */
core_backend *core_cpu_backend_create(int threads);
/* The CUDA backend on device `device`; dies with a clear message when not built or no GPU. */
core_backend *core_cuda_backend_create(int device);
/* Number of CUDA devices usable (0 when not built or none present). */
int core_cuda_device_count(void);
/* The backends built and their libraries, for --version ("cpu (...) cuda (...)"). */
const char *core_backends_built(void);
/* Picks a backend for comm.device = auto|cpu|cuda and a local rank. */
core_backend *core_backend_create(const char *device, int local_rank, int threads);
void core_backend_destroy(core_backend *be);

/* Convenience wrappers over the vtable. */
static inline void core_tensor_fill(core_backend *be, core_tensor *t, float v) { be->fill(be, t->data, v, core_tensor_numel(t)); }

#endif
