/* NCCL path of the gradient all-reduce (CUDA builds only).
 *
 * The communicator is non-blocking so that no NCCL call can block the host:
 * init and every collective are polled against the comm timeout, and an
 * asynchronous NCCL error (a peer died, a network fault) aborts the
 * communicator and then the job, naming this rank, instead of hanging. */
#ifdef SSPOSE_CUDA

#include "comm/nccl.h"

#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "comm/mpi_check.h"

struct comm_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    int device;
    /* Per launch slot of the overlapped all-reduce: `ready` is recorded on the
     * backend's stream (the bucket's gradient is queued), `done` on ours after
     * the collective. Events are reused every step: a wait or query sees the
     * most recent record, so no step needs fresh ones. */
    cudaEvent_t *ready, *done;
    int nevents;
    /* The latest gradient all-reduce as a whole (recorded on our stream by
     * comm_nccl_wait); `pending` until the host has seen it complete. */
    cudaEvent_t step_done;
    int pending;
    cudaEvent_t small_ready, small_done; /* comm_nccl_allreduce_doubles (reused: each wait sees its own record) */
    comm_nccl_tap_fn tap;
    void *tap_ctx;
};

#define CUDA_CHECK(call, what) do { cudaError_t e_ = (call); \
        if (e_ != cudaSuccess) CORE_DIE("CUDA %s failed: %s", what, cudaGetErrorString(e_)); } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void pause_briefly(void)
{
    struct timespec ts = {0, 50000}; /* 50 us: far below a collective's cost */
    nanosleep(&ts, NULL);
}

static CORE_NORETURN void nccl_fail(comm_nccl *c, const char *what, ncclResult_t rc)
{
    const char *why = ncclGetErrorString(rc);
    const char *last = c ? ncclGetLastError(c->comm) : NULL;
    if (c && c->comm) ncclCommAbort(c->comm); /* releases peers blocked on us */
    CORE_DIE("NCCL %s failed: %s%s%s", what, why, last && *last ? ": " : "", last && *last ? last : "");
}

/* A call on a non-blocking communicator may return ncclInProgress; wait until
 * the communicator settles, under the deadline. */
static void settle(comm_nccl *c, ncclResult_t rc, const char *what)
{
    if (rc != ncclSuccess && rc != ncclInProgress) nccl_fail(c, what, rc);
    double deadline = now_s() + comm_timeout();
    for (;;) {
        ncclResult_t st;
        ncclResult_t q = ncclCommGetAsyncError(c->comm, &st);
        if (q != ncclSuccess) nccl_fail(c, "ncclCommGetAsyncError", q);
        if (st == ncclSuccess) return;
        if (st != ncclInProgress) nccl_fail(c, what, st);
        if (now_s() > deadline) {
            ncclCommAbort(c->comm);
            CORE_DIE("NCCL %s: no progress within %.0f s; a rank is stuck or dead (comm.timeout_s)", what,
                     comm_timeout());
        }
        pause_briefly();
    }
}

/* Waits for the queued collectives (all of them, or up to `until` when it is
 * not NULL) while polling NCCL's asynchronous error state: a plain
 * synchronise would block forever on a collective whose peer died. */
static void wait_stream(comm_nccl *c, cudaEvent_t until, const char *what)
{
    double deadline = now_s() + comm_timeout();
    for (;;) {
        cudaError_t q = until ? cudaEventQuery(until) : cudaStreamQuery(c->stream);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) {
            ncclCommAbort(c->comm);
            CORE_DIE("CUDA error during NCCL %s: %s", what, cudaGetErrorString(q));
        }
        ncclResult_t st;
        ncclResult_t rc = ncclCommGetAsyncError(c->comm, &st);
        if (rc != ncclSuccess) nccl_fail(c, "ncclCommGetAsyncError", rc);
        if (st != ncclSuccess && st != ncclInProgress) nccl_fail(c, what, st);
        if (now_s() > deadline) {
            ncclCommAbort(c->comm);
            CORE_DIE("NCCL %s did not complete within %.0f s; a rank is stuck or dead (comm.timeout_s)", what,
                     comm_timeout());
        }
        pause_briefly();
    }
}

comm_nccl *comm_nccl_create(void)
{
    comm_nccl *c = core_calloc(1, sizeof *c);
    CUDA_CHECK(cudaGetDevice(&c->device), "cudaGetDevice");
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (comm_rank() == 0) {
        ncclResult_t rc = ncclGetUniqueId(&id);
        if (rc != ncclSuccess) nccl_fail(NULL, "ncclGetUniqueId", rc);
    }
    comm_bcast_bytes(&id, sizeof id, 0);
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    ncclResult_t rc = ncclCommInitRankConfig(&c->comm, comm_size(), id, comm_rank(), &cfg);
    if (rc != ncclSuccess && rc != ncclInProgress) {
        c->comm = NULL;
        nccl_fail(NULL, "ncclCommInitRankConfig", rc);
    }
    settle(c, rc, "communicator init");
    /* The highest priority: when backward kernels and a collective are both
     * queued, the collective's blocks are scheduled first, so the transfer
     * runs under the remaining compute instead of after it. */
    int least = 0, greatest = 0;
    CUDA_CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest), "cudaDeviceGetStreamPriorityRange");
    CUDA_CHECK(cudaStreamCreateWithPriority(&c->stream, cudaStreamNonBlocking, greatest),
               "cudaStreamCreateWithPriority");
    return c;
}

void comm_nccl_destroy(comm_nccl *c)
{
    if (!c) return;
    CUDA_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    comm_nccl_quiesce(c); /* a dead peer is an error line here, not a hang in the finalize */
    if (c->step_done) CUDA_CHECK(cudaEventDestroy(c->step_done), "cudaEventDestroy");
    if (c->small_ready) CUDA_CHECK(cudaEventDestroy(c->small_ready), "cudaEventDestroy");
    if (c->small_done) CUDA_CHECK(cudaEventDestroy(c->small_done), "cudaEventDestroy");
    /* Destroying an event or a stream with work pending is allowed: the
     * resources are released once that work completes. */
    for (int i = 0; i < c->nevents; i++) {
        CUDA_CHECK(cudaEventDestroy(c->ready[i]), "cudaEventDestroy");
        CUDA_CHECK(cudaEventDestroy(c->done[i]), "cudaEventDestroy");
    }
    free(c->ready);
    free(c->done);
    if (c->stream) CUDA_CHECK(cudaStreamDestroy(c->stream), "cudaStreamDestroy");
    if (c->comm) {
        ncclResult_t rc = ncclCommFinalize(c->comm);
        settle(c, rc, "communicator finalize");
        rc = ncclCommDestroy(c->comm);
        if (rc != ncclSuccess) CORE_DIE("NCCL ncclCommDestroy failed: %s", ncclGetErrorString(rc));
    }
    free(c);
}

void comm_nccl_bcast(comm_nccl *c, float *buf, size_t n, int root, size_t bucket)
{
    CUDA_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize before broadcast");
    for (size_t off = 0; off < n; off += bucket) {
        size_t cnt = n - off < bucket ? n - off : bucket;
        ncclResult_t rc = ncclBroadcast(buf + off, buf + off, cnt, ncclFloat, root, c->comm, c->stream);
        settle(c, rc, "parameter broadcast");
    }
    wait_stream(c, NULL, "parameter broadcast");
}

static void ensure_events(comm_nccl *c, int n)
{
    if (n <= c->nevents) return;
    int cap = c->nevents ? c->nevents : 16;
    while (cap < n) cap *= 2;
    c->ready = core_realloc(c->ready, (size_t)cap * sizeof *c->ready);
    c->done = core_realloc(c->done, (size_t)cap * sizeof *c->done);
    for (int i = c->nevents; i < cap; i++) {
        /* timing off: such events are the cheapest to record and wait on */
        CUDA_CHECK(cudaEventCreateWithFlags(&c->ready[i], cudaEventDisableTiming), "cudaEventCreateWithFlags");
        CUDA_CHECK(cudaEventCreateWithFlags(&c->done[i], cudaEventDisableTiming), "cudaEventCreateWithFlags");
        c->nevents = i + 1;
    }
}

void comm_nccl_launch(comm_nccl *c, void *after, float *buf, size_t n, int slot)
{
    CHECK(after, "comm: NCCL launch without the backend's stream");
    CHECK(slot >= 0, "comm: NCCL launch slot %d", slot);
    CUDA_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    ensure_events(c, slot + 1);
    CUDA_CHECK(cudaEventRecord(c->ready[slot], (cudaStream_t)after), "cudaEventRecord(gradient ready)");
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->ready[slot], 0), "cudaStreamWaitEvent(gradient ready)");
    ncclResult_t rc = ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, c->comm, c->stream);
    /* Returns once NCCL has queued the collective (ncclInProgress only while
     * its host side is busy, e.g. connecting): no wait for the device. */
    settle(c, rc, "gradient all-reduce");
    if (c->tap) c->tap(c->tap_ctx, buf, n, (void *)c->stream);
    CUDA_CHECK(cudaEventRecord(c->done[slot], c->stream), "cudaEventRecord(all-reduce done)");
}

void comm_nccl_set_tap(comm_nccl *c, comm_nccl_tap_fn fn, void *ctx)
{
    c->tap = fn;
    c->tap_ctx = ctx;
}

int comm_nccl_done(comm_nccl *c, int slot)
{
    CHECK(slot >= 0 && slot < c->nevents, "comm: NCCL slot %d was never launched", slot);
    cudaError_t q = cudaEventQuery(c->done[slot]);
    if (q == cudaSuccess) return 1;
    if (q == cudaErrorNotReady) return 0;
    ncclCommAbort(c->comm);
    CORE_DIE("CUDA error during NCCL gradient all-reduce: %s", cudaGetErrorString(q));
}

void comm_nccl_wait(comm_nccl *c, void *after, int nlaunched)
{
    if (nlaunched <= 0) return;
    CHECK(after, "comm: NCCL wait without the backend's stream");
    CHECK(nlaunched <= c->nevents, "comm: NCCL wait for %d launches, %d made", nlaunched, c->nevents);
    CUDA_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    /* The NCCL stream runs the collectives in launch order, so the last done
     * event covers them all. The device-side wait orders the guard and the
     * optimizer step. The host waits for the PREVIOUS all-reduce only, with
     * NCCL's error polling: that catches a dead peer within comm.timeout_s
     * and keeps the host at most one step ahead, while this step's work
     * stays queued and the GPU never idles for the host. */
    cudaEvent_t last = c->done[nlaunched - 1];
    CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)after, last, 0), "cudaStreamWaitEvent(all-reduce done)");
    comm_nccl_quiesce(c);
    if (!c->step_done)
        CUDA_CHECK(cudaEventCreateWithFlags(&c->step_done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    CUDA_CHECK(cudaEventRecord(c->step_done, c->stream), "cudaEventRecord(all-reduce done)");
    c->pending = 1;
}

void comm_nccl_allreduce_doubles(comm_nccl *c, void *after, double *buf, size_t n)
{
    if (n == 0) return;
    CHECK(after, "comm: NCCL all-reduce without the backend's stream");
    CUDA_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    if (!c->small_ready) {
        CUDA_CHECK(cudaEventCreateWithFlags(&c->small_ready, cudaEventDisableTiming), "cudaEventCreateWithFlags");
        CUDA_CHECK(cudaEventCreateWithFlags(&c->small_done, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    }
    CUDA_CHECK(cudaEventRecord(c->small_ready, (cudaStream_t)after), "cudaEventRecord(sums ready)");
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->small_ready, 0), "cudaStreamWaitEvent(sums ready)");
    ncclResult_t rc = ncclAllReduce(buf, buf, n, ncclDouble, ncclSum, c->comm, c->stream);
    settle(c, rc, "batch-norm statistics all-reduce");
    CUDA_CHECK(cudaEventRecord(c->small_done, c->stream), "cudaEventRecord(sums done)");
    CUDA_CHECK(cudaStreamWaitEvent((cudaStream_t)after, c->small_done, 0), "cudaStreamWaitEvent(sums done)");
}

void comm_nccl_quiesce(comm_nccl *c)
{
    if (!c->pending) return;
    CUDA_CHECK(cudaSetDevice(c->device), "cudaSetDevice");
    wait_stream(c, c->step_done, "gradient all-reduce");
    c->pending = 0;
}

#else
/* CPU-only build: nothing here (comm/reducer.c never calls the NCCL path). */
typedef int comm_nccl_unused;
#endif
