/* NCCL collectives on CUDA device buffers (built only with SSPOSE_CUDA).
 * Internal to comm/: comm_reducer picks this path for the CUDA backend. */
#ifndef SSPOSE_COMM_NCCL_H
#define SSPOSE_COMM_NCCL_H

#include <stddef.h>

typedef struct comm_nccl comm_nccl;

/* One NCCL communicator over all MPI ranks on the current CUDA device; rank 0
 * makes the unique id and broadcasts it over MPI. */
comm_nccl *comm_nccl_create(void);
void comm_nccl_destroy(comm_nccl *c);
/* In place, in buckets of `bucket` floats; returns when the result is in buf. */
void comm_nccl_allreduce_sum(comm_nccl *c, float *buf, size_t n, size_t bucket);
void comm_nccl_bcast(comm_nccl *c, float *buf, size_t n, int root, size_t bucket);

#endif
