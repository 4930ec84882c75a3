/* CUDA-specific knobs and handles on top of the op interface (core/backend.h).
 *
 * Everything here is callable from any build: in a CPU-only build (no nvcc,
 * or make CUDA=0) the functions are inline no-ops, so callers need no #ifdef.
 *
 *   core_backend *be = core_backend_create(cfg.comm.device, local_rank, threads);
 *   core_cuda_set_math(be, cfg.comm.tf32, 1);   // no-op unless be is CUDA
 */
#ifndef SSPOSE_CORE_CUDA_BACKEND_H
#define SSPOSE_CORE_CUDA_BACKEND_H

#include <stddef.h>

#include "core/backend.h"

#if defined(SSPOSE_CUDA) || defined(__CUDACC__)

/* tf32 (comm.tf32): let cuDNN use TF32 tensor cores for fp32 convolutions
 * (CUDNN_DEFAULT_MATH); off = CUDNN_FMA_MATH, true fp32. deterministic: only
 * algorithms cuDNN reports as CUDNN_DETERMINISTIC (bitwise repeatable
 * gradients). Defaults: tf32 0, deterministic 1. Takes effect for shapes
 * seen after the call (the algorithm cache is keyed by both). No-op for a
 * non-CUDA backend. */
void core_cuda_set_math(core_backend *be, int tf32, int deterministic);

/* The backend's cudaStream_t (as void *), for NCCL and loss kernels that must
 * queue behind the backend's work. NULL for a non-CUDA backend. */
void *core_cuda_stream(core_backend *be);

/* Device name and peak dense throughput in TFLOP/s (fp32 FMA units and TF32
 * tensor cores), computed from the SM count, clock and architecture; for
 * model-FLOP utilisation. Returns 0 on success, -1 when the device is absent. */
int core_cuda_device_peak(int device, char *name, size_t name_len, double *fp32_tflops, double *tf32_tflops);

/* Page-locked host memory (cudaHostAlloc, portable across devices), so that
 * uploads from it are truly asynchronous; dies with one line on failure.
 * The loader's batch buffers use these on a CUDA rank. */
void *core_cuda_host_alloc(size_t bytes);
void core_cuda_host_free(void *p);

#else

static inline void core_cuda_set_math(core_backend *be, int tf32, int deterministic)
{
    (void)be; (void)tf32; (void)deterministic;
}
static inline void *core_cuda_stream(core_backend *be) { (void)be; return NULL; }
static inline int core_cuda_device_peak(int device, char *name, size_t name_len, double *fp32_tflops,
                                        double *tf32_tflops)
{
    (void)device; (void)name; (void)name_len; (void)fp32_tflops; (void)tf32_tflops;
    return -1;
}
/* Never reached in a CPU-only build (no CUDA backend exists to ask for them). */
static inline void *core_cuda_host_alloc(size_t bytes) { (void)bytes; return NULL; }
static inline void core_cuda_host_free(void *p) { (void)p; }

#endif

#endif
