// Internals shared by the CUDA backend's .cu files (C++ only; the rest of
// the project sees core/backend.h and core/cuda_backend.h).
//
// Every CUDA and cuDNN call goes through CUDA_CHECK / CUDNN_CHECK, and every
// kernel launch is followed by CUDA_LAUNCH_CHECK(): a failure prints the
// project's one error line (core/check.h) with the call, the library's own
// error name and a hint about the usual cause.
#ifndef SSPOSE_CORE_CUDA_IMPL_H
#define SSPOSE_CORE_CUDA_IMPL_H

#ifndef __CUDACC__
#error "core/cuda_impl.h is for .cu files; C code includes core/cuda_backend.h"
#endif

#include <cuda_runtime.h>
#include <cudnn.h>
#include <stddef.h>

extern "C" {
#include "core/backend.h"
#include "core/check.h"
#include "core/cuda_backend.h"
}

// ---------------------------------------------------------------- checks

static inline const char *core_cuda_hint(cudaError_t e)
{
    switch (e) {
    case cudaErrorMemoryAllocation:
        return "out of GPU memory: lower train.batch or model.input, or free the GPU";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
        return "no usable GPU or driver: check nvidia-smi and CUDA_VISIBLE_DEVICES, or set comm.device=cpu";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidDeviceFunction:
    case cudaErrorUnsupportedPtxVersion:
        return "this GPU's architecture is not compiled in: add its -gencode to NVCCFLAGS and rebuild";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidValue:
        return "a kernel or copy touched bad memory: run 'make test-gpu-memcheck' or set CUDA_LAUNCH_BLOCKING=1";
    default:
        return "set CUDA_LAUNCH_BLOCKING=1 to find the failing op";
    }
}

static inline void core_cuda_check_at(cudaError_t e, const char *call, const char *file, int line)
{
    if (e == cudaSuccess) return;
    core_die_at(file, line, "CUDA: %s failed: %s: %s (hint: %s)", call, cudaGetErrorName(e), cudaGetErrorString(e),
                core_cuda_hint(e));
}

static inline const char *core_cudnn_hint(cudnnStatus_t s)
{
    switch ((int)s / 1000) {
    case 1: return "cuDNN is not usable here: check that libcudnn matches the CUDA runtime and driver";
    case 2: return "bad convolution descriptor or pointer: the layer's shape is inconsistent";
    case 3: return "cuDNN does not support this shape/algorithm on this GPU";
    case 4: return "cuDNN internal error, often out of GPU memory: lower train.batch";
    case 5: return "cuDNN kernel failed: set CUDA_LAUNCH_BLOCKING=1 and CUDNN_LOGERR_DBG=1";
    default: return "see cuDNN's error log (CUDNN_LOGERR_DBG=1)";
    }
}

static inline void core_cudnn_check_at(cudnnStatus_t s, const char *call, const char *file, int line)
{
    if (s == CUDNN_STATUS_SUCCESS) return;
    char detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    core_die_at(file, line, "cuDNN: %s failed: %s%s%s (hint: %s)", call, cudnnGetErrorString(s), detail[0] ? ": " : "",
                detail, core_cudnn_hint(s));
}

#define CUDA_CHECK(call) core_cuda_check_at((call), #call, __FILE__, __LINE__)
#define CUDNN_CHECK(call) core_cudnn_check_at((call), #call, __FILE__, __LINE__)
// Launch errors (bad configuration, missing kernel image) show up here; faults
// inside a kernel surface at the next synchronising call, also checked.
#define CUDA_LAUNCH_CHECK() core_cuda_check_at(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// ---------------------------------------------------------------- state

struct cuda_conv_plan; // one cached convolution shape (core/cuda_conv.cu)

struct cuda_state {
    int device;
    cudaStream_t stream;
    cudnnHandle_t cudnn;

    int tf32;               // comm.tf32: cuDNN may use TF32 tensor cores
    int deterministic;      // only algorithms cuDNN marks CUDNN_DETERMINISTIC
    size_t ws_limit;        // bytes one convolution algorithm may use

    void *ws;               // convolution workspace, grown on demand
    size_t ws_bytes;

    double *red;            // reduction partials (device), CORE_CUDA_RED_SLOTS doubles
    double *red_host;       // pinned landing slot for synchronous scalar results

    void *scratch[4];       // aligned stand-ins for misaligned convolution operands (cuda_conv.cu)
    size_t scratch_bytes[4];

    cuda_conv_plan **plans; // convolution cache, searched linearly (a net has ~30 shapes)
    int nplans, cap_plans;
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

// Grid for an element-wise kernel over n items with grid-stride loops.
static inline unsigned cuda_grid(size_t n, int threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65536) b = 65536;
    return (unsigned)b;
}

// Workspace of at least `bytes` (never shrinks).
void *cuda_workspace(cuda_state *st, size_t bytes);
// Growable device buffer number `slot` (0..3) of at least `bytes`.
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
void cuda_copy_channels(core_backend *be, int n, int hw, const float *src, int src_c, int src_off, float *dst,
                        int dst_c, int dst_off, int count, int accumulate);
void cuda_sgd_step(core_backend *be, size_t n, float *w, const float *g, float *m, float lr, float momentum,
                   float wd);
// optimizer updates beyond Caffe's SGD (core/cuda_ops.cu)
void cuda_sgd_nesterov_step(core_backend *be, size_t n, float *w, const float *g, float *m, float lr, float momentum,
                            float wd);
void cuda_adam_step(core_backend *be, const core_adam_args *a, size_t n, float *w, const float *g, float *m, float *v);
// y = act(y + b[c]) over N x C x HW (conv epilogue)
void cuda_bias_act(cuda_state *st, float *y, const float *b, int n, int c, int hw, int relu);
// Masks dy with y > 0 when relu, then db += sum over (n, hw) of dy; deterministic.
void cuda_relu_mask_bias_grad(cuda_state *st, const float *y, float *dy, float *db, int n, int c, int hw, int relu);

// core/cuda_ops.cu, batch norm and ReLU (core/backend.h)
void cuda_chan_sums(core_backend *be, int n, int c, int hw, const float *a, const float *b, double *out);
void cuda_chan_affine(core_backend *be, int n, int c, int hw, const float *x, const float *scale, const float *shift,
                      int relu, float *y);
void cuda_chan_affine_grad(core_backend *be, int n, int c, int hw, const float *dy, const float *x, const float *coef,
                           float *dx);
void cuda_relu_mask(core_backend *be, size_t n, const float *y, float *dy);

// core/cuda_pool.cu
void cuda_pool_forward(core_backend *be, int n, int c, int h, int w, const float *x, float *y);
void cuda_pool_backward(core_backend *be, int n, int c, int h, int w, const float *x, const float *dy, float *dx);

#endif
