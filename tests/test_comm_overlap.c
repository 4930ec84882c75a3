/* The gradient all-reduce overlapped with the backward pass (comm/comm.h,
 * model_backward_hooked). Run alone (make test) it is an MPI singleton with
 * the collectives forced on; tests/test_comm_overlap.sh runs it under mpirun
 * with 2 and 3 ranks, and with a fault argument:
 *   test_comm_overlap stall R   rank R sleeps 60 s before its backward pass;
 *                               the others must time out in the all-reduce
 *   test_comm_overlap kill R    rank R kills itself in the middle of its
 *                               backward pass, with buckets in flight
 * Checked: the backward positions the model reports are where each
 * parameter's gradient really stops changing (found by watching the buffer
 * after every op), shared p2h/h2p parameters included; every bucket is
 * launched only once final (its content at launch equals the finished
 * gradient, bit for bit) while most are launched before the pass ends; the
 * overlapped, the non-overlapped and the plain bucketed all-reduce give
 * bit-identical results, identical on every rank, and with 2 ranks the same
 * bits as the blocking MPI_Allreduce the trainer used before. The *_bn cases
 * repeat this with batch norm (model.norm = batch): its gamma/beta gradients
 * go through the op table's finality too, and its synchronised statistics
 * (blocking all-reduces of a few doubles inside the pass) interleave with the
 * buckets in flight. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "comm/comm.h"
#include "core/backend.h"
#include "core/config.h"
#include "core/rng.h"
#include "model/net.h"
#include "tests/test.h"
#include "tests/test_mpi.h"

static core_backend *be;
#define BUCKET_MB 0.002 /* 524 floats: hundreds of buckets on the small net */

static core_norm_mode g_norm; /* model.norm of the cases below */

static void sum_over_ranks(void *ctx, double *v, int n)
{
    (void)ctx;
    comm_allreduce_doubles(v, n, COMM_SUM);
}

static void small_config(core_config *cfg, core_ss_mode ss)
{
    core_config_defaults(cfg);
    cfg->model.norm = g_norm;
    cfg->model.width = 0.125;
    cfg->model.stages = 3;
    cfg->model.stride = 8;
    cfg->model.offsets = 1;
    cfg->model.ss = ss;
    core_config_resolve(cfg);
}

/* Forward on this rank's input and output gradients (rank-keyed), grads zeroed. */
static void forward_with_output_grads(model_net *net, int rank)
{
    const core_config *cfg = model_config(net);
    model_set_input_shape(net, 1, 32, 32);
    core_rng g;
    core_rng_seed(&g, core_rng_key(1234, (uint64_t)rank));
    size_t nin = 3 * 32 * 32;
    float *host = core_malloc(nin * sizeof(float));
    for (size_t i = 0; i < nin; i++) host[i] = (float)(core_rng_uniform(&g) - 0.5);
    be->upload(be, model_input(net), host, nin);
    free(host);
    model_zero_grads(net);
    model_forward(net, 1);
    for (int s = 0; s < cfg->model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output_grad(net, s, (model_out)o);
            if (!t.data) continue;
            size_t n = core_tensor_numel(&t);
            float *d = core_malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) d[i] = (float)(0.02 * (core_rng_uniform(&g) - 0.5));
            be->upload(be, t.data, d, n);
            free(d);
        }
}

static float *download(model_net *net)
{
    size_t n = model_num_floats(net);
    float *h = core_malloc(n * sizeof(float));
    be->download(be, h, model_grads(net), n);
    return h;
}

static void plan(comm_reducer *r, model_net *net)
{
    int np = model_param_count(net);
    comm_grad_range *g = core_calloc((size_t)np, sizeof *g);
    for (int i = 0; i < np; i++) {
        const model_param *p = model_param_at(net, i);
        g[i] = (comm_grad_range){p->offset, p->numel, model_param_grad_final(net, i)};
    }
    comm_reducer_plan(r, model_num_floats(net), g, np);
    free(g);
}

/* ---- where gradients become final --------------------------------------- */
typedef struct {
    model_net *net;
    float *prev;
    int *first, *last; /* per parameter: first and last position that changed its gradient */
} watch;

static void watch_hook(void *ctx, int done)
{
    watch *w = ctx;
    const float *g = model_grads(w->net); /* CPU backend: host memory */
    for (int i = 0; i < model_param_count(w->net); i++) {
        const model_param *p = model_param_at(w->net, i);
        if (memcmp(g + p->offset, w->prev + p->offset, p->numel * sizeof(float))) {
            if (!w->first[i]) w->first[i] = done;
            w->last[i] = done;
        }
    }
    memcpy(w->prev, g, model_num_floats(w->net) * sizeof(float));
}

static void check_final_positions(core_ss_mode ss)
{
    core_config cfg;
    small_config(&cfg, ss);
    model_net *net = model_create(&cfg, be);
    model_set_sum_hook(net, sum_over_ranks, NULL);
    model_init_params(net, 5);
    forward_with_output_grads(net, comm_rank());
    int np = model_param_count(net);
    watch w = {net, core_calloc(model_num_floats(net), sizeof(float)), core_calloc((size_t)np, sizeof(int)),
               core_calloc((size_t)np, sizeof(int))};
    model_backward_hooked(net, watch_hook, &w);
    int shared = 0;
    for (int i = 0; i < np && !t_cur_failed; i++) {
        const model_param *p = model_param_at(net, i);
        int fin = model_param_grad_final(net, i);
        T_CHECKF(fin >= 1 && fin <= model_backward_steps(net), "ss=%d: %s final after %d of %d", ss, p->name, fin,
                 model_backward_steps(net));
        /* later than the last change would only delay the bucket; earlier would corrupt it */
        T_CHECKF(fin == w.last[i], "ss=%d: %s: model says final after %d, its gradient last changed after %d", ss,
                 p->name, fin, w.last[i]);
        if (!strncmp(p->name, "p2h/", 4) || !strncmp(p->name, "h2p/", 4)) {
            /* one use per stage: the first use in backward (stage 3) is far from final */
            T_CHECKF(w.first[i] > 0 && w.first[i] < w.last[i], "ss=%d: shared %s changed first after %d, last after %d",
                     ss, p->name, w.first[i], w.last[i]);
            shared++;
        }
    }
    /* per subnet: 3 convs' weight and bias, and with batch norm the 2 hidden convs' gamma and beta */
    int per = 6 + (g_norm == CORE_NORM_BATCH ? 4 : 0);
    T_CHECKF(shared == (ss == CORE_SS_BOTH ? 2 : 1) * per, "ss=%d: %d shared subnet tensors", ss, shared);
    free(w.prev);
    free(w.first);
    free(w.last);
    model_destroy(net);
}

static void test_final_positions_p2h(void) { check_final_positions(CORE_SS_P2H); }
static void test_final_positions_both(void) { check_final_positions(CORE_SS_BOTH); }

/* ---- launches happen only on final gradients, results are bit-identical ---- */
typedef struct {
    const float *base;  /* the gradient buffer being reduced */
    const float *final; /* its finished, unreduced content */
    int launches, bad, first_bad, in_pass;
    int pass_done;
} launch_check;

static void on_launch(void *ctx, int bucket, const float *data, size_t count)
{
    launch_check *c = ctx;
    size_t off = (size_t)(data - c->base);
    if (memcmp(data, c->final + off, count * sizeof(float))) {
        if (!c->bad) c->first_bad = bucket;
        c->bad++;
    }
    c->launches++;
    if (!c->pass_done) c->in_pass++;
}

static void progress_hook(void *ctx, int done) { comm_reducer_progress(ctx, done); }

/* One all-reduce of this rank's gradient through begin/backward/finish. */
static float *reduce_in_pass(model_net *net, comm_reducer *r, launch_check *lc, float scale,
                             comm_reducer_stats *st)
{
    forward_with_output_grads(net, comm_rank());
    comm_reducer_on_launch(r, on_launch, lc);
    lc->pass_done = 0;
    comm_reducer_begin(r, model_grads(net), scale);
    model_backward_hooked(net, progress_hook, r);
    lc->pass_done = 1;
    comm_reducer_finish(r, st);
    comm_reducer_on_launch(r, NULL, NULL);
    return download(net);
}

static size_t count_diff(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static void check_overlap(core_ss_mode ss)
{
    int size = comm_size();
    core_config cfg;
    small_config(&cfg, ss);
    model_net *net = model_create(&cfg, be);
    model_set_sum_hook(net, sum_over_ranks, NULL);
    model_init_params(net, 11);
    size_t n = model_num_floats(net);
    float scale = size > 1 ? (float)(1.0 / size) : 0.5f; /* the trainer's 1/world; 0.5 so one rank scales too */

    /* the finished gradient of this rank */
    forward_with_output_grads(net, comm_rank());
    model_backward(net);
    float *final = download(net);

    /* 1. the trainer's old path: scale everything, then the bucketed all-reduce */
    comm_reducer *plain = comm_reducer_create(be, BUCKET_MB);
    comm_reducer_force_collectives(plain);
    be->scale(be, model_grads(net), scale, n);
    comm_reducer_allreduce_sum(plain, model_grads(net), n);
    float *want = download(net);
    int nb = comm_reducer_last_buckets(plain);
    T_CHECKF(nb > 100, "only %d buckets: the test wants many", nb);

    /* 1b. what the trainer did before the overlap: blocking MPI_Allreduce per
     * bucket. Two addends commute, so with 2 ranks it must match bit for bit;
     * with 3 the blocking and non-blocking algorithms may associate the sum
     * differently: only rounding-close then. */
    if (size > 1) {
        float *old = core_malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) old[i] = final[i] * scale;
        size_t bucket = (size_t)(BUCKET_MB * 1024 * 1024 / sizeof(float));
        for (size_t off = 0; off < n; off += bucket) {
            int cnt = (int)(n - off < bucket ? n - off : bucket);
            T_CHECK(MPI_Allreduce(MPI_IN_PLACE, old + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS);
        }
        size_t d = count_diff(old, want, n), far = 0;
        for (size_t i = 0; i < n; i++) far += fabsf(old[i] - want[i]) > 1e-6f * fabsf(old[i]) + 1e-30f;
        T_CHECKF(size > 2 ? far == 0 : d == 0, "ss=%d: %zu floats differ from the blocking all-reduce (%zu beyond "
                 "rounding)", ss, d, far);
        if (getenv("SSPOSE_TEST_VERBOSE") && comm_rank() == 0)
            fprintf(stderr, "np%d ss=%d: %zu of %zu floats differ in the last bits from blocking MPI_Allreduce\n", size,
                    ss, d, n);
        free(old);
    }

    /* 2. overlapped */
    comm_reducer *r = comm_reducer_create(be, BUCKET_MB);
    comm_reducer_force_collectives(r);
    plan(r, net);
    launch_check lc = {model_grads(net), final, 0, 0, -1, 0, 0};
    comm_reducer_stats st;
    float *got = reduce_in_pass(net, r, &lc, scale, &st);
    T_CHECKF(lc.launches == nb && st.buckets == nb, "ss=%d: %d launches, %d buckets in stats, %d expected", ss,
             lc.launches, st.buckets, nb);
    T_CHECKF(lc.bad == 0, "ss=%d: %d bucket(s) launched before their gradient was final (first: bucket %d)", ss, lc.bad,
             lc.first_bad);
    /* only the backbone's first layers are final at the very end */
    T_CHECKF(lc.in_pass == st.launched_early && st.launched_early > nb / 2, "ss=%d: %d of %d buckets launched in the "
             "pass (reducer says %d)", ss, lc.in_pass, nb, st.launched_early);
    T_CHECKF(st.floats == n && st.floats_hidden <= n, "ss=%d: stats floats %zu hidden %zu of %zu", ss, st.floats,
             st.floats_hidden, n);
    size_t d = count_diff(got, want, n);
    T_CHECKF(d == 0, "ss=%d: overlapped all-reduce differs from the plain one in %zu of %zu floats", ss, d, n);
    free(got);

    /* 3. overlap off: everything launched at finish, in bucket order */
    comm_reducer_set_overlap(r, 0);
    launch_check lc0 = {model_grads(net), final, 0, 0, -1, 0, 0};
    got = reduce_in_pass(net, r, &lc0, scale, &st);
    T_CHECKF(lc0.bad == 0 && lc0.in_pass == 0 && st.launched_early == 0 && lc0.launches == nb,
             "ss=%d: overlap off: %d bad, %d launched in the pass", ss, lc0.bad, lc0.in_pass);
    d = count_diff(got, want, n);
    T_CHECKF(d == 0, "ss=%d: non-overlapped all-reduce differs from the plain one in %zu of %zu floats", ss, d, n);

    /* replicas agree bit for bit */
    int first = -1;
    T_CHECKF(comm_compare_hash(comm_hash_bytes(got, n * sizeof(float)), &first) == 0,
             "ss=%d: rank %d's reduced gradient differs from rank 0's", ss, first);
    free(got);

    /* 4. the check has teeth: a plan that calls everything final after the
     * first op must be caught. Only without peers: launching a bucket that is
     * still being written would race with MPI on a real all-reduce. */
    if (size == 1) {
        comm_reducer *early = comm_reducer_create(be, BUCKET_MB);
        comm_reducer_force_collectives(early);
        comm_grad_range all = {0, n, 1};
        comm_reducer_plan(early, n, &all, 1);
        launch_check le = {model_grads(net), final, 0, 0, -1, 0, 0};
        got = reduce_in_pass(net, early, &le, 1.0f, &st);
        T_CHECKF(le.bad > nb / 2, "ss=%d: a too-early plan went unnoticed (%d of %d buckets flagged)", ss, le.bad, nb);
        free(got);
        comm_reducer_destroy(early);
    }

    free(final);
    free(want);
    comm_reducer_destroy(plain);
    comm_reducer_destroy(r);
    model_destroy(net);
}

static void test_overlap_p2h(void) { check_overlap(CORE_SS_P2H); }
static void test_overlap_both(void) { check_overlap(CORE_SS_BOTH); }
static void test_final_positions_both_bn(void)
{
    g_norm = CORE_NORM_BATCH;
    check_final_positions(CORE_SS_BOTH);
    g_norm = CORE_NORM_NONE;
}
static void test_overlap_both_bn(void)
{
    g_norm = CORE_NORM_BATCH;
    check_overlap(CORE_SS_BOTH);
    g_norm = CORE_NORM_NONE;
}

/* Launch order and timing from an explicit plan: 2000 floats in 524-float
 * buckets 0..3; ranges touch only buckets 0 (final after 3) and 1 (after 1),
 * so the untouched 2 and 3 go at begin, then 1, then 0; the sum is exact. */
typedef struct { int bucket[8], pos[8], n, now; } order_log;

static void log_launch(void *ctx, int bucket, const float *data, size_t count)
{
    order_log *o = ctx;
    (void)data;
    (void)count;
    if (o->n < 8) { o->bucket[o->n] = bucket; o->pos[o->n] = o->now; }
    o->n++;
}

static void test_launch_order(void)
{
    comm_reducer *r = comm_reducer_create(be, BUCKET_MB);
    comm_reducer_force_collectives(r);
    comm_grad_range g[2] = {{0, 10, 3}, {600, 100, 1}};
    comm_reducer_plan(r, 2000, g, 2);
    float *buf = be->alloc(be, 2000);
    float *host = core_malloc(2000 * sizeof(float));
    for (int i = 0; i < 2000; i++) host[i] = (float)(comm_rank() + 1) * (float)(i % 7);
    be->upload(be, buf, host, 2000);
    order_log o = {.n = 0, .now = 0};
    comm_reducer_on_launch(r, log_launch, &o);
    comm_reducer_begin(r, buf, 0.5f);
    for (o.now = 1; o.now <= 4; o.now++) comm_reducer_progress(r, o.now);
    comm_reducer_stats st;
    comm_reducer_finish(r, &st);
    int want_b[4] = {2, 3, 1, 0}, want_p[4] = {0, 0, 1, 3};
    T_CHECKF(o.n == 4 && st.launched_early == 4 && st.buckets == 4, "%d launches, %d early", o.n, st.launched_early);
    for (int k = 0; k < 4 && k < o.n; k++)
        T_CHECKF(o.bucket[k] == want_b[k] && o.pos[k] == want_p[k], "launch %d: bucket %d at position %d, expected "
                 "bucket %d at %d", k, o.bucket[k], o.pos[k], want_b[k], want_p[k]);
    be->download(be, host, buf, 2000);
    double ranks = comm_size() * (comm_size() + 1) / 2.0;
    for (int i = 0; i < 2000; i++)
        if (host[i] != (float)(0.5 * ranks * (i % 7))) {
            T_FAILF("element %d = %g, expected %g", i, host[i], 0.5 * ranks * (i % 7));
            break;
        }
    free(host);
    be->free(be, buf);
    comm_reducer_destroy(r);
}

/* ---- a peer that stalls or dies while buckets are in flight ---------------- */
typedef struct { comm_reducer *r; int kill_at; } fault_ctx;

static void fault_hook(void *ctx, int done)
{
    fault_ctx *f = ctx;
    comm_reducer_progress(f->r, done);
    if (done == f->kill_at) raise(SIGKILL);
}

static void fault(const char *mode, int victim)
{
    comm_set_timeout(2);
    comm_set_context("the overlap fault test");
    core_config cfg;
    small_config(&cfg, CORE_SS_P2H);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, 3);
    comm_reducer *r = comm_reducer_create(be, BUCKET_MB);
    plan(r, net);
    fault_ctx f = {r, -1};
    if (comm_rank() == victim) {
        if (!strcmp(mode, "stall")) sleep(60);
        if (!strcmp(mode, "kill")) f.kill_at = model_backward_steps(net) / 2;
    }
    forward_with_output_grads(net, comm_rank());
    comm_reducer_begin(r, model_grads(net), 0.5f);
    model_backward_hooked(net, fault_hook, &f);
    comm_reducer_finish(r, NULL);
    /* a rank that gets here was not stopped */
    printf("rank %d passed the collective\n", comm_rank());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    (void)t_run; /* this program reports through t_mpi_run (tests/test_mpi.h) */
    comm_init(&argc, &argv);
    core_set_quiet(1);
    be = core_cpu_backend_create(1);
    if (argc == 3) {
        fault(argv[1], atoi(argv[2]));
    } else {
        T_MPI_RUN(test_final_positions_p2h);
        T_MPI_RUN(test_final_positions_both);
        T_MPI_RUN(test_launch_order);
        T_MPI_RUN(test_overlap_p2h);
        T_MPI_RUN(test_overlap_both);
        T_MPI_RUN(test_final_positions_both_bn);
        T_MPI_RUN(test_overlap_both_bn);
    }
    core_backend_destroy(be);
    comm_finalize();
    T_EXIT();
}
