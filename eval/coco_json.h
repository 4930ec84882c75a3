/* COCO person-keypoint ground truth and keypoint results, read from JSON
 * (cJSON) into the flat arrays eval/cocoeval.h scores.
 *
 * The loaders keep exactly what pycocotools' COCOeval(iouType='keypoints')
 * reads, with the same meaning: see docs/eval.md for every rule (which
 * annotations are kept, how a result's area is derived, what is rejected). */
#ifndef SSPOSE_EVAL_COCO_JSON_H
#define SSPOSE_EVAL_COCO_JSON_H

#include <stddef.h>

#define EVAL_COCO_NKP 17 /* COCO-17 keypoints: 51 numbers x, y, v per person */

typedef struct {
    long long id, image_id, category_id;
    int iscrowd;  /* int(iscrowd); a crowd gt may be matched any number of times */
    int ignore;   /* pycocotools' gt['ignore']: iscrowd or num_keypoints == 0 */
    double area;  /* the annotation's own 'area' field (segment area), not the bbox's */
    double bbox[4];
    double kp[3 * EVAL_COCO_NKP];
} eval_coco_gt_ann;

typedef struct {
    long long *img_ids; /* sorted, unique: the images evaluated */
    int nimg;
    long long *cat_ids; /* sorted, unique: the categories evaluated */
    int ncat;
    eval_coco_gt_ann *anns; /* annotations on those images and categories, in file order */
    int nann;
} eval_coco_gt;

typedef struct {
    long long image_id, category_id;
    double score;
    double area; /* from the keypoints' extent (or from 'bbox', as pycocotools' loadRes does) */
    double kp[3 * EVAL_COCO_NKP];
} eval_coco_det;

typedef struct {
    eval_coco_det *dets; /* in file order; results of categories outside the gt are dropped */
    int ndet, cap;
    int n_other_category; /* results dropped because their category is not in the gt */
} eval_coco_dets;

/* Parse ground truth from JSON text. Returns 0, or -1 with a one-line reason in err. */
int eval_coco_parse_gt(const char *text, size_t len, eval_coco_gt *gt, char *err, size_t errlen);
/* Parse a results list against gt. Returns 0, or -1 with a one-line reason in err. */
int eval_coco_parse_results(const char *text, size_t len, const eval_coco_gt *gt, eval_coco_dets *dets,
                            char *err, size_t errlen);

/* File versions: a bad or missing file is fatal (one error line naming the file). */
void eval_coco_load_gt(const char *path, eval_coco_gt *gt);
void eval_coco_load_results(const char *path, const eval_coco_gt *gt, eval_coco_dets *dets);

/* Append one detection (e.g. straight from inference); its area is the keypoints' extent
 * over all 17 (x, y), as pycocotools' loadRes computes it. */
void eval_coco_dets_add(eval_coco_dets *dets, long long image_id, long long category_id,
                        const double kp[3 * EVAL_COCO_NKP], double score);

/* Index of id in gt's sorted image / category ids, or -1. */
int eval_coco_image_index(const eval_coco_gt *gt, long long image_id);
int eval_coco_category_index(const eval_coco_gt *gt, long long category_id);

void eval_coco_gt_free(eval_coco_gt *gt);
void eval_coco_dets_free(eval_coco_dets *dets);

#endif
