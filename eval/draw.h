/* Skeleton overlays: people drawn over an RGB image with cairo, saved as PNG. */
#ifndef SSPOSE_EVAL_DRAW_H
#define SSPOSE_EVAL_DRAW_H

#include <stdint.h>

#include "eval/decode.h"

/* Writes `path` (through a temporary name and a rename): the h x w RGB image
 * (row-major, 3 bytes a pixel) with each person's limbs and keypoints drawn
 * over it, limbs coloured by type. Fatal, with one line, when writing fails. */
void eval_draw_png(const char *path, const uint8_t *rgb, int h, int w, const eval_person *people, int n);

#endif
