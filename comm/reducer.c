/* Gradient all-reduce and parameter broadcast on a backend's buffers:
 * MPI directly on the host buffers of the CPU backend, NCCL on the device
 * buffers of the CUDA backend. */
#include <stdlib.h>

#include "comm/comm.h"
#include "comm/mpi_check.h"
#include "comm/nccl.h"

struct comm_reducer {
    core_backend *be;
    size_t bucket;   /* floats per bucket */
    int last_buckets;
    comm_nccl *nccl; /* CUDA backend only */
};

comm_reducer *comm_reducer_create(core_backend *be, double bucket_mb)
{
    CHECK(comm_initialized(), "comm: comm_reducer_create before comm_init");
    CHECK(bucket_mb > 0, "comm.bucket_mb must be positive, got %g", bucket_mb);
    comm_reducer *r = core_calloc(1, sizeof *r);
    r->be = be;
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
    free(r);
}

int comm_reducer_last_buckets(const comm_reducer *r) { return r->last_buckets; }

static int nbuckets(size_t n, size_t bucket) { return (int)((n + bucket - 1) / bucket); }

void comm_reducer_allreduce_sum(comm_reducer *r, float *buf, size_t n)
{
    r->last_buckets = nbuckets(n, r->bucket);
    if (comm_size() == 1 || n == 0) return;
#ifdef SSPOSE_CUDA
    if (r->nccl) { comm_nccl_allreduce_sum(r->nccl, buf, n, r->bucket); return; }
#endif
    r->be->sync(r->be);
    for (size_t off = 0; off < n; off += r->bucket) {
        size_t cnt = n - off < r->bucket ? n - off : r->bucket;
        comm_watch_begin("gradient all-reduce");
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)cnt, MPI_FLOAT, MPI_SUM, comm_mpi_comm());
        comm_watch_end();
        MPI_CHECK(rc, "MPI_Allreduce(gradients)");
    }
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
