/* The one place where image pixels become network input (config model.input_norm).
 *
 * Every mode is a per-channel affine map of one source pixel channel:
 *   input[c] = pixel[src[c]] * scale[c] + bias[c]      (pixel in 0..255, RGB source)
 * evaluated in float as a multiply then an add (the build never contracts to FMA:
 * -std=c11 means -ffp-contract=off), so the loader's SIMD rows, the shard reader,
 * `sspose forward` and test-time inputs give bit-identical values for one pixel.
 *
 *   centered  RGB, pixel/255 - 0.5                          (SPEC section 3)
 *   imagenet  RGB, (pixel/255 - mean)/std, torchvision's mean (0.485, 0.456, 0.406),
 *             std (0.229, 0.224, 0.225)
 *   caffe     BGR, pixel - mean, mean (B, G, R) = (103.939, 116.779, 123.68) (Caffe VGG, Keras "caffe")
 *   cmu       BGR, pixel/256 - 0.5                          (CMU OpenPose's Caffe body models)
 *
 * Zero in input space is what padding means everywhere (conv borders, test-time
 * padding to the stride): grey 127.5 for centered, the mean colour for imagenet and
 * caffe, 128 for cmu (which is what CMU's demo pads with). */
#ifndef SSPOSE_DATAIO_INPUT_NORM_H
#define SSPOSE_DATAIO_INPUT_NORM_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct {
    int src[3];      /* source RGB channel of input channel c */
    float scale[3];  /* per input channel */
    float bias[3];
} dataio_input_norm;

/* The coefficients of a mode; dies with one line on an unknown mode. */
dataio_input_norm dataio_input_norm_get(core_input_norm mode);

/* Input channel c of one pixel value of channel src[c]. */
static inline float dataio_input_norm_px(const dataio_input_norm *n, int c, float pixel)
{
    return pixel * n->scale[c] + n->bias[c];
}

/* An interleaved RGB image (npix pixels, HWC uint8) to planar CHW input. */
void dataio_input_norm_image(core_input_norm mode, const uint8_t *rgb, size_t npix, float *chw);

/* Input channel c's plane of an interleaved RGB image (HWC uint8). */
void dataio_input_norm_plane(const dataio_input_norm *n, int c, const uint8_t *rgb, size_t npix, float *plane);

#endif
