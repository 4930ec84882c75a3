/* Bottom-up decoding of one image's maps into people (OpenPose's grouping,
 * with the block-inside offsets of SPEC section 2 for sub-cell positions).
 *
 * Maps are planar float arrays over an h x w grid. Where the grid sits in the
 * output image is an affine map per axis, so the same decoder serves
 *   - raw network maps at stride fd:  step = fd, origin = (fd-1)/2
 *     (cell centres of SPEC section 2), offsets in units of fd;
 *   - maps already resampled to image resolution (eval/testtime.h):
 *     step = 1, origin = 0, "offsets" being pixel displacement votes.
 * A keypoint found at cell (i,j) of channel k is at
 *   x = origin_x + j*step_x + off_unit_x * O[2k][i][j]   (O = 0 without offsets)
 * and likewise for y. */
#ifndef SSPOSE_EVAL_DECODE_H
#define SSPOSE_EVAL_DECODE_H

#include "core/config.h"
#include "core/skeleton.h"

typedef struct eval_maps {
    int h, w;
    const float *heat;   /* [19][h][w] (channel 18, the background, is not used) */
    const float *paf;    /* [38][h][w] */
    const float *offset; /* [36][h][w], or NULL */
    double step_x, step_y;         /* output-image pixels per grid cell */
    double origin_x, origin_y;     /* output-image position of cell (0,0) */
    double off_unit_x, off_unit_y; /* output-image pixels per offset unit */
    double image_h;                /* output-image height, for the limb-length prior */
} eval_maps;

/* Thresholds (from the config's eval section; see docs/decode.md). */
typedef struct eval_decode_params {
    double thre1;           /* heatmap peak threshold */
    double thre2;           /* PAF sample threshold */
    int mid_num;            /* samples along a candidate limb */
    double min_inlier_frac; /* fraction of samples above thre2 needed */
    double mid_thresh;      /* mean PAF score with the length prior must exceed this */
    int min_parts;          /* people with fewer keypoints are dropped */
    double min_person_score;/* people whose score per part is lower are dropped */
} eval_decode_params;

void eval_decode_params_from_config(const core_config *cfg, eval_decode_params *p);

typedef struct eval_peak {
    float x, y;  /* output-image pixels */
    float score; /* heatmap value at the peak */
} eval_peak;

typedef struct eval_person {
    float kp[SKEL_NUM_KP][3]; /* x, y, peak score; all 0 when the keypoint is absent */
    int count;                /* keypoints present */
    float score;              /* sum of peak and limb scores / count, in ~[0, 2] */
} eval_person;

/* At most this many peaks per keypoint type enter the grouping (the highest):
 * an untrained or noisy network can have thousands of local maxima, and limb
 * scoring is quadratic in them. No image has this many people. */
#define EVAL_MAX_PEAKS 128

/* Peaks of heatmap channel k: 3x3 local maxima above thre1 (plateaus give one
 * peak: ties go to the first in row-major order). Positions through the map's
 * affine and offsets. Returns the count; *out is malloc'ed (caller frees). */
int eval_find_peaks(const eval_maps *m, int k, double thre1, eval_peak **out);

/* Mean PAF alignment of limb l from a to b (output-image pixels): mid_num
 * bilinear samples of the PAF dotted with the unit vector a->b. *inlier_frac
 * gets the fraction of samples above thre2 (may be NULL). When a == b (both
 * keypoints decoded to one spot) the PAF's magnitude there is the score. */
double eval_paf_score(const eval_maps *m, int l, const float a[2], const float b[2], int mid_num, double thre2,
                      double *inlier_frac);

/* The whole decoder. Returns the number of people; *out (malloc'ed, caller
 * frees) is sorted by descending score. */
int eval_decode(const eval_maps *m, const eval_decode_params *p, eval_person **out);

/* COCO-17 keypoints [x, y, v] of a person (SPEC section 1 mapping; the neck is
 * dropped). v is the keypoint's peak score (0 when absent). */
void eval_person_to_coco(const eval_person *person, float out[SKEL_NUM_COCO * 3]);

#endif
