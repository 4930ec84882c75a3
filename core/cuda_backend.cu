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
    be->host_waits++;
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    CUDA_CHECK(cudaFree(p));
}

// Asynchronous, on the copy stream: after the work queued so far (which may
// still read dst), before any work queued later; the host never waits for
// the compute stream. From pageable memory the runtime stages the data before
// returning, so the host buffer may be reused at once; from pinned memory the
// copy is truly asynchronous and the buffer must live until sync() or
// core_cuda_upload_wait().
static void cu_upload(core_backend *be, float *dst, const float *host_src, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    CUDA_CHECK(cudaEventRecord(st->consumed, st->stream));
    CUDA_CHECK(cudaStreamWaitEvent(st->copy, st->consumed, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, n * sizeof(float), cudaMemcpyHostToDevice, st->copy));
    CUDA_CHECK(cudaEventRecord(st->uploaded, st->copy));
    CUDA_CHECK(cudaStreamWaitEvent(st->stream, st->uploaded, 0));
}

static void cu_download(core_backend *be, float *host_dst, const float *src, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (n) CUDA_CHECK(cudaMemcpyAsync(host_dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, st->stream));
    be->host_waits++;
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
    be->host_waits++;
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    CUDA_CHECK(cudaGetLastError());
}

static CORE_NORETURN void out_of_memory(cuda_state *st, const char *what, size_t bytes, const char *hint)
{
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    CORE_DIE("out of GPU memory allocating the %s (%.1f MiB) on GPU %d (%.1f of %.1f MiB free): %s", what,
             bytes / 1048576.0, st->device, free_b / 1048576.0, total_b / 1048576.0, hint);
}

// The workspace is one allocation of the configured size, made before the
// first convolution runs: a cudaFree inside a step would wait for the whole
// device (the NCCL stream included, outside comm.timeout_s), and a size that
// followed the free memory would let ranks or resumes choose differently.
void *cuda_workspace(cuda_state *st, size_t bytes)
{
    CHECK(bytes <= st->ws_limit, "cuDNN workspace request of %.1f MiB exceeds comm.cudnn_workspace_mb (%.0f MiB)",
          bytes / 1048576.0, st->ws_limit / 1048576.0);
    if (!st->ws && st->ws_limit) {
        cudaError_t e = cudaMalloc(&st->ws, st->ws_limit);
        if (e == cudaErrorMemoryAllocation)
            out_of_memory(st, "cuDNN workspace", st->ws_limit, "lower comm.cudnn_workspace_mb or train.batch");
        CUDA_CHECK(e);
        st->ws_bytes = st->ws_limit;
    }
    return st->ws;
}

// Scratch grows stream-ordered: the old buffer is released after the work
// queued on it, and the new one is usable by work queued after, without any
// host wait.
void *cuda_scratch(cuda_state *st, int slot, size_t bytes)
{
    CHECK(slot >= 0 && slot < CUDA_SCRATCH_SLOTS, "CUDA scratch slot %d does not exist", slot);
    if (bytes <= st->scratch_bytes[slot]) return st->scratch[slot];
    // Round up so a sequence of slightly growing requests does not reallocate each time.
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (st->scratch[slot]) CUDA_CHECK(cudaFreeAsync(st->scratch[slot], st->stream));
    st->scratch[slot] = NULL;
    st->scratch_bytes[slot] = 0;
    cudaError_t e = cudaMallocAsync(&st->scratch[slot], want, st->stream);
    if (e == cudaErrorMemoryAllocation) out_of_memory(st, "convolution scratch", want, "lower train.batch");
    CUDA_CHECK(e);
    st->scratch_bytes[slot] = want;
    return st->scratch[slot];
}

// ---------------------------------------------------------------- lifetime

static void cu_destroy(core_backend *be)
{
    cuda_state *st = cuda_enter(be);
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    cuda_conv_cache_free(st);
    if (st->ws) CUDA_CHECK(cudaFree(st->ws));
    for (int i = 0; i < CUDA_SCRATCH_SLOTS; i++)
        if (st->scratch[i]) CUDA_CHECK(cudaFreeAsync(st->scratch[i], st->stream));
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    free(st->algos);
    if (st->seg_table) CUDA_CHECK(cudaFree(st->seg_table));
    free(st->seg_off);
    free(st->seg_host);
    CUDA_CHECK(cudaFree(st->red));
    CUDA_CHECK(cudaFreeHost(st->red_host));
    CUDNN_CHECK(cudnnDestroy(st->cudnn));
    CUDA_CHECK(cudaStreamSynchronize(st->copy));
    CUDA_CHECK(cudaEventDestroy(st->consumed));
    CUDA_CHECK(cudaEventDestroy(st->uploaded));
    CUDA_CHECK(cudaStreamDestroy(st->copy));
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
    CUDA_CHECK(cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&st->consumed, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&st->uploaded, cudaEventDisableTiming));
    CUDNN_CHECK(cudnnCreate(&st->cudnn));
    CUDNN_CHECK(cudnnSetStream(st->cudnn, st->stream));
    st->ws_limit = (size_t)CORE_CUDA_WORKSPACE_MB << 20; // allocated on the first convolution
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
    be->sumsq_segments = cuda_sumsq_segments;
    be->guard_loss = cuda_guard_loss;
    be->guard_step = cuda_guard_step;
    be->conv_forward = cuda_conv_forward;
    be->conv_backward = cuda_conv_backward;
    be->pool_forward = cuda_pool_forward;
    be->pool_backward = cuda_pool_backward;
    be->copy_channels = cuda_copy_channels;
    be->sgd_step = cuda_sgd_step;
    be->sgd_nesterov_step = cuda_sgd_nesterov_step;
    be->adam_step = cuda_adam_step;
    be->chan_sums = cuda_chan_sums;
    be->bn_step = cuda_bn_step;
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

extern "C" void core_cuda_set_workspace(core_backend *be, size_t mb)
{
    if (!be || be->dev != CORE_DEV_CUDA) return;
    cuda_state *st = cuda_enter(be);
    size_t bytes = mb << 20;
    if (bytes == st->ws_limit) return;
    // Outside a step by contract. The limit is part of each choice's key, so
    // the plans forget their algorithms and look them up (or time) again.
    cuda_conv_cache_free(st);
    if (st->ws) {
        CUDA_CHECK(cudaStreamSynchronize(st->stream));
        CUDA_CHECK(cudaFree(st->ws));
    }
    st->ws = NULL;
    st->ws_bytes = 0;
    st->ws_limit = bytes;
}

extern "C" void *core_cuda_stream(core_backend *be)
{
    if (!be || be->dev != CORE_DEV_CUDA) return NULL;
    return (void *)cuda_st(be)->stream;
}

extern "C" void core_cuda_upload_wait(core_backend *be)
{
    if (!be || be->dev != CORE_DEV_CUDA) return;
    cuda_state *st = cuda_enter(be);
    CUDA_CHECK(cudaEventSynchronize(st->uploaded)); // the copy stream runs uploads in order: the last covers all
}

extern "C" void *core_cuda_enter(core_backend *be)
{
    CHECK(be && be->dev == CORE_DEV_CUDA, "core_cuda_enter on a non-CUDA backend");
    return (void *)cuda_enter(be)->stream;
}

extern "C" void *core_cuda_scratch(core_backend *be, int slot, size_t bytes)
{
    CHECK(be && be->dev == CORE_DEV_CUDA, "core_cuda_scratch on a non-CUDA backend");
    CHECK(slot == CORE_CUDA_SCRATCH_LOSS, "CUDA scratch slot %d is not public", slot);
    return cuda_scratch(cuda_enter(be), slot, bytes);
}

extern "C" void core_cuda_copy_on(void *stream, float *dst, const float *src, size_t n)
{
    if (n) CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, (cudaStream_t)stream));
}

extern "C" int core_cuda_select_device(int local_rank)
{
    int n = core_cuda_device_count();
    if (n <= 0) return -1;
    int dev = (local_rank < 0 ? 0 : local_rank) % n;
    CUDA_CHECK(cudaSetDevice(dev));
    return dev;
}

struct core_cuda_timer {
    core_backend *be;
    cudaEvent_t start, stop;
};

extern "C" core_cuda_timer *core_cuda_timer_create(core_backend *be)
{
    CHECK(be && be->dev == CORE_DEV_CUDA, "core_cuda_timer_create on a non-CUDA backend");
    cuda_enter(be);
    core_cuda_timer *t = (core_cuda_timer *)core_calloc(1, sizeof *t);
    t->be = be;
    CUDA_CHECK(cudaEventCreate(&t->start));
    CUDA_CHECK(cudaEventCreate(&t->stop));
    return t;
}

extern "C" void core_cuda_timer_start(core_cuda_timer *t)
{
    CUDA_CHECK(cudaEventRecord(t->start, cuda_enter(t->be)->stream));
}

extern "C" double core_cuda_timer_stop_ms(core_cuda_timer *t)
{
    CUDA_CHECK(cudaEventRecord(t->stop, cuda_enter(t->be)->stream));
    CUDA_CHECK(cudaEventSynchronize(t->stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, t->start, t->stop));
    return ms;
}

extern "C" void core_cuda_timer_destroy(core_cuda_timer *t)
{
    if (!t) return;
    cuda_enter(t->be);
    CUDA_CHECK(cudaEventDestroy(t->start));
    CUDA_CHECK(cudaEventDestroy(t->stop));
    free(t);
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

// Dense FLOPs per SM per clock, from the architecture whitepapers and the
// datasheets' dense (not sparse) figures: fp32 on the FMA lanes, TF32 and
// bf16 (fp32 accumulate) on the tensor cores. A100 (sm_80): 128 / 1024 /
// 2048; GA10x and AD10x (sm_86, sm_89): 256 / 256 / 512; H100 (sm_90): 256 /
// 2048 / 4096; B200 (sm_100): 256 / 4096 / 8192. Anything else: -1.
static int flops_per_sm_clock(int cc, double *fp32, double *tf32, double *bf16)
{
    switch (cc) {
    case 80: *fp32 = 128, *tf32 = 1024, *bf16 = 2048; return 0;
    case 86: case 87: case 89: *fp32 = 256, *tf32 = 256, *bf16 = 512; return 0;
    case 90: *fp32 = 256, *tf32 = 2048, *bf16 = 4096; return 0;
    case 100: *fp32 = 256, *tf32 = 4096, *bf16 = 8192; return 0;
    default: return -1;
    }
}

extern "C" int core_cuda_device_peak(int device, double clock_mhz, core_cuda_peak *out)
{
    int n = core_cuda_device_count();
    if (device < 0 || device >= n) return -1;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    double fp32, tf32, bf16;
    if (flops_per_sm_clock(prop.major * 10 + prop.minor, &fp32, &tf32, &bf16)) return -1;
    if (clock_mhz <= 0) {
        int clock_khz = 0; // the maximum boost clock the device reports
        CUDA_CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, device));
        clock_mhz = clock_khz / 1e3;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", prop.name);
    out->clock_mhz = clock_mhz;
    double sm_mhz = prop.multiProcessorCount * clock_mhz;
    out->fp32 = sm_mhz * fp32 / 1e6;
    out->tf32 = sm_mhz * tf32 / 1e6;
    out->bf16 = sm_mhz * bf16 / 1e6;
    return 0;
}
