/* GPU suite: the CUDA loss kernels (loss/kernels_cuda.cu) against the CPU
 * ones (loss/kernels_cpu.c) with the argument sets loss/loss.c really uses:
 * heatmaps (mask, scalar PDD with the skeleton's mirrors), PAFs (vector PDD,
 * attention weight), offsets (heatmap gate), the h2p consistency term
 * (gradients into both sides) and the KL term with and without kl_detach.
 * Per-sample sums: relative 1e-9 (both sum in double; only the grouping
 * inside a channel differs); gradients: max|gpu - cpu| <= 1e-5 * max|cpu|.
 * Also: repeated calls give bit-identical sums (no atomics). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/skeleton.h"
#include "loss/kernels.h"
#include "loss/loss.h"
#include "tests/test.h"

static core_backend *cpu, *gpu;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static double rnd01(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

/* kind: 0 prediction in [-1,1]; 1 heatmap-like target (half zeros, else [0,1]);
 * 2 PAF-like target (60% zeros, else [-1,1]); 3 mask in {0, 0.5, 1}; 4 [0,1] */
static float *host_gen(size_t n, int kind)
{
    float *h = core_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        double u = rnd01();
        switch (kind) {
        case 0: h[i] = (float)(2 * u - 1); break;
        case 1: h[i] = u < 0.5 ? 0.0f : (float)rnd01(); break;
        case 2: h[i] = u < 0.6 ? 0.0f : (float)(2 * rnd01() - 1); break;
        case 3: h[i] = (float)(floor(u * 3) / 2); break;
        default: h[i] = (float)u; break;
        }
    }
    return h;
}

/* One tensor on both backends. */
typedef struct { float *h, *c, *g; size_t n; } dual;

static dual dual_gen(size_t n, int kind)
{
    dual d = {host_gen(n, kind), cpu->alloc(cpu, n), gpu->alloc(gpu, n), n};
    cpu->upload(cpu, d.c, d.h, n);
    gpu->upload(gpu, d.g, d.h, n);
    return d;
}
static void dual_free(dual *d)
{
    cpu->free(cpu, d->c);
    gpu->free(gpu, d->g);
    free(d->h);
}

/* max|gpu - cpu| / max|cpu| of the two copies of d. */
static double dual_err(const dual *d)
{
    float *a = core_malloc(d->n * sizeof(float)), *b = core_malloc(d->n * sizeof(float));
    gpu->download(gpu, a, d->g, d->n);
    cpu->download(cpu, b, d->c, d->n);
    double num = 0, den = 0;
    for (size_t i = 0; i < d->n; i++) {
        double e = fabs((double)a[i] - b[i]);
        if (isnan(e)) { num = NAN; break; }
        if (e > num) num = e;
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    free(a); free(b);
    return den > 0 ? num / den : num;
}

#define N 3
/* grid size of the current case: 13x11 (one block per plane) and 46x46 (the
 * paper's grid, where the CUDA kernel splits a plane over two blocks) */
static int HW = 13 * 11;

enum { T_PRED, T_PRED2, T_HEAT, T_PAF, T_OFF, T_MASK, T_ATT, T_GRAD, T_GRAD2, T_COUNT };
static dual t[T_COUNT];

static void make_tensors(int c)
{
    size_t nc = (size_t)N * c * HW;
    t[T_PRED] = dual_gen(nc, 0);
    t[T_PRED2] = dual_gen(nc, 0);
    t[T_HEAT] = dual_gen((size_t)N * 19 * HW, 1);
    t[T_PAF] = dual_gen((size_t)N * 38 * HW, 2);
    t[T_OFF] = dual_gen((size_t)N * 36 * HW, 0);
    t[T_MASK] = dual_gen((size_t)N * HW, 3);
    t[T_ATT] = dual_gen((size_t)N * 19 * HW, 4);
    t[T_GRAD] = dual_gen(nc, 0); /* pre-filled: the kernels must accumulate */
    t[T_GRAD2] = dual_gen(nc, 0);
}
static void free_tensors(void)
{
    for (int i = 0; i < T_COUNT; i++) dual_free(&t[i]);
}

/* Pointer of tensor i on the backend side `g` (1 = GPU); NULL stays NULL. */
#define P(i, g) ((g) ? t[i].g : t[i].c)

typedef enum { CASE_HEAT, CASE_PAF, CASE_OFFSET, CASE_CONSISTENCY, CASE_PLAIN_NOGRAD } l2_case;

static loss_l2_args l2_args(l2_case k, int g)
{
    loss_l2_args a;
    memset(&a, 0, sizeof a);
    a.n = N, a.hw = HW, a.coef = 9.0f / N;
    switch (k) {
    case CASE_HEAT:
        a.c = 19, a.pred = P(T_PRED, g), a.target = P(T_HEAT, g), a.mask = P(T_MASK, g);
        a.pdd = LOSS_PDD_SCALAR, a.pdd_thr = 0.1f, a.beta = 0.15f;
        for (int c = 0; c < 19; c++) a.mirror[c] = skel_heat_mirror(c);
        a.grad_pred = P(T_GRAD, g);
        break;
    case CASE_PAF:
        a.c = 38, a.pred = P(T_PRED, g), a.target = P(T_PAF, g), a.mask = P(T_MASK, g);
        a.pdd = LOSS_PDD_VECTOR, a.beta = 0.31f;
        for (int c = 0; c < 38; c++) a.mirror[c] = skel_paf_mirror(c);
        a.att = P(T_ATT, g), a.att_c = 19, a.att_group = 2, a.alpha = 10.0f;
        a.grad_pred = P(T_GRAD, g);
        break;
    case CASE_OFFSET:
        a.c = 36, a.pred = P(T_PRED, g), a.target = P(T_OFF, g);
        a.gate = P(T_HEAT, g), a.gate_c = 19, a.gate_group = 2, a.gate_thr = LOSS_OFFSET_GATE;
        a.grad_pred = P(T_GRAD, g);
        break;
    case CASE_CONSISTENCY:
        a.c = 38, a.pred = P(T_PRED, g), a.target = P(T_PRED2, g);
        a.grad_pred = P(T_GRAD, g), a.grad_target = P(T_GRAD2, g);
        break;
    case CASE_PLAIN_NOGRAD:
        a.c = 38, a.pred = P(T_PRED, g), a.target = P(T_PAF, g), a.mask = P(T_MASK, g);
        break;
    }
    return a;
}

#define NEED_GPU() do { if (!gpu) T_SKIP("skipped: no GPU"); } while (0)

/* The kernels write their per-sample sums to backend memory, asynchronously;
 * these run one on the GPU and bring the N sums back. */
static void gpu_l2(const loss_kernels *k, const loss_l2_args *a, double *host)
{
    float *d = gpu->alloc(gpu, 2 * N);
    k->l2(gpu, a, (double *)d);
    gpu->download(gpu, (float *)host, d, 2 * N);
    gpu->free(gpu, d);
}
static void gpu_kl(const loss_kernels *k, const loss_kl_args *a, double *host)
{
    float *d = gpu->alloc(gpu, 2 * N);
    k->kl(gpu, a, (double *)d);
    gpu->download(gpu, (float *)host, d, 2 * N);
    gpu->free(gpu, d);
}

static void l2_case_run(l2_case k, int c, const char *what)
{
    make_tensors(c);
    const loss_kernels *kc = loss_kernels_for(cpu), *kg = loss_kernels_for(gpu);
    loss_l2_args ac = l2_args(k, 0), ag = l2_args(k, 1);
    double sc[N], sg[N], sg2[N];
    kc->l2(cpu, &ac, sc);
    gpu_l2(kg, &ag, sg);
    for (int s = 0; s < N; s++) T_CHECKF(fabs(sg[s] - sc[s]) <= 1e-9 * fabs(sc[s]) + 1e-12,
                                         "%s: sample %d sum gpu %.17g cpu %.17g", what, s, sg[s], sc[s]);
    double e = dual_err(&t[T_GRAD]), e2 = dual_err(&t[T_GRAD2]);
    T_CHECKF(e <= 1e-5, "%s: grad_pred relative error %.3g", what, e);
    T_CHECKF(e2 <= 1e-5, "%s: grad_target relative error %.3g", what, e2);
    /* again without gradients: the sums must be bit-identical */
    ag.grad_pred = ag.grad_target = NULL;
    gpu_l2(kg, &ag, sg2);
    T_CHECKF(memcmp(sg, sg2, sizeof sg) == 0, "%s: repeated sums differ", what);
    free_tensors();
}

static void gpu_loss_kernels_selected(void)
{
    NEED_GPU();
    T_CHECK(!strcmp(loss_kernels_for(gpu)->name, "cuda"));
    T_CHECK(!strcmp(loss_kernels_for(cpu)->name, "cpu"));
}
static void l2_both_grids(l2_case k, int c, const char *what)
{
    HW = 13 * 11;
    l2_case_run(k, c, what);
    HW = 46 * 46;
    l2_case_run(k, c, what);
}
static void gpu_loss_l2_heat(void) { NEED_GPU(); l2_both_grids(CASE_HEAT, 19, "heat"); }
static void gpu_loss_l2_paf_attention(void) { NEED_GPU(); l2_both_grids(CASE_PAF, 38, "paf"); }
static void gpu_loss_l2_offset_gate(void) { NEED_GPU(); l2_both_grids(CASE_OFFSET, 36, "offset"); }
static void gpu_loss_l2_consistency(void) { NEED_GPU(); l2_both_grids(CASE_CONSISTENCY, 38, "consistency"); }
static void gpu_loss_l2_no_grad(void) { NEED_GPU(); l2_both_grids(CASE_PLAIN_NOGRAD, 38, "no-grad"); }

static void kl_case(int detach)
{
    make_tensors(19);
    const loss_kernels *kc = loss_kernels_for(cpu), *kg = loss_kernels_for(gpu);
    loss_kl_args ac, ag;
    memset(&ac, 0, sizeof ac);
    ac.n = N, ac.c = 19, ac.hw = HW, ac.eps = 1e-6f, ac.coef = 1.0f / N;
    ag = ac;
    ac.h = t[T_PRED].c, ac.hps = t[T_PRED2].c, ac.grad_h = detach ? NULL : t[T_GRAD].c, ac.grad_hps = t[T_GRAD2].c;
    ag.h = t[T_PRED].g, ag.hps = t[T_PRED2].g, ag.grad_h = detach ? NULL : t[T_GRAD].g, ag.grad_hps = t[T_GRAD2].g;
    double sc[N], sg[N], sg2[N];
    kc->kl(cpu, &ac, sc);
    gpu_kl(kg, &ag, sg);
    for (int s = 0; s < N; s++) T_CHECKF(fabs(sg[s] - sc[s]) <= 1e-9 * fabs(sc[s]) + 1e-12,
                                         "kl: sample %d sum gpu %.17g cpu %.17g", s, sg[s], sc[s]);
    double e = dual_err(&t[T_GRAD]), e2 = dual_err(&t[T_GRAD2]);
    T_CHECKF(e <= 1e-5, "kl: grad_h relative error %.3g (detach=%d)", e, detach);
    T_CHECKF(e2 <= 1e-5, "kl: grad_hps relative error %.3g", e2);
    ag.grad_h = ag.grad_hps = NULL;
    gpu_kl(kg, &ag, sg2);
    T_CHECKF(memcmp(sg, sg2, sizeof sg) == 0, "kl: repeated sums differ");
    free_tensors();
}
static void gpu_loss_kl(void)
{
    NEED_GPU();
    HW = 13 * 11;
    kl_case(0);
    HW = 46 * 46;
    kl_case(0);
}
static void gpu_loss_kl_detach(void) { NEED_GPU(); HW = 46 * 46; kl_case(1); }

int main(void)
{
    core_set_quiet(1);
    cpu = core_cpu_backend_create(0);
    if (core_cuda_device_count() > 0) gpu = core_cuda_backend_create(0);
    T_RUN(gpu_loss_kernels_selected);
    T_RUN(gpu_loss_l2_heat);
    T_RUN(gpu_loss_l2_paf_attention);
    T_RUN(gpu_loss_l2_offset_gate);
    T_RUN(gpu_loss_l2_consistency);
    T_RUN(gpu_loss_l2_no_grad);
    T_RUN(gpu_loss_kl);
    T_RUN(gpu_loss_kl_detach);
    if (gpu) core_backend_destroy(gpu);
    core_backend_destroy(cpu);
    T_EXIT();
}
