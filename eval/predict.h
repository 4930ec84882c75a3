/* Inference: images -> people, with test-time augmentation (eval/testtime.h)
 * and decoding (eval/decode.h), over one image or a COCO ground-truth file's
 * images, written as COCO keypoint results.
 *
 * The network is an eval_forward_fn, so the pipeline runs on a trained model
 * (eval_model_*, model/net.h + model/checkpoint.h) or on any map source. */
#ifndef SSPOSE_EVAL_PREDICT_H
#define SSPOSE_EVAL_PREDICT_H

#include <stdint.h>

#include "core/config.h"
#include "eval/decode.h"
#include "eval/testtime.h"

/* People in one RGB image (h x w x 3), with the TTA and thresholds of cfg's
 * eval section and the network's stride and offsets from cfg's model section.
 * Returns the count; *out malloc'ed, sorted by score. */
int eval_predict_image(const uint8_t *rgb, int h, int w, const core_config *cfg, eval_forward_fn fn, void *ctx,
                       eval_person **out);

/* Runs every image of a COCO ground-truth file (read from images_dir/file_name)
 * through the network, with a progress bar on stderr, and writes the COCO
 * results list to out_json (temporary name, then rename). A missing or
 * undecodable image is fatal (one line naming it): a partial evaluation would
 * look like a worse model. Returns the number of people written. */
long eval_predict_coco(const char *gt_json, const char *images_dir, const core_config *cfg, eval_forward_fn fn,
                       void *ctx, const char *out_json);

/* One person as a COCO result object's fields: keypoints in COCO-17 order,
 * v = the keypoint's peak score; "score" = the person's score. Writes a JSON
 * list of people of one image to out_json (temporary name, then rename). */
void eval_write_people_json(const char *out_json, long long image_id, const eval_person *people, int n);

/* A checkpoint's network ready for inference (model/checkpoint.h): the
 * config is the checkpoint's own, then `sets` ("section.key=value") applied.
 * device: "auto" (CUDA when a GPU is there), "cpu" or "cuda". Dies with one
 * line when the checkpoint is missing, not an sspose checkpoint, or does not
 * match its config. */
typedef struct eval_model eval_model;
eval_model *eval_model_load(const char *checkpoint, const char *const *sets, int nsets, const char *device);
const core_config *eval_model_config(const eval_model *m);
void eval_model_free(eval_model *m);
/* An eval_model over a network the caller built and keeps (the trainer's
 * validation replica, trainer/validate.h): cfg and net must outlive it, and
 * eval_model_free then frees only the wrapper. */
typedef struct model_net model_net;
eval_model *eval_model_wrap(model_net *net, const core_config *cfg);
/* eval_forward_fn over an eval_model (ctx): the last stage's maps. */
void eval_model_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out);

#endif
