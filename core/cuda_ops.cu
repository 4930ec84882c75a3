// Element-wise kernels, the deterministic reductions (sumsq, bias gradient),
// channel copies and the SGD update for the CUDA backend.
//
// Reductions never use atomics: each block reduces a fixed, strided slice in
// a fixed tree order into a partial, and a second single-block pass adds the
// partials in index order. The slicing depends only on the problem size (not
// on the GPU's SM count), so results are bitwise repeatable on any device.
#include <string.h>

#include "core/cuda_impl.h"

#define THREADS 256

// ---------------------------------------------------------------- element-wise

__global__ void k_fill(float *x, float v, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = v;
}

__global__ void k_axpy(float a, const float *x, float *y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i])); // unfused, as the CPU computes it
}

__global__ void k_scale(float *x, float a, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

// Caffe's rule, as the CPU backend: m = momentum*m + lr*(g + wd*w); w -= m.
// Written without FMA contraction so the result matches the CPU bit for bit
// in the common case (both evaluate the same float expression tree).
// The step's gate (core/backend.h): read on the device, so the host never
// waits for the guard's decision. Returns 0 for "no update"; *sc is the
// gradient's factor (clipping).
__device__ static inline int gate_open(const core_step_state *gate, float *sc)
{
    *sc = gate ? (float)gate->scale : 1.0f;
    return !gate || gate->apply != 0;
}

__global__ void k_sgd(const core_step_state *gate, size_t n, float *w, const float *g, float *m, float lr,
                      float momentum, float wd)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], sc);
        float v = __fadd_rn(__fmul_rn(momentum, m[i]), __fmul_rn(lr, __fadd_rn(gi, __fmul_rn(wd, w[i]))));
        m[i] = v;
        w[i] = __fsub_rn(w[i], v);
    }
}

void cuda_fill(core_backend *be, float *x, float v, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_fill<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(x, v, n);
    CUDA_LAUNCH_CHECK();
}

void cuda_axpy(core_backend *be, float a, const float *x, float *y, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_axpy<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(a, x, y, n);
    CUDA_LAUNCH_CHECK();
}

void cuda_scale(core_backend *be, float *x, float a, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_scale<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(x, a, n);
    CUDA_LAUNCH_CHECK();
}

void cuda_sgd_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g, float *m,
                   float lr, float momentum, float wd)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_sgd<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(gate, n, w, g, m, lr, momentum, wd);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- optimizer updates beyond Caffe's SGD
// Same float expression trees as core/cpu_backend.c, without FMA contraction.

__global__ void k_sgd_nesterov(const core_step_state *gate, size_t n, float *w, const float *g, float *m, float lr,
                               float momentum, float wd)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], sc);
        float d = __fmul_rn(lr, __fadd_rn(gi, __fmul_rn(wd, w[i])));
        float v = __fadd_rn(__fmul_rn(momentum, m[i]), d);
        m[i] = v;
        w[i] = __fsub_rn(w[i], __fadd_rn(__fmul_rn(momentum, v), d));
    }
}

__global__ void k_adam(const core_step_state *gate, core_adam_args a, size_t n, float *w, const float *g, float *m,
                       float *v)
{
    float sc;
    if (!gate_open(gate, &sc)) return;
    if (gate) {
        a.step_size = (float)__ddiv_rn(a.lr, gate->bc1);
        a.inv_sqrt_bc2 = (float)__ddiv_rn(1.0, __dsqrt_rn(gate->bc2));
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], sc);
        float wi = __fmul_rn(w[i], a.decay);
        float d = __fadd_rn(gi, __fmul_rn(a.l2, w[i]));
        float mi = __fadd_rn(__fmul_rn(a.beta1, m[i]), __fmul_rn(a.one_minus_beta1, d));
        float vi = __fadd_rn(__fmul_rn(a.beta2, v[i]), __fmul_rn(a.one_minus_beta2, __fmul_rn(d, d)));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), a.inv_sqrt_bc2), a.eps);
        w[i] = __fsub_rn(wi, __fmul_rn(a.step_size, __fdiv_rn(mi, denom)));
    }
}

void cuda_sgd_nesterov_step(core_backend *be, const core_step_state *gate, size_t n, float *w, const float *g,
                            float *m, float lr, float momentum, float wd)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_sgd_nesterov<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(gate, n, w, g, m, lr, momentum, wd);
    CUDA_LAUNCH_CHECK();
}

void cuda_adam_step(core_backend *be, const core_step_state *gate, const core_adam_args *a, size_t n, float *w,
                    const float *g, float *m, float *v)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_adam<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(gate, *a, n, w, g, m, v);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- reductions

// Tree sum of one value per thread (blockDim.x == THREADS, a power of two);
// the result is valid in thread 0. Fixed pairing order = deterministic.
__device__ double block_sum(double v)
{
    __shared__ double sh[THREADS];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    return sh[0];
}

// Pass 1: block b sums x[i]^2 for i = b*THREADS + t + k*(nblocks*THREADS).
// Squares are >= 0, so an Inf stays Inf and a NaN stays NaN through the sums.
__global__ void k_sumsq_partial(const float *x, size_t n, double *partial)
{
    double acc = 0;
    for (size_t i = blockIdx.x * (size_t)THREADS + threadIdx.x; i < n; i += (size_t)gridDim.x * THREADS) {
        double v = x[i];
        acc += v * v;
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// Pass 2: one block adds `count` partials; out = sum.
__global__ void k_sum_partials(const double *partial, int count, double *out)
{
    double acc = 0;
    for (int i = threadIdx.x; i < count; i += THREADS) acc += partial[i];
    double s = block_sum(acc);
    if (threadIdx.x == 0) *out = s;
}

double cuda_sumsq(core_backend *be, const float *x, size_t n)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return 0.0;
    // Small inputs use fewer blocks; the count is a function of n only.
    size_t blocks = (n + THREADS - 1) / THREADS;
    if (blocks > CORE_CUDA_RED_BLOCKS) blocks = CORE_CUDA_RED_BLOCKS;
    double *out = st->red + CORE_CUDA_RED_BLOCKS;
    k_sumsq_partial<<<(unsigned)blocks, THREADS, 0, st->stream>>>(x, n, st->red);
    CUDA_LAUNCH_CHECK();
    k_sum_partials<<<1, THREADS, 0, st->stream>>>(st->red, (int)blocks, out);
    CUDA_LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(st->red_host, out, sizeof(double), cudaMemcpyDeviceToHost, st->stream));
    be->host_waits++;
    CUDA_CHECK(cudaStreamSynchronize(st->stream));
    return st->red_host[0];
}

// ---------------------------------------------------------------- per-segment sums of squares
// Each segment is cut into chunks of SEG_CHUNK floats (a function of the
// offsets only); block c reduces chunk c in a fixed tree order, then one
// thread per segment adds its chunks in order. Deterministic, no atomics,
// two launches whatever the number of segments.
#define SEG_CHUNK 16384

__global__ void k_seg_partial(const float *x, const size_t *start, const size_t *end, double *partial)
{
    const size_t c = blockIdx.x;
    double acc = 0;
    for (size_t i = start[c] + threadIdx.x; i < end[c]; i += THREADS) {
        double v = x[i];
        acc += v * v;
    }
    double s = block_sum(acc);
    if (threadIdx.x == 0) partial[c] = s;
}

__global__ void k_seg_finish(const double *partial, const size_t *first, int nseg, double *out)
{
    for (int s = blockIdx.x * blockDim.x + threadIdx.x; s < nseg; s += gridDim.x * blockDim.x) {
        double acc = 0;
        for (size_t c = first[s]; c < first[s + 1]; c++) acc += partial[c];
        out[s] = acc;
    }
}

// The chunk table for these offsets, built and uploaded when they change
// (once per run: the trainer's segments are the parameters).
static void seg_table(cuda_state *st, int nseg, const size_t *off)
{
    if (st->seg_table && st->seg_n == nseg && !memcmp(st->seg_off, off, (nseg + 1) * sizeof *off)) return;
    size_t chunks = 0;
    for (int s = 0; s < nseg; s++) chunks += (off[s + 1] - off[s] + SEG_CHUNK - 1) / SEG_CHUNK;
    const size_t words = 2 * chunks + nseg + 1;
    if (st->seg_table) CUDA_CHECK(cudaFreeAsync(st->seg_table, st->stream));
    CUDA_CHECK(cudaMallocAsync(&st->seg_table, words * sizeof(size_t) + (chunks ? chunks : 1) * sizeof(double),
                               st->stream));
    free(st->seg_host);
    st->seg_host = (size_t *)core_malloc(words * sizeof(size_t));
    size_t *start = st->seg_host, *end = start + chunks, *first = end + chunks, k = 0;
    for (int s = 0; s < nseg; s++) {
        first[s] = k;
        for (size_t i = off[s]; i < off[s + 1]; i += SEG_CHUNK, k++) {
            start[k] = i;
            end[k] = i + SEG_CHUNK < off[s + 1] ? i + SEG_CHUNK : off[s + 1];
        }
    }
    first[nseg] = k;
    // seg_host lives until the next rebuild, so the asynchronous copy may read it late.
    CUDA_CHECK(cudaMemcpyAsync(st->seg_table, st->seg_host, words * sizeof(size_t), cudaMemcpyHostToDevice,
                               st->stream));
    free(st->seg_off);
    st->seg_off = (size_t *)core_malloc((nseg + 1) * sizeof *off);
    memcpy(st->seg_off, off, (nseg + 1) * sizeof *off);
    st->seg_n = nseg;
    st->seg_chunks = chunks;
}

void cuda_sumsq_segments(core_backend *be, const float *x, int nseg, const size_t *off, double *out)
{
    cuda_state *st = cuda_enter(be);
    if (nseg <= 0) return;
    seg_table(st, nseg, off);
    const size_t chunks = st->seg_chunks;
    const size_t *start = (const size_t *)st->seg_table, *end = start + chunks, *first = end + chunks;
    double *partial = (double *)(first + nseg + 1);
    if (chunks) {
        k_seg_partial<<<(unsigned)chunks, THREADS, 0, st->stream>>>(x, start, end, partial);
        CUDA_LAUNCH_CHECK();
    }
    k_seg_finish<<<cuda_grid((size_t)nseg, THREADS), THREADS, 0, st->stream>>>(partial, first, nseg, out);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- the step's guard program
// core/step_guard.h, one thread: a few hundred scalar operations per step.
__global__ void k_guard_loss(const core_guard_loss_args a, core_step_state *s) { core_guard_loss(&a, s); }
__global__ void k_guard_step(const core_guard_args a, core_step_state *s) { core_guard_step(&a, s); }

void cuda_guard_loss(core_backend *be, const core_guard_loss_args *a, core_step_state *s)
{
    cuda_state *st = cuda_enter(be);
    k_guard_loss<<<1, 1, 0, st->stream>>>(*a, s);
    CUDA_LAUNCH_CHECK();
}

void cuda_guard_step(core_backend *be, const core_guard_args *a, core_step_state *s)
{
    cuda_state *st = cuda_enter(be);
    k_guard_step<<<1, 1, 0, st->stream>>>(*a, s);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- conv epilogues

// Grid for per-plane kernels: blockIdx.y walks the N*C planes (the channel is
// one 32-bit modulo per plane, not a 64-bit division per element), blockIdx.x
// covers a plane's cells, about four per thread.
static dim3 plane_grid(size_t planes, int hw)
{
    unsigned gy = planes < 65535 ? (unsigned)planes : 65535;
    unsigned gx = (unsigned)((hw + 4 * THREADS - 1) / (4 * THREADS));
    if (gx > 1024) gx = 1024;
    return dim3(gx ? gx : 1, gy ? gy : 1);
}

__global__ void k_bias_act(float *y, const float *b, int planes, int c, int hw, int relu)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        float bv = b[plane % c];
        float *row = y + (size_t)plane * hw;
        for (int i = blockIdx.x * THREADS + threadIdx.x; i < hw; i += gridDim.x * THREADS) {
            float v = row[i] + bv;
            row[i] = relu ? (v > 0 ? v : 0.0f) : v;
        }
    }
}

void cuda_bias_act(cuda_state *st, float *y, const float *b, int n, int c, int hw, int relu)
{
    size_t planes = (size_t)n * c;
    if (!planes || hw <= 0) return;
    CHECK(planes < ((size_t)1 << 31), "convolution output has too many planes (%zu)", planes);
    k_bias_act<<<plane_grid(planes, hw), THREADS, 0, st->stream>>>(y, b, (int)planes, c, hw, relu);
    CUDA_LAUNCH_CHECK();
}

// Block (ch, s) visits, for each sample in order, the channel's cells
// i = s*THREADS + t + k*splits*THREADS; it masks dy where the forward output
// was not positive (the CPU's !(y > 0), so NaN outputs pass no gradient) and
// writes its sum to partial[ch*splits + s].
__global__ void k_mask_bias_partial(const float *y, float *dy, int n, int c, int hw, int relu, int splits,
                                    double *partial)
{
    int ch = blockIdx.x, s = blockIdx.y;
    double acc = 0;
    for (int nn = 0; nn < n; nn++) {
        size_t base = ((size_t)nn * c + ch) * hw;
        for (int i = s * THREADS + threadIdx.x; i < hw; i += splits * THREADS) {
            float g = dy[base + i];
            if (relu && !(y[base + i] > 0)) {
                g = 0.0f;
                dy[base + i] = 0.0f;
            }
            acc += g;
        }
    }
    double sum = block_sum(acc);
    if (threadIdx.x == 0) partial[(size_t)ch * splits + s] = sum;
}

__global__ void k_bias_finish(const double *partial, int c, int splits, float *db)
{
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < c; ch += gridDim.x * blockDim.x) {
        double acc = 0;
        for (int s = 0; s < splits; s++) acc += partial[(size_t)ch * splits + s];
        db[ch] += (float)acc;
    }
}

void cuda_relu_mask_bias_grad(cuda_state *st, const float *y, float *dy, float *db, int n, int c, int hw, int relu)
{
    if (n <= 0 || c <= 0 || hw <= 0) return;
    // Split a channel's cells over enough blocks to fill a large GPU on the
    // wide early layers (>= ~16 cells per thread), few on the small late ones;
    // a function of the shape only, so the summation order is fixed.
    size_t per = (size_t)n * hw;
    size_t splits = (per + 16 * THREADS - 1) / (16 * THREADS);
    size_t max_splits = ((size_t)hw + THREADS - 1) / THREADS; // no block without cells in every sample
    if (splits > max_splits) splits = max_splits;
    if (splits > CORE_CUDA_BIAS_SPLITS_MAX) splits = CORE_CUDA_BIAS_SPLITS_MAX;
    if (splits < 1) splits = 1;
    size_t need = (size_t)c * splits * sizeof(double);
    double *partial = (double *)cuda_scratch(st, CUDA_SCRATCH_BIAS, need);
    dim3 grid((unsigned)c, (unsigned)splits);
    k_mask_bias_partial<<<grid, THREADS, 0, st->stream>>>(y, dy, n, c, hw, relu, (int)splits, partial);
    CUDA_LAUNCH_CHECK();
    k_bias_finish<<<cuda_grid((size_t)c, THREADS), THREADS, 0, st->stream>>>(partial, c, (int)splits, db);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- channel copies

__global__ void k_copy_channels_add(int n, int hw, const float *src, int src_c, int src_off, float *dst, int dst_c,
                                    int dst_off, int count)
{
    size_t plane = (size_t)count * hw, total = plane * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t s = i / plane, k = i - s * plane;
        dst[(s * dst_c + dst_off) * hw + k] += src[(s * src_c + src_off) * hw + k];
    }
}

void cuda_copy_channels(core_backend *be, int n, int hw, const float *src, int src_c, int src_off, float *dst,
                        int dst_c, int dst_off, int count, int accumulate)
{
    cuda_state *st = cuda_enter(be);
    if (n <= 0 || hw <= 0 || count <= 0) return;
    if (!accumulate) {
        // n rows of count*hw floats, rows src_c*hw / dst_c*hw apart: one strided copy.
        CUDA_CHECK(cudaMemcpy2DAsync(dst + (size_t)dst_off * hw, (size_t)dst_c * hw * sizeof(float),
                                     src + (size_t)src_off * hw, (size_t)src_c * hw * sizeof(float),
                                     (size_t)count * hw * sizeof(float), (size_t)n, cudaMemcpyDeviceToDevice,
                                     st->stream));
        return;
    }
    size_t total = (size_t)n * count * hw;
    k_copy_channels_add<<<cuda_grid(total, THREADS), THREADS, 0, st->stream>>>(n, hw, src, src_c, src_off, dst, dst_c,
                                                                               dst_off, count);
    CUDA_LAUNCH_CHECK();
}

// ---------------------------------------------------------------- batch norm and ReLU
// Same semantics as the CPU kernels (core/backend.h); the per-channel sums use
// the bias gradient's fixed (channel, split) partials, so they are repeatable.

__global__ void k_chan_sums_partial(const float *a, const float *b, int n, int c, int hw, int splits,
                                    double *partial)
{
    int ch = blockIdx.x, s = blockIdx.y;
    double sa = 0, sab = 0;
    for (int nn = 0; nn < n; nn++) {
        size_t base = ((size_t)nn * c + ch) * hw;
        for (int i = s * THREADS + threadIdx.x; i < hw; i += splits * THREADS) {
            double va = a[base + i];
            sa += va;
            sab += va * (double)b[base + i];
        }
    }
    double t = block_sum(sa);
    __syncthreads(); // block_sum's shared array is reused
    double u = block_sum(sab);
    if (threadIdx.x == 0) {
        partial[((size_t)ch * splits + s) * 2] = t;
        partial[((size_t)ch * splits + s) * 2 + 1] = u;
    }
}

__global__ void k_chan_sums_finish(const double *partial, int c, int splits, double *out)
{
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < c; ch += gridDim.x * blockDim.x) {
        double sa = 0, sab = 0;
        for (int s = 0; s < splits; s++) {
            sa += partial[((size_t)ch * splits + s) * 2];
            sab += partial[((size_t)ch * splits + s) * 2 + 1];
        }
        out[ch] = sa;
        out[c + ch] = sab;
    }
}

void cuda_chan_sums(core_backend *be, int n, int c, int hw, const float *a, const float *b, double *out)
{
    cuda_state *st = cuda_enter(be);
    if (c <= 0) return;
    if (n <= 0 || hw <= 0) {
        CUDA_CHECK(cudaMemsetAsync(out, 0, 2 * (size_t)c * sizeof(double), st->stream));
        return;
    }
    size_t per = (size_t)n * hw;
    size_t splits = (per + 16 * THREADS - 1) / (16 * THREADS);
    size_t max_splits = ((size_t)hw + THREADS - 1) / THREADS;
    if (splits > max_splits) splits = max_splits;
    if (splits > CORE_CUDA_BIAS_SPLITS_MAX) splits = CORE_CUDA_BIAS_SPLITS_MAX;
    if (splits < 1) splits = 1;
    size_t npart = (size_t)c * splits * 2;
    double *partial = (double *)cuda_scratch(st, CUDA_SCRATCH_CHAN, npart * sizeof(double));
    dim3 grid((unsigned)c, (unsigned)splits);
    k_chan_sums_partial<<<grid, THREADS, 0, st->stream>>>(a, b, n, c, hw, (int)splits, partial);
    CUDA_LAUNCH_CHECK();
    // straight into the caller's device buffer: the statistics are made on the device too (bn_step)
    k_chan_sums_finish<<<cuda_grid((size_t)c, THREADS), THREADS, 0, st->stream>>>(partial, c, (int)splits, out);
    CUDA_LAUNCH_CHECK();
}

// core/bn_math.h, one thread per channel.
__global__ void k_bn_step(core_bn_phase phase, const core_bn_args a)
{
    for (int ch = blockIdx.x * blockDim.x + threadIdx.x; ch < a.c; ch += gridDim.x * blockDim.x)
        core_bn_channel(phase, &a, ch);
}

void cuda_bn_step(core_backend *be, core_bn_phase phase, const core_bn_args *a)
{
    cuda_state *st = cuda_enter(be);
    if (a->c <= 0) return;
    k_bn_step<<<cuda_grid((size_t)a->c, THREADS), THREADS, 0, st->stream>>>(phase, *a);
    CUDA_LAUNCH_CHECK();
}

__global__ void k_chan_affine(const float *x, const float *scale, const float *shift, int relu, float *y, int planes,
                              int c, int hw)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        int ch = plane % c;
        float a = scale[ch], s = shift[ch];
        const float *xr = x + (size_t)plane * hw;
        float *yr = y + (size_t)plane * hw;
        for (int i = blockIdx.x * THREADS + threadIdx.x; i < hw; i += gridDim.x * THREADS) {
            float v = __fadd_rn(__fmul_rn(a, xr[i]), s);
            yr[i] = relu ? (v > 0 ? v : 0.0f) : v;
        }
    }
}

void cuda_chan_affine(core_backend *be, int n, int c, int hw, const float *x, const float *scale, const float *shift,
                      int relu, float *y)
{
    cuda_state *st = cuda_enter(be);
    size_t planes = (size_t)n * c;
    if (!planes || hw <= 0) return;
    CHECK(planes < ((size_t)1 << 31), "batch norm input has too many planes (%zu)", planes);
    k_chan_affine<<<plane_grid(planes, hw), THREADS, 0, st->stream>>>(x, scale, shift, relu, y, (int)planes, c, hw);
    CUDA_LAUNCH_CHECK();
}

__global__ void k_chan_affine_grad(const float *dy, const float *x, const float *coef, float *dx, int planes, int c,
                                   int hw)
{
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        int ch = plane % c;
        float A = coef[ch], B = coef[c + ch], M = coef[2 * c + ch], C = coef[3 * c + ch];
        const float *dyr = dy + (size_t)plane * hw, *xr = x + (size_t)plane * hw;
        float *dxr = dx + (size_t)plane * hw;
        // the CPU's expression tree, without FMA contraction: the same bits
        for (int i = blockIdx.x * THREADS + threadIdx.x; i < hw; i += gridDim.x * THREADS) {
            float t = __fadd_rn(__fadd_rn(__fmul_rn(A, dyr[i]), __fmul_rn(B, __fsub_rn(xr[i], M))), C);
            dxr[i] = __fadd_rn(dxr[i], t);
        }
    }
}

void cuda_chan_affine_grad(core_backend *be, int n, int c, int hw, const float *dy, const float *x, const float *coef,
                           float *dx)
{
    cuda_state *st = cuda_enter(be);
    size_t planes = (size_t)n * c;
    if (!planes || hw <= 0) return;
    CHECK(planes < ((size_t)1 << 31), "batch norm input has too many planes (%zu)", planes);
    k_chan_affine_grad<<<plane_grid(planes, hw), THREADS, 0, st->stream>>>(dy, x, coef, dx, (int)planes, c, hw);
    CUDA_LAUNCH_CHECK();
}

__global__ void k_relu_mask(const float *y, float *dy, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!(y[i] > 0)) dy[i] = 0.0f;
}

void cuda_relu_mask(core_backend *be, size_t n, const float *y, float *dy)
{
    cuda_state *st = cuda_enter(be);
    if (!n) return;
    k_relu_mask<<<cuda_grid(n, THREADS), THREADS, 0, st->stream>>>(y, dy, n);
    CUDA_LAUNCH_CHECK();
}
