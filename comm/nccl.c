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

/* Waits for the queued collectives while polling NCCL's asynchronous error state. */
static void wait_stream(comm_nccl *c, const char *what)
{
    double deadline = now_s() + comm_timeout();
    for (;;) {
        cudaError_t q = cudaStreamQuery(c->stream);
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
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    return c;
}

void comm_nccl_destroy(comm_nccl *c)
{
    if (!c) return;
    if (c->stream) CUDA_CHECK(cudaStreamDestroy(c->stream), "cudaStreamDestroy");
    if (c->comm) {
        ncclResult_t rc = ncclCommFinalize(c->comm);
        settle(c, rc, "communicator finalize");
        rc = ncclCommDestroy(c->comm);
        if (rc != ncclSuccess) CORE_DIE("NCCL ncclCommDestroy failed: %s", ncclGetErrorString(rc));
    }
    free(c);
}

void comm_nccl_allreduce_sum(comm_nccl *c, float *buf, size_t n, size_t bucket)
{
    /* The backend's stream produced the gradients; they must be complete first. */
    CUDA_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize before all-reduce");
    for (size_t off = 0; off < n; off += bucket) {
        size_t cnt = n - off < bucket ? n - off : bucket;
        ncclResult_t rc = ncclAllReduce(buf + off, buf + off, cnt, ncclFloat, ncclSum, c->comm, c->stream);
        settle(c, rc, "gradient all-reduce");
    }
    wait_stream(c, "gradient all-reduce");
}

void comm_nccl_bcast(comm_nccl *c, float *buf, size_t n, int root, size_t bucket)
{
    CUDA_CHECK(cudaDeviceSynchronize(), "cudaDeviceSynchronize before broadcast");
    for (size_t off = 0; off < n; off += bucket) {
        size_t cnt = n - off < bucket ? n - off : bucket;
        ncclResult_t rc = ncclBroadcast(buf + off, buf + off, cnt, ncclFloat, root, c->comm, c->stream);
        settle(c, rc, "parameter broadcast");
    }
    wait_stream(c, "parameter broadcast");
}

#else
/* CPU-only build: nothing here (comm/reducer.c never calls the NCCL path). */
typedef int comm_nccl_unused;
#endif
