/* Gradient all-reduce and parameter broadcast on a backend's buffers:
 * MPI directly on the host buffers of the CPU backend, NCCL on the device
 * buffers of the CUDA backend. The all-reduce is launched bucket by bucket,
 * either while the backward pass runs (comm_reducer_progress) or all at the
 * end; see comm/comm.h. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "comm/mpi_check.h"
#include "comm/nccl.h"
#include "core/cuda_backend.h"

struct comm_reducer {
    core_backend *be;
    size_t bucket;   /* floats per bucket */
    int last_buckets;
    int overlap;     /* launch during the pass (else everything at finish) */
    int force;       /* collectives even with one rank */
    comm_nccl *nccl; /* CUDA backend only */

    /* the plan (comm_reducer_plan) */
    size_t plan_n;
    int *ready;      /* per bucket of the plan: position after which it is final */
    int *order;      /* the plan's launch order: by (ready, index) */

    /* the all-reduce in flight */
    int active;
    float *buf;
    size_t n;
    float scale;
    int nb;          /* buckets of this all-reduce */
    const int *seq;  /* launch order (the plan's, or identity) */
    const int *when; /* ready positions (NULL: nothing launches before finish) */
    int launched;    /* seq[0 .. launched) are in flight or done */
    int oldest;      /* launch slots before this one have completed (CPU) */
    int pos;         /* the latest progress position */
    int early;       /* launched before finish */
    int *identity;   /* 0, 1, ... for the non-planned path */
    int cap;         /* capacity of identity, req, idx */
    MPI_Request *req; /* [launch slot], CPU backend */
    int *idx;        /* MPI_Testsome's output */

    comm_launch_fn on_launch;
    void *on_launch_ctx;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

comm_reducer *comm_reducer_create(core_backend *be, double bucket_mb)
{
    CHECK(comm_initialized(), "comm: comm_reducer_create before comm_init");
    CHECK(bucket_mb > 0, "comm.bucket_mb must be positive, got %g", bucket_mb);
    comm_reducer *r = core_calloc(1, sizeof *r);
    r->be = be;
    r->overlap = 1;
    double floats = bucket_mb * 1024.0 * 1024.0 / sizeof(float);
    if (floats < 1) floats = 1;
    if (floats > (double)(1 << 30)) floats = (double)(1 << 30); /* int counts */
    r->bucket = (size_t)floats;
    if (be->dev == CORE_DEV_CUDA && comm_size() > 1) {
#ifdef SSPOSE_CUDA
        r->nccl = comm_nccl_create();
#else
        CORE_DIE("comm: CUDA backend without NCCL support in this build");
#endif
    }
    return r;
}

void comm_reducer_destroy(comm_reducer *r)
{
    if (!r) return;
#ifdef SSPOSE_CUDA
    if (r->nccl) comm_nccl_destroy(r->nccl);
#endif
    free(r->ready);
    free(r->order);
    free(r->identity);
    free(r->req);
    free(r->idx);
    free(r);
}

int comm_reducer_last_buckets(const comm_reducer *r) { return r->last_buckets; }

void comm_reducer_set_overlap(comm_reducer *r, int on) { r->overlap = on != 0; }

void comm_reducer_on_launch(comm_reducer *r, comm_launch_fn fn, void *ctx)
{
    r->on_launch = fn;
    r->on_launch_ctx = ctx;
}

int comm_reducer_on_collective(comm_reducer *r, comm_collective_fn fn, void *ctx)
{
#ifdef SSPOSE_CUDA
    if (!r->nccl) return 0;
    comm_nccl_set_tap(r->nccl, fn, ctx);
    return 1;
#else
    (void)r; (void)fn; (void)ctx;
    return 0;
#endif
}

void comm_reducer_force_collectives(comm_reducer *r)
{
    r->force = 1;
    if (r->be->dev == CORE_DEV_CUDA && !r->nccl) {
#ifdef SSPOSE_CUDA
        r->nccl = comm_nccl_create();
#else
        CORE_DIE("comm: CUDA backend without NCCL support in this build");
#endif
    }
}

static int nbuckets(size_t n, size_t bucket) { return (int)((n + bucket - 1) / bucket); }
static int collectives(const comm_reducer *r) { return comm_size() > 1 || r->force; }

static void reserve(comm_reducer *r, int nb)
{
    if (nb <= r->cap) return;
    r->identity = core_realloc(r->identity, (size_t)nb * sizeof *r->identity);
    r->req = core_realloc(r->req, (size_t)nb * sizeof *r->req);
    r->idx = core_realloc(r->idx, (size_t)nb * sizeof *r->idx);
    for (int i = r->cap; i < nb; i++) r->identity[i] = i;
    r->cap = nb;
}

void comm_reducer_plan(comm_reducer *r, size_t n, const comm_grad_range *ranges, int nranges)
{
    CHECK(!r->active, "comm: comm_reducer_plan while an all-reduce is in flight");
    int nb = nbuckets(n, r->bucket);
    free(r->ready);
    free(r->order);
    r->ready = core_calloc(nb ? (size_t)nb : 1, sizeof *r->ready);
    r->order = core_calloc(nb ? (size_t)nb : 1, sizeof *r->order);
    for (int i = 0; i < nranges; i++) {
        const comm_grad_range *g = &ranges[i];
        if (g->count == 0) continue;
        CHECK(g->offset + g->count <= n && g->offset + g->count > g->offset,
              "comm: gradient range [%zu, +%zu) outside the %zu-float buffer", g->offset, g->count, n);
        CHECK(g->final_after >= 0, "comm: gradient range at %zu final after position %d", g->offset, g->final_after);
        int b0 = (int)(g->offset / r->bucket), b1 = (int)((g->offset + g->count - 1) / r->bucket);
        for (int b = b0; b <= b1; b++)
            if (r->ready[b] < g->final_after) r->ready[b] = g->final_after;
    }
    /* Launch order: by ready position, ties by index (a stable counting sort;
     * positions are small, at most the number of backward ops). */
    int maxpos = 0;
    for (int b = 0; b < nb; b++)
        if (r->ready[b] > maxpos) maxpos = r->ready[b];
    int *first = core_calloc((size_t)maxpos + 2, sizeof *first);
    for (int b = 0; b < nb; b++) first[r->ready[b] + 1]++;
    for (int p = 0; p <= maxpos; p++) first[p + 1] += first[p];
    for (int b = 0; b < nb; b++) r->order[first[r->ready[b]]++] = b;
    free(first);
    r->plan_n = n;
    reserve(r, nb);
    /* Ranks that launched buckets in different orders would match one rank's
     * bucket 3 with another's bucket 7 (MPI) or hang (NCCL): refuse instead. */
    if (comm_size() > 1) {
        uint64_t h = comm_hash_bytes(&n, sizeof n) ^ comm_hash_bytes(r->ready, (size_t)nb * sizeof *r->ready);
        int first = -1;
        int bad = comm_compare_hash(h, &first);
        CHECK(bad == 0, "comm: the gradient all-reduce plan of rank %d differs from rank 0's (different networks?)",
              first);
    }
}

/* ---- one all-reduce ------------------------------------------------------- */
static size_t bucket_off(const comm_reducer *r, int b) { return (size_t)b * r->bucket; }
static size_t bucket_cnt(const comm_reducer *r, int b)
{
    size_t off = bucket_off(r, b);
    return r->n - off < r->bucket ? r->n - off : r->bucket;
}

static void launch_next(comm_reducer *r)
{
    int slot = r->launched, b = r->seq[slot];
    float *p = r->buf + bucket_off(r, b);
    size_t cnt = bucket_cnt(r, b);
    if (r->on_launch) r->on_launch(r->on_launch_ctx, b, p, cnt);
    /* The scale sits in the bucket's launch so a bucket is touched only once
     * it is final; x *= scale then the sum is the arithmetic of scaling the
     * whole buffer first. */
    if (r->scale != 1.0f) r->be->scale(r->be, p, r->scale, cnt);
#ifdef SSPOSE_CUDA
    if (r->nccl) {
        comm_nccl_launch(r->nccl, core_cuda_stream(r->be), p, cnt, slot);
        r->launched++;
        return;
    }
#endif
    /* MPI reads the buffer in host memory: only the CPU backend comes here
     * (CUDA goes through NCCL), whose ops are complete when they return. */
    CHECK(r->be->dev == CORE_DEV_CPU, "comm: MPI all-reduce of %s device buffers", r->be->name);
    int rc = MPI_Iallreduce(MPI_IN_PLACE, p, (int)cnt, MPI_FLOAT, MPI_SUM, comm_mpi_comm(), &r->req[slot]);
    MPI_CHECK(rc, "MPI_Iallreduce(gradients)");
    r->launched++;
}

/* Lets MPI move the buckets in flight (Open MPI progresses non-blocking
 * collectives only inside MPI calls) and retires the completed ones. */
static void poll_mpi(comm_reducer *r)
{
    while (r->oldest < r->launched && r->req[r->oldest] == MPI_REQUEST_NULL) r->oldest++;
    if (r->oldest == r->launched) return;
    int count = 0;
    int rc = MPI_Testsome(r->launched - r->oldest, r->req + r->oldest, &count, r->idx, MPI_STATUSES_IGNORE);
    MPI_CHECK(rc, "MPI_Testsome(gradients)");
    while (r->oldest < r->launched && r->req[r->oldest] == MPI_REQUEST_NULL) r->oldest++;
}

static void wait_mpi(comm_reducer *r)
{
    comm_watch_begin("gradient all-reduce");
    int rc = MPI_Waitall(r->launched - r->oldest, r->req + r->oldest, MPI_STATUSES_IGNORE);
    comm_watch_end();
    MPI_CHECK(rc, "MPI_Waitall(gradients)");
}

static void start(comm_reducer *r, float *buf, size_t n, float scale, int planned)
{
    CHECK(!r->active, "comm: an all-reduce is already in flight");
    r->active = 1;
    r->buf = buf;
    r->n = n;
    r->scale = scale;
    r->nb = nbuckets(n, r->bucket);
    reserve(r, r->nb);
    r->seq = planned ? r->order : r->identity;
    r->when = planned ? r->ready : NULL;
    r->launched = r->oldest = r->early = 0;
    r->pos = 0;
    r->last_buckets = r->nb;
}

void comm_reducer_begin(comm_reducer *r, float *buf, float scale)
{
    CHECK(r->ready, "comm: comm_reducer_begin without a plan");
    start(r, buf, r->plan_n, scale, r->overlap);
    comm_reducer_progress(r, 0);
}

void comm_reducer_progress(comm_reducer *r, int done)
{
    CHECK(r->active, "comm: comm_reducer_progress outside an all-reduce");
    CHECK(done >= r->pos, "comm: backward position went back from %d to %d", r->pos, done);
    r->pos = done;
    if (!collectives(r) || !r->when) return;
    while (r->launched < r->nb && r->when[r->seq[r->launched]] <= done) launch_next(r);
    r->early = r->launched;
    if (!r->nccl) poll_mpi(r);
}

void comm_reducer_finish(comm_reducer *r, comm_reducer_stats *st)
{
    CHECK(r->active, "comm: comm_reducer_finish without comm_reducer_begin");
    double t0 = now_s();
    comm_reducer_stats s = {.buckets = r->nb, .floats = r->n};
    if (!collectives(r) && r->scale != 1.0f && r->n > 0) r->be->scale(r->be, r->buf, r->scale, r->n);
    if (collectives(r) && r->n > 0) {
        s.launched_early = r->early;
        if (!r->nccl) poll_mpi(r);
        for (int k = 0; k < r->launched; k++) {
            int b = r->seq[k];
#ifdef SSPOSE_CUDA
            if (r->nccl) {
                if (comm_nccl_done(r->nccl, k)) s.floats_hidden += bucket_cnt(r, b);
                continue;
            }
#endif
            if (r->req[k] == MPI_REQUEST_NULL) s.floats_hidden += bucket_cnt(r, b);
        }
        while (r->launched < r->nb) launch_next(r);
#ifdef SSPOSE_CUDA
        if (r->nccl)
            comm_nccl_wait(r->nccl, core_cuda_stream(r->be), r->launched);
        else
#endif
            wait_mpi(r);
    }
    r->active = 0;
    s.wait_s = now_s() - t0;
    if (st) *st = s;
}

void comm_reducer_quiesce(comm_reducer *r)
{
#ifdef SSPOSE_CUDA
    if (r->nccl) comm_nccl_quiesce(r->nccl);
#else
    (void)r;
#endif
}

void comm_reducer_allreduce_sum(comm_reducer *r, float *buf, size_t n)
{
    start(r, buf, n, 1.0f, 0);
    comm_reducer_finish(r, NULL);
}

void comm_reducer_allreduce_doubles(comm_reducer *r, double *buf, size_t n)
{
    if (!collectives(r) || n == 0) return;
#ifdef SSPOSE_CUDA
    if (r->nccl) {
        comm_nccl_allreduce_doubles(r->nccl, core_cuda_stream(r->be), buf, n);
        return;
    }
#endif
    CHECK(r->be->dev == CORE_DEV_CPU, "comm: MPI all-reduce of %s device buffers", r->be->name);
    CHECK(n <= INT_MAX, "comm: %zu doubles in one all-reduce", n);
    comm_allreduce_doubles(buf, (int)n, COMM_SUM);
}

void comm_reducer_bcast(comm_reducer *r, float *buf, size_t n, int root)
{
    CHECK(root >= 0 && root < comm_size(), "comm: broadcast root %d outside 0..%d", root, comm_size() - 1);
    if (comm_size() == 1 || n == 0) return;
#ifdef SSPOSE_CUDA
    if (r->nccl) { comm_nccl_bcast(r->nccl, buf, n, root, r->bucket); return; }
#endif
    r->be->sync(r->be);
    for (size_t off = 0; off < n; off += r->bucket) {
        size_t cnt = n - off < r->bucket ? n - off : r->bucket;
        comm_watch_begin("parameter broadcast");
        int rc = MPI_Bcast(buf + off, (int)cnt, MPI_FLOAT, root, comm_mpi_comm());
        comm_watch_end();
        MPI_CHECK(rc, "MPI_Bcast(parameters)");
    }
}
