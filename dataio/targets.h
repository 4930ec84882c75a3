/* Training targets of SPEC section 2, computed from keypoints alone.
 *
 * Persons are OpenPose-18 keypoints in crop pixel coordinates: float
 * kps[p*18*3 + k*3 + {0,1,2}] = x, y, v, with v > 0 meaning labelled (any
 * labelled keypoint counts, also one lying outside the crop: its Gaussian
 * tail and limbs still reach into the grid). Output layouts are [C,h,w]
 * row-major floats; cell (i,j) has its centre at input pixel
 * (j*stride + (stride-1)/2, i*stride + (stride-1)/2).
 *
 * Independent of images: the evaluation code uses it for oracle decoding,
 * the shard writer for training targets. Thread-safe (no global state). */
#ifndef SSPOSE_DATAIO_TARGETS_H
#define SSPOSE_DATAIO_TARGETS_H

#include "core/skeleton.h"

#define DATAIO_HEAT_CH (SKEL_NUM_KP + 1)   /* 19: 18 keypoints + background */
#define DATAIO_PAF_CH (2 * SKEL_NUM_LIMBS) /* 38 */
#define DATAIO_OFF_CH (2 * SKEL_NUM_KP)    /* 36 */
#define DATAIO_ATT_CH SKEL_NUM_LIMBS       /* 19 */

/* exp(-4.6052) ~ 0.01: heatmap terms beyond it are 0 (CMU's cut-off). */
#define DATAIO_HEAT_CUTOFF 4.6052
/* Attention terms below e^-20 (2e-9) are left at 0: far below float and
 * uint8 resolution, and it keeps the cost proportional to the limb's area. */
#define DATAIO_ATT_CUTOFF 20.0
/* Offsets are defined where a keypoint's Gaussian exceeds this value. */
#define DATAIO_OFFSET_THRESHOLD 0.4

typedef struct {
    int stride;       /* fd, input pixels per output cell */
    int grid_h, grid_w;
    double sigma;     /* heatmap Gaussian sigma, input pixels */
    double paf_width; /* PAF half-width, output cells */
} dataio_target_params;

/* Fills each non-NULL output for `npersons` persons:
 *   th [19,h,w] heatmaps (channel 18 = background),
 *   tp [38,h,w] PAFs (2l = x, 2l+1 = y; overlapping persons averaged),
 *   to [36,h,w] block-inside offsets (nearer keypoint wins, clamped to +-0.5),
 *   ta [19,h,w] limb attention.
 * Limbs whose two ends coincide get no PAF (no direction) but do get attention. */
void dataio_targets_compute(const dataio_target_params *p, const float *kps, int npersons, float *th, float *tp,
                            float *to, float *ta);

/* Area average of an S x S mask (values in [0,1], row-major) onto the h x w grid,
 * S = h*stride = w*stride. */
void dataio_mask_to_grid(const float *crop_mask, int stride, int grid_h, int grid_w, float *out);

#endif
