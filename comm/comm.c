/* MPI process group: init (also as a singleton), ranks, the abort hook, the
 * collective watchdog and the small host collectives. */
#include "comm/comm.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/mpi_check.h"
#include "core/cuda_backend.h"

static int g_init, g_rank, g_size = 1, g_local_rank, g_local_size = 1, g_thread_level;
static int g_we_initialized_mpi;
static MPI_Comm g_world = MPI_COMM_NULL;
static double g_timeout = 600.0;
static char g_context[96];

int comm_initialized(void) { return g_init; }
int comm_rank(void) { return g_rank; }
int comm_size(void) { return g_size; }
int comm_local_rank(void) { return g_local_rank; }
int comm_local_size(void) { return g_local_size; }
MPI_Comm comm_mpi_comm(void) { return g_world; }
double comm_timeout(void) { return g_timeout; }

void comm_set_context(const char *context)
{
    snprintf(g_context, sizeof g_context, "%s", context ? context : "");
}

void comm_mpi_die(int rc, const char *what, const char *file, int line)
{
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "MPI error code %d", rc);
    core_die_at(file, line, "MPI %s failed: %s", what, msg);
}

void comm_abort(int code)
{
    fflush(stdout);
    fflush(stderr);
    if (g_init && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
    _exit(code ? code : 1);
}

/* core_die_at's exit hook: a fatal error on any rank ends every rank. A
 * singleton just exits: MPI_Abort would add a multi-line banner to the one
 * error line that single-process tools promise. It exits without atexit
 * handlers: worker threads (the loader's) may still be inside HDF5, whose
 * own atexit teardown would then print pages of diagnostics. */
static void abort_hook(int code)
{
    if (g_size > 1) comm_abort(code);
    fflush(stdout);
    fflush(stderr);
    _exit(code ? code : 1);
}

/* ---- watchdog ------------------------------------------------------------
 * Blocking collectives use MPI's tuned algorithms; a helper thread watches
 * the clock instead of the main thread polling. */
static pthread_t wd_thread;
static pthread_mutex_t wd_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cv;
static int wd_running, wd_stop, wd_active;
static unsigned long wd_gen;
static struct timespec wd_deadline;
static char wd_what[128];

static void *wd_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&wd_mu);
    while (!wd_stop) {
        if (!wd_active) { pthread_cond_wait(&wd_cv, &wd_mu); continue; }
        unsigned long gen = wd_gen;
        int rc = pthread_cond_timedwait(&wd_cv, &wd_mu, &wd_deadline);
        if (rc == ETIMEDOUT && wd_active && wd_gen == gen && !wd_stop) {
            fprintf(stderr,
                    "[rank %d] sspose: error: %s: the other ranks did not join within %.0f s%s%s; "
                    "a rank is stuck or dead, ending the job (comm.timeout_s)\n",
                    g_rank, wd_what, g_timeout, g_context[0] ? " at " : "", g_context);
            fflush(stderr);
            /* MPI_Abort from this thread needs MPI_THREAD_MULTIPLE; without it a
             * non-zero exit still makes mpirun/srun (-K) end the job. */
            if (g_thread_level >= MPI_THREAD_MULTIPLE) MPI_Abort(MPI_COMM_WORLD, 1);
            _exit(1);
        }
    }
    pthread_mutex_unlock(&wd_mu);
    return NULL;
}

void comm_watch_begin(const char *what)
{
    if (!wd_running) return;
    pthread_mutex_lock(&wd_mu);
    snprintf(wd_what, sizeof wd_what, "%s", what);
    clock_gettime(CLOCK_MONOTONIC, &wd_deadline);
    double s = g_timeout;
    wd_deadline.tv_sec += (time_t)s;
    wd_deadline.tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
    if (wd_deadline.tv_nsec >= 1000000000L) { wd_deadline.tv_sec++; wd_deadline.tv_nsec -= 1000000000L; }
    wd_active = 1;
    wd_gen++;
    pthread_cond_signal(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
}

void comm_watch_end(void)
{
    if (!wd_running) return;
    pthread_mutex_lock(&wd_mu);
    wd_active = 0;
    wd_gen++;
    pthread_mutex_unlock(&wd_mu);
}

static void wd_start(void)
{
    pthread_condattr_t attr;
    CHECK(pthread_condattr_init(&attr) == 0, "watchdog: pthread_condattr_init failed");
    CHECK(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0, "watchdog: no monotonic clock");
    CHECK(pthread_cond_init(&wd_cv, &attr) == 0, "watchdog: pthread_cond_init failed");
    pthread_condattr_destroy(&attr);
    wd_stop = 0;
    CHECK(pthread_create(&wd_thread, NULL, wd_main, NULL) == 0, "watchdog: cannot start its thread");
    wd_running = 1;
}

static void wd_shutdown(void)
{
    if (!wd_running) return;
    pthread_mutex_lock(&wd_mu);
    wd_stop = 1;
    pthread_cond_signal(&wd_cv);
    pthread_mutex_unlock(&wd_mu);
    pthread_join(wd_thread, NULL);
    pthread_cond_destroy(&wd_cv);
    wd_running = 0;
}

void comm_set_timeout(double seconds)
{
    CHECK(seconds > 0, "comm timeout must be positive, got %g", seconds);
    g_timeout = seconds;
}

/* ---- init ---------------------------------------------------------------- */
static char g_device_pref[16] = "auto";
static int g_env_local_rank = -1;

void comm_set_device(const char *device)
{
    CHECK(!g_init, "comm_set_device after comm_init");
    snprintf(g_device_pref, sizeof g_device_pref, "%s", device ? device : "auto");
}

/* The launcher's node-local rank (Open MPI, SLURM, MPICH/Hydra, PMI), or -1. */
static int env_local_rank(void)
{
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                        "PMI_LOCAL_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (!v || !*v) continue;
        char *end = NULL;
        long r = strtol(v, &end, 10);
        if (*end == 0 && r >= 0 && r < 1 << 20) return (int)r;
    }
    return -1;
}

/* The GPU is made current before MPI starts: a CUDA-aware MPI opens its
 * context on the current device during MPI_Init, so choosing afterwards
 * would leave every rank of a node with a context on GPU 0. */
static void preselect_device(void)
{
    g_env_local_rank = env_local_rank();
    if (!strcmp(g_device_pref, "cpu") || g_env_local_rank < 0) return;
    core_cuda_select_device(g_env_local_rank);
}

void comm_init(int *argc, char ***argv)
{
    if (g_init) return;
    preselect_device();
    int already = 0;
    MPI_CHECK(MPI_Initialized(&already), "MPI_Initialized");
    if (!already) {
        /* MULTIPLE lets the watchdog thread call MPI_Abort; the main thread
         * makes every other MPI call. */
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &g_thread_level);
        if (rc != MPI_SUCCESS) CORE_DIE("MPI_Init_thread failed (code %d); is the MPI runtime installed?", rc);
        g_we_initialized_mpi = 1;
    } else {
        MPI_CHECK(MPI_Query_thread(&g_thread_level), "MPI_Query_thread");
    }
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    /* A private duplicate keeps our traffic apart from any other MPI user. */
    MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &g_world), "MPI_Comm_dup");
    MPI_CHECK(MPI_Comm_set_errhandler(g_world, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_CHECK(MPI_Comm_rank(g_world, &g_rank), "MPI_Comm_rank");
    MPI_CHECK(MPI_Comm_size(g_world, &g_size), "MPI_Comm_size");

    /* The node-local rank comes from who shares memory with us, not from
     * launcher-specific environment variables. */
    MPI_Comm node;
    MPI_CHECK(MPI_Comm_split_type(g_world, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type(shared)");
    MPI_CHECK(MPI_Comm_set_errhandler(node, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_CHECK(MPI_Comm_rank(node, &g_local_rank), "MPI_Comm_rank(node)");
    MPI_CHECK(MPI_Comm_size(node, &g_local_size), "MPI_Comm_size(node)");
    MPI_CHECK(MPI_Comm_free(&node), "MPI_Comm_free");
    /* The launcher's numbering chose the device above; keep the backend on it. */
    if (g_env_local_rank >= 0 && g_env_local_rank < g_local_size) g_local_rank = g_env_local_rank;

    g_init = 1;
    core_set_exit_hook(abort_hook);
    if (g_size > 1) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "rank %d", g_rank);
        core_set_log_prefix(prefix);
    }
    if (g_size > 1) wd_start();
}

void comm_finalize(void)
{
    if (!g_init) return;
    wd_shutdown();
    core_set_exit_hook(NULL);
    MPI_CHECK(MPI_Comm_free(&g_world), "MPI_Comm_free");
    if (g_we_initialized_mpi) MPI_CHECK(MPI_Finalize(), "MPI_Finalize");
    g_init = 0;
    g_world = MPI_COMM_NULL;
    g_rank = 0;
    g_size = g_local_size = 1;
    g_local_rank = 0;
}

/* ---- host collectives ------------------------------------------------------ */
static MPI_Op mpi_op(comm_op op)
{
    switch (op) {
    case COMM_SUM: return MPI_SUM;
    case COMM_MAX: return MPI_MAX;
    case COMM_MIN: return MPI_MIN;
    }
    CORE_DIE("unknown reduction %d", (int)op);
}

static void need_init(void) { CHECK(g_init, "comm: collective called before comm_init"); }

void comm_allreduce_doubles(double *v, int n, comm_op op)
{
    need_init();
    if (g_size == 1 || n == 0) return;
    comm_watch_begin("all-reduce of metrics");
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, mpi_op(op), g_world);
    comm_watch_end();
    MPI_CHECK(rc, "MPI_Allreduce(double)");
}

double comm_allreduce_double(double v, comm_op op)
{
    comm_allreduce_doubles(&v, 1, op);
    return v;
}

long long comm_allreduce_ll(long long v, comm_op op)
{
    need_init();
    if (g_size == 1) return v;
    comm_watch_begin("all-reduce of a flag");
    int rc = MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_LONG_LONG, mpi_op(op), g_world);
    comm_watch_end();
    MPI_CHECK(rc, "MPI_Allreduce(long long)");
    return v;
}

void comm_allgather_u64(const uint64_t *mine, int n, uint64_t *all)
{
    need_init();
    if (g_size == 1) { memcpy(all, mine, (size_t)n * sizeof *mine); return; }
    comm_watch_begin("all-gather");
    int rc = MPI_Allgather(mine, n, MPI_UINT64_T, all, n, MPI_UINT64_T, g_world);
    comm_watch_end();
    MPI_CHECK(rc, "MPI_Allgather");
}

void comm_bcast_bytes(void *buf, size_t bytes, int root)
{
    need_init();
    if (g_size == 1) return;
    CHECK(root >= 0 && root < g_size, "comm: broadcast root %d outside 0..%d", root, g_size - 1);
    char *p = buf;
    const size_t chunk = (size_t)1 << 30; /* MPI counts are int */
    for (size_t off = 0; off < bytes; off += chunk) {
        size_t n = bytes - off < chunk ? bytes - off : chunk;
        comm_watch_begin("broadcast");
        int rc = MPI_Bcast(p + off, (int)n, MPI_BYTE, root, g_world);
        comm_watch_end();
        MPI_CHECK(rc, "MPI_Bcast");
    }
}

void comm_barrier(void)
{
    need_init();
    if (g_size == 1) return;
    comm_watch_begin("barrier");
    int rc = MPI_Barrier(g_world);
    comm_watch_end();
    MPI_CHECK(rc, "MPI_Barrier");
}

uint64_t comm_hash_bytes(const void *p, size_t bytes)
{
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < bytes; i++) { h ^= b[i]; h *= 1099511628211ULL; }
    return h;
}

int comm_compare_hash(uint64_t mine, int *first_bad)
{
    uint64_t *all = core_malloc((size_t)g_size * sizeof *all);
    comm_allgather_u64(&mine, 1, all);
    int bad = 0, first = -1;
    for (int r = 1; r < g_size; r++)
        if (all[r] != all[0]) { if (first < 0) first = r; bad++; }
    free(all);
    if (first_bad) *first_bad = first;
    return bad;
}

/* ---- backend choice ---------------------------------------------------------- */
int comm_cpu_threads(void)
{
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && atoi(env) > 0) return atoi(env);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    /* A launcher that binds ranks to cores narrows our affinity mask. */
    cpu_set_t set;
    long mine = online;
    if (sched_getaffinity(0, sizeof set, &set) == 0) mine = CPU_COUNT(&set);
    long share = online / (g_local_size > 0 ? g_local_size : 1);
    long t = mine < share ? mine : share;
    return t < 1 ? 1 : (int)t;
}

core_backend *comm_backend_create(const char *device)
{
    int ngpu = core_cuda_device_count();
    if (strcmp(device, "cpu") && ngpu > 0 && g_local_size > ngpu && g_local_rank == 0)
        core_warn("%d ranks share this node's %d GPU(s): ranks will share devices", g_local_size, ngpu);
    return core_backend_create(device, g_local_rank, comm_cpu_threads());
}
