/* One decoded training sample (a shard row, SPEC section 5) and its mirror.
 *
 * All arrays are owned by the sample and sized by dataio_sample_init; targets
 * are dequantised floats on the h x w grid in [C,h,w] layout. */
#ifndef SSPOSE_DATAIO_SAMPLE_H
#define SSPOSE_DATAIO_SAMPLE_H

#include <stdint.h>

#include "core/config.h"
#include "dataio/targets.h"

typedef struct {
    int64_t image_id;
    int32_t person;   /* annotation id of the main person */
    float scale;      /* crop pixels per source-image pixel */
    float center_x;   /* crop centre in source-image pixels */
    float center_y;
    float rotation;   /* degrees */
    uint8_t flipped;
} dataio_meta;

typedef struct {
    int size;          /* S: the crop is S x S */
    int grid_h, grid_w;
    int max_persons;   /* P: rows in keypoints */
    uint8_t *rgb;      /* [S,S,3] */
    float *mask;       /* [h,w] */
    float *heatmap;    /* [19,h,w] */
    float *paf;        /* [38,h,w] */
    float *offset;     /* [36,h,w] */
    float *attention;  /* [19,h,w] */
    float *keypoints;  /* [P,18,3]: x, y in crop pixels, v (0 none, 1 labelled) */
    dataio_meta meta;
} dataio_sample;

/* Allocates the arrays for an S x S crop, an h x w grid and P keypoint rows (zeroed). */
void dataio_sample_init(dataio_sample *s, int size, int grid_h, int grid_w, int max_persons);
void dataio_sample_free(dataio_sample *s);

/* The crop as the network input: float NCHW (one image), pixel/255 - 0.5. */
void dataio_sample_image_chw(const dataio_sample *s, float *out);
/* The same under any model.input_norm (dataio/input_norm.h). */
void dataio_sample_input(const dataio_sample *s, core_input_norm mode, float *out);

/* Mirrors the sample left-right in place: image and grids reversed along x,
 * left/right heatmap, offset and attention channels swapped, PAF limbs swapped
 * with x negated, offset x negated, keypoints swapped with x' = S-1-x
 * (labelled rows only), meta.flipped toggled. Flipping twice is the identity. */
void dataio_flip_sample(dataio_sample *s);

/* The same on bare arrays (any may be NULL); S = w*stride is implied by the grid. */
void dataio_flip_targets(int grid_h, int grid_w, float *mask, float *heatmap, float *paf, float *offset,
                         float *attention);
/* Keypoints [P,18,3] of an S-wide crop. */
void dataio_flip_keypoints(float *kps, int npersons, int size);
/* HWC uint8 image. */
void dataio_flip_rgb(uint8_t *rgb, int height, int width);

#endif
