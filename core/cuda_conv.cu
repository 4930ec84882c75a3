// Convolutions on cuDNN, with the op interface's semantics (core/backend.h):
// stride 1, "same" zero padding, cross-correlation (Caffe/PyTorch weights
// [out,in,kh,kw]), forward y = act(conv(x) + b), backward accumulating into
// dx, dw and db (cuDNN's beta = 1).
//
// Plans: one per (shape, data type, math mode, determinism), holding the
// descriptors and, chosen on first use of each direction, the algorithm.
// One policy for training, the benchmark and the tests:
//   - a timed search (cudnnFind*AlgorithmEx on the layer's own operands and
//     our workspace; outputs go to scratch, so accumulated gradients are
//     untouched) over every algorithm cuDNN offers: the fastest that is
//     CUDNN_DETERMINISTIC (unless the deterministic flag is off) and fits the
//     workspace wins. It runs once per (shape, direction) for the process.
//   - every choice is recorded (core_cuda_algos_save), and a recorded choice
//     is used without timing (core_cuda_algos_load): the trainer keeps them
//     in the run directory, and rank 0's choices reach every rank through
//     the agree hook, so all ranks and every resume run the same algorithms
//     and a resumed run continues bitwise.
// The workspace is comm.cudnn_workspace_mb, allocated once (cuda_backend.cu).
// Result arrays are sized by cudnnGet*AlgorithmMaxCount: cuDNN may return
// several math-type variants of one algorithm.
// Math: with tf32 off the descriptor is CUDNN_FMA_MATH (true fp32, no
// tensor-core TF32) and only results cuDNN reports as CUDNN_FMA_MATH are
// accepted; with tf32 on it is CUDNN_DEFAULT_MATH, which lets cuDNN offer
// TF32 tensor-core kernels on Ampere and later (PyTorch's mapping of
// allow_tf32). cuDNN's search returns (algorithm, math type) pairs and the
// pair only behaves as timed with that math type on the descriptor, so each
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
#include <stdio.h>
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

// First acceptable result of a cuDNN search (results come ranked fastest first).
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

enum { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };
static const char *const dir_names[3] = {"fwd", "bwd-data", "bwd-filter"};

static void plan_log(int dir, const cuda_conv_plan *p, int algo, int math, float ms, size_t ws)
{
    if (!plan_log_enabled()) return;
    core_info("cudnn %s n=%d cin=%d h=%d w=%d cout=%d k=%d tf32=%d det=%d: algo %d math %d, %s%.3f ms, workspace "
              "%.1f MiB",
              dir_names[dir], p->n, p->cin, p->h, p->w, p->cout, p->k, p->tf32, p->deterministic, algo, math,
              ms < 0 ? "recorded, " : "timed ", ms < 0 ? 0.0 : ms, ws / 1048576.0);
}

#define NO_ALGO(dir, p)                                                                                             \
    CORE_DIE("cuDNN offers no %s%s convolution algorithm within %.0f MiB of workspace for n=%d cin=%d h=%d w=%d "  \
             "cout=%d k=%d: raise comm.cudnn_workspace_mb or lower train.batch",                                   \
             dir, (p)->deterministic ? " deterministic" : "", st->ws_limit / 1048576.0, (p)->n, (p)->cin, (p)->h,   \
             (p)->w, (p)->cout, (p)->k)

static void algo_key(const cuda_state *st, const cuda_conv_plan *p, int dir, char *key, size_t cap)
{
    // The workspace limit is part of the key: it decides which algorithms were candidates.
    snprintf(key, cap, "%s n=%d cin=%d h=%d w=%d cout=%d k=%d tf32=%d det=%d ws=%zu", dir_names[dir], p->n, p->cin,
             p->h, p->w, p->cout, p->k, p->tf32, p->deterministic, st->ws_limit >> 20);
}

static cuda_algo_choice *algo_find(cuda_state *st, const char *key)
{
    for (int i = 0; i < st->nalgos; i++)
        if (!strcmp(st->algos[i].key, key)) return &st->algos[i];
    return NULL;
}

static void algo_put(cuda_state *st, const char *key, int algo, int math)
{
    cuda_algo_choice *c = algo_find(st, key);
    if (!c) {
        if (st->nalgos == st->cap_algos) {
            st->cap_algos = st->cap_algos ? 2 * st->cap_algos : 64;
            st->algos = (cuda_algo_choice *)core_realloc(st->algos, st->cap_algos * sizeof *st->algos);
        }
        c = &st->algos[st->nalgos++];
        snprintf(c->key, sizeof c->key, "%s", key);
    }
    c->algo = algo;
    c->math = math;
}

// "KEY algo=A math=M" -> key, algo, math; 0 on success.
static int algo_parse(const char *line, char *key, size_t cap, int *algo, int *math)
{
    const char *at = strstr(line, " algo=");
    if (!at || at == line || (size_t)(at - line) >= cap) return -1;
    if (strncmp(line, "fwd ", 4) && strncmp(line, "bwd-data ", 9) && strncmp(line, "bwd-filter ", 11)) return -1;
    memcpy(key, line, at - line);
    key[at - line] = 0;
    char tail;
    if (sscanf(at, " algo=%d math=%d %c", algo, math, &tail) != 2) return -1;
    if (*algo < 0 || *algo > 64 || *math < (int)CUDNN_DEFAULT_MATH || *math > (int)CUDNN_FMA_MATH) return -1;
    return 0;
}

// The timed searches differ only in cuDNN's function names and argument
// order. `out` receives arbitrary values (a scratch buffer, or the forward's
// own output, which the forward then overwrites).
static void time_fwd(cuda_state *st, cuda_conv_plan *p, const float *x, const float *w, float *out, int *algo,
                     cudnnMathType_t *math, float *ms)
{
    int max = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(st->cudnn, &max));
    cudnnConvolutionFwdAlgoPerf_t *perf = (cudnnConvolutionFwdAlgoPerf_t *)core_calloc(max, sizeof *perf);
    void *ws = cuda_workspace(st, 0);
    CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(st->cudnn, p->xd, x, p->wd, w, p->cd, p->yd, out, max, &got,
                                                       perf, ws, st->ws_limit));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("forward", p);
    *algo = (int)perf[i].algo, *math = perf[i].mathType, *ms = perf[i].time;
    free(perf);
}

static void time_bwd_data(cuda_state *st, cuda_conv_plan *p, const float *w, const float *dy, float *out, int *algo,
                          cudnnMathType_t *math, float *ms)
{
    int max = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(st->cudnn, &max));
    cudnnConvolutionBwdDataAlgoPerf_t *perf = (cudnnConvolutionBwdDataAlgoPerf_t *)core_calloc(max, sizeof *perf);
    void *ws = cuda_workspace(st, 0);
    CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(st->cudnn, p->wd, w, p->yd, dy, p->cd, p->xd, out, max,
                                                            &got, perf, ws, st->ws_limit));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("backward-data", p);
    *algo = (int)perf[i].algo, *math = perf[i].mathType, *ms = perf[i].time;
    free(perf);
}

static void time_bwd_filter(cuda_state *st, cuda_conv_plan *p, const float *x, const float *dy, float *out, int *algo,
                            cudnnMathType_t *math, float *ms)
{
    int max = 0, got = 0;
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(st->cudnn, &max));
    cudnnConvolutionBwdFilterAlgoPerf_t *perf = (cudnnConvolutionBwdFilterAlgoPerf_t *)core_calloc(max, sizeof *perf);
    void *ws = cuda_workspace(st, 0);
    CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(st->cudnn, p->xd, x, p->yd, dy, p->cd, p->wd, out, max,
                                                              &got, perf, ws, st->ws_limit));
    int i = pick(perf, got, st, p);
    if (i < 0) NO_ALGO("backward-filter", p);
    *algo = (int)perf[i].algo, *math = perf[i].mathType, *ms = perf[i].time;
    free(perf);
}

// Operands of one direction for its timed search: the two inputs (aligned)
// and where the search may write (scratch, or the forward's output).
typedef struct {
    const float *a, *b;
    float *out;
} search_io;

// The (algorithm, math) of one direction: recorded, or timed now and passed
// through the agree hook. Sets the plan's fields and the workspace it needs.
static void choose(cuda_state *st, cuda_conv_plan *p, int dir, const search_io *io)
{
    char key[sizeof st->algos[0].key];
    algo_key(st, p, dir, key, sizeof key);
    cuda_algo_choice *c = algo_find(st, key);
    float ms = -1;
    if (!c) {
        int algo = 0, math = 0;
        cudnnMathType_t found = base_math(p);
        CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, base_math(p))); // another direction may have changed it
        if (dir == DIR_FWD) time_fwd(st, p, io->a, io->b, io->out, &algo, &found, &ms);
        else if (dir == DIR_BWD_DATA) time_bwd_data(st, p, io->a, io->b, io->out, &algo, &found, &ms);
        else time_bwd_filter(st, p, io->a, io->b, io->out, &algo, &found, &ms);
        char line[CORE_CUDA_ALGO_LINE];
        snprintf(line, sizeof line, "%s algo=%d math=%d", key, algo, (int)run_math(p, found));
        if (st->agree) st->agree(st->agree_ctx, line, sizeof line);
        char got_key[sizeof key];
        CHECK(algo_parse(line, got_key, sizeof got_key, &algo, &math) == 0, "cuDNN algorithm agreement: bad line '%s'",
              line);
        CHECK(!strcmp(got_key, key),
              "cuDNN algorithm agreement: this rank needs '%s' but was sent '%s' (ranks run different networks?)", key,
              got_key);
        algo_put(st, key, algo, math);
        c = algo_find(st, key);
    }
    cudnnMathType_t math = (cudnnMathType_t)c->math;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, math)); // the workspace size depends on it
    size_t ws = 0;
    if (dir == DIR_FWD) {
        p->fwd = (cudnnConvolutionFwdAlgo_t)c->algo, p->fwd_math = math;
        CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(st->cudnn, p->xd, p->wd, p->cd, p->yd, p->fwd, &ws));
        p->fwd_ws = ws, p->have_fwd = 1;
    } else if (dir == DIR_BWD_DATA) {
        p->bwd_data = (cudnnConvolutionBwdDataAlgo_t)c->algo, p->bwd_data_math = math;
        CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(st->cudnn, p->wd, p->yd, p->cd, p->xd, p->bwd_data,
                                                                 &ws));
        p->bwd_data_ws = ws, p->have_bwd_data = 1;
    } else {
        p->bwd_filter = (cudnnConvolutionBwdFilterAlgo_t)c->algo, p->bwd_filter_math = math;
        CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(st->cudnn, p->xd, p->yd, p->cd, p->wd,
                                                                   p->bwd_filter, &ws));
        p->bwd_filter_ws = ws, p->have_bwd_filter = 1;
    }
    CHECK(ws <= st->ws_limit,
          "cuDNN %s algorithm %d for %s needs %.1f MiB of workspace, comm.cudnn_workspace_mb allows %.0f (recorded "
          "under a larger value?)",
          dir_names[dir], c->algo, key, ws / 1048576.0, st->ws_limit / 1048576.0);
    plan_log(dir, p, c->algo, (int)math, ms, ws);
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
    size_t nx = (size_t)s->n * s->cin * s->h * s->w, ny = (size_t)s->n * s->cout * s->h * s->w;
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    const float *xa = aligned_in(st, 0, x, nx), *wa = aligned_in(st, 1, w, nw);
    float *ya = misaligned(y) ? (float *)cuda_scratch(st, 3, ny * sizeof(float)) : y;
    if (!p->have_fwd) {
        search_io io = {xa, wa, ya};
        choose(st, p, DIR_FWD, &io);
    }
    void *ws = p->fwd_ws ? cuda_workspace(st, p->fwd_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->fwd_math));
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
    size_t nx = (size_t)s->n * s->cin * s->h * s->w, ny = (size_t)s->n * s->cout * s->h * s->w;
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    const float *xa = aligned_in(st, 0, x, nx), *dya = aligned_in(st, 2, dy, ny);
    if (!p->have_bwd_filter) {
        search_io io = {xa, dya, (float *)cuda_scratch(st, 3, nw * sizeof(float))};
        choose(st, p, DIR_BWD_FILTER, &io);
    }
    void *ws = p->bwd_filter_ws ? cuda_workspace(st, p->bwd_filter_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_filter_math));
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
    const float *wa = aligned_in(st, 1, w, nw);
    if (!p->have_bwd_data) {
        search_io io = {wa, dya, (float *)cuda_scratch(st, 3, nx * sizeof(float))};
        choose(st, p, DIR_BWD_DATA, &io);
    }
    ws = p->bwd_data_ws ? cuda_workspace(st, p->bwd_data_ws) : NULL;
    CUDNN_CHECK(cudnnSetConvolutionMathType(p->cd, p->bwd_data_math));
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

// ---------------------------------------------------------------- recorded choices

extern "C" void core_cuda_set_algo_agree(core_backend *be, core_cuda_algo_agree_fn fn, void *ctx)
{
    if (!be || be->dev != CORE_DEV_CUDA) return;
    cuda_state *st = cuda_st(be);
    st->agree = fn;
    st->agree_ctx = ctx;
}

extern "C" char *core_cuda_algos_save(core_backend *be)
{
    if (!be || be->dev != CORE_DEV_CUDA) return NULL;
    cuda_state *st = cuda_st(be);
    size_t cap = (size_t)st->nalgos * CORE_CUDA_ALGO_LINE + 1, len = 0;
    char *text = (char *)core_malloc(cap);
    text[0] = 0;
    for (int i = 0; i < st->nalgos; i++)
        len += snprintf(text + len, cap - len, "%s algo=%d math=%d\n", st->algos[i].key, st->algos[i].algo,
                        st->algos[i].math);
    return text;
}

extern "C" int core_cuda_algos_load(core_backend *be, const char *text, const char *what)
{
    if (!be || be->dev != CORE_DEV_CUDA) return 0;
    cuda_state *st = cuda_st(be);
    int count = 0, lineno = 0;
    for (const char *at = text; *at;) {
        const char *end = strchr(at, '\n');
        size_t len = end ? (size_t)(end - at) : strlen(at);
        lineno++;
        char line[CORE_CUDA_ALGO_LINE], key[sizeof st->algos[0].key];
        int algo = 0, math = 0;
        CHECK(len < sizeof line, "%s:%d: line too long for a cuDNN algorithm choice", what, lineno);
        memcpy(line, at, len);
        line[len] = 0;
        if (len) {
            CHECK(algo_parse(line, key, sizeof key, &algo, &math) == 0,
                  "%s:%d: not a cuDNN algorithm choice ('%s'); delete the file to search again", what, lineno, line);
            algo_put(st, key, algo, math);
            count++;
        }
        at += len + (end ? 1 : 0);
    }
    return count;
}
