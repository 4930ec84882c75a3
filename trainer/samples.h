/* Chosen shard samples on a device, as stored (no flip): the input images
 * and the loss targets of samples [index, index + count) of one shard. For
 * tools that look at given samples (`sspose forward`), where the training
 * loader (trainer/batch.h) streams its own order. */
#ifndef SSPOSE_TRAINER_SAMPLES_H
#define SSPOSE_TRAINER_SAMPLES_H

#include "core/backend.h"
#include "dataio/shard.h"
#include "loss/loss.h"

typedef struct {
    core_backend *be;
    float *dev[DATAIO_NDS]; /* mask, heatmap, paf, offset, attention on the device */
    loss_targets t;         /* views of dev, [count, channels, grid_h, grid_w] */
} trainer_samples;

/* Reads and decodes the samples (dies naming shard and sample on corrupt
 * data), uploads the images as float NCHW normalised as `norm`
 * (model.input_norm) to input_dev ([count, 3, S, S]) and the targets to
 * buffers owned by out. */
void trainer_samples_load(dataio_shard *sh, long index, int count, core_backend *be, int grid_h, int grid_w,
                          core_input_norm norm, float *input_dev, trainer_samples *out);
void trainer_samples_free(trainer_samples *s);

#endif
