// CUDA loss kernels (the vtable of loss/kernels.h), with loss/kernels_cpu.c's
// semantics: the same per-element weight, in double, and the same grouping
// of the sums (one partial per (sample, channel), added in channel order).
//
// Determinism: one block (or a fixed number of blocks, chosen from hw only)
// per (sample, channel) plane reduces its cells in a fixed tree order; a
// finishing kernel adds the partials per sample in channel order. No atomics,
// so the sums are bit-identical call after call. Each gradient element is
// written by exactly one thread, so the accumulation (g += ...) never races.
#include <math.h>

#include "core/cuda_check.h"

extern "C" {
#include "core/cuda_backend.h"
#include "loss/kernels.h"
#include "loss/weight.h"
}

#define THREADS 256

// Tree sum over the block, returned to every thread; sh has THREADS doubles.
__device__ static double loss_block_sum(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads(); // sh may be reused by the next call
    return r;
}

// Block (plane = s*C + c, split) handles cells i = split*THREADS + t + k*splits*THREADS.
__global__ void k_loss_l2(const loss_l2_args a, int splits, double *partial)
{
    __shared__ double sh[THREADS];
    const int plane = blockIdx.x, split = blockIdx.y;
    const int s = plane / a.c, c = plane - s * a.c, hw = a.hw;
    const size_t base = (size_t)plane * hw;
    const loss_l2_plane pl = loss_l2_plane_at(&a, s, c);
    double acc = 0;
    for (int i = split * THREADS + threadIdx.x; i < hw; i += splits * THREADS) {
        const double w = loss_l2_weight(&a, &pl, i);
        if (w == 0) continue; // also keeps 0*inf out of the sum, as on the CPU
        double d = (double)a.pred[base + i] - (double)a.target[base + i];
        acc += w * d * d;
        float g = (float)(2.0 * a.coef * w * d);
        if (a.grad_pred) a.grad_pred[base + i] += g;
        if (a.grad_target) a.grad_target[base + i] -= g;
    }
    double sum = loss_block_sum(acc, sh);
    if (threadIdx.x == 0) partial[(size_t)plane * splits + split] = sum;
}

// One block per (sample, channel) plane: the normalisers, then the divergence,
// then (when wanted) the gradients, exactly as loss/kernels_cpu.c.
__global__ void k_loss_kl(const loss_kl_args a, double *partial)
{
    __shared__ double sh[THREADS];
    const int plane = blockIdx.x, hw = a.hw;
    const size_t base = (size_t)plane * hw;
    const float *h = a.h + base, *q_in = a.hps + base;
    const double eps = a.eps;
    double sp = 0, sq = 0;
    for (int i = threadIdx.x; i < hw; i += THREADS) {
        sp += fmax((double)h[i], 0.0) + eps;
        sq += fmax((double)q_in[i], 0.0) + eps;
    }
    sp = loss_block_sum(sp, sh);
    sq = loss_block_sum(sq, sh);
    const double lsp = log(sp), lsq = log(sq);
    double kl = 0;
    for (int i = threadIdx.x; i < hw; i += THREADS) {
        double p = fmax((double)h[i], 0.0) + eps, q = fmax((double)q_in[i], 0.0) + eps;
        kl += (p / sp) * ((log(p) - lsp) - (log(q) - lsq)); // log(P/Q) without forming P, Q: no underflow
    }
    kl = loss_block_sum(kl, sh);
    if (a.grad_h || a.grad_hps)
        for (int i = threadIdx.x; i < hw; i += THREADS) {
            double p = fmax((double)h[i], 0.0) + eps, q = fmax((double)q_in[i], 0.0) + eps;
            if (a.grad_h && h[i] > 0)
                a.grad_h[base + i] += (float)(a.coef * (((log(p) - lsp) - (log(q) - lsq)) - kl) / sp);
            if (a.grad_hps && q_in[i] > 0) a.grad_hps[base + i] += (float)(a.coef * (1.0 / sq - (p / sp) / q));
        }
    if (threadIdx.x == 0) partial[plane] = kl;
}

// out[s] = sum over c (in order) of the plane's partials (summed over splits in order).
__global__ void k_loss_finish(const double *partial, int n, int c, int splits, double *out)
{
    for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < n; s += gridDim.x * blockDim.x) {
        double acc = 0;
        for (int ch = 0; ch < c; ch++) {
            const double *p = partial + ((size_t)s * c + ch) * splits;
            double pc = p[0];
            for (int k = 1; k < splits; k++) pc += p[k];
            acc += pc;
        }
        out[s] = acc;
    }
}

// Partials live in the backend's loss scratch (stream ordered: the next term's
// kernel reuses it only after this finish has read it); the per-sample sums go
// to the caller's device buffer, with no host wait.
static void finish(cudaStream_t stream, double *partial, int n, int c, int splits, double *out)
{
    k_loss_finish<<<cuda_grid((size_t)n, THREADS), THREADS, 0, stream>>>(partial, n, c, splits, out);
    CUDA_LAUNCH_CHECK();
}

static void zero_sums(cudaStream_t stream, double *out, int n)
{
    CUDA_CHECK(cudaMemsetAsync(out, 0, (size_t)n * sizeof(double), stream));
}

static double *loss_scratch(core_backend *be, size_t doubles)
{
    return (double *)core_cuda_scratch(be, CORE_CUDA_SCRATCH_LOSS, doubles * sizeof(double));
}

static void cuda_l2(core_backend *be, const loss_l2_args *a, double *out)
{
    CHECK(a->c <= LOSS_MAX_CHANNELS, "loss: %d channels exceed LOSS_MAX_CHANNELS", a->c);
    cudaStream_t stream = (cudaStream_t)core_cuda_enter(be);
    if (a->n <= 0) return;
    if (a->c <= 0 || a->hw <= 0) {
        zero_sums(stream, out, a->n);
        return;
    }
    // One block per plane on the usual 46x46 grid; large grids split (a function of hw only).
    int splits = (a->hw + 8 * THREADS - 1) / (8 * THREADS);
    if (splits > 16) splits = 16;
    size_t planes = (size_t)a->n * a->c;
    CHECK(planes < (1u << 31), "loss: %zu planes is too many for one launch", planes);
    double *partial = loss_scratch(be, planes * splits);
    k_loss_l2<<<dim3((unsigned)planes, (unsigned)splits), THREADS, 0, stream>>>(*a, splits, partial);
    CUDA_LAUNCH_CHECK();
    finish(stream, partial, a->n, a->c, splits, out);
}

static void cuda_kl(core_backend *be, const loss_kl_args *a, double *out)
{
    cudaStream_t stream = (cudaStream_t)core_cuda_enter(be);
    if (a->n <= 0) return;
    if (a->c <= 0 || a->hw <= 0) {
        zero_sums(stream, out, a->n);
        return;
    }
    size_t planes = (size_t)a->n * a->c;
    CHECK(planes < (1u << 31), "loss: %zu planes is too many for one launch", planes);
    double *partial = loss_scratch(be, planes);
    k_loss_kl<<<(unsigned)planes, THREADS, 0, stream>>>(*a, partial);
    CUDA_LAUNCH_CHECK();
    finish(stream, partial, a->n, a->c, 1, out);
}

extern "C" const loss_kernels loss_kernels_cuda = {"cuda", cuda_l2, cuda_kl};
