/* Per-shape timings of the two CPU convolution paths (core/cpu_conv.h) on the
 * shapes of the SPEC section 3 network, and which one the auto rule picks.
 *   cpu_conv [paper|tiny] [INPUT] [BATCH] [THREADS] [ITERS]
 * defaults: paper 368 1 2 3. One line per distinct shape:
 *   count (how many convs of the network have it), forward and backward ms of
 *   each path (the fastest of ITERS after a warm-up: other jobs on a shared
 *   machine only ever add time), dnnl/gemm ratios, the pick;
 * then the network totals (count-weighted) per path, for the auto rule and for
 * the per-shape best. docs/design.md "CPU convolutions" records the results. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/check.h"
#include "core/cpu_conv.h"
#include "core/rng.h"

typedef struct {
    const char *name;
    core_conv_shape s;
    int count;
    int has_dx;
} bench_shape;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int wc(int c, double width)
{
    int v = (int)lround(c * width);
    return v < 1 ? 1 : v;
}

/* The distinct conv shapes of SPEC section 3 (stride 8, offsets on, p2h subnet). */
static int net_shapes(double width, int in, int n, int stages, bench_shape *out)
{
    int c64 = wc(64, width), c128 = wc(128, width), c256 = wc(256, width), c512 = wc(512, width);
    int h1 = in, h2 = in / 2, h4 = in / 4, h8 = in / 8, cat = 38 + 55 + c128;
    bench_shape list[] = {
        {"conv1_1", {n, 3, h1, h1, c64, 3, 1}, 1, 0},
        {"conv1_2", {n, c64, h1, h1, c64, 3, 1}, 1, 1},
        {"conv2_1", {n, c64, h2, h2, c128, 3, 1}, 1, 1},
        {"conv2_2", {n, c128, h2, h2, c128, 3, 1}, 1, 1},
        {"conv3_1", {n, c128, h4, h4, c256, 3, 1}, 1, 1},
        {"conv3_2-4", {n, c256, h4, h4, c256, 3, 1}, 3, 1},
        {"conv4_1", {n, c256, h8, h8, c512, 3, 1}, 1, 1},
        {"conv4_2", {n, c512, h8, h8, c512, 3, 1}, 1, 1},
        {"conv4_3_CPM", {n, c512, h8, h8, c256, 3, 1}, 1, 1},
        {"conv4_4_CPM", {n, c256, h8, h8, c128, 3, 1}, 1, 1},
        {"s1 conv1-3, p2h conv2", {n, c128, h8, h8, c128, 3, 1}, 6 + stages, 1},
        {"s1 conv4", {n, c128, h8, h8, c512, 1, 1}, 2, 1},
        {"s1 paf conv5", {n, c512, h8, h8, 38, 1, 0}, 1, 1},
        {"s1 heat conv5", {n, c512, h8, h8, 55, 1, 0}, 1, 1},
        {"st conv1", {n, cat, h8, h8, c128, 7, 1}, 2 * (stages - 1), 1},
        {"st conv2-5", {n, c128, h8, h8, c128, 7, 1}, 8 * (stages - 1), 1},
        {"st conv6", {n, c128, h8, h8, c128, 1, 1}, 2 * (stages - 1), 1},
        {"st paf conv7", {n, c128, h8, h8, 38, 1, 0}, stages - 1, 1},
        {"st heat conv7", {n, c128, h8, h8, 55, 1, 0}, stages - 1, 1},
        {"p2h conv1", {n, 38, h8, h8, c128, 3, 1}, stages, 1},
        {"p2h conv3", {n, c128, h8, h8, 19, 1, 0}, stages, 1},
    };
    int m = (int)(sizeof list / sizeof *list);
    memcpy(out, list, sizeof list);
    return m;
}

typedef struct {
    float *x, *w, *b, *y, *dy, *dyc, *dx, *dw, *db;
} bufs;

static float *rnd(size_t n, core_rng *r)
{
    float *p = core_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)(core_rng_uniform(r) - 0.5);
    return p;
}

static void time_path(core_cpu_conv_path path, core_cpu_gemm *g, core_cpu_dnnl *d, const bench_shape *bs, bufs *B,
                      int iters, double *fwd_ms, double *bwd_ms)
{
    const core_conv_shape *s = &bs->s;
    size_t ysz = (size_t)s->n * s->cout * s->h * s->w;
    double *tf = core_malloc((iters + 1) * sizeof(double)), *tb = core_malloc((iters + 1) * sizeof(double));
    for (int it = 0; it <= iters; it++) {
        double t0 = now_ms();
        if (path == CORE_CPU_CONV_DNNL) core_cpu_dnnl_conv_forward(d, s, B->x, B->w, B->b, B->y);
        else core_cpu_gemm_conv_forward(g, s, B->x, B->w, B->b, B->y);
        double t1 = now_ms();
        memcpy(B->dy, B->dyc, ysz * sizeof(float)); /* backward overwrites dy with the masked gradient */
        double t2 = now_ms();
        float *dx = bs->has_dx ? B->dx : NULL;
        if (path == CORE_CPU_CONV_DNNL) core_cpu_dnnl_conv_backward(d, s, B->x, B->w, B->y, B->dy, dx, B->dw, B->db);
        else core_cpu_gemm_conv_backward(g, s, B->x, B->w, B->y, B->dy, dx, B->dw, B->db);
        double t3 = now_ms();
        tf[it] = t1 - t0;
        tb[it] = t3 - t2;
    }
    qsort(tf + 1, iters, sizeof(double), cmp_d);
    qsort(tb + 1, iters, sizeof(double), cmp_d);
    *fwd_ms = tf[1];
    *bwd_ms = tb[1];
    free(tf);
    free(tb);
}

int main(int argc, char **argv)
{
    const char *net = argc > 1 ? argv[1] : "paper";
    int in = argc > 2 ? atoi(argv[2]) : 368, n = argc > 3 ? atoi(argv[3]) : 1, threads = argc > 4 ? atoi(argv[4]) : 2,
        iters = argc > 5 ? atoi(argv[5]) : 3;
    CHECK(!strcmp(net, "paper") || !strcmp(net, "tiny"), "usage: cpu_conv [paper|tiny] [INPUT] [BATCH] [THREADS] [ITERS]");
    CHECK(in > 0 && in % 8 == 0 && n > 0 && threads > 0 && iters > 0, "bad arguments (INPUT must be a multiple of 8)");
    core_set_quiet(1);
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    bench_shape shapes[32];
    int m = net_shapes(!strcmp(net, "paper") ? 1.0 : 0.25, in, n, 6, shapes);
    int have_dnnl = core_cpu_dnnl_built();
    core_cpu_gemm *g = core_cpu_gemm_create();
    core_cpu_dnnl *d = have_dnnl ? core_cpu_dnnl_create() : NULL;
    core_rng r;
    core_rng_seed(&r, 7);
    printf("# cpu_conv %s %dx%d batch %d, %d threads, fastest of %d after a warm-up; ms per call\n", net, in, in, n,
           threads, iters);
    printf("# %-22s %5s %-26s %9s %9s %9s %9s %6s %6s %5s\n", "shape", "count", "n,cin,h,w,cout,k,relu", "gemm_f",
           "gemm_b", "dnnl_f", "dnnl_b", "f_rat", "b_rat", "pick");
    double tot[2] = {0, 0}, tot_auto = 0, tot_best = 0;
    for (int i = 0; i < m; i++) {
        const core_conv_shape *s = &shapes[i].s;
        size_t xsz = (size_t)s->n * s->cin * s->h * s->w, ysz = (size_t)s->n * s->cout * s->h * s->w,
               wsz = (size_t)s->cout * s->cin * s->k * s->k;
        bufs B = {rnd(xsz, &r), rnd(wsz, &r), rnd(s->cout, &r), rnd(ysz, &r), rnd(ysz, &r), rnd(ysz, &r),
                  rnd(xsz, &r), rnd(wsz, &r), rnd(s->cout, &r)};
        double f[2] = {0, 0}, b[2] = {0, 0};
        time_path(CORE_CPU_CONV_GEMM, g, d, &shapes[i], &B, iters, &f[0], &b[0]);
        if (have_dnnl) time_path(CORE_CPU_CONV_DNNL, g, d, &shapes[i], &B, iters, &f[1], &b[1]);
        core_cpu_conv_path pick = have_dnnl ? core_cpu_conv_auto_rule(s) : CORE_CPU_CONV_GEMM;
        char dims[64];
        snprintf(dims, sizeof dims, "%d,%d,%d,%d,%d,%d,%d", s->n, s->cin, s->h, s->w, s->cout, s->k, s->relu);
        printf("  %-22s %5d %-26s %9.2f %9.2f %9.2f %9.2f %6.2f %6.2f %5s\n", shapes[i].name, shapes[i].count, dims,
               f[0], b[0], f[1], b[1], have_dnnl ? f[1] / f[0] : NAN, have_dnnl ? b[1] / b[0] : NAN,
               core_cpu_conv_path_name(pick));
        double c = shapes[i].count, tg = f[0] + b[0], td = f[1] + b[1];
        tot[0] += c * tg;
        tot[1] += c * td;
        tot_auto += c * (pick == CORE_CPU_CONV_DNNL ? td : tg);
        tot_best += c * (have_dnnl && td < tg ? td : tg);
        float *all[] = {B.x, B.w, B.b, B.y, B.dy, B.dyc, B.dx, B.dw, B.db};
        for (int k = 0; k < 9; k++) free(all[k]);
    }
    printf("network convs fwd+bwd: gemm %.1f ms", tot[0]);
    if (have_dnnl)
        printf("  dnnl %.1f ms (%.2fx gemm)  auto %.1f ms  per-shape best %.1f ms", tot[1], tot[1] / tot[0], tot_auto,
               tot_best);
    else
        printf("  (oneDNN not built)");
    printf("\n");
    core_cpu_dnnl_destroy(d);
    core_cpu_gemm_destroy(g);
    return 0;
}
