/* GPU suite: every op of the CUDA backend against the CPU backend (the
 * reference semantics of core/backend.h) on random shapes, including kernel
 * sizes 1, 3 and 7, odd channel counts and batches > 1.
 *
 * Tolerances: convolutions (fp32, TF32 off) max|gpu - cpu| <= 1e-4 * max|cpu|
 * per output tensor (each of y, dx, dw, db on its own) (cuDNN's Winograd/FFT algorithms round differently from
 * im2col+sgemm, so an element-wise bound on near-zero outputs would measure
 * cancellation, not correctness); sumsq 1e-12 relative (both sum in double);
 * element-wise ops, pooling and channel copies must match exactly (the same
 * float expression, no FMA contraction, same tie rule).
 *
 * Without a GPU every test prints "skip - <name>: skipped: no GPU". The
 * program re-executes itself (argv[1] = "--child-...") for the paths that must
 * die with one error line, because a CUDA context does not survive fork(). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/cuda_backend.h"
#include "tests/test.h"

static core_backend *cpu, *gpu;
static const char *self_exe;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float rnd_unit(void) { return (float)(rnd_u32() / 2147483648.0 - 1.0); } /* [-1, 1) */
static int rnd_int(int lo, int hi) { return lo + (int)(rnd_u32() % (uint32_t)(hi - lo + 1)); }

static float *host_rand(size_t n, float scale)
{
    float *h = core_malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = scale * rnd_unit();
    return h;
}

/* A host array in both backends' memory. */
typedef struct { float *h, *c, *g; size_t n; } pair;

static pair pair_from_host(const float *h, size_t n)
{
    pair p = {core_malloc((n ? n : 1) * sizeof(float)), cpu->alloc(cpu, n), gpu->alloc(gpu, n), n};
    memcpy(p.h, h, n * sizeof(float));
    cpu->upload(cpu, p.c, h, n);
    gpu->upload(gpu, p.g, h, n);
    return p;
}
static pair pair_rand(size_t n, float scale)
{
    float *h = host_rand(n, scale);
    pair p = pair_from_host(h, n);
    free(h);
    return p;
}
static void pair_free(pair *p)
{
    if (!p->c) return;
    cpu->free(cpu, p->c);
    gpu->free(gpu, p->g);
    free(p->h);
    memset(p, 0, sizeof *p);
}
static float *gpu_host(const float *g, size_t n)
{
    float *h = core_malloc((n ? n : 1) * sizeof(float));
    gpu->download(gpu, h, g, n);
    return h;
}

/* max|a - ref| / max|ref| (0/0 = 0); NaN when either holds a NaN. */
static double tensor_rel_err(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (isnan(d)) return NAN;
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

/* Both NaN counts as equal; otherwise bitwise value equality. Returns the first mismatch or -1. */
static long first_mismatch(const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(a[i] == b[i] || (isnan(a[i]) && isnan(b[i])))) return (long)i;
    return -1;
}

/* The GPU copy of p against the CPU copy: exact, or tensor-relative within tol. */
#define EXPECT_SAME(p, what) do { float *g_ = gpu_host((p).g, (p).n), *c_ = core_malloc(((p).n ? (p).n : 1) * 4); \
        cpu->download(cpu, c_, (p).c, (p).n); long m_ = first_mismatch(g_, c_, (p).n); \
        T_CHECKF(m_ < 0, "%s: gpu[%ld] = %.9g, cpu = %.9g", what, m_, m_ >= 0 ? g_[m_] : 0.0, m_ >= 0 ? c_[m_] : 0.0); \
        free(g_); free(c_); } while (0)
#define EXPECT_CLOSE(p, tol, ...) do { float *g_ = gpu_host((p).g, (p).n), *c_ = core_malloc(((p).n ? (p).n : 1) * 4); \
        cpu->download(cpu, c_, (p).c, (p).n); double e_ = tensor_rel_err(g_, c_, (p).n); \
        if (!(e_ <= (tol))) { char w_[256]; snprintf(w_, sizeof w_, __VA_ARGS__); \
            T_FAILF("%s: relative error %.3g > %.1g", w_, e_, (double)(tol)); } \
        free(g_); free(c_); } while (0)

#define NEED_GPU() do { if (!gpu) T_SKIP("skipped: no GPU"); } while (0)

/* ------------------------------------------------------------------ the step's guard */

/* Weights, gradient and moments of an optimizer test; v is a second moment (>= 0). */
static void optim_pairs(size_t n, pair *w, pair *g, pair *m, pair *v)
{
    *w = pair_rand(n, 1.0f), *g = pair_rand(n, 0.1f), *m = pair_rand(n, 0.01f), *v = pair_rand(n, 0.01f);
    for (size_t i = 0; i < n; i++) v->h[i] = v->h[i] * v->h[i];
    cpu->upload(cpu, v->c, v->h, n);
    gpu->upload(gpu, v->g, v->h, n);
}

/* Per-parameter sums of squares: each segment within 1e-12 of the CPU's (both
 * in double, different chunking), repeatable bit for bit, a NaN or Inf only in
 * its own segment, and a change of segments rebuilds the chunk table. */
static void gpu_sumsq_segments_match_cpu(void)
{
    NEED_GPU();
    const size_t off[] = {0, 7, 7, 16384, 16385, 300000, 2359296 + 300000};
    const int nseg = 6;
    size_t n = off[nseg];
    pair x = pair_rand(n, 2.0f);
    double *dc = (double *)cpu->alloc(cpu, 2 * nseg), *dg = (double *)gpu->alloc(gpu, 2 * nseg);
    double c[6], g1[6], g2[6];
    cpu->sumsq_segments(cpu, x.c, nseg, off, dc);
    memcpy(c, dc, sizeof c);
    for (int rep = 0; rep < 2; rep++) {
        gpu->sumsq_segments(gpu, x.g, nseg, off, dg);
        gpu->download(gpu, (float *)(rep ? g2 : g1), (const float *)dg, 2 * nseg);
    }
    for (int s = 0; s < nseg; s++) T_NEAR(g1[s], c[s], 1e-12, 0);
    T_CHECKF(!memcmp(g1, g2, sizeof g1), "sumsq_segments not repeatable");
    T_CHECK(g1[1] == 0);
    float bad[2] = {NAN, INFINITY};
    gpu->upload(gpu, x.g + 16384, &bad[0], 1);  /* segment 3 */
    gpu->upload(gpu, x.g + 400000, &bad[1], 1); /* segment 5 */
    gpu->sumsq_segments(gpu, x.g, nseg, off, dg);
    gpu->download(gpu, (float *)g1, (const float *)dg, 2 * nseg);
    T_CHECK(isnan(g1[3]) && isinf(g1[5]) && isfinite(g1[4]) && isfinite(g1[0]));
    const size_t off2[] = {0, 300000, 2359296 + 300000}; /* other segments, same buffer */
    gpu->sumsq_segments(gpu, x.g, 2, off2, dg);
    gpu->download(gpu, (float *)g1, (const float *)dg, 4);
    T_CHECK(isnan(g1[0]) && isinf(g1[1]));
    cpu->free(cpu, (float *)dc);
    gpu->free(gpu, (float *)dg);
    pair_free(&x);
}

/* The guard program's kernels against the CPU's on the same inputs: every
 * field of the state equal, except the bias corrections (CUDA's pow may
 * differ from glibc's by an ulp or two). */
static void gpu_guard_program_matches_cpu(void)
{
    NEED_GPU();
    const int stages = 3, slots = 7, n = 4;
    const size_t nsums = (size_t)stages * slots * n;
    double sums[3 * 7 * 4], sq[5] = {1.5, 2.25, 0, 1e-3, 7};
    for (size_t i = 0; i < nsums; i++) sums[i] = 1e3 * (1.1 + rnd_unit());
    core_step_state init;
    memset(&init, 0, sizeof init);
    init.updates = 41;
    init.skipped = 2;
    double *d[2];  /* sums, sq */
    float *flag[2];
    core_step_state *st[2];
    core_backend *be[2] = {cpu, gpu};
    for (int k = 0; k < 2; k++) {
        d[k] = (double *)be[k]->alloc(be[k], 2 * (nsums + 5));
        be[k]->upload(be[k], (float *)d[k], (const float *)sums, 2 * nsums);
        be[k]->upload(be[k], (float *)(d[k] + nsums), (const float *)sq, 10);
        flag[k] = be[k]->alloc(be[k], 1);
        st[k] = (core_step_state *)be[k]->alloc(be[k], CORE_GUARD_STATE_FLOATS);
        be[k]->upload(be[k], (float *)st[k], (const float *)&init, CORE_GUARD_STATE_FLOATS);
    }
    /* steps: finite and clipped; a NaN loss (skip); finite within the bound */
    for (int step = 1; step <= 3; step++) {
        for (int k = 0; k < 2; k++) {
            core_guard_loss_args la = {d[k], stages, slots, n, 0x5bu, {9, 10, 1, 1, 1, 1, 1}, 1.0 / 46, flag[k]};
            if (step == 2) {
                double nan = NAN;
                be[k]->upload(be[k], (float *)(d[k] + 5), (const float *)&nan, 2);
            }
            if (step == 3) be[k]->upload(be[k], (float *)d[k], (const float *)sums, 2 * nsums);
            be[k]->guard_loss(be[k], &la, st[k]);
            core_guard_args ga = {step, flag[k], d[k] + nsums, 5, step == 3 ? 1e9 : 2.0, 1, 0.9, 0.999, step == 1, 1};
            be[k]->guard_step(be[k], &ga, st[k]);
        }
        core_step_state c, g;
        cpu->download(cpu, (float *)&c, (const float *)st[0], CORE_GUARD_STATE_FLOATS);
        gpu->download(gpu, (float *)&g, (const float *)st[1], CORE_GUARD_STATE_FLOATS);
        T_NEAR(g.bc1, c.bc1, 1e-15, 0);
        T_NEAR(g.bc2, c.bc2, 1e-15, 0);
        g.bc1 = c.bc1, g.bc2 = c.bc2;
        const double *a = (const double *)&c, *b = (const double *)&g;
        for (size_t i = 0; i < sizeof c / sizeof(double); i++)
            T_CHECKF(!memcmp(&a[i], &b[i], sizeof a[i]), "step %d: guard state field %zu: cpu %.17g gpu %.17g", step,
                     i, a[i], b[i]);
    }
    for (int k = 0; k < 2; k++) {
        be[k]->free(be[k], (float *)d[k]);
        be[k]->free(be[k], flag[k]);
        be[k]->free(be[k], (float *)st[k]);
    }
}

/* The optimizer kernels reading a device gate: bit for bit the CPU's, a closed
 * gate changes nothing, Adam's step size from the gate's bias corrections. */
static void gpu_gated_optimizers_match_cpu(void)
{
    NEED_GPU();
    size_t n = 50021;
    pair w, g, m, v;
    optim_pairs(n, &w, &g, &m, &v);
    core_step_state gate;
    memset(&gate, 0, sizeof gate);
    gate.apply = 1, gate.scale = 0.37, gate.updates = 3, gate.bc1 = 1 - pow(0.9, 3), gate.bc2 = 1 - pow(0.999, 3);
    core_step_state *gc = (core_step_state *)cpu->alloc(cpu, CORE_GUARD_STATE_FLOATS),
                    *gg = (core_step_state *)gpu->alloc(gpu, CORE_GUARD_STATE_FLOATS);
    core_adam_args a = {0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1e-4f, 0.99999f, 0, 0, 3e-3};
    for (int round = 0; round < 2; round++) {
        gate.apply = round == 0;
        cpu->upload(cpu, (float *)gc, (const float *)&gate, CORE_GUARD_STATE_FLOATS);
        gpu->upload(gpu, (float *)gg, (const float *)&gate, CORE_GUARD_STATE_FLOATS);
        float *w0 = gpu_host(w.g, n);
        cpu->sgd_step(cpu, gc, n, w.c, g.c, m.c, 0.01f, 0.9f, 5e-4f);
        gpu->sgd_step(gpu, gg, n, w.g, g.g, m.g, 0.01f, 0.9f, 5e-4f);
        cpu->sgd_nesterov_step(cpu, gc, n, w.c, g.c, m.c, 0.01f, 0.9f, 5e-4f);
        gpu->sgd_nesterov_step(gpu, gg, n, w.g, g.g, m.g, 0.01f, 0.9f, 5e-4f);
        cpu->adam_step(cpu, gc, &a, n, w.c, g.c, m.c, v.c);
        gpu->adam_step(gpu, gg, &a, n, w.g, g.g, m.g, v.g);
        EXPECT_SAME(w, "gated weights");
        EXPECT_SAME(m, "gated first moment");
        EXPECT_SAME(v, "gated second moment");
        float *w1 = gpu_host(w.g, n);
        T_CHECKF((memcmp(w0, w1, n * 4) != 0) == (round == 0), "round %d: gate %s but weights %s", round,
                 round ? "closed" : "open", memcmp(w0, w1, n * 4) ? "changed" : "did not change");
        free(w0);
        free(w1);
    }
    cpu->free(cpu, (float *)gc);
    gpu->free(gpu, (float *)gg);
    pair_free(&w); pair_free(&g); pair_free(&m); pair_free(&v);
}

/* ------------------------------------------------------------------ batch norm */

/* chan_sums within double rounding of the sum of magnitudes; the affine maps and the
 * ReLU mask bit for bit (the same float expression, no FMA contraction). */
static void gpu_bn_ops_match_cpu(void)
{
    NEED_GPU();
    int shapes[][3] = {{1, 1, 1}, {2, 3, 64}, {3, 17, 257}, {4, 64, 46 * 46}, {2, 5, 9000}};
    for (int k = 0; k < 5; k++) {
        int n = shapes[k][0], c = shapes[k][1], hw = shapes[k][2];
        size_t cnt = (size_t)n * c * hw;
        pair x = pair_rand(cnt, 3.0f), dy = pair_rand(cnt, 1.0f), y = pair_rand(cnt, 1.0f), dx = pair_rand(cnt, 1.0f);
        pair coef = pair_rand(4 * (size_t)c, 2.0f);
        double *sc = core_malloc(2 * (size_t)c * sizeof(double)), *sg = core_malloc(2 * (size_t)c * sizeof(double));
        double *sg_dev = (double *)gpu->alloc(gpu, 4 * (size_t)c);
        cpu->chan_sums(cpu, n, c, hw, dy.c, x.c, sc);
        gpu->chan_sums(gpu, n, c, hw, dy.g, x.g, sg_dev); /* into device memory, no host wait */
        gpu->download(gpu, (float *)sg, (const float *)sg_dev, 4 * (size_t)c);
        gpu->free(gpu, (float *)sg_dev);
        for (int ch = 0; ch < c; ch++) {
            double mag = 0, mag2 = 0;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < hw; j++) {
                    size_t at = ((size_t)i * c + ch) * hw + j;
                    mag += fabs(dy.h[at]);
                    mag2 += fabs((double)dy.h[at] * x.h[at]);
                }
            T_CHECKF(fabs(sc[ch] - sg[ch]) <= 1e-12 * mag && fabs(sc[c + ch] - sg[c + ch]) <= 1e-12 * mag2,
                     "chan_sums n%d c%d hw%d ch %d: cpu %.17g %.17g gpu %.17g %.17g", n, c, hw, ch, sc[ch],
                     sc[c + ch], sg[ch], sg[c + ch]);
        }
        for (int relu = 0; relu < 2; relu++) {
            cpu->chan_affine(cpu, n, c, hw, x.c, coef.c, coef.c + c, relu, y.c);
            gpu->chan_affine(gpu, n, c, hw, x.g, coef.g, coef.g + c, relu, y.g);
            EXPECT_SAME(y, relu ? "chan_affine relu" : "chan_affine");
        }
        cpu->chan_affine_grad(cpu, n, c, hw, dy.c, x.c, coef.c, dx.c);
        gpu->chan_affine_grad(gpu, n, c, hw, dy.g, x.g, coef.g, dx.g);
        EXPECT_SAME(dx, "chan_affine_grad");
        cpu->relu_mask(cpu, cnt, y.c, dy.c);
        gpu->relu_mask(gpu, cnt, y.g, dy.g);
        EXPECT_SAME(dy, "relu_mask");
        free(sc), free(sg);
        pair_free(&x), pair_free(&dy), pair_free(&y), pair_free(&dx), pair_free(&coef);
    }
}

/* The batch-norm statistics (core/bn_math.h) on the device: every phase bit for
 * bit the CPU's on the same sums (double arithmetic rounded op by op, IEEE sqrt). */
static void gpu_bn_step_matches_cpu(void)
{
    NEED_GPU();
    const int c = 37;
    /* floats: gamma beta run_mean run_var | out (4c) | dgamma dbeta */
    float hf[10 * 37];
    for (int i = 0; i < 10 * c; i++) hf[i] = rnd_unit();
    for (int ch = 0; ch < c; ch++) hf[3 * c + ch] = 0.5f + 0.5f * fabsf(hf[3 * c + ch]); /* running variance > 0 */
    double hs[2 * 37 + 1];
    for (int ch = 0; ch < c; ch++) {
        hs[ch] = 300 * rnd_unit();
        hs[c + ch] = 900 + 500 * rnd_unit();
    }
    hs[2 * c] = 0;
    core_backend *be[2] = {cpu, gpu};
    float *f[2];
    double *sums[2], *stats[2];
    for (int k = 0; k < 2; k++) {
        f[k] = be[k]->alloc(be[k], 10 * (size_t)c);
        be[k]->upload(be[k], f[k], hf, 10 * (size_t)c);
        sums[k] = (double *)be[k]->alloc(be[k], 2 * (2 * (size_t)c + 1));
        stats[k] = (double *)be[k]->alloc(be[k], 2 * (2 * (size_t)c + 1));
    }
    const core_bn_phase phases[] = {CORE_BN_COUNT, CORE_BN_FORWARD, CORE_BN_PARAM_GRADS, CORE_BN_COEF};
    for (int train = 1; train >= 0; train--)
        for (int p = 0; p < 4; p++) {
            float of[2][10 * 37];
            double os[2][2 * 37 + 1], ot[2][2 * 37 + 1];
            for (int k = 0; k < 2; k++) {
                if (p == 0) be[k]->upload(be[k], (float *)sums[k], (const float *)hs, 4 * (size_t)c);
                core_bn_args a = {c, train, 1e-5, 0.1, 128.0 * 46 * 46, sums[k], f[k], f[k] + c, f[k] + 2 * c,
                                  f[k] + 3 * c, stats[k], f[k] + 4 * c, f[k] + 8 * c, f[k] + 9 * c};
                be[k]->bn_step(be[k], phases[p], &a);
                be[k]->download(be[k], of[k], f[k], 10 * (size_t)c);
                be[k]->download(be[k], (float *)os[k], (const float *)sums[k], 2 * (2 * (size_t)c + 1));
                be[k]->download(be[k], (float *)ot[k], (const float *)stats[k], 2 * (2 * (size_t)c + 1));
            }
            T_CHECKF(!memcmp(of[0], of[1], sizeof of[0]) && !memcmp(os[0], os[1], sizeof os[0]) &&
                         !memcmp(ot[0], ot[1], sizeof ot[0]),
                     "bn_step phase %d (train %d): the GPU's floats, sums or statistics differ from the CPU's", p,
                     train);
        }
    for (int k = 0; k < 2; k++) {
        be[k]->free(be[k], f[k]);
        be[k]->free(be[k], (float *)sums[k]);
        be[k]->free(be[k], (float *)stats[k]);
    }
}

/* ------------------------------------------------------------------ memory */

static void gpu_memory_roundtrip(void)
{
    NEED_GPU();
    size_t sizes[] = {1, 7, 1000, 1 << 20, 3000017};
    for (int k = 0; k < 5; k++) {
        size_t n = sizes[k];
        float *d = gpu->alloc(gpu, n), *h = gpu_host(d, n);
        size_t nz = 0;
        for (size_t i = 0; i < n; i++) nz += h[i] != 0;
        T_CHECKF(nz == 0, "alloc(%zu) not zeroed: %zu non-zero", n, nz);
        float *src = host_rand(n, 3.0f);
        gpu->upload(gpu, d, src, n);
        float *d2 = gpu->alloc(gpu, n);
        gpu->copy(gpu, d2, d, n);
        float *back = gpu_host(d2, n);
        T_CHECKF(first_mismatch(back, src, n) < 0, "upload/copy/download of %zu floats changed data", n);
        gpu->free(gpu, d);
        gpu->free(gpu, d2);
        free(h); free(src); free(back);
    }
    gpu->sync(gpu);
    T_CHECK(core_cuda_stream(gpu) != NULL);
    T_CHECK(core_cuda_stream(cpu) == NULL);
}

static void gpu_elementwise_match_cpu(void)
{
    NEED_GPU();
    size_t sizes[] = {1, 255, 257, 100003};
    for (int k = 0; k < 4; k++) {
        size_t n = sizes[k];
        pair x = pair_rand(n, 2.0f), y = pair_rand(n, 2.0f);
        cpu->axpy(cpu, -0.37f, x.c, y.c, n); gpu->axpy(gpu, -0.37f, x.g, y.g, n);
        EXPECT_SAME(y, "axpy");
        cpu->scale(cpu, y.c, 1.7f, n); gpu->scale(gpu, y.g, 1.7f, n);
        EXPECT_SAME(y, "scale");
        cpu->fill(cpu, x.c, -2.5f, n); gpu->fill(gpu, x.g, -2.5f, n);
        EXPECT_SAME(x, "fill");
        pair_free(&x); pair_free(&y);
    }
}

static void gpu_sgd_step_matches_cpu(void)
{
    NEED_GPU();
    size_t n = 50021;
    pair w = pair_rand(n, 1.0f), g = pair_rand(n, 0.1f), m = pair_rand(n, 0.01f);
    for (int step = 0; step < 3; step++) {
        cpu->sgd_step(cpu, NULL, n, w.c, g.c, m.c, 0.01f, 0.9f, 5e-4f);
        gpu->sgd_step(gpu, NULL, n, w.g, g.g, m.g, 0.01f, 0.9f, 5e-4f);
    }
    EXPECT_SAME(w, "sgd weights");
    EXPECT_SAME(m, "sgd momentum");
    pair_free(&w); pair_free(&g); pair_free(&m);
}

/* Both optimizer kernels use only correctly rounded operations (no FMA, IEEE sqrt
 * and division), so the GPU must reproduce the CPU bit for bit. */
static void gpu_optimizer_steps_match_cpu(void)
{
    NEED_GPU();
    size_t n = 50021;
    pair w, g, m, v;
    optim_pairs(n, &w, &g, &m, &v);
    for (int step = 0; step < 3; step++) {
        cpu->sgd_nesterov_step(cpu, NULL, n, w.c, g.c, m.c, 0.01f, 0.9f, 5e-4f);
        gpu->sgd_nesterov_step(gpu, NULL, n, w.g, g.g, m.g, 0.01f, 0.9f, 5e-4f);
    }
    EXPECT_SAME(w, "nesterov weights");
    EXPECT_SAME(m, "nesterov momentum");
    core_adam_args a = {0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 0, 0.99999f, 0.01f, 31.6f, 0};
    for (int step = 0; step < 3; step++) {
        a.l2 = step == 1 ? 1e-4f : 0; /* Adam's L2 on one step, AdamW's decay on the others */
        cpu->adam_step(cpu, NULL, &a, n, w.c, g.c, m.c, v.c);
        gpu->adam_step(gpu, NULL, &a, n, w.g, g.g, m.g, v.g);
    }
    EXPECT_SAME(w, "adam weights");
    EXPECT_SAME(m, "adam first moment");
    EXPECT_SAME(v, "adam second moment");
    pair_free(&w); pair_free(&g); pair_free(&m); pair_free(&v);
}

/* ------------------------------------------------------------------ sumsq */

static void gpu_sumsq_matches_cpu_and_repeats(void)
{
    NEED_GPU();
    size_t sizes[] = {1, 256, 257, 131073, 2000003};
    for (int k = 0; k < 5; k++) {
        size_t n = sizes[k];
        pair x = pair_rand(n, 4.0f);
        double c = cpu->sumsq(cpu, x.c, n), g1 = gpu->sumsq(gpu, x.g, n), g2 = gpu->sumsq(gpu, x.g, n);
        T_NEAR(g1, c, 1e-12, 0);
        T_CHECKF(memcmp(&g1, &g2, sizeof g1) == 0, "sumsq(%zu) not repeatable: %.17g vs %.17g", n, g1, g2);
        pair_free(&x);
    }
    T_CHECK(gpu->sumsq(gpu, NULL, 0) == 0.0);
}

static void gpu_sumsq_propagates_nan_inf(void)
{
    NEED_GPU();
    size_t n = 300007;
    float *h = host_rand(n, 1.0f);
    float *d = gpu->alloc(gpu, n);
    h[123457] = NAN;
    gpu->upload(gpu, d, h, n);
    T_CHECKF(isnan(gpu->sumsq(gpu, d, n)), "NaN element did not give NaN");
    h[123457] = 0.5f;
    h[n - 1] = -INFINITY;
    gpu->upload(gpu, d, h, n);
    double s = gpu->sumsq(gpu, d, n);
    T_CHECKF(isinf(s) && s > 0, "-Inf element gave %g, expected +Inf", s);
    h[n - 1] = 3e38f; /* finite float whose square overflows float but not double */
    gpu->upload(gpu, d, h, n);
    s = gpu->sumsq(gpu, d, n);
    T_CHECKF(isfinite(s) && s > 8.9e76, "3e38 squared gave %g (double accumulation expected)", s);
    gpu->free(gpu, d);
    free(h);
}

/* ------------------------------------------------------------------ conv */

typedef struct { int n, cin, h, w, cout, k, relu; } shape;

static int conv_shapes(shape *out, int cap)
{
    static const shape fixed[] = {
        {1, 3, 16, 16, 5, 3, 1}, {2, 7, 13, 11, 9, 1, 0}, {3, 5, 9, 17, 4, 7, 1}, {2, 33, 12, 12, 31, 7, 0},
        {4, 1, 8, 8, 1, 3, 1},   {2, 19, 10, 14, 38, 1, 1}, {2, 64, 23, 23, 128, 3, 1}, {2, 185, 12, 12, 128, 7, 1},
    };
    int m = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0] && m < cap; i++) out[m++] = fixed[i];
    static const int ks[3] = {1, 3, 7};
    while (m < cap) {
        shape s = {rnd_int(1, 4), rnd_int(1, 41), rnd_int(5, 24), rnd_int(5, 24), rnd_int(1, 41), ks[rnd_int(0, 2)],
                   rnd_int(0, 1)};
        out[m++] = s;
    }
    return m;
}

static core_conv_shape to_conv(const shape *s)
{
    core_conv_shape c = {s->n, s->cin, s->h, s->w, s->cout, s->k, s->relu};
    return c;
}

#define SHAPE_FMT "n=%d cin=%d h=%d w=%d cout=%d k=%d relu=%d"
#define SHAPE_ARGS(s) (s).n, (s).cin, (s).h, (s).w, (s).cout, (s).k, (s).relu

static void gpu_conv_forward_matches_cpu(void)
{
    NEED_GPU();
    shape sh[16];
    int ns = conv_shapes(sh, 16);
    for (int i = 0; i < ns && !t_cur_failed; i++) {
        shape s = sh[i];
        core_conv_shape cs = to_conv(&s);
        size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
        pair x = pair_rand(nx, 1.0f), w = pair_rand((size_t)s.cout * s.cin * s.k * s.k, 0.3f),
             b = pair_rand(s.cout, 0.5f), y = pair_rand(ny, 9.0f); /* y garbage: forward must overwrite */
        cpu->conv_forward(cpu, &cs, x.c, w.c, b.c, y.c);
        gpu->conv_forward(gpu, &cs, x.g, w.g, b.g, y.g);
        EXPECT_CLOSE(y, 1e-4, "forward " SHAPE_FMT, SHAPE_ARGS(s));
        pair_free(&x); pair_free(&w); pair_free(&b); pair_free(&y);
    }
}

/* Runs the backward of shape s on both backends from identical inputs,
 * including the forward output y (taken from the CPU so the ReLU masks agree
 * even where y is within rounding of 0) and pre-filled dx, dw, db so that
 * accumulation (not overwrite) is what gets checked. */
static void conv_backward_case(const shape *s, int with_dx)
{
    core_conv_shape cs = to_conv(s);
    size_t nx = (size_t)s->n * s->cin * s->h * s->w, ny = (size_t)s->n * s->cout * s->h * s->w;
    size_t nw = (size_t)s->cout * s->cin * s->k * s->k;
    pair x = pair_rand(nx, 1.0f), w = pair_rand(nw, 0.3f), b = pair_rand(s->cout, 0.5f);
    float *yh = core_malloc(ny * sizeof(float));
    float *yc = cpu->alloc(cpu, ny);
    cpu->conv_forward(cpu, &cs, x.c, w.c, b.c, yc);
    cpu->download(cpu, yh, yc, ny);
    pair y = pair_from_host(yh, ny);
    pair dy = pair_rand(ny, 1.0f), dx = pair_rand(nx, 1.0f), dw = pair_rand(nw, 1.0f), db = pair_rand(s->cout, 1.0f);
    cpu->conv_backward(cpu, &cs, x.c, w.c, y.c, dy.c, with_dx ? dx.c : NULL, dw.c, db.c);
    gpu->conv_backward(gpu, &cs, x.g, w.g, y.g, dy.g, with_dx ? dx.g : NULL, dw.g, db.g);
    EXPECT_SAME(dy, "masked dy");
    EXPECT_CLOSE(dw, 1e-4, "dw " SHAPE_FMT, SHAPE_ARGS(*s));
    EXPECT_CLOSE(db, 1e-4, "db " SHAPE_FMT, SHAPE_ARGS(*s));
    /* with dx = NULL the pre-filled dx must be untouched on both */
    EXPECT_CLOSE(dx, 1e-4, "dx " SHAPE_FMT " with_dx=%d", SHAPE_ARGS(*s), with_dx);
    pair_free(&x); pair_free(&w); pair_free(&b); pair_free(&y);
    pair_free(&dy); pair_free(&dx); pair_free(&dw); pair_free(&db);
    cpu->free(cpu, yc);
    free(yh);
}

static void gpu_conv_backward_matches_cpu(void)
{
    NEED_GPU();
    shape sh[16];
    int ns = conv_shapes(sh, 16);
    for (int i = 0; i < ns && !t_cur_failed; i++) conv_backward_case(&sh[i], 1);
}

static void gpu_conv_backward_without_dx(void)
{
    NEED_GPU();
    shape a = {2, 3, 20, 20, 8, 3, 1}, b = {3, 11, 9, 9, 7, 7, 0};
    conv_backward_case(&a, 0);
    conv_backward_case(&b, 0);
}

/* Deterministic mode (the default): the same inputs give bitwise the same
 * forward output and gradients, call after call. */
static void gpu_conv_deterministic(void)
{
    NEED_GPU();
    shape s = {4, 96, 23, 23, 128, 7, 1};
    core_conv_shape cs = to_conv(&s);
    size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
    size_t nw = (size_t)s.cout * s.cin * s.k * s.k;
    float *xh = host_rand(nx, 1.0f), *wh = host_rand(nw, 0.1f), *bh = host_rand(s.cout, 0.1f),
          *dyh = host_rand(ny, 1.0f);
    float *x = gpu->alloc(gpu, nx), *w = gpu->alloc(gpu, nw), *b = gpu->alloc(gpu, s.cout), *y = gpu->alloc(gpu, ny),
          *dy = gpu->alloc(gpu, ny), *dx = gpu->alloc(gpu, nx), *dw = gpu->alloc(gpu, nw), *db = gpu->alloc(gpu, s.cout);
    gpu->upload(gpu, x, xh, nx); gpu->upload(gpu, w, wh, nw); gpu->upload(gpu, b, bh, s.cout);
    float *out[2][4];
    for (int r = 0; r < 2; r++) {
        gpu->fill(gpu, dx, 0, nx); gpu->fill(gpu, dw, 0, nw); gpu->fill(gpu, db, 0, s.cout);
        gpu->upload(gpu, dy, dyh, ny);
        gpu->conv_forward(gpu, &cs, x, w, b, y);
        gpu->conv_backward(gpu, &cs, x, w, y, dy, dx, dw, db);
        out[r][0] = gpu_host(y, ny); out[r][1] = gpu_host(dx, nx);
        out[r][2] = gpu_host(dw, nw); out[r][3] = gpu_host(db, s.cout);
    }
    size_t lens[4] = {ny, nx, nw, (size_t)s.cout};
    const char *names[4] = {"y", "dx", "dw", "db"};
    for (int t = 0; t < 4; t++) {
        T_CHECKF(memcmp(out[0][t], out[1][t], lens[t] * sizeof(float)) == 0, "%s differs between two identical runs",
                 names[t]);
        free(out[0][t]); free(out[1][t]);
    }
    float *ptrs[8] = {x, w, b, y, dy, dx, dw, db};
    for (int i = 0; i < 8; i++) gpu->free(gpu, ptrs[i]);
    free(xh); free(wh); free(bh); free(dyh);
}

/* deterministic = 0 lets the timed search pick non-deterministic algorithms
 * too (atomics, like PyTorch's cudnn.benchmark; neither training nor the
 * benchmark does this); they must be as accurate. */
static void gpu_conv_benchmark_mode_matches_cpu(void)
{
    NEED_GPU();
    core_cuda_set_math(gpu, 0, 0);
    shape sh[] = {{2, 7, 13, 11, 9, 1, 0}, {3, 5, 9, 17, 4, 7, 1}, {2, 64, 23, 23, 128, 3, 1}, {2, 38, 20, 20, 31, 7, 1}};
    for (int i = 0; i < 4 && !t_cur_failed; i++) conv_backward_case(&sh[i], 1);
    core_cuda_set_math(gpu, 0, 1);
}

/* comm.tf32 = 1: TF32 tensor cores keep 10 mantissa bits, so the bound is
 * loose from above (5e-3), and bounded from below too: on a GPU with TF32
 * tensor cores (every architecture core_cuda_device_peak knows) an error
 * under 2e-5 means the switch did not engage them (fp32 gives ~1e-6 here,
 * TF32 ~1e-4). Switching back must restore fp32 accuracy. */
static void gpu_conv_tf32_switch(void)
{
    NEED_GPU();
    shape s = {8, 128, 46, 46, 128, 3, 0};
    core_conv_shape cs = to_conv(&s);
    size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
    pair x = pair_rand(nx, 1.0f), w = pair_rand((size_t)s.cout * s.cin * 9, 0.1f), b = pair_rand(s.cout, 0.1f),
         y = pair_rand(ny, 0.0f);
    cpu->conv_forward(cpu, &cs, x.c, w.c, b.c, y.c);
    core_cuda_set_math(gpu, 1, 1);
    gpu->conv_forward(gpu, &cs, x.g, w.g, b.g, y.g);
    EXPECT_CLOSE(y, 5e-3, "tf32 forward");
    core_cuda_peak pk;
    if (core_cuda_device_peak(0, 0, &pk) == 0) {
        float *g = gpu_host(y.g, ny), *c = core_malloc(ny * sizeof(float));
        cpu->download(cpu, c, y.c, ny);
        double e = tensor_rel_err(g, c, ny);
        T_CHECKF(e >= 2e-5, "tf32 forward relative error %.3g: as accurate as fp32, TF32 tensor cores not used", e);
        free(g); free(c);
    } else {
        printf("# tf32 lower bound not checked: architecture without a tabulated TF32 peak\n");
    }
    core_cuda_set_math(gpu, 0, 1);
    gpu->conv_forward(gpu, &cs, x.g, w.g, b.g, y.g);
    EXPECT_CLOSE(y, 1e-4, "fp32 forward after switching tf32 off");
    pair_free(&x); pair_free(&w); pair_free(&b); pair_free(&y);
}

/* The algorithm policy: each (shape, direction) is timed once and recorded;
 * a second backend that loads the record runs the same algorithms without
 * timing (the agree hook never sees a new choice) and gives bit-identical
 * results; the hook of a first use can impose another process's choice. */
typedef struct { int calls; const char *impose; } agree_count;
static void count_agree(void *ctx, char *line, size_t cap)
{
    agree_count *a = ctx;
    a->calls++;
    if (a->impose) {
        const char *src = a->impose;
        while (*src) {
            const char *end = strchr(src, '\n');
            size_t len = end ? (size_t)(end - src) : strlen(src);
            size_t klen = strstr(line, " algo=") - line;
            if (len > klen && !strncmp(src, line, klen) && src[klen] == ' ' && len < cap) {
                memcpy(line, src, len);
                line[len] = 0;
            }
            src += len + (end ? 1 : 0);
        }
    }
}

static void run_layer(core_backend *be, const core_conv_shape *cs, const float *xh, const float *wh, const float *dyh,
                      float **y_out, float **dw_out, float **dx_out)
{
    size_t nx = (size_t)cs->n * cs->cin * cs->h * cs->w, ny = (size_t)cs->n * cs->cout * cs->h * cs->w;
    size_t nw = (size_t)cs->cout * cs->cin * cs->k * cs->k;
    float *x = be->alloc(be, nx), *w = be->alloc(be, nw), *b = be->alloc(be, cs->cout), *y = be->alloc(be, ny),
          *dy = be->alloc(be, ny), *dx = be->alloc(be, nx), *dw = be->alloc(be, nw), *db = be->alloc(be, cs->cout);
    be->upload(be, x, xh, nx); be->upload(be, w, wh, nw); be->upload(be, dy, dyh, ny);
    be->conv_forward(be, cs, x, w, b, y);
    be->conv_backward(be, cs, x, w, y, dy, dx, dw, db);
    *y_out = core_malloc(ny * 4); *dw_out = core_malloc(nw * 4); *dx_out = core_malloc(nx * 4);
    be->download(be, *y_out, y, ny); be->download(be, *dw_out, dw, nw); be->download(be, *dx_out, dx, nx);
    float *ptrs[8] = {x, w, b, y, dy, dx, dw, db};
    for (int i = 0; i < 8; i++) be->free(be, ptrs[i]);
}

static void gpu_conv_algos_recorded_and_reused(void)
{
    NEED_GPU();
    shape s = {3, 57, 21, 21, 45, 7, 1};
    core_conv_shape cs = to_conv(&s);
    size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
    size_t nw = (size_t)s.cout * s.cin * s.k * s.k;
    float *xh = host_rand(nx, 1.0f), *wh = host_rand(nw, 0.1f), *dyh = host_rand(ny, 1.0f);
    core_backend *a = core_cuda_backend_create(0), *b = core_cuda_backend_create(0);
    agree_count ca = {0, NULL}, cb = {0, NULL};
    core_cuda_set_algo_agree(a, count_agree, &ca);
    core_cuda_set_algo_agree(b, count_agree, &cb);
    float *ya, *dwa, *dxa, *yb, *dwb, *dxb;
    run_layer(a, &cs, xh, wh, dyh, &ya, &dwa, &dxa);
    T_CHECKF(ca.calls == 3, "%d choices for one layer's three directions", ca.calls);
    run_layer(a, &cs, xh, wh, dyh, &yb, &dwb, &dxb);
    T_CHECKF(ca.calls == 3, "the second call of a shape searched again (%d choices)", ca.calls);
    free(yb); free(dwb); free(dxb);
    char *text = core_cuda_algos_save(a);
    int lines = 0;
    for (const char *c = text; *c; c++) lines += *c == '\n';
    T_CHECKF(lines == 3, "record has %d lines: %s", lines, text);
    T_CHECK(core_cuda_algos_load(b, text, "test") == 3);
    run_layer(b, &cs, xh, wh, dyh, &yb, &dwb, &dxb);
    T_CHECKF(cb.calls == 0, "a loaded choice was searched again (%d searches)", cb.calls);
    T_CHECK(memcmp(ya, yb, ny * 4) == 0 && memcmp(dwa, dwb, nw * 4) == 0 && memcmp(dxa, dxb, nx * 4) == 0);
    char *text_b = core_cuda_algos_save(b);
    T_CHECKF(!strcmp(text, text_b), "record after reuse differs:\n%s---\n%s", text, text_b);
    free(text_b);
    free(yb); free(dwb); free(dxb);
    core_backend_destroy(b);
    /* a fresh backend whose hook imposes the record: same choices, same bits */
    core_backend *c = core_cuda_backend_create(0);
    agree_count cc = {0, text};
    core_cuda_set_algo_agree(c, count_agree, &cc);
    run_layer(c, &cs, xh, wh, dyh, &yb, &dwb, &dxb);
    char *text_c = core_cuda_algos_save(c);
    T_CHECKF(cc.calls == 3 && !strcmp(text, text_c), "%d choices, record:\n%s", cc.calls, text_c);
    T_CHECK(memcmp(ya, yb, ny * 4) == 0 && memcmp(dwa, dwb, nw * 4) == 0 && memcmp(dxa, dxb, nx * 4) == 0);
    free(text_c);
    free(yb); free(dwb); free(dxb);
    core_backend_destroy(c);
    core_backend_destroy(a);
    free(text); free(ya); free(dwa); free(dxa); free(xh); free(wh); free(dyh);
}

/* comm.cudnn_workspace_mb = 0: only algorithms without workspace may run,
 * and they must be as accurate. */
static void gpu_conv_without_workspace(void)
{
    NEED_GPU();
    core_cuda_set_workspace(gpu, 0);
    shape sh[] = {{2, 38, 20, 20, 31, 7, 1}, {2, 64, 23, 23, 128, 3, 1}};
    for (int i = 0; i < 2 && !t_cur_failed; i++) conv_backward_case(&sh[i], 1);
    core_cuda_set_workspace(gpu, CORE_CUDA_WORKSPACE_MB);
}

/* Operands one float past an aligned address (as parameter views in a flat
 * buffer can be): forward and backward must still match the CPU. */
static void gpu_conv_misaligned_operands(void)
{
    NEED_GPU();
    shape sh[] = {{2, 19, 12, 10, 38, 3, 1}, {3, 38, 9, 9, 19, 7, 0}, {2, 5, 8, 8, 7, 1, 1}};
    for (int c = 0; c < 3 && !t_cur_failed; c++) {
        shape s = sh[c];
        core_conv_shape cs = to_conv(&s);
        size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
        size_t nw = (size_t)s.cout * s.cin * s.k * s.k;
        size_t len[7] = {nx, nw, (size_t)s.cout, ny, nx, nw, (size_t)s.cout}; /* x w b dy dx dw db */
        float *h[7], *cbuf[7], *gbase[7], *g[7];
        for (int i = 0; i < 7; i++) {
            h[i] = host_rand(len[i], i == 1 ? 0.3f : 1.0f);
            cbuf[i] = cpu->alloc(cpu, len[i]);
            cpu->upload(cpu, cbuf[i], h[i], len[i]);
            gbase[i] = gpu->alloc(gpu, len[i] + 1);
            g[i] = gbase[i] + 1;
            gpu->upload(gpu, g[i], h[i], len[i]);
        }
        float *yc = cpu->alloc(cpu, ny), *ygb = gpu->alloc(gpu, ny + 1), *yg = ygb + 1;
        cpu->conv_forward(cpu, &cs, cbuf[0], cbuf[1], cbuf[2], yc);
        gpu->conv_forward(gpu, &cs, g[0], g[1], g[2], yg);
        float *ych = core_malloc(ny * sizeof(float)), *ygh = gpu_host(yg, ny);
        cpu->download(cpu, ych, yc, ny);
        double e = tensor_rel_err(ygh, ych, ny);
        T_CHECKF(e <= 1e-4, "misaligned forward " SHAPE_FMT ": relative error %.3g", SHAPE_ARGS(s), e);
        gpu->upload(gpu, yg, ych, ny); /* same ReLU mask on both */
        cpu->conv_backward(cpu, &cs, cbuf[0], cbuf[1], yc, cbuf[3], cbuf[4], cbuf[5], cbuf[6]);
        gpu->conv_backward(gpu, &cs, g[0], g[1], yg, g[3], g[4], g[5], g[6]);
        const char *names[7] = {"x", "w", "b", "dy", "dx", "dw", "db"};
        for (int i = 3; i < 7; i++) {
            float *a = gpu_host(g[i], len[i]), *b = core_malloc(len[i] * sizeof(float));
            cpu->download(cpu, b, cbuf[i], len[i]);
            e = tensor_rel_err(a, b, len[i]);
            T_CHECKF(e <= 1e-4, "misaligned backward %s " SHAPE_FMT ": relative error %.3g", names[i], SHAPE_ARGS(s),
                     e);
            free(a); free(b);
        }
        for (int i = 0; i < 7; i++) {
            cpu->free(cpu, cbuf[i]);
            gpu->free(gpu, gbase[i]);
            free(h[i]);
        }
        cpu->free(cpu, yc); gpu->free(gpu, ygb);
        free(ych); free(ygh);
    }
}

/* The paper's shapes (batch 10 at 368x368: the first two VGG layers; the
 * 7x7 refinement layers on the 46x46 grid, 185 -> 128 and 128 -> 128), which
 * select other cuDNN engines and larger workspaces than the small shapes.
 * conv_backward_case pre-fills dx, dw and db, so the beta = 1 accumulation of
 * every direction is what is compared, each tensor on its own bound. */
static void gpu_conv_paper_shapes(void)
{
    NEED_GPU();
    shape sh[] = {{10, 185, 46, 46, 128, 7, 1}, {10, 128, 46, 46, 128, 7, 1}, {10, 128, 46, 46, 38, 1, 0},
                  {10, 64, 368, 368, 64, 3, 1}, {10, 3, 368, 368, 64, 3, 1}};
    int with_dx[] = {1, 1, 1, 1, 0};
    for (int i = 0; i < 5 && !t_cur_failed; i++) {
        shape s = sh[i];
        core_conv_shape cs = to_conv(&s);
        size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
        pair x = pair_rand(nx, 1.0f), w = pair_rand((size_t)s.cout * s.cin * s.k * s.k, 0.1f),
             b = pair_rand(s.cout, 0.5f), y = pair_rand(ny, 9.0f);
        cpu->conv_forward(cpu, &cs, x.c, w.c, b.c, y.c);
        gpu->conv_forward(gpu, &cs, x.g, w.g, b.g, y.g);
        EXPECT_CLOSE(y, 1e-4, "paper forward " SHAPE_FMT, SHAPE_ARGS(s));
        pair_free(&x); pair_free(&w); pair_free(&b); pair_free(&y);
        if (!t_cur_failed) conv_backward_case(&sh[i], with_dx[i]);
    }
}

/* Uploads run on a copy stream: an upload into a buffer that queued work
 * still reads must wait for that work, and work queued after it must see the
 * new data. A large convolution reads x; x is then overwritten from pinned
 * memory (a truly asynchronous copy) and convolved again; both results must
 * match the CPU's on the matching input. */
static void gpu_upload_ordered_with_compute(void)
{
    NEED_GPU();
    shape s = {8, 128, 46, 46, 128, 7, 0};
    core_conv_shape cs = to_conv(&s);
    size_t nx = (size_t)s.n * s.cin * s.h * s.w, ny = (size_t)s.n * s.cout * s.h * s.w;
    size_t nw = (size_t)s.cout * s.cin * 49;
    pair x1 = pair_rand(nx, 1.0f), w = pair_rand(nw, 0.05f), b = pair_rand(s.cout, 0.1f), y1 = pair_rand(ny, 0.0f),
         y2 = pair_rand(ny, 0.0f);
    float *x2h = core_cuda_host_alloc(nx * sizeof(float)), *x2r = host_rand(nx, 2.0f);
    memcpy(x2h, x2r, nx * sizeof(float));
    float *xc2 = cpu->alloc(cpu, nx);
    cpu->upload(cpu, xc2, x2r, nx);
    cpu->conv_forward(cpu, &cs, x1.c, w.c, b.c, y1.c);
    cpu->conv_forward(cpu, &cs, xc2, w.c, b.c, y2.c);
    gpu->conv_forward(gpu, &cs, x1.g, w.g, b.g, y1.g); /* queued; the upload below must not overtake it */
    gpu->upload(gpu, x1.g, x2h, nx);
    gpu->conv_forward(gpu, &cs, x1.g, w.g, b.g, y2.g);
    core_cuda_upload_wait(gpu);
    EXPECT_CLOSE(y1, 1e-4, "forward of the data before the upload");
    EXPECT_CLOSE(y2, 1e-4, "forward of the uploaded data");
    core_cuda_host_free(x2h);
    free(x2r);
    cpu->free(cpu, xc2);
    pair_free(&x1); pair_free(&w); pair_free(&b); pair_free(&y1); pair_free(&y2);
}

/* ------------------------------------------------------------------ pool, channels */

static void gpu_pool_matches_cpu_with_ties(void)
{
    NEED_GPU();
    int shapes[][4] = {{1, 1, 2, 2}, {2, 3, 8, 10}, {3, 7, 16, 6}, {2, 65, 46, 46}};
    for (int i = 0; i < 4; i++) {
        int n = shapes[i][0], c = shapes[i][1], h = shapes[i][2], w = shapes[i][3];
        size_t nx = (size_t)n * c * h * w, ny = nx / 4;
        /* values from {-1, 0, 1}: most windows hold ties, the tie rule decides dx */
        float *xh = core_malloc(nx * sizeof(float));
        for (size_t k = 0; k < nx; k++) xh[k] = (float)rnd_int(-1, 1);
        if (nx > 5) xh[5] = NAN; /* the CPU rule for NaN (never greater) must hold too */
        pair x = pair_from_host(xh, nx), y = pair_rand(ny, 5.0f), dy = pair_rand(ny, 1.0f), dx = pair_rand(nx, 1.0f);
        cpu->pool_forward(cpu, n, c, h, w, x.c, y.c);
        gpu->pool_forward(gpu, n, c, h, w, x.g, y.g);
        EXPECT_SAME(y, "pool forward");
        cpu->pool_backward(cpu, n, c, h, w, x.c, dy.c, dx.c);
        gpu->pool_backward(gpu, n, c, h, w, x.g, dy.g, dx.g);
        EXPECT_SAME(dx, "pool backward");
        pair_free(&x); pair_free(&y); pair_free(&dy); pair_free(&dx);
        free(xh);
    }
}

static void gpu_copy_channels_matches_cpu(void)
{
    NEED_GPU();
    /* n, hw, src_c, src_off, dst_c, dst_off, count */
    int cases[][7] = {{1, 1, 1, 0, 1, 0, 1}, {3, 46 * 46, 38, 0, 185, 0, 38}, {3, 46 * 46, 19, 0, 185, 38, 19},
                      {2, 7 * 5, 55, 19, 41, 3, 36}, {4, 13, 9, 2, 9, 2, 5}};
    for (int i = 0; i < 5; i++) {
        int *a = cases[i];
        for (int acc = 0; acc < 2; acc++) {
            pair src = pair_rand((size_t)a[0] * a[2] * a[1], 1.0f), dst = pair_rand((size_t)a[0] * a[4] * a[1], 1.0f);
            cpu->copy_channels(cpu, a[0], a[1], src.c, a[2], a[3], dst.c, a[4], a[5], a[6], acc);
            gpu->copy_channels(gpu, a[0], a[1], src.g, a[2], a[3], dst.g, a[4], a[5], a[6], acc);
            EXPECT_SAME(dst, acc ? "copy_channels accumulate" : "copy_channels");
            pair_free(&src); pair_free(&dst);
        }
    }
}

/* ------------------------------------------------------------------ fatal paths */

/* Runs this program with `arg`; returns its exit status and stderr. */
static int run_child(const char *arg, char *err, size_t cap)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 >/dev/null", self_exe, arg);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t len = fread(err, 1, cap - 1, f);
    err[len] = 0;
    int st = pclose(f);
    return st;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void gpu_out_of_memory_is_one_line(void)
{
    NEED_GPU();
    char err[4096];
    int st = run_child("--child-oom", err, sizeof err);
    T_CHECKF(st != 0, "a 4 TiB allocation did not fail");
    T_CHECKF(count_lines(err) == 1, "expected one error line, got: %.300s", err);
    T_CHECKF(strstr(err, "sspose: error: out of GPU memory") != NULL, "unexpected message: %.300s", err);
}

static void gpu_bad_device_is_one_line(void)
{
    NEED_GPU();
    char err[4096];
    int st = run_child("--child-bad-device", err, sizeof err);
    T_CHECKF(st != 0, "creating CUDA device 4096 did not fail");
    T_CHECKF(count_lines(err) == 1, "expected one error line, got: %.300s", err);
    T_CHECKF(strstr(err, "CUDA device 4096 does not exist") != NULL, "unexpected message: %.300s", err);
}

int main(int argc, char **argv)
{
    self_exe = argv[0];
    if (argc > 1 && !strcmp(argv[1], "--child-oom")) {
        core_backend *be = core_cuda_backend_create(0);
        be->alloc(be, (size_t)1 << 40); /* 4 TiB */
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "--child-bad-device")) {
        core_cuda_backend_create(4096);
        return 0;
    }
    core_set_quiet(1);
    cpu = core_cpu_backend_create(0);
    if (core_cuda_device_count() > 0) {
        gpu = core_cuda_backend_create(0);
        core_cuda_peak pk;
        if (core_cuda_device_peak(0, 0, &pk) == 0)
            printf("# GPU 0: %s, peak at %.0f MHz: %.1f TFLOP/s fp32, %.1f tf32, %.1f bf16\n", pk.name, pk.clock_mhz,
                   pk.fp32, pk.tf32, pk.bf16);
    }
    T_RUN(gpu_memory_roundtrip);
    T_RUN(gpu_elementwise_match_cpu);
    T_RUN(gpu_sgd_step_matches_cpu);
    T_RUN(gpu_optimizer_steps_match_cpu);
    T_RUN(gpu_sumsq_matches_cpu_and_repeats);
    T_RUN(gpu_sumsq_propagates_nan_inf);
    T_RUN(gpu_sumsq_segments_match_cpu);
    T_RUN(gpu_guard_program_matches_cpu);
    T_RUN(gpu_gated_optimizers_match_cpu);
    T_RUN(gpu_conv_forward_matches_cpu);
    T_RUN(gpu_conv_backward_matches_cpu);
    T_RUN(gpu_conv_backward_without_dx);
    T_RUN(gpu_conv_deterministic);
    T_RUN(gpu_conv_benchmark_mode_matches_cpu);
    T_RUN(gpu_conv_tf32_switch);
    T_RUN(gpu_conv_algos_recorded_and_reused);
    T_RUN(gpu_conv_without_workspace);
    T_RUN(gpu_conv_paper_shapes);
    T_RUN(gpu_conv_misaligned_operands);
    T_RUN(gpu_upload_ordered_with_compute);
    T_RUN(gpu_pool_matches_cpu_with_ties);
    T_RUN(gpu_copy_channels_matches_cpu);
    T_RUN(gpu_bn_ops_match_cpu);
    T_RUN(gpu_bn_step_matches_cpu);
    T_RUN(gpu_out_of_memory_is_one_line);
    T_RUN(gpu_bad_device_is_one_line);
    if (gpu) core_backend_destroy(gpu);
    core_backend_destroy(cpu);
    T_EXIT();
}
