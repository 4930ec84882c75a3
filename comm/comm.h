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
/* comm.device, before comm_init: unless it is "cpu", comm_init makes GPU
 * (launcher's node-local rank % GPUs) current before MPI_Init_thread, the
 * local rank read from OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID,
 * MPI_LOCALRANKID or PMI_LOCAL_RANK (default "auto"). */
void comm_set_device(const char *device);
/* Finalises MPI (a no-op when comm_init was never called). */
void comm_finalize(void);
int comm_initialized(void);

int comm_rank(void);
int comm_size(void);
int comm_local_rank(void); /* rank among the processes sharing this node's memory (the launcher's when set) */
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
/* buf[i] = sum over ranks, for n doubles in the backend's memory, in place:
 * MPI under the watchdog for the CPU backend; for CUDA an NCCL all-reduce
 * queued on the NCCL stream between the backend stream's events, with no
 * host wait (synchronised batch norm inside a step). Identical on every rank. */
void comm_reducer_allreduce_doubles(comm_reducer *r, double *buf, size_t n);
/* buf = root's buf on every rank. */
void comm_reducer_bcast(comm_reducer *r, float *buf, size_t n, int root);
/* Number of buckets the last all-reduce used (tests, logs). */
int comm_reducer_last_buckets(const comm_reducer *r);

/* ---- gradient all-reduce overlapped with the backward pass ------------------
 * The flat gradient buffer is cut into the same fixed buckets as above
 * (bucket b = floats [b*B, (b+1)*B), B = bucket_mb). A plan says after which
 * backward position (model_backward_hooked's `done`) each range of the buffer
 * is final; a bucket is ready after the latest position of the ranges it
 * touches (padding only: 0). Per step:
 *
 *   comm_reducer_begin(r, grads, 1/world);      launches buckets ready at 0
 *   model_backward_hooked(net, hook, ...);      hook: comm_reducer_progress(r, done)
 *   comm_reducer_finish(r, &stats);             launches the rest, waits
 *
 * Each bucket is scaled (x *= scale, the backend's `scale`, skipped for 1)
 * and summed over ranks exactly when it is launched. Launch order is the plan's
 * (ready position, then bucket index), the same on every rank, as MPI and NCCL
 * require. With overlap off every bucket is launched by finish, in index order;
 * each bucket is the same collective on the same data either way, so both give
 * bit-identical results (comm_reducer_allreduce_sum is that path with scale 1).
 * CPU backend: MPI_Iallreduce per bucket, progressed with MPI_Testsome at each
 * comm_reducer_progress (the main thread between ops), completed under the
 * watchdog. CUDA backend: the NCCL stream waits on an event recorded on the
 * backend's stream, then ncclAllReduce; no host synchronisation until finish,
 * which orders the backend's stream after the collectives and waits with NCCL
 * error polling (docs/gpu.md). With one rank all of this is a no-op. */
typedef struct comm_grad_range {
    size_t offset, count; /* floats of the flat buffer */
    int final_after;      /* backward position after which they no longer change */
} comm_grad_range;
/* Collective: every rank must pass the same plan (checked by a hash, since
 * ranks launching buckets in different orders would deadlock). */
void comm_reducer_plan(comm_reducer *r, size_t n, const comm_grad_range *ranges, int nranges);
/* Launch buckets during the pass (1, the default) or all at finish (0). */
void comm_reducer_set_overlap(comm_reducer *r, int on);
/* Run the collectives even with one rank (tests: MPI or NCCL on one rank). */
void comm_reducer_force_collectives(comm_reducer *r);
/* Tests: called for each bucket just before it is scaled and launched. */
typedef void (*comm_launch_fn)(void *ctx, int bucket, const float *data, size_t count);
void comm_reducer_on_launch(comm_reducer *r, comm_launch_fn fn, void *ctx);
/* Tests, CUDA backend with NCCL (several ranks, or force_collectives): called
 * for each bucket right after its collective is queued, with the NCCL stream
 * (cudaStream_t as void *); what it queues there runs after the collective and
 * before any work finish queues behind it on the backend's stream (a download
 * after finish sees it). Returns 0 (and sets nothing) without NCCL. */
typedef void (*comm_collective_fn)(void *ctx, const float *data, size_t count, void *stream);
int comm_reducer_on_collective(comm_reducer *r, comm_collective_fn fn, void *ctx);

typedef struct comm_reducer_stats {
    int buckets;            /* launched in this all-reduce */
    int launched_early;     /* of those, launched before finish (during the pass) */
    size_t floats;          /* floats reduced */
    size_t floats_hidden;   /* floats whose collective had completed when finish began */
    double wait_s;          /* time finish spent launching and waiting */
} comm_reducer_stats;
void comm_reducer_begin(comm_reducer *r, float *buf, float scale);
void comm_reducer_progress(comm_reducer *r, int done);
/* stats may be NULL. */
void comm_reducer_finish(comm_reducer *r, comm_reducer_stats *stats);
/* Waits (NCCL error polling, comm.timeout_s) until the latest all-reduce has
 * completed: call before a download that would otherwise block without a
 * deadline on a collective whose peer died. A no-op for MPI (finish waited). */
void comm_reducer_quiesce(comm_reducer *r);

/* 64-bit FNV-1a of a host buffer: replicas must agree bit for bit. */
uint64_t comm_hash_bytes(const void *p, size_t bytes);
/* Compares a per-rank hash across ranks; returns the number of ranks whose hash
 * differs from rank 0's and, when `first_bad` is non-NULL, the first of them (-1 when none). */
int comm_compare_hash(uint64_t mine, int *first_bad);

#endif
