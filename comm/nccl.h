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
void comm_nccl_bcast(comm_nccl *c, float *buf, size_t n, int root, size_t bucket);

/* The overlapped gradient all-reduce (comm_reducer_begin/progress/finish).
 * `after` is the backend's cudaStream_t (as void *, so this header stays C).
 * Launch `slot` (0, 1, ... within one all-reduce): an in-place sum of buf[0..n)
 * on the NCCL stream, ordered after everything queued on `after` so far
 * through an event; the host does not wait for the device. */
void comm_nccl_launch(comm_nccl *c, void *after, float *buf, size_t n, int slot);
/* Tests: called in comm_nccl_launch right after the collective is queued
 * and before its done event, with the NCCL stream (a cudaStream_t as void *):
 * work the tap queues there sees the bucket as the collective left it, and
 * comm_nccl_wait covers it. NULL removes it. */
typedef void (*comm_nccl_tap_fn)(void *ctx, const float *buf, size_t n, void *stream);
void comm_nccl_set_tap(comm_nccl *c, comm_nccl_tap_fn fn, void *ctx);
/* 1 when launch `slot`'s collective has completed on the device (never blocks). */
int comm_nccl_done(comm_nccl *c, int slot);
/* Orders `after` behind launches 0..nlaunched-1 (the guard and the optimizer
 * step may be queued at once), then waits on the host for the PREVIOUS call's
 * collectives, polling NCCL's asynchronous errors under the comm timeout: the
 * host stays at most one all-reduce ahead and never waits for this one. */
void comm_nccl_wait(comm_nccl *c, void *after, int nlaunched);
/* Waits on the host (polling NCCL's errors under the timeout) for the latest
 * comm_nccl_wait's collectives; before anything that blocks on the device
 * without polling (a download at a sync point), so a dead peer stays an error. */
void comm_nccl_quiesce(comm_nccl *c);
/* An in-place sum of n device doubles, ordered after the work queued on `after`
 * (the backend's stream) and before any work queued there later; no host wait. */
void comm_nccl_allreduce_doubles(comm_nccl *c, void *after, double *buf, size_t n);

#endif
