/* CUDA-specific knobs and handles on top of the op interface (core/backend.h).
 *
 * Everything here is callable from any build: in a CPU-only build (no nvcc,
 * or make CUDA=0) the functions are inline no-ops, so callers need no #ifdef.
 *
 *   core_backend *be = core_backend_create(cfg.comm.device, local_rank, threads);
 *   core_cuda_set_math(be, cfg.comm.tf32, 1);   // no-op unless be is CUDA
 */
#ifndef SSPOSE_CORE_CUDA_BACKEND_H
#define SSPOSE_CORE_CUDA_BACKEND_H

#include <stddef.h>

#include "core/backend.h"
#include "core/check.h"

/* Algorithm choice hook (see core_cuda_set_algo_agree): `line` holds this
 * process's choice for one convolution direction ("fwd n=.. ... algo=.. math=..",
 * at most `cap` bytes with the NUL); the hook may replace it, e.g. with rank 0's. */
typedef void (*core_cuda_algo_agree_fn)(void *ctx, char *line, size_t cap);
#define CORE_CUDA_ALGO_LINE 192

/* The default of comm.cudnn_workspace_mb (see core_cuda_set_workspace). */
#define CORE_CUDA_WORKSPACE_MB 2048

/* core_cuda_scratch slots for users outside core/ */
#define CORE_CUDA_SCRATCH_LOSS 4

#if defined(SSPOSE_CUDA) || defined(__CUDACC__)

/* tf32 (comm.tf32): let cuDNN use TF32 tensor cores for fp32 convolutions
 * (CUDNN_DEFAULT_MATH); off = CUDNN_FMA_MATH, true fp32. deterministic: only
 * algorithms cuDNN reports as CUDNN_DETERMINISTIC (bitwise repeatable
 * gradients; training and bench/gpu_step always pass 1). Defaults: tf32 0,
 * deterministic 1. Takes effect for shapes seen after the call (the
 * algorithm cache is keyed by both). No-op for a non-CUDA backend. */
void core_cuda_set_math(core_backend *be, int tf32, int deterministic);

/* comm.cudnn_workspace_mb: the convolution workspace, allocated once at this
 * size (before the first convolution runs) and never freed inside a step; a
 * convolution algorithm is chosen only if its workspace fits. The same value
 * on every rank and every resume gives the same choices. Default
 * CORE_CUDA_WORKSPACE_MB. Call outside a step. */
void core_cuda_set_workspace(core_backend *be, size_t mb);

/* Algorithm choices (core/cuda_conv.cu): each (shape, direction) is timed
 * once, on first use, over the algorithms that fit the workspace (only the
 * deterministic ones by default). `fn` (NULL: none) sees every new choice and
 * may replace it, so that all ranks run rank 0's. */
void core_cuda_set_algo_agree(core_backend *be, core_cuda_algo_agree_fn fn, void *ctx);
/* Every choice made or loaded so far, one line each (malloc'd, NUL-terminated;
 * NULL for a non-CUDA backend). */
char *core_cuda_algos_save(core_backend *be);
/* Loads lines written by core_cuda_algos_save: those shapes then run the
 * recorded algorithm without timing. Returns the number of lines; a
 * malformed line is an error naming `what` (the file) and the line. */
int core_cuda_algos_load(core_backend *be, const char *text, const char *what);

/* The backend's cudaStream_t (as void *), for NCCL and loss kernels that must
 * queue behind the backend's work. NULL for a non-CUDA backend. */
void *core_cuda_stream(core_backend *be);
/* Waits until every upload queued so far has read its host buffer (not for
 * the compute stream): the host buffers of a batch may then be reused. A
 * no-op for a non-CUDA backend. */
void core_cuda_upload_wait(core_backend *be);
/* Makes the backend's device current for the calling thread and returns its
 * stream (for CUDA code outside core/ about to queue work). */
void *core_cuda_enter(core_backend *be);
/* A device buffer of at least `bytes` in slot CORE_CUDA_SCRATCH_* that stays
 * valid until the next call with the same slot; growth is stream-ordered
 * (no host wait). */
void *core_cuda_scratch(core_backend *be, int slot, size_t bytes);
/* n floats from src to dst, queued on `stream` (a cudaStream_t): tests take
 * snapshots on the stream that a collective runs on. */
void core_cuda_copy_on(void *stream, float *dst, const float *src, size_t n);

/* The GPU for node-local rank `local_rank` (local_rank % visible GPUs), made
 * current for this process before MPI starts, so a CUDA-aware MPI opens its
 * context there; -1 (and nothing done) when no GPU is visible. */
int core_cuda_select_device(int local_rank);

/* Device name, SM clock the peak is computed at (MHz), and peak dense
 * throughput in TFLOP/s (fp32 FMA units, TF32 and bf16 tensor cores), from
 * the SM count, that clock and the architecture; for model-FLOP
 * utilisation. clock_mhz > 0 uses that clock instead of the device's
 * reported maximum. Returns 0 on success, -1 when the device is absent. */
typedef struct core_cuda_peak {
    char name[256];
    double clock_mhz;
    double fp32, tf32, bf16; /* TFLOP/s */
} core_cuda_peak;
int core_cuda_device_peak(int device, double clock_mhz, core_cuda_peak *out);

/* Elapsed device time of the work queued on a backend's stream between start
 * and stop, with CUDA events (benchmarks: no host timer, no stream drain
 * inside the timed region). stop waits for the stop event. */
typedef struct core_cuda_timer core_cuda_timer;
core_cuda_timer *core_cuda_timer_create(core_backend *be);
void core_cuda_timer_start(core_cuda_timer *t);
double core_cuda_timer_stop_ms(core_cuda_timer *t);
void core_cuda_timer_destroy(core_cuda_timer *t);

/* Page-locked host memory (cudaHostAlloc, portable across devices), so that
 * uploads from it are truly asynchronous; dies with one line on failure.
 * The loader's batch buffers use these on a CUDA rank. */
void *core_cuda_host_alloc(size_t bytes);
void core_cuda_host_free(void *p);

#else

static inline void core_cuda_set_math(core_backend *be, int tf32, int deterministic)
{
    (void)be; (void)tf32; (void)deterministic;
}
static inline void core_cuda_set_workspace(core_backend *be, size_t mb) { (void)be; (void)mb; }
static inline void core_cuda_set_algo_agree(core_backend *be, core_cuda_algo_agree_fn fn, void *ctx)
{
    (void)be; (void)fn; (void)ctx;
}
static inline char *core_cuda_algos_save(core_backend *be) { (void)be; return NULL; }
static inline int core_cuda_algos_load(core_backend *be, const char *text, const char *what)
{
    (void)be; (void)text; (void)what;
    return 0;
}
static inline void *core_cuda_stream(core_backend *be) { (void)be; return NULL; }
static inline void core_cuda_upload_wait(core_backend *be) { (void)be; }
/* Never reached in a CPU-only build (they need a CUDA backend or stream). */
static inline void *core_cuda_enter(core_backend *be) { (void)be; return NULL; }
static inline void *core_cuda_scratch(core_backend *be, int slot, size_t bytes)
{
    (void)be; (void)slot; (void)bytes;
    return NULL;
}
static inline void core_cuda_copy_on(void *stream, float *dst, const float *src, size_t n)
{
    (void)stream; (void)dst; (void)src; (void)n;
}
static inline int core_cuda_select_device(int local_rank) { (void)local_rank; return -1; }
typedef struct core_cuda_peak {
    char name[256];
    double clock_mhz;
    double fp32, tf32, bf16;
} core_cuda_peak;
static inline int core_cuda_device_peak(int device, double clock_mhz, core_cuda_peak *out)
{
    (void)device; (void)clock_mhz; (void)out;
    return -1;
}
typedef struct core_cuda_timer core_cuda_timer;
static inline core_cuda_timer *core_cuda_timer_create(core_backend *be) { (void)be; return NULL; }
static inline void core_cuda_timer_start(core_cuda_timer *t) { (void)t; }
static inline double core_cuda_timer_stop_ms(core_cuda_timer *t) { (void)t; return 0; }
static inline void core_cuda_timer_destroy(core_cuda_timer *t) { (void)t; }
static inline void *core_cuda_host_alloc(size_t bytes)
{
    (void)bytes;
    CORE_DIE("pinned host memory needs the CUDA backend, which this binary was built without");
}
static inline void core_cuda_host_free(void *p) { (void)p; }

#endif

#endif
