/* Training-sample generation from one COCO image (CMU's recipe):
 * the main person's box height becomes target_height*S times a random factor
 * in [scale_min, scale_max]; the crop is rotated by a uniform angle in
 * [-max_rotate, max_rotate] degrees about the box centre, which is moved by up
 * to +-center_perturb crop pixels in x and y; areas outside the image are
 * grey (128) in the crop and 1 in mask_miss; with probability `flip` the
 * sample is mirrored (dataio_flip_sample, so targets mirror exactly). */
#ifndef SSPOSE_DATAIO_AUGMENT_H
#define SSPOSE_DATAIO_AUGMENT_H

#include <stdint.h>

#include "dataio/coco.h"
#include "dataio/image.h"
#include "core/rng.h"
#include "dataio/sample.h"

typedef struct {
    int size, stride;          /* S, fd */
    double sigma, paf_width;
    double scale_min, scale_max, max_rotate, center_perturb, target_height, flip;
} dataio_aug_params;

/* One draw of the augmentation: image -> crop affine (before the flip). */
typedef struct {
    double m[6];   /* x' = m0 x + m1 y + m2, y' = m3 x + m4 y + m5 */
    double scale;  /* crop pixels per image pixel */
    double rotation; /* degrees, counter-clockwise in the image */
    double cx, cy; /* crop centre in image pixels */
    int flip;
} dataio_aug;

/* Draws scale, rotation, centre offset and flip, in that order, from rng. */
void dataio_aug_draw(const dataio_aug_params *p, const dataio_coco_ann *main_person, core_sm64 *rng, dataio_aug *out);

/* Affine warps (inverse-mapped, bilinear). */
void dataio_warp_rgb(const dataio_aug *a, const uint8_t *src, int w, int h, uint8_t *dst, int size);
/* mask: 0/1 per image pixel -> [0,1] per crop pixel, 1 outside the image */
void dataio_warp_mask(const dataio_aug *a, const uint8_t *src, int w, int h, float *dst, int size);

/* Persons that get targets: non-crowd annotations with a labelled keypoint. */
int dataio_count_target_persons(const dataio_coco_image *ci);

/* mask_miss of an image (1 = use, 0 = crowd / person without keypoints);
 * NULL when the image has no such region (all ones). Caller frees. */
uint8_t *dataio_mask_miss(const dataio_coco_image *ci);

/* Builds sample `out` (initialised by the caller with P >= dataio_count_target_persons
 * rows and the params' S and grid) for main person `main_idx` of `ci`. */
void dataio_make_sample(const dataio_aug_params *p, const dataio_image *img, const uint8_t *mask_miss,
                        const dataio_coco_image *ci, int main_idx, const dataio_aug *aug, dataio_sample *out);

#endif
