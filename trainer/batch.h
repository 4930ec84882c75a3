/* The trainer's view of the data: this rank's share of the global batch of
 * each step, on the model's device. The global batch of step t is the same
 * set of samples (and flips) whatever the number of ranks; rank r takes the
 * r-th slice of train.batch samples. Wraps dataio's loader. */
#ifndef SSPOSE_TRAINER_BATCH_H
#define SSPOSE_TRAINER_BATCH_H

#include "core/config.h"
#include "dataio/loader.h"
#include "loss/loss.h"
#include "model/net.h"

typedef struct trainer_batches trainer_batches;

/* Opens the shards of data.train for this rank of `world`, at the start or at
 * a saved position; dies with one line when the glob matches nothing or the
 * shards do not fit the config. */
trainer_batches *trainer_batches_open(const core_config *cfg, model_net *net, int rank, int world,
                                      const dataio_loader_state *resume);
void trainer_batches_close(trainer_batches *b);
/* Samples in the dataset (all shards). */
long trainer_batches_dataset_size(const trainer_batches *b);
/* Corrupt samples this rank's loader skipped so far (data.skip_corrupt), decoded-ahead ones included. */
long trainer_batches_corrupt(const trainer_batches *b);
/* Position after the last batch returned (for the checkpoint). */
void trainer_batches_state(const trainer_batches *b, dataio_loader_state *st);
/* Loads the next batch: input into model_input(net) (shape set here), targets
 * into *t (device tensors owned by b). Returns the epoch the batch belongs to. */
long trainer_batches_next(trainer_batches *b, loss_targets *t);

#endif
