/* Test-time augmentation: the whole image at several scales (and mirrored),
 * each pass's maps resampled back to the original image's pixels and
 * averaged, ready for eval/decode.h.
 *
 * Coordinates: pixel centres. Original pixel x maps to network-input pixel
 * (x + 0.5)*sx - 0.5 (sx = resized width / original width), and input pixel X
 * to grid column (X - (fd-1)/2)/fd, so grid cell j is centred at input pixel
 * j*fd + (fd-1)/2 as in SPEC section 2. A mirrored pass sees X' = Ws-1-X.
 *
 * Offsets and multi-scale: an offset is only meaningful at its own cell, so
 * offsets are never interpolated. Each pass turns them into keypoint votes:
 * for every original pixel p and keypoint k, the grid cell nearest to p votes
 * for the position cx + fd*O[2k] (mapped back to original pixels, un-mirrored,
 * from the mirror keypoint's channel in a mirrored pass); the map stores the
 * vote minus p. These displacement votes are averaged over passes like the
 * heatmaps, and the decoder adds the averaged displacement at a heatmap peak
 * (eval_image_maps_view: offsets in units of 1 pixel). With one pass this is
 * the SPEC decoding rule at the cell nearest to the peak pixel. */
#ifndef SSPOSE_EVAL_TESTTIME_H
#define SSPOSE_EVAL_TESTTIME_H

#include <stdint.h>

#include "core/config.h"
#include "eval/decode.h"

/* One network pass's maps on its grid (host memory, planar [C][h][w]). */
typedef struct eval_grid {
    int h, w, stride;
    const float *heat;   /* 19 channels */
    const float *paf;    /* 38 channels */
    const float *offset; /* 36 channels, or NULL */
} eval_grid;

/* How a pass's input was made from the original image. */
typedef struct eval_pass {
    double sx, sy;       /* resized / original, per axis */
    int content_w, content_h; /* resized image size (the input is padded right/bottom to the stride) */
    int flipped;         /* the resized image was mirrored left-right before padding */
} eval_pass;

/* The network: input is [3][H][W] (normalised by model.input_norm), H and W multiples of
 * the stride. Fills *out with maps that stay valid until the next call. */
typedef void (*eval_forward_fn)(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out);

typedef struct eval_image_maps {
    int h, w;
    float *heat; /* [19][h][w] */
    float *paf;  /* [38][h][w] */
    float *vote; /* [36][h][w] displacement votes in pixels, or NULL without offsets */
} eval_image_maps;

void eval_image_maps_init(eval_image_maps *m, int h, int w, int with_votes);
void eval_image_maps_free(eval_image_maps *m);
/* Decoder view of image-resolution maps. */
eval_maps eval_image_maps_view(const eval_image_maps *m);
/* Decoder view of one pass's raw grid, in original-image pixels (unmirrored passes only). */
eval_maps eval_grid_view(const eval_grid *g, const eval_pass *pass, int image_h);

/* The network input of one pass: the RGB image (h x w x 3, row-major) resized
 * to round(w*scale) x round(h*scale) (triangle filter, widened when shrinking),
 * optionally mirrored, normalised, zero-padded to multiples of stride.
 * Returns a malloc'ed [3][*H][*W] buffer. */
float *eval_make_input(const uint8_t *rgb, int h, int w, double scale, int flip, int stride, int *H, int *W,
                       eval_pass *pass);
/* The same under any model.input_norm (dataio/input_norm.h; eval_make_input is centered):
 * each input channel is normalised from its source pixel channel, then resized. */
float *eval_make_input_norm(const uint8_t *rgb, int h, int w, double scale, int flip, int stride,
                            core_input_norm norm, int *H, int *W, eval_pass *pass);

/* acc += weight * (pass maps resampled to acc's pixels; bicubic for heatmaps and
 * PAFs, mirrored channels and negated PAF x in a mirrored pass; votes as above). */
void eval_accumulate(eval_image_maps *acc, const eval_grid *g, const eval_pass *pass, double weight);

typedef struct eval_tta_opts {
    const double *scales; /* short side = base_size * scale */
    int nscales;
    int flip;             /* also run the mirrored image of every scale */
    int base_size;
    int stride;
    int offsets;          /* accumulate offset votes */
    core_input_norm input_norm; /* model.input_norm */
} eval_tta_opts;

/* Runs every pass through fn and leaves the averaged maps in *out (initialised here). */
void eval_tta(const uint8_t *rgb, int h, int w, const eval_tta_opts *o, eval_forward_fn fn, void *ctx,
              eval_image_maps *out);

#endif
