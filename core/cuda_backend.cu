// CUDA backend: device selection, memory, the stream and the op table.
// Kernels live in cuda_ops.cu (element-wise, reductions), cuda_pool.cu and
// cuda_conv.cu (cuDNN). All work is queued on one non-blocking stream per
// backend, so ops run in issue order without touching the legacy stream.
#include <stdio.h>
#include <string.h>

#include "core/cuda_impl.h"

extern "C" int core_cuda_device_count(void)
{
    int n = 0;
    // No driver or no device is "zero GPUs", not an error: the CPU backend takes over.
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError(); // clear it so later runtime calls do not see a stale error
        return 0;
    }
    return n;
}

// ---------------------------------------------------------------- memory

static float *cu_alloc(core_backend *be, size_t n)
{
    cuda_state *st = cuda_enter(be);
    void *p = NULL;
    size_t bytes = (n ? n : 1) * sizeof(float);
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        CORE_DIE("out of GPU memory allocating %.1f MiB on GPU %d (%.1f of %.1f MiB free): lower train.batch or "
                 "model.input",
                 bytes / 1048576.0, st->device, free_b / 1048576.0, total_b / 1048576.0);
    }
    CUDA_CHECK(e);
    CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, st->stream));
    return (float *)p;
}

static void cu_free(core_backend *be, float *p)
{
    if (!p) return;
    cuda_state *st = cuda_enter(be);
    // Work queued on p must finish first; cudaFree alone only waits for the device.
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    CUDA_CHECK(cudaFree(p));
}

// Asynchronous on the stream. From pageable memory the runtime stages the data
// before returning, so the host buffer may be reused at once; from pinned
// memory the copy is truly asynchronous and the buffer must live until sync().
static void cu_upload(core_backend *be, float *dst, const float *host_src, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n * sizeof(float), cudaMemcpyHostToDevice, st->stream));
}

static void cu_download(core_backend *be, float *host_dst, const float *src, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (n) CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
}

static void cu_copy(core_backend *be, float *dst, const float *src, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n || dst == src) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, st->stream));
}

static void cu_sync(core_backend *be)
{
    cuda_state *st = cuda_enter(be);
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    CUDA_CHECK(cudaGetLastError());
}

// A device buffer that grows on demand: when it must grow, queued work that
// may still read the old one is waited for before it is freed.
static void *grow(cuda_state *st, void **buf, size_t *have, size_t bytes, const char *what)
{
    if (bytes <= *have) return *buf;
    // Round up so a sequence of slightly growing requests does not reallocate each time.
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (*buf) {
        CUDA_CHECK(cudaStreamSynchronize(st->stream));
        CUDA_CHECK(cudaFree(*buf));
        *buf = NULL;
        *have = 0;
    }
    cudaError_t e = cudaMalloc(buf, want);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        CORE_DIE("out of GPU memory growing the %s to %.1f MiB on GPU %d: lower train.batch", what, want / 1048576.0,
                 st->device);
    }
    CUDA_CHECK(e);
    *have = want;
    return *buf;
}

void *cuda_workspace(cuda_state *st, size_t bytes) { return grow(st, &st->ws, &st->ws_bytes, bytes, "cuDNN workspace"); }

void *cuda_scratch(cuda_state *st, int slot, size_t bytes)
{
    return grow(st, &st->scratch[slot], &st->scratch_bytes[slot], bytes, "convolution scratch");
}

// ---------------------------------------------------------------- lifetime

static void cu_destroy(core_backend *be)
{
    cuda_state *st = cuda_enter(be);
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    cuda_conv_cache_free(st);
    if (st->ws) CUDA_CHECK(cudaFree(st->ws));
    for (int i = 0; i < 4; i++)
        if (st->scratch[i]) CUDA_CHECK(cudaFree(st->scratch[i]));
    CUDA_CHECK(cudaFree(st->red));
    CUDA_CHECK(cudaFreeHost(st->red_host));
    CUDNN_CHECK(cudnnDestroy(st->cudnn));
    CUDA_CHECK(cudaStreamDestroy(st->stream));
    free(st);
    free(be);
}

// A kernel of ours, used to ask the runtime whether this GPU can run our code at all.
__global__ void cuda_probe_kernel(int *p)
{
    if (p) *p = 1;
}

extern "C" core_backend *core_cuda_backend_create(int device)
{
    int n = core_cuda_device_count();
    CHECK(n > 0, "no usable GPU for the CUDA backend (no NVIDIA driver or no device visible): use comm.device=cpu");
    CHECK(device >= 0 && device < n, "CUDA device %d does not exist (%d visible; check CUDA_VISIBLE_DEVICES)", device,
          n);
    CUDA_CHECK(cudaSetDevice(device));
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    cudaFuncAttributes fa;
    cudaError_t e = cudaFuncGetAttributes(&fa, cuda_probe_kernel);
    if (e != cudaSuccess) {
        cudaGetLastError();
        CORE_DIE("GPU %d (%s, sm_%d%d) cannot run sspose's kernels (%s): add -gencode for sm_%d%d to NVCCFLAGS and "
                 "rebuild",
                 device, prop.name, prop.major, prop.minor, cudaGetErrorName(e), prop.major, prop.minor);
    }

    cuda_state *st = (cuda_state *)core_calloc(1, sizeof *st);
    st->device = device;
    st->tf32 = 0;
    st->deterministic = 1;
    CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
    CUDNN_CHECK(cudnnCreate(&st->cudnn));
    CUDNN_CHECK(cudnnSetStream(st->cudnn, st->stream));
    // An algorithm may use up to a quarter of the free memory (at most 2 GiB):
    // enough for the fast FFT/Winograd paths, leaving room for activations.
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    st->ws_limit = free_b / 4 < ((size_t)2 << 30) ? free_b / 4 : ((size_t)2 << 30);
    CUDA_CHECK(cudaMalloc((void **)&st->red, CORE_CUDA_RED_SLOTS * sizeof(double)));
    CUDA_CHECK(cudaMallocHost((void **)&st->red_host, 8 * sizeof(double)));

    core_backend *be = (core_backend *)core_calloc(1, sizeof *be);
    be->name = "cuda";
    be->dev = CORE_DEV_CUDA;
    be->impl = st;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->upload = cu_upload;
    be->download = cu_download;
    be->copy = cu_copy;
    be->sync = cu_sync;
    be->fill = cuda_fill;
    be->axpy = cuda_axpy;
    be->scale = cuda_scale;
    be->sumsq = cuda_sumsq;
    be->conv_forward = cuda_conv_forward;
    be->conv_backward = cuda_conv_backward;
    be->pool_forward = cuda_pool_forward;
    be->pool_backward = cuda_pool_backward;
    be->copy_channels = cuda_copy_channels;
    be->sgd_step = cuda_sgd_step;
    be->sgd_nesterov_step = cuda_sgd_nesterov_step;
    be->adam_step = cuda_adam_step;
    be->chan_sums = cuda_chan_sums;
    be->chan_affine = cuda_chan_affine;
    be->chan_affine_grad = cuda_chan_affine_grad;
    be->relu_mask = cuda_relu_mask;
    be->destroy = cu_destroy;
    return be;
}

// ---------------------------------------------------------------- knobs

extern "C" void core_cuda_set_math(core_backend *be, int tf32, int deterministic)
{
    if (!be || be->dev != CORE_DEV_CUDA) return;
    cuda_state *st = cuda_st(be);
    st->tf32 = tf32 ? 1 : 0;
    st->deterministic = deterministic ? 1 : 0;
}

extern "C" void *core_cuda_stream(core_backend *be)
{
    if (!be || be->dev != CORE_DEV_CUDA) return NULL;
    return (void *)cuda_st(be)->stream;
}

extern "C" void *core_cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    CUDA_CHECK(cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable));
    return p;
}

extern "C" void core_cuda_host_free(void *p)
{
    if (p) CUDA_CHECK(cudaFreeHost(p));
}

extern "C" int core_cuda_device_peak(int device, char *name, size_t name_len, double *fp32_tflops, double *tf32_tflops)
{
    int n = core_cuda_device_count();
    if (device < 0 || device >= n) return -1;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    int clock_khz = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
    if (name && name_len) snprintf(name, name_len, "%s", prop.name);
    // FP32 lanes and dense TF32 tensor-core FLOPs per SM per clock, from the
    // architecture whitepapers (A100: 64 / 1024; sm_86/89: 128 / 512; H100: 128 / 2048).
    int cc = prop.major * 10 + prop.minor;
    double fp32_lanes = cc == 80 ? 64 : 128;
    double tf32_flops = cc >= 90 ? 2048 : cc == 80 ? 1024 : 512;
    double sm_ghz = prop.multiProcessorCount * (clock_khz / 1e6);
    if (fp32_tflops) *fp32_tflops = sm_ghz * fp32_lanes * 2 / 1e3;
    if (tf32_tflops) *tf32_tflops = sm_ghz * tf32_flops / 1e3;
    return 0;
}
