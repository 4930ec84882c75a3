/* Data-parallel training loop (`sspose train`).
 *
 * Every rank holds a full replica; per step each computes the loss and
 * gradients of its train.batch samples, the gradients are averaged over the
 * global batch with one bucketed all-reduce, and every rank applies the same
 * optimizer update (trainer/optim.h). Rank 0 writes the run directory: config.ini,
 * metrics.jsonl and checkpoints (with the optimizer state, step and loader
 * position for exact resume). */
#ifndef SSPOSE_TRAINER_TRAIN_H
#define SSPOSE_TRAINER_TRAIN_H

#include "core/config.h"

/* Runs (or, with resume, continues) training into `rundir` up to
 * cfg->train.steps. comm_init must have been called. Returns 0 when training
 * finished or was stopped by SIGTERM/SIGUSR1 after writing a checkpoint. */
int trainer_run(const core_config *cfg, const char *rundir, int resume);
/* The same, and a fresh run (nothing to resume) starts from the weights of the checkpoint
 * `init` (e.g. `sspose init --backbone`, tools/convert.py openpose) instead of the seed's
 * init: step 0, zero momentum, fresh data order. NULL: trainer_run. */
int trainer_run_init(const core_config *cfg, const char *rundir, int resume, const char *init);

#endif
