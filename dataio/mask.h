/* COCO segmentations: polygons (rasterised with cairo, no antialiasing, a
 * pixel is inside when its centre is) and run-length encodings in both COCO
 * spellings (compressed "counts" string, uncompressed list of counts), both
 * column-major with the first run counting zeros, as pycocotools defines them. */
#ifndef SSPOSE_DATAIO_MASK_H
#define SSPOSE_DATAIO_MASK_H

#include <stddef.h>
#include <stdint.h>

/* A segmentation in compact form. */
typedef struct {
    int npoly;
    int *poly_len;     /* number of (x,y) points of each polygon */
    float *xy;         /* all points, polygon after polygon */
    int rle_h, rle_w;  /* > 0 when this is an RLE */
    uint32_t *counts;
    int ncounts;
} dataio_segm;

void dataio_segm_free(dataio_segm *s);

/* Decodes a compressed COCO counts string. 0 on success (counts malloc'd),
 * -1 with err for malformed text. Does not check the total against h*w. */
int dataio_rle_from_string(const char *s, uint32_t **counts, int *ncounts, char *err, size_t errlen);

/* Checks an RLE against an image size: counts sum to h*w (0 or -1 with err). */
int dataio_rle_check(const uint32_t *counts, int ncounts, int h, int w, char *err, size_t errlen);

/* Sets mask[y*w+x] = value for every pixel inside the segmentation (h x w image). */
void dataio_segm_paint(const dataio_segm *s, uint8_t *mask, int h, int w, uint8_t value);

#endif
