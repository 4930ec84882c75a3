/* MPI test programs (run under mpirun by a tests/test_*.sh): every rank runs
 * each test; a rank that fails prints its own FAIL line, and rank 0 prints
 * "ok" only when every rank passed. Include after tests/test.h. */
#ifndef SSPOSE_TESTS_TEST_MPI_H
#define SSPOSE_TESTS_TEST_MPI_H

#include <stdio.h>

#include "comm/comm.h"
#include "tests/test.h"

static inline void t_mpi_run(const char *name, void (*fn)(void))
{
    char full[96];
    snprintf(full, sizeof full, "%s[np%d]", name, comm_size());
    t_cur_failed = 0;
    t_cur_msg[0] = 0;
    fn();
    long long any = comm_allreduce_ll(t_cur_failed, COMM_MAX);
    if (t_cur_failed) {
        printf("FAIL - %s: rank %d: %s\n", full, comm_rank(), t_cur_msg);
        t_total_failed++;
    } else if (any) {
        t_total_failed++;
    } else if (comm_rank() == 0) {
        printf("ok - %s\n", full);
    }
    fflush(stdout);
}
#define T_MPI_RUN(fn) t_mpi_run(#fn, fn)

#endif
