/* Process group for data-parallel training: MPI ranks, collectives with a
 * watchdog, and the gradient all-reduce on a backend's buffers.
 *
 * One MPI job = one replica per rank. comm_init works both under
 * mpirun/srun and when the binary is started alone (MPI singleton: one rank).
 * After comm_init every fatal error (CHECK/CORE_DIE) prints one line prefixed
 * "[rank N]" and calls MPI_Abort, so one failing rank ends the whole job
 * instead of leaving the others blocked in a collective.
 *
 * Collectives never wait forever: each one is posted non-blocking and polled
 * against a deadline (comm_set_timeout, config comm.timeout_s); a rank whose
 * peers do not arrive in time names the collective and aborts the job.
 * MPI runs with MPI_ERRORS_RETURN and every return code is checked. */
#ifndef SSPOSE_COMM_COMM_H
#define SSPOSE_COMM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"
#include "core/check.h"

/* Initialises MPI once (MPI_THREAD_FUNNELED: only the main thread calls MPI),
 * finds rank, size and the node-local rank (shared-memory split), installs the
 * abort hook and the "rank N" log prefix. Safe to call twice. */
void comm_init(int *argc, char ***argv);
/* Finalises MPI (a no-op when comm_init was never called). */
void comm_finalize(void);
int comm_initialized(void);

int comm_rank(void);
int comm_size(void);
int comm_local_rank(void); /* rank among the processes sharing this node's memory */
int comm_local_size(void);

/* Ends every rank of the job now (MPI_Abort), after printing nothing more. */
CORE_NORETURN void comm_abort(int code);

/* Deadline for every collective, in seconds (default 600). */
void comm_set_timeout(double seconds);
double comm_timeout(void);
/* Collective names the watchdog reports carry this context, e.g. "step 120". */
void comm_set_context(const char *context);

/* Host collectives (small: metrics, flags, checkpoint agreement). */
typedef enum { COMM_SUM = 0, COMM_MAX, COMM_MIN } comm_op;
void comm_allreduce_doubles(double *v, int n, comm_op op); /* in place */
double comm_allreduce_double(double v, comm_op op);
long long comm_allreduce_ll(long long v, comm_op op);
/* all[r*n .. r*n+n) receives rank r's mine[0..n). */
void comm_allgather_u64(const uint64_t *mine, int n, uint64_t *all);
void comm_bcast_bytes(void *buf, size_t bytes, int root);
void comm_barrier(void);

/* Threads for the CPU backend: the cores of this node shared by its ranks
 * (OMP_NUM_THREADS wins when set). */
int comm_cpu_threads(void);
/* The backend for comm.device on this rank: GPU local_rank % ngpu, or the CPU
 * backend with comm_cpu_threads() threads. */
core_backend *comm_backend_create(const char *device);

/* Collectives on one backend's float buffers (device pointers of `be`):
 * MPI on the host buffers for the CPU backend, NCCL on device buffers for the
 * CUDA backend (unique id broadcast over MPI). Buffers are reduced in buckets
 * of bucket_mb megabytes so a large model never needs one giant message (MPI
 * counts are int) nor one giant staging buffer inside the library. */
typedef struct comm_reducer comm_reducer;
comm_reducer *comm_reducer_create(core_backend *be, double bucket_mb);
void comm_reducer_destroy(comm_reducer *r);
/* buf[i] = sum over ranks of buf[i], for n floats, in place. */
void comm_reducer_allreduce_sum(comm_reducer *r, float *buf, size_t n);
/* buf = root's buf on every rank. */
void comm_reducer_bcast(comm_reducer *r, float *buf, size_t n, int root);
/* Number of buckets the last all-reduce used (tests, logs). */
int comm_reducer_last_buckets(const comm_reducer *r);

/* 64-bit FNV-1a of a host buffer: replicas must agree bit for bit. */
uint64_t comm_hash_bytes(const void *p, size_t bytes);
/* Compares a per-rank hash across ranks; returns the number of ranks whose hash
 * differs from rank 0's and, when `first_bad` is non-NULL, the first of them (-1 when none). */
int comm_compare_hash(uint64_t mine, int *first_bad);

#endif
