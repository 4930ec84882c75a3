/* Checkpoints (SPEC section 6): /params/<name>/{weight,bias},
 * /optim/momentum/<name>/{weight,bias}, root attributes format, version, step,
 * config, and a /state group the trainer fills for exact resume.
 * Always written to a temporary file and renamed. */
#ifndef SSPOSE_MODEL_CHECKPOINT_H
#define SSPOSE_MODEL_CHECKPOINT_H

#include <hdf5.h>
#include <stdint.h>

#include "model/net.h"

#define MODEL_CKPT_FORMAT "sspose-checkpoint"
#define MODEL_CKPT_VERSION 1
/* Root attribute `checksum`: every dataset under /params and /optim carries HDF5's Fletcher-32 filter. */
#define MODEL_CKPT_CHECKSUM "fletcher32"

/* Called with the open /state group; may write or read anything under it. */
typedef void (*model_ckpt_state_fn)(hid_t state_group, void *ctx);

/* momentum: device buffer laid out like model_params(), or NULL for zeros. */
void model_ckpt_save(const char *path, model_net *net, const float *momentum, int64_t step, const char *config_text,
                     model_ckpt_state_fn write_state, void *ctx);

/* The `config` attribute of a checkpoint (caller frees); dies with one line when the
 * file is missing, not HDF5, or not an sspose checkpoint. */
char *model_ckpt_read_config(const char *path);

/* Verifies every dataset of a checkpoint: Fletcher-32 checksums (required on
 * /params and /optim when the root attribute `checksum` says so; checkpoints
 * from before it load without), float32 type of every tensor under /params
 * and /optim, finite values in every float dataset (optimizer state and any
 * other statistics included). 0, or -1 with the reason in err. */
int model_ckpt_verify(const char *path, char *err, size_t errlen);

/* Loads parameters (and momentum when non-NULL) into a net built from a matching config.
 * Runs the checks of model_ckpt_verify first.
 * Returns 0, or -1 with the reason in err (the file is left untouched); the caller decides
 * whether that is fatal (inference) or a fall-back (resume). */
int model_ckpt_try_load(const char *path, model_net *net, float *momentum, int64_t *step,
                        model_ckpt_state_fn read_state, void *ctx, char *err, size_t errlen);
/* Same, fatal on error. */
void model_ckpt_load(const char *path, model_net *net, float *momentum, int64_t *step,
                     model_ckpt_state_fn read_state, void *ctx);

#endif
