// Convolutions on cuDNN, with the op interface's semantics (core/backend.h):
// stride 1, "same" zero padding, cross-correlation (Caffe/PyTorch weights
// [out,in,kh,kw]), forward y = act(conv(x) + b), backward accumulating into
// dx, dw and db (cuDNN's beta = 1).
//
// Plans: one per (shape, data type, math mode, determinism), holding the
// descriptors and, chosen on first use of each direction, the algorithm:
//   - deterministic flag set (the default): cuDNN's heuristic ranking
//     (cudnnGetConvolution*Algorithm_v7), first entry that is
//     CUDNN_DETERMINISTIC and fits the workspace limit. No timing is
//     involved, so every process on the same GPU model and cuDNN version
//     picks the same algorithms and a run is bitwise repeatable (and a
//     resumed run continues bitwise). Backward-filter ALGO_0/ALGO_3 and
//     backward-data ALGO_0 (atomics) are never chosen.
//   - deterministic flag off: cuDNN's timing search
//     (cudnnFindConvolution*Algorithm, like PyTorch's cudnn.benchmark), the
//     fastest algorithm that fits the workspace limit, atomics allowed.
// The workspace limit is a quarter of the free memory at backend creation,
// at most 2 GiB. The choice is made once per shape for the process lifetime.
// Math: with tf32 off the descriptor is CUDNN_FMA_MATH (true fp32, no
// tensor-core TF32) and only results cuDNN reports as CUDNN_FMA_MATH are
// accepted; with tf32 on it is CUDNN_DEFAULT_MATH, which lets cuDNN offer
// TF32 tensor-core kernels on Ampere and later (PyTorch's mapping of
// allow_tf32). cuDNN's search returns (algorithm, math type) pairs and the
// pair only behaves as ranked with that math type on the descriptor, so each
// direction remembers its math type and sets it before running.
//
// Alignment: the op interface allows any float pointer (the model aligns its
// buffers to 256 bytes, but callers are not bound to), while some cuDNN
// kernels want 16-byte aligned operands and the algorithm was chosen without
// looking at the pointers. A misaligned operand is therefore staged through
// an aligned scratch buffer: inputs are copied in, outputs are computed there
// (beta = 0) and then copied or added to their place (an exact float add, as
// cuDNN's beta = 1 would do). Aligned pointers, the normal case, cost nothing.
//
// Bias and ReLU are our own kernels (cuda_ops.cu): cuDNN's fused
// bias+activation forward supports ReLU on one algorithm only, and our
// bias-gradient reduction is deterministic by construction.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda_impl.h"

struct cuda_conv_plan {
    // key
    int n, cin, h, w, cout, k;
    cudnnDataType_t dtype; // fp32 today; the key already separates a later fp16/bf16 path
    int tf32, deterministic;

    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;

    int have_fwd, have_bwd_data, have_bwd_filter;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    size_t fwd_ws, bwd_data_ws, bwd_filter_ws; // bytes, as cuDNN reports for the chosen algorithm
    cudnnMathType_t fwd_math, bwd_data_math, bwd_filter_math;
};

// The math type a search starts from, and the one a chosen algorithm runs with.
static cudnnMathType_t base_math(const cuda_conv_plan *p) { return p->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH; }
static cudnnMathType_t run_math(const cuda_conv_plan *p, cudnnMathType_t found)
{
    return p->tf32 ? found : CUDNN_FMA_MATH;
}

static int plan_log_enabled(void)
{
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("SSPOSE_CUDNN_LOG");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

static cuda_conv_plan *plan_create(cuda_state *st, const core_conv_shape *s)
{
    CHECK(s->k >= 1 && (s->k & 1), "convolution kernel size must be odd, got %d", s->k);
    CHECK(s->n > 0 && s->cin > 0 && s->cout > 0 && s->h > 0 && s->w > 0,
          "convolution shape must be positive (n=%d cin=%d h=%d w=%d cout=%d)", s->n, s->cin, s->h, s->w, s->cout);
    cuda_conv_plan *p = (cuda_conv_plan *)core_calloc(1, sizeof *p);
    p->n = s->n; p->cin = s->cin; p->h = s->h; p->w = s->w; p->cout = s->cout; p->k = s->k;
    p->dtype = CUDNN_DATA_FLOAT;
    p->tf32 = st->tf32;
    p->deterministic = st->deterministic;
    int pad = s->k / 2;
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->xd));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->yd));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->wd));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->cd));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->xd, CUDNN_TENSOR_NCHW, p->dtype, s->n, s->cin, s->h, s->w));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->yd, CUDNN_TENSOR_NCHW, p->dtype, s->n, s->cout, s->h, s->w));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->wd, p->dtype, CUDNN_TENSOR_NCHW, s->cout, s->cin, s->k, s->k));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->cd, pad, pad, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math(p)));
    return p;
}

static void plan_destroy(cuda_conv_plan *p)
{
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->xd));
    CUDNN_CHECK(cudnnDestroyTensorDescriptor(p->yd));
    CUDNN_CHECK(cudnnDestroyFilterDescriptor(p->wd));
    CUDNN_CHECK(cudnnDestroyConvolutionDescriptor(p->cd));
    free(p);
}

static cuda_conv_plan *plan_get(cuda_state *st, const core_conv_shape *s)
{
    for (int i = 0; i < st->nplans; i++) {
        cuda_conv_plan *p = st->plans[i];
        if (p->n == s->n && p->cin == s->cin && p->h == s->h && p->w == s->w && p->cout == s->cout && p->k == s->k &&
            p->dtype == CUDNN_DATA_FLOAT && p->tf32 == st->tf32 && p->deterministic == st->deterministic)
            return p;
    }
    if (st->nplans == st->cap_plans) {
        st->cap_plans = st->cap_plans ? 2 * st->cap_plans : 32;
        st->plans = (cuda_conv_plan **)core_realloc(st->plans, st->cap_plans * sizeof *st->plans);
    }
    cuda_conv_plan *p = plan_create(st, s);
    st->plans[st->nplans++] = p;
    return p;
}

void cuda_conv_cache_free(cuda_state *st)
{
    for (int i = 0; i < st->nplans; i++) plan_destroy(st->plans[i]);
    free(st->plans);
    st->plans = NULL;
    st->nplans = st->cap_plans = 0;
}

// First acceptable result of a cuDNN search (results come ranked best first).
// With tf32 off, results labelled CUDNN_FMA_MATH are preferred; should a cuDNN
// version label its plain-fp32 algorithms otherwise, the descriptor stays
// CUDNN_FMA_MATH anyway (see base_math/run_math), so no TF32 slips in.
template <typename Perf>
static int pick(const Perf *perf, int got, const cuda_state *st, const cuda_conv_plan *p)
{
    for (int strict = 1; strict >= 0; strict--)
        for (int i = 0; i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (perf[i].memory > st->ws_limit) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (strict && !p->tf32 && perf[i].mathType != CUDNN_FMA_MATH) continue;
            return i;
        }
    return -1;
}

static void plan_log(const char *dir, const cuda_conv_plan *p, int algo, float ms, size_t ws)
{
    if (!plan_log_enabled()) return;
    core_info("cudnn %s n=%d cin=%d h=%d w=%d cout=%d k=%d tf32=%d det=%d: algo %d, %.3f ms, workspace %.1f MiB", dir,
              p->n, p->cin, p->h, p->w, p->cout, p->k, p->tf32, p->deterministic, algo, ms, ws / 1048576.0);
}

#define NO_ALGO(dir, p)                                                                                             \
    CORE_DIE("cuDNN offers no %s%s convolution algorithm within %.0f MiB of workspace for n=%d cin=%d h=%d w=%d "  \
             "cout=%d k=%d: lower train.batch or model.input",                                                     \
             dir, (p)->deterministic ? " deterministic" : "", st->ws_limit / 1048576.0, (p)->n, (p)->cin, (p)->h,   \
             (p)->w, (p)->cout, (p)->k)

// The three searches differ only in cuDNN's function names and argument order.
static void find_fwd(cuda_state *st, cuda_conv_plan *p)
{
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    const int want = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
    int got = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math(p))); // another direction may have changed it
    if (p->deterministic)
        CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(st->cudnn, p->xd, p->wd, p->cd, p->yd, want, &got, perf));
    else
        CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithm(st->cudnn, p->xd, p->wd, p->cd, p->yd, want, &got, perf));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("forward", p);
    p->fwd = perf[i].algo;
    p->fwd_math = run_math(p, perf[i].mathType);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->fwd_math)); // the workspace size depends on it
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(st->cudnn, p->xd, p->wd, p->cd, p->yd, p->fwd, &p->fwd_ws));
    p->have_fwd = 1;
    plan_log("fwd", p, (int)p->fwd, perf[i].time, p->fwd_ws);
}

static void find_bwd_data(cuda_state *st, cuda_conv_plan *p)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    const int want = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
    int got = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math(p))); // another direction may have changed it
    if (p->deterministic)
        CUDNN_CHECK(
            cudnnGetConvolutionBackwardDataAlgorithm_v7(st->cudnn, p->wd, p->yd, p->cd, p->xd, want, &got, perf));
    else
        CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithm(st->cudnn, p->wd, p->yd, p->cd, p->xd, want, &got, perf));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("backward-data", p);
    p->bwd_data = perf[i].algo;
    p->bwd_data_math = run_math(p, perf[i].mathType);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_data_math)); // the workspace size depends on it
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(st->cudnn, p->wd, p->yd, p->cd, p->xd, p->bwd_data,
                                                             &p->bwd_data_ws));
    p->have_bwd_data = 1;
    plan_log("bwd-data", p, (int)p->bwd_data, perf[i].time, p->bwd_data_ws);
}

static void find_bwd_filter(cuda_state *st, cuda_conv_plan *p)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    const int want = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
    int got = 0;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math(p))); // another direction may have changed it
    if (p->deterministic)
        CUDNN_CHECK(
            cudnnGetConvolutionBackwardFilterAlgorithm_v7(st->cudnn, p->xd, p->yd, p->cd, p->wd, want, &got, perf));
    else
        CUDNN_CHECK(
            cudnnFindConvolutionBackwardFilterAlgorithm(st->cudnn, p->xd, p->yd, p->cd, p->wd, want, &got, perf));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("backward-filter", p);
    p->bwd_filter = perf[i].algo;
    p->bwd_filter_math = run_math(p, perf[i].mathType);
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_filter_math)); // the workspace size depends on it
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(st->cudnn, p->xd, p->yd, p->cd, p->wd, p->bwd_filter,
                                                               &p->bwd_filter_ws));
    p->have_bwd_filter = 1;
    plan_log("bwd-filter", p, (int)p->bwd_filter, perf[i].time, p->bwd_filter_ws);
}

static int misaligned(const void *p) { return ((uintptr_t)p & 15) != 0; }

// An aligned view of the read-only operand p (n floats), staged in `slot` when needed.
static const float *aligned_in(cuda_state *st, int slot, const float *p, size_t n)
{
    if (!misaligned(p)) return p;
    float *t = (float *)cuda_scratch(st, slot, n * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(t, p, n * sizeof(float), cudaMemcpyDeviceToDevice, st->stream));
    return t;
}

void cuda_conv_forward(core_backend *be, const core_conv_shape *s, const float *x, const float *w, const float *b,
                       float *y)
{
    cuda_state *st = cuda_enter(be);
    cuda_conv_plan *p = plan_get(st, s);
    if (!p->have_fwd) find_fwd(st, p);
    void *ws = p->fwd_ws ? cuda_workspace(st, p->fwd_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->fwd_math));
    size_t nx = (size_t)s->n * s->cin * s->h * s->w, ny = (size_t)s->n * s->cout * s->h * s->w;
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    const float *xa = aligned_in(st, 0, x, nx), *wa = aligned_in(st, 1, w, nw);
    float *ya = misaligned(y) ? (float *)cuda_scratch(st, 3, ny * sizeof(float)) : y;
    const float one = 1.0f, zero = 0.0f;
    CUDNN_CHECK(cudnnConvolutionForward(st->cudnn, &one, p->xd, xa, p->wd, wa, p->cd, p->fwd, ws, p->fwd_ws, &zero,
                                        p->yd, ya));
    if (ya != y) CUDA_CHECK(cudaMemcpyAsync(y, ya, ny * sizeof(float), cudaMemcpyDeviceToDevice, st->stream));
    cuda_bias_act(st, y, b, s->n, s->cout, s->h * s->w, s->relu);
}

void cuda_conv_backward(core_backend *be, const core_conv_shape *s, const float *x, const float *w, const float *y,
                        float *dy, float *dx, float *dw, float *db)
{
    cuda_state *st = cuda_enter(be);
    cuda_conv_plan *p = plan_get(st, s);
    // dy becomes the gradient at the pre-activation (in place, as on the CPU) and db accumulates its sums.
    cuda_relu_mask_bias_grad(st, y, dy, db, s->n, s->cout, s->h * s->w, s->relu);
    const float one = 1.0f;
    if (!p->have_bwd_filter) find_bwd_filter(st, p);
    void *ws = p->bwd_filter_ws ? cuda_workspace(st, p->bwd_filter_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_filter_math));
    size_t nx = (size_t)s->n * s->cin * s->h * s->w, ny = (size_t)s->n * s->cout * s->h * s->w;
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    const float *xa = aligned_in(st, 0, x, nx), *dya = aligned_in(st, 2, dy, ny);
    const float zero = 0.0f;
    if (!misaligned(dw)) {
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(st->cudnn, &one, p->xd, xa, p->yd, dya, p->cd, p->bwd_filter, ws,
                                                   p->bwd_filter_ws, &one, p->wd, dw));
    } else {
        float *t = (float *)cuda_scratch(st, 3, nw * sizeof(float));
        CUDNN_CHECK(cudnnConvolutionBackwardFilter(st->cudnn, &one, p->xd, xa, p->yd, dya, p->cd, p->bwd_filter, ws,
                                                   p->bwd_filter_ws, &zero, p->wd, t));
        cuda_axpy(be, 1.0f, t, dw, nw);
    }
    if (!dx) return;
    if (!p->have_bwd_data) find_bwd_data(st, p);
    ws = p->bwd_data_ws ? cuda_workspace(st, p->bwd_data_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_data_math));
    const float *wa = aligned_in(st, 1, w, nw);
    if (!misaligned(dx)) {
        CUDNN_CHECK(cudnnConvolutionBackwardData(st->cudnn, &one, p->wd, wa, p->yd, dya, p->cd, p->bwd_data, ws,
                                                 p->bwd_data_ws, &one, p->xd, dx));
    } else {
        float *t = (float *)cuda_scratch(st, 3, nx * sizeof(float));
        CUDNN_CHECK(cudnnConvolutionBackwardData(st->cudnn, &one, p->wd, wa, p->yd, dya, p->cd, p->bwd_data, ws,
                                                 p->bwd_data_ws, &zero, p->xd, t));
        cuda_axpy(be, 1.0f, t, dx, nx);
    }
}
