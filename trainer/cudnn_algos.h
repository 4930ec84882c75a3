/* The cuDNN algorithm choices of a run: RUNDIR/cudnn_algos.txt, one line per
 * (convolution shape, direction, math, workspace limit) -> (algorithm, math
 * type), as core_cuda_algos_save writes them (docs/gpu.md).
 *
 * Every rank and every resume runs the same algorithms: rank 0 reads the
 * record (when the run directory has one: a resume, or a record copied in to
 * pin another run's choices) and broadcasts it, so shapes in it are never
 * timed again;
 * a shape first seen in this run is timed once on each rank and rank 0's
 * choice is broadcast to all (ranks reach new shapes in the same order, as
 * they run the same network on the same batch shape). Rank 0 rewrites the
 * record (temporary name + rename) when it grew. No-ops on a CPU backend. */
#ifndef SSPOSE_TRAINER_CUDNN_ALGOS_H
#define SSPOSE_TRAINER_CUDNN_ALGOS_H

#include "core/backend.h"

typedef struct trainer_algos trainer_algos;

/* Collective. NULL for a non-CUDA backend (the other calls accept NULL). */
trainer_algos *trainer_algos_open(core_backend *be, const char *rundir);
/* Rank 0: writes the record when choices were added since the last write. */
void trainer_algos_save(trainer_algos *a);
void trainer_algos_close(trainer_algos *a);

#endif
