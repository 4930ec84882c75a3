/* COCO person-keypoint annotations (the official JSON) in OpenPose-18 form.
 *
 * Loading keeps what sample generation needs and drops the JSON tree:
 * images (id, file, size) and, per image, its person annotations with
 * keypoints mapped COCO-17 -> OpenPose-18 (neck = mean of the shoulders,
 * labelled only when both are) and, for crowd regions and persons without
 * keypoints, the segmentation that mask_miss zeroes. Problems with single
 * annotations are skipped and counted; a file that is not usable at all
 * (missing, not JSON, no images/annotations arrays) is a fatal error. */
#ifndef SSPOSE_DATAIO_COCO_H
#define SSPOSE_DATAIO_COCO_H

#include <stdint.h>

#include "core/skeleton.h"
#include "dataio/mask.h"

/* Reasons an annotation, keypoint or image is skipped; counted and reported. */
typedef enum {
    DATAIO_SKIP_MALFORMED_ANN,  /* wrong types or missing fields */
    DATAIO_SKIP_UNKNOWN_IMAGE,  /* image_id not among the images */
    DATAIO_SKIP_NOT_PERSON,     /* category_id != 1 */
    DATAIO_SKIP_ZERO_BOX,       /* bbox width or height <= 0 */
    DATAIO_SKIP_KP_OUTSIDE,     /* keypoints outside the image (dropped, annotation kept) */
    DATAIO_SKIP_BAD_SEGM,       /* malformed polygon/RLE of a mask region */
    DATAIO_SKIP_MALFORMED_IMAGE,/* image entry without id/file/size */
    DATAIO_SKIP_MISSING_FILE,   /* image file missing or unreadable */
    DATAIO_SKIP_CORRUPT_IMAGE,  /* decoder refused the image */
    DATAIO_SKIP_SIZE_MISMATCH,  /* decoded size differs from the JSON */
    DATAIO_SKIP_BAD_BOX,        /* bbox far outside the image (no usable crop scale) */
    DATAIO_SKIP_N
} dataio_skip_reason;

extern const char *const dataio_skip_names[DATAIO_SKIP_N];

/* Counts skips and prints the first few warnings of each kind (thread-safe). */
typedef struct {
    long count[DATAIO_SKIP_N];
    int max_warnings; /* per reason; later ones only counted */
} dataio_skips;
void dataio_skip(dataio_skips *s, dataio_skip_reason why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef struct {
    int64_t id;
    int iscrowd;
    int num_keypoints;          /* labelled COCO keypoints (counted, not trusted from the file) */
    float kps[SKEL_NUM_KP * 3]; /* OpenPose-18 x, y, v (v = 1 labelled) in image pixels */
    double bbox[4];             /* x, y, w, h */
    double area;
    int has_segm;               /* segm is filled for crowd regions and num_keypoints == 0 */
    dataio_segm segm;
} dataio_coco_ann;

typedef struct {
    int64_t id;
    char *file_name;
    int width, height;
    dataio_coco_ann *anns; /* in file order */
    int nanns;
} dataio_coco_image;

typedef struct {
    dataio_coco_image *images; /* in file order */
    int nimages;
    long nanns;
} dataio_coco;

/* Loads and validates; dies (one line) when the file is unusable. */
void dataio_coco_load(const char *path, dataio_coco *c, dataio_skips *skips);
/* The same from memory (text need not be NUL-terminated); returns -1 with err
 * instead of dying, for the fuzzer and tests. */
int dataio_coco_parse(const char *text, size_t len, dataio_coco *c, dataio_skips *skips, char *err, size_t errlen);
void dataio_coco_free(dataio_coco *c);

/* CMU's main-person rule: >= min_kps labelled keypoints, area >= min_area, and
 * the box centre not within 0.3*max(w,h) of an earlier main person's centre.
 * Writes indices into img->anns to out (size img->nanns); returns the count. */
int dataio_coco_main_persons(const dataio_coco_image *img, int *out);

#endif
