/* What exact resume needs beyond weights and optimizer state: the /state
 * group of a checkpoint (docs/training.md, "Checkpoints and exact resume"),
 * writing checkpoints with it, and --resume: the newest checkpoint of a run
 * directory that loads, falling back past broken ones with one warning each. */
#ifndef SSPOSE_TRAINER_RESUME_H
#define SSPOSE_TRAINER_RESUME_H

#include <stdint.h>

#include "comm/comm.h"
#include "core/config.h"
#include "dataio/loader.h"
#include "model/net.h"
#include "trainer/optim.h"

typedef struct trainer_state {
    int64_t step;          /* steps completed */
    int64_t global_batch;  /* samples per step over all ranks */
    int64_t ranks, batch;  /* how the global batch was split when written */
    int64_t seed;          /* train.seed: keys the data order and flips (the loader has no other RNG state) */
    int64_t dataset_size;  /* samples in data.train when written */
    int64_t skipped;       /* steps skipped as non-finite so far */
    double elapsed_s;      /* training wall time so far */
    dataio_loader_state loader; /* data order position (epoch, entries consumed), /state/loader */
} trainer_state;

/* Writes RUNDIR's checkpoint `path` (rank 0 only): parameters, the optimizer's
 * state, the config text and `st` as /state. */
void trainer_checkpoint_write(const char *path, model_net *net, trainer_optim *optim, const char *config_text,
                              const trainer_state *st);

/* --resume, called by every rank: rank 0 takes the newest checkpoint in `rundir`
 * that loads and fits this run (a different model, optimizer, seed or global
 * batch is fatal, other config changes are listed in a warning); every rank
 * then receives its weights, optimizer state and /state into `st`. Returns 1
 * when resumed, 0 when the directory has no checkpoint yet. */
int trainer_resume(const core_config *cfg, const char *rundir, model_net *net, trainer_optim *optim,
                   comm_reducer *red, trainer_state *st);

#endif
