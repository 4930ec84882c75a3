/* Validation during training (train.val_every): COCO keypoint AP of the
 * current weights on a held-out set given as `sspose eval` takes it
 * (data.val_ann = COCO JSON, data.val_images = its folder, data.val_max_images
 * = the first N images in file order, 0 = all), with the [eval] settings.
 *
 * Inference runs on a replica of the network (its own activations, the same
 * backend), so the training network, its arenas and the loader are untouched
 * and training is bit-identical with and without validation. The images are
 * split over the ranks (image i on rank i mod ranks), the detections gathered
 * in file order, and rank 0 scores them with eval/cocoeval.h; the numbers equal
 * `sspose eval --checkpoint` on a checkpoint of the same step. Rank 0 also
 * writes the detections to RUNDIR/val-results.json (COCO results format).
 *
 * The best checkpoint: a validation that beats every earlier one (AP, ties keep
 * the earlier) makes the trainer write that step's regular checkpoint (if its
 * schedule did not already) and trainer_val_keep_best copies it to
 * RUNDIR/ckpt-best.h5 (temporary name, then rename) with root attributes
 * val_ap, val_ap50, val_ar and val_step. Its name is outside the ckpt-<step>.h5
 * pattern, so pruning never removes it and --resume never picks it; on resume
 * its val_ap is the score later validations must beat. docs/training.md. */
#ifndef SSPOSE_TRAINER_VALIDATE_H
#define SSPOSE_TRAINER_VALIDATE_H

#include "core/config.h"
#include "model/net.h"

typedef struct trainer_val_result {
    long step;
    double ap, ap50, ap75, ar; /* pycocotools' stats 0, 1, 2 and 5 */
    int images;                /* images validated */
    double time_s;             /* wall time of the validation, all ranks */
    int improved;              /* the best AP so far: the step's checkpoint becomes ckpt-best.h5 */
} trainer_val_result;

typedef struct trainer_val trainer_val;

/* NULL when cfg->train.val_every is 0. Otherwise every rank loads the
 * validation set (one error line when it is missing or unusable) and builds
 * the replica on `be`; rank 0 reads the best AP so far from RUNDIR/ckpt-best.h5
 * when `resumed`. Collective. */
trainer_val *trainer_val_open(const core_config *cfg, core_backend *be, const char *rundir, int resumed);
void trainer_val_close(trainer_val *v);

/* Whether validation is due after `step` (steps completed): v is not NULL and
 * step is a multiple of train.val_every, or `last`. */
int trainer_val_due(const trainer_val *v, long step, int last);
/* After the update of step `step`, when trainer_val_due says so: validates
 * `net`. Collective; every rank gets the same result. */
const trainer_val_result *trainer_val_step(trainer_val *v, model_net *net, long step);

/* Rank 0, after this step's checkpoint was written: when res->improved, copies
 * RUNDIR/ckpt-<step>.h5 to RUNDIR/ckpt-best.h5 with the validation attributes.
 * No-op for NULL arguments, other ranks, or no improvement. */
void trainer_val_keep_best(trainer_val *v, const trainer_val_result *res);

/* RUNDIR/ckpt-best.h5 */
void trainer_val_best_path(const char *rundir, char *out, size_t len);

#endif
