// Error checks for CUDA C++ files anywhere in the project (core/, loss/):
// every CUDA and cuDNN call goes through CUDA_CHECK / CUDNN_CHECK, and every
// kernel launch is followed by CUDA_LAUNCH_CHECK(). A failure prints the
// project's one error line (core/check.h) with the call, the library's own
// error name and a hint about the usual cause.
#ifndef SSPOSE_CORE_CUDA_CHECK_H
#define SSPOSE_CORE_CUDA_CHECK_H

#ifndef __CUDACC__
#error "core/cuda_check.h is for .cu files; C code includes core/cuda_backend.h"
#endif

#include <cuda_runtime.h>
#include <cudnn.h>

extern "C" {
#include "core/check.h"
}

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

// Grid for an element-wise kernel over n items with grid-stride loops.
static inline unsigned cuda_grid(size_t n, int threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b < 1) b = 1;
    if (b > 65536) b = 65536;
    return (unsigned)b;
}

#endif
