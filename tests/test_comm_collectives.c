/* comm/ collectives. Run alone (make test runs it so) it is an MPI singleton:
 * one rank, no mpirun. tests/test_comm_mpi.sh runs it again under mpirun with
 * 2 and 3 ranks, and with a fault argument to check that a failing, stalled
 * or killed rank ends the job promptly:
 *   test_comm_collectives die R     rank R dies through CORE_DIE inside the run
 *   test_comm_collectives stall R   rank R sleeps 60 s; the others time out after 2 s
 *   test_comm_collectives kill R    rank R kills itself with SIGKILL
 * In the fault modes every other rank waits in a gradient all-reduce. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/backend.h"
#include "tests/test.h"
#include "tests/test_mpi.h"

static core_backend *be;

/* A value only (rank, i) determines, so every rank can compute the exact sum. */
static float val(int rank, size_t i)
{
    uint64_t x = (uint64_t)i * 0x9E3779B97F4A7C15ULL + (uint64_t)(rank + 1) * 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBULL;
    x ^= x >> 29;
    return (float)((double)(x >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void check_bucketed(size_t n, double bucket_mb)
{
    int size = comm_size(), rank = comm_rank();
    comm_reducer *r = comm_reducer_create(be, bucket_mb);
    float *buf = be->alloc(be, n);
    for (size_t i = 0; i < n; i++) buf[i] = val(rank, i);
    comm_reducer_allreduce_sum(r, buf, n);
    size_t bucket = (size_t)(bucket_mb * 1024 * 1024 / 4);
    if (bucket < 1) bucket = 1;
    T_CHECKF(comm_reducer_last_buckets(r) == (int)((n + bucket - 1) / bucket), "n=%zu: %d buckets, expected %zu", n,
             comm_reducer_last_buckets(r), (n + bucket - 1) / bucket);
    for (size_t i = 0; i < n; i++) {
        double want = 0;
        for (int q = 0; q < size; q++) want += val(q, i);
        /* float sums of `size` terms in [-1,1]: a few ulps of the largest term */
        if (fabs(buf[i] - want) > 4e-7 * size) {
            T_FAILF("n=%zu bucket_mb=%g: element %zu = %.9g, exact sum %.9g", n, bucket_mb, i, buf[i], want);
            break;
        }
    }
    be->free(be, buf);
    comm_reducer_destroy(r);
}

static void test_bucketed_allreduce_is_the_sum(void)
{
    check_bucketed(0, 0.01);
    check_bucketed(1, 0.01);
    check_bucketed(2621, 0.01);       /* one bucket, not full */
    check_bucketed(2621 * 4, 0.01);   /* exact multiple of the bucket */
    check_bucketed(300007, 0.1);      /* ~12 buckets with a ragged end */
}

/* Bucketing must not change the result: same bits as one plain all-reduce of the whole buffer. */
static void test_bucketed_equals_single_bucket(void)
{
    size_t n = 100003;
    comm_reducer *small = comm_reducer_create(be, 0.02), *whole = comm_reducer_create(be, 64);
    float *a = be->alloc(be, n), *b = be->alloc(be, n);
    for (size_t i = 0; i < n; i++) a[i] = b[i] = val(comm_rank(), i) * 3.0f;
    comm_reducer_allreduce_sum(small, a, n);
    comm_reducer_allreduce_sum(whole, b, n);
    T_CHECKF(comm_reducer_last_buckets(whole) == 1, "64 MB bucket split %zu floats", n);
    T_CHECKF(comm_reducer_last_buckets(small) > 10, "0.02 MB buckets: only %d", comm_reducer_last_buckets(small));
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) diff += fabsf(a[i] - b[i]) > 1e-6f * (1 + fabsf(b[i]));
    T_CHECKF(diff == 0, "%zu of %zu elements differ between bucketed and whole-buffer all-reduce", diff, n);
    be->free(be, a);
    be->free(be, b);
    comm_reducer_destroy(small);
    comm_reducer_destroy(whole);
}

static void test_broadcast_from_last_rank(void)
{
    int root = comm_size() - 1;
    size_t n = 50001;
    comm_reducer *r = comm_reducer_create(be, 0.05);
    float *buf = be->alloc(be, n);
    for (size_t i = 0; i < n; i++) buf[i] = val(comm_rank() + 17, i);
    comm_reducer_bcast(r, buf, n, root);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&buf[i], &(float){val(root + 17, i)}, sizeof(float)) != 0;
    T_CHECKF(bad == 0, "%zu of %zu elements differ from root %d's", bad, n, root);
    be->free(be, buf);
    comm_reducer_destroy(r);
}

static void test_scalar_reductions(void)
{
    int size = comm_size(), rank = comm_rank();
    double v[3] = {rank + 0.5, 1.0, -rank};
    comm_allreduce_doubles(v, 3, COMM_SUM);
    T_NEAR(v[0], size * (size - 1) / 2.0 + 0.5 * size, 0, 1e-12);
    T_NEAR(v[1], size, 0, 1e-12);
    T_NEAR(comm_allreduce_double(rank * 2.0, COMM_MAX), 2.0 * (size - 1), 0, 0);
    T_NEAR(comm_allreduce_double(rank * 2.0 + 1, COMM_MIN), 1.0, 0, 0);
    T_CHECK(comm_allreduce_ll(rank == size - 1, COMM_MAX) == 1);
    T_CHECK(comm_allreduce_ll(1LL << 40, COMM_SUM) == (long long)size << 40);
    uint64_t mine = 1000 + rank, all[16];
    if (size <= 16) {
        comm_allgather_u64(&mine, 1, all);
        for (int q = 0; q < size; q++) T_CHECKF(all[q] == 1000u + q, "allgather slot %d = %llu", q, (unsigned long long)all[q]);
    }
    char msg[32] = "";
    if (rank == 0) snprintf(msg, sizeof msg, "hello from 0");
    comm_bcast_bytes(msg, sizeof msg, 0);
    T_CHECKF(!strcmp(msg, "hello from 0"), "broadcast bytes gave '%s'", msg);
}

static void test_replica_hash(void)
{
    float w[100];
    for (int i = 0; i < 100; i++) w[i] = val(0, i);
    int first = 123;
    T_CHECK(comm_compare_hash(comm_hash_bytes(w, sizeof w), &first) == 0);
    T_CHECK(first == -1);
    /* one flipped low bit on the last rank must be caught and that rank named */
    if (comm_rank() == comm_size() - 1 && comm_size() > 1) {
        uint32_t u;
        memcpy(&u, &w[57], 4);
        u ^= 1;
        memcpy(&w[57], &u, 4);
    }
    int bad = comm_compare_hash(comm_hash_bytes(w, sizeof w), &first);
    if (comm_size() > 1) {
        T_CHECKF(bad == 1 && first == comm_size() - 1, "drift on rank %d: %d bad, first %d", comm_size() - 1, bad, first);
    } else {
        T_CHECK(bad == 0);
    }
}

static void test_ranks(void)
{
    int size = comm_size(), rank = comm_rank();
    const char *env = getenv("OMPI_COMM_WORLD_SIZE");
    T_CHECKF(size == (env ? atoi(env) : 1), "size %d, launcher says %s", size, env ? env : "(no launcher: 1)");
    T_CHECK(rank >= 0 && rank < size);
    /* every test rank runs on this one machine */
    T_CHECKF(comm_local_size() == size && comm_local_rank() == rank, "local %d/%d vs world %d/%d", comm_local_rank(),
             comm_local_size(), rank, size);
    T_CHECK(comm_cpu_threads() >= 1);
}

/* Single rank: the reducer must leave buffers exactly as they are. */
static void test_single_rank_identity(void)
{
    if (comm_size() != 1) return;
    comm_reducer *r = comm_reducer_create(be, 0.01);
    float *buf = be->alloc(be, 1000);
    for (int i = 0; i < 1000; i++) buf[i] = val(5, i);
    comm_reducer_allreduce_sum(r, buf, 1000);
    comm_reducer_bcast(r, buf, 1000, 0);
    for (int i = 0; i < 1000; i++)
        if (buf[i] != val(5, i)) { T_FAILF("element %d changed", i); break; }
    be->free(be, buf);
    comm_reducer_destroy(r);
}

static void fault(const char *mode, int victim)
{
    comm_set_timeout(2);
    comm_set_context("the fault test");
    comm_reducer *r = comm_reducer_create(be, 1);
    float *buf = be->alloc(be, 1000);
    if (comm_rank() == victim) {
        if (!strcmp(mode, "die")) CORE_DIE("injected failure");
        if (!strcmp(mode, "kill")) raise(SIGKILL);
        if (!strcmp(mode, "stall")) sleep(60);
    }
    comm_reducer_allreduce_sum(r, buf, 1000);
    /* a rank that gets here was not stopped */
    printf("rank %d passed the collective\n", comm_rank());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    (void)t_run; /* this program reports through t_mpi_run (tests/test_mpi.h) */
    comm_init(&argc, &argv);
    core_set_quiet(1);
    be = core_cpu_backend_create(1);
    if (argc == 3) {
        fault(argv[1], atoi(argv[2]));
    } else {
        T_MPI_RUN(test_ranks);
        T_MPI_RUN(test_bucketed_allreduce_is_the_sum);
        T_MPI_RUN(test_bucketed_equals_single_bucket);
        T_MPI_RUN(test_broadcast_from_last_rank);
        T_MPI_RUN(test_scalar_reductions);
        T_MPI_RUN(test_replica_hash);
        T_MPI_RUN(test_single_rank_identity);
    }
    core_backend_destroy(be);
    comm_finalize();
    T_EXIT();
}
