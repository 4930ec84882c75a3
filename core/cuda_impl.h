// Internals shared by the CUDA backend's .cu files (C++ only; the rest of
// the project sees core/backend.h and core/cuda_backend.h, and CUDA files
// outside core/ add core/cuda_check.h).
#ifndef SSPOSE_CORE_CUDA_IMPL_H
#define SSPOSE_CORE_CUDA_IMPL_H

#ifndef __CUDACC__
#error "core/cuda_impl.h is for .cu files; C code includes core/cuda_backend.h"
#endif

#include <stddef.h>

#include "core/cuda_check.h"

extern "C" {
#include "core/backend.h"
#include "core/cuda_backend.h"
}

// ---------------------------------------------------------------- state

struct cuda_conv_plan; // one cached convolution shape (core/cuda_conv.cu)

// One recorded algorithm choice: "fwd n=.. cin=.. h=.. w=.. cout=.. k=.. tf32=.. det=.." -> (algo, math).
struct cuda_algo_choice {
    char key[128];
    int algo, math;
};

// Scratch slots: 0-3 stage misaligned convolution operands and take the
// outputs of a timed search (cuda_conv.cu); CORE_CUDA_SCRATCH_* are handed out
// through core_cuda_scratch (core/cuda_backend.h); the rest are below. The
// cuDNN workspace is for cuDNN alone: its size is a config value that may be 0.
#define CUDA_SCRATCH_SLOTS 8
#define CUDA_SCRATCH_BIAS 5 // bias-gradient partials (cuda_ops.cu)
#define CUDA_SCRATCH_CHAN 6 // per-channel sums of batch norm (cuda_ops.cu)

struct cuda_state {
    int device;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    // Uploads run on their own stream, ordered by events: `consumed` (on
    // `stream`: work that may still read the destination) before the copy,
    // `uploaded` (on `copy`) before any later work of `stream`.
    cudaStream_t copy;
    cudaEvent_t consumed, uploaded;

    int tf32;               // comm.tf32: cuDNN may use TF32 tensor cores
    int deterministic;      // only algorithms cuDNN marks CUDNN_DETERMINISTIC
    size_t ws_limit;        // comm.cudnn_workspace_mb in bytes: the whole convolution workspace

    void *ws;               // convolution workspace: ws_limit bytes, allocated once before the first search
    size_t ws_bytes;

    double *red;            // reduction partials (device), CORE_CUDA_RED_SLOTS doubles
    double *red_host;       // pinned landing slot for synchronous scalar results

    void *scratch[CUDA_SCRATCH_SLOTS]; // stream-ordered (cudaMallocAsync), grown on demand
    size_t scratch_bytes[CUDA_SCRATCH_SLOTS];

    cuda_conv_plan **plans; // convolution cache, searched linearly (a net has ~30 shapes)
    int nplans, cap_plans;

    // sumsq_segments' chunk table (cuda_ops.cu), rebuilt when the segments change
    size_t *seg_off;        // host copy of the offsets it was built for (seg_n + 1)
    int seg_n;
    size_t seg_chunks;
    size_t *seg_host;       // the table's host side: chunk starts, ends, segment first chunks
    void *seg_table;        // device copy of seg_host, then one double partial per chunk

    cuda_algo_choice *algos; // every choice made or loaded, in order of first use
    int nalgos, cap_algos;
    core_cuda_algo_agree_fn agree;
    void *agree_ctx;
};

// Partials for sumsq and the bias gradient; fixed sizes so the reduction
// order depends only on the problem, never on the GPU model.
#define CORE_CUDA_RED_BLOCKS 512
#define CORE_CUDA_BIAS_SPLITS_MAX 64
#define CORE_CUDA_RED_SLOTS (CORE_CUDA_RED_BLOCKS + 8)

static inline cuda_state *cuda_st(core_backend *be) { return (cuda_state *)be->impl; }

// Makes the backend's device current for the calling thread (the loader or
// comm threads may call in); cheap when it already is.
static inline cuda_state *cuda_enter(core_backend *be)
{
    cuda_state *st = cuda_st(be);
    CUDA_CHECK(cudaSetDevice(st->device));
    return st;
}

// The convolution workspace (ws_limit bytes; allocated on first use, never
// inside a backward pass since the first forward comes first). Dies when
// `bytes` exceeds the limit: algorithm choices are filtered by it.
void *cuda_workspace(cuda_state *st, size_t bytes);
// Device buffer number `slot` (0..CUDA_SCRATCH_SLOTS-1) of at least `bytes`;
// growth is stream-ordered (cudaFreeAsync/cudaMallocAsync): no host wait.
void *cuda_scratch(cuda_state *st, int slot, size_t bytes);

// core/cuda_conv.cu
void cuda_conv_forward(core_backend *be, const core_conv_shape *s, const float *x, const float *w, const float *b,
                       float *y);
void cuda_conv_backward(core_backend *be, const core_conv_shape *s, const float *x, const float *w, const float *y,
                        float *dy, float *dx, float *dw, float *db);
void cuda_conv_cache_free(cuda_state *st);

// core/cuda_ops.cu
void cuda_fill(core_backend *be, float *x, float v, size_t n);
void cuda_axpy(core_backend *be, float a, const float *x, float *y, size_t n);
void cuda_scale(core_backend *be, float *x, float a, size_t n);
double cuda_sumsq(core_backend *be, const float *x, size_t n);
void cuda_sumsq_segments(core_backend *be, const float *x, int nseg, const size_t *off, double *out);
void cuda_guard_loss(core_backend *be, const core_guard_loss_args *a, core_step_state *s);
void cuda_guard_step(core_backend *be, const core_guard_args *a, core_step_state *s);
void cuda_copy_channels(core_backend *be, int n, int hw, const float *src, int src_c, int src_off, float *dst,
                        int dst_c, int dst_off, int count, int accumulate);
void cuda_sgd_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g, float *m,
                   float lr, float momentum, float wd);
// optimizer updates beyond Caffe's SGD (core/cuda_ops.cu)
void cuda_sgd_nesterov_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g,
                            float *m, float lr, float momentum, float wd);
void cuda_adam_step(core_backend *be, const core_step_state *gate, const core_adam_args *a, size_t n, float *w,
                    const float *g, float *m, float *v);
// y = act(y + b[c]) over N x C x HW (conv epilogue)
void cuda_bias_act(cuda_state *st, float *y, const float *b, int n, int c, int hw, int relu);
// Masks dy with y > 0 when relu, then db += sum over (n, hw) of dy; deterministic.
void cuda_relu_mask_bias_grad(cuda_state *st, const float *y, float *dy, float *db, int n, int c, int hw, int relu);

// core/cuda_ops.cu, batch norm and ReLU (core/backend.h)
void cuda_chan_sums(core_backend *be, int n, int c, int hw, const float *a, const float *b, double *out);
void cuda_bn_step(core_backend *be, core_bn_phase phase, const core_bn_args *a);
void cuda_chan_affine(core_backend *be, int n, int c, int hw, const float *x, const float *scale, const float *shift,
                      int relu, float *y);
void cuda_chan_affine_grad(core_backend *be, int n, int c, int hw, const float *dy, const float *x, const float *coef,
                           float *dx);
void cuda_relu_mask(core_backend *be, size_t n, const float *y, float *dy);

// core/cuda_pool.cu
void cuda_pool_forward(core_backend *be, int n, int c, int h, int w, const float *x, float *y);
void cuda_pool_backward(core_backend *be, int n, int c, int h, int w, const float *x, const float *dy, float *dx);

#endif
