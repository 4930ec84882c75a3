// 2x2 stride-2 max pooling on CUDA with the CPU backend's exact semantics:
// the maximum is taken in row-major window order with strict '>', so a tie
// (or a NaN, which never compares greater) goes to the earliest element, and
// the backward pass routes the gradient to that same element.
// Our own kernels rather than cuDNN's pooling: cuDNN does not document which
// element wins a tie, and the windows are disjoint, so one thread per output
// writes its own dx element with no atomics (deterministic).
#include "core/cuda_impl.h"

#define THREADS 256

__global__ void k_pool_fwd(size_t total, int h, int w, const float *x, float *y)
{
    int oh = h / 2, ow = w / 2;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total; o += (size_t)gridDim.x * blockDim.x) {
        size_t plane = o / ((size_t)oh * ow);
        int r = (int)(o - plane * oh * ow), i = r / ow, j = r - i * ow;
        const float *r0 = x + plane * h * w + (size_t)(2 * i) * w + 2 * j, *r1 = r0 + w;
        float m = r0[0];
        if (r0[1] > m) m = r0[1];
        if (r1[0] > m) m = r1[0];
        if (r1[1] > m) m = r1[1];
        y[o] = m;
    }
}

__global__ void k_pool_bwd(size_t total, int h, int w, const float *x, const float *dy, float *dx)
{
    int oh = h / 2, ow = w / 2;
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < total; o += (size_t)gridDim.x * blockDim.x) {
        size_t plane = o / ((size_t)oh * ow);
        int r = (int)(o - plane * oh * ow), i = r / ow, j = r - i * ow;
        size_t base = plane * h * w + (size_t)(2 * i) * w + 2 * j;
        size_t best = base;
        if (x[base + 1] > x[best]) best = base + 1;
        if (x[base + w] > x[best]) best = base + w;
        if (x[base + w + 1] > x[best]) best = base + w + 1;
        dx[best] += dy[o];
    }
}

void cuda_pool_forward(core_backend *be, int n, int c, int h, int w, const float *x, float *y)
{
    cuda_state *st = cuda_enter(be);
    size_t total = (size_t)n * c * (h / 2) * (w / 2);
    if (!total) return;
    k_pool_fwd<<<cuda_grid(total, THREADS), THREADS, 0, st->stream>>>(total, h, w, x, y);
    CUDA_LAUNCH_CHECK();
}

void cuda_pool_backward(core_backend *be, int n, int c, int h, int w, const float *x, const float *dy, float *dx)
{
    cuda_state *st = cuda_enter(be);
    size_t total = (size_t)n * c * (h / 2) * (w / 2);
    if (!total) return;
    k_pool_bwd<<<cuda_grid(total, THREADS), THREADS, 0, st->stream>>>(total, h, w, x, dy, dx);
    CUDA_LAUNCH_CHECK();
}
