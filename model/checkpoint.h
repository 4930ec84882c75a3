/* Checkpoints (SPEC section 6): /params/<name>/{weight,bias} (with model.norm = batch
 * also /params/<conv>/bn/{weight,bias,running_mean,running_var}: the model's buffers
 * are stored beside its parameters), /optim/<state>/<name>/{weight,bias} (SGD:
 * momentum; Adam/AdamW: exp_avg and exp_avg_sq), /optim attributes `optimizer` and
 * `updates`, root attributes format, version, step, config, and a /state group the
 * trainer fills for exact resume (docs/training.md, "Checkpoints").
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

#define MODEL_CKPT_MAX_OPTIM 4

/* The optimizer's state: named device buffers laid out like model_params(). */
typedef struct model_ckpt_optim {
    const char *kind;  /* "sgd", "adam", "adamw": the /optim attribute `optimizer` */
    int64_t updates;   /* updates applied so far: the /optim attribute `updates`; -1 on load when absent */
    int nstate;
    const char *names[MODEL_CKPT_MAX_OPTIM]; /* "momentum", "exp_avg", ... */
    float *state[MODEL_CKPT_MAX_OPTIM];
} model_ckpt_optim;

/* optim NULL: SGD's layout with zero momentum (a fresh checkpoint). */
void model_ckpt_save(const char *path, model_net *net, const model_ckpt_optim *optim, int64_t step,
                     const char *config_text, model_ckpt_state_fn write_state, void *ctx);

/* The `config` attribute of a checkpoint (caller frees); dies with one line when the
 * file is missing, not HDF5, or not an sspose checkpoint. */
char *model_ckpt_read_config(const char *path);

/* Verifies every dataset of a checkpoint: Fletcher-32 checksums (required on
 * /params and /optim when the root attribute `checksum` says so; checkpoints
 * from before it load without), float32 type of every tensor under /params
 * and /optim, finite values in every float dataset (optimizer state, BN
 * statistics, anything else). 0, or -1 with the reason in err. */
int model_ckpt_verify(const char *path, char *err, size_t errlen);

/* Loads parameters (and, when optim is non-NULL, every state it names plus `updates`)
 * into a net built from a matching config. Runs the checks of model_ckpt_verify first.
 * Returns 0, or -1 with the reason in err (the file is left untouched); the caller decides
 * whether that is fatal (inference) or a fall-back (resume). */
int model_ckpt_try_load(const char *path, model_net *net, model_ckpt_optim *optim, int64_t *step,
                        model_ckpt_state_fn read_state, void *ctx, char *err, size_t errlen);
/* Same, fatal on error. */
void model_ckpt_load(const char *path, model_net *net, model_ckpt_optim *optim, int64_t *step,
                     model_ckpt_state_fn read_state, void *ctx);

#endif
