/* MPI return-code checking for comm/ files (MPI_ERRORS_RETURN is set on every
 * communicator, so failures come back as codes instead of silent aborts). */
#ifndef SSPOSE_COMM_MPI_CHECK_H
#define SSPOSE_COMM_MPI_CHECK_H

#include <mpi.h>

#include "core/check.h"

/* The job's communicator (a duplicate of MPI_COMM_WORLD). */
MPI_Comm comm_mpi_comm(void);

void comm_mpi_die(int rc, const char *what, const char *file, int line);

#define MPI_CHECK(call, what) do { int mpi_rc_ = (call); \
        if (mpi_rc_ != MPI_SUCCESS) comm_mpi_die(mpi_rc_, what, __FILE__, __LINE__); } while (0)

/* Watchdog around one blocking collective: if it has not returned after the
 * timeout, the watchdog thread reports `what` and ends the job. */
void comm_watch_begin(const char *what);
void comm_watch_end(void);

#endif
