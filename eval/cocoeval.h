/* COCO keypoint evaluation: the numbers pycocotools' COCOeval(iouType='keypoints')
 * gives after evaluate(), accumulate(), summarize(), computed in C.
 *
 * OKS with the COCO sigmas, area ranges all / medium / large, at most 20
 * detections per image, greedy matching at ten OKS thresholds 0.50:0.05:0.95,
 * 101-point interpolated precision. Stats are -1 where pycocotools gives -1
 * (no unignored ground truth in that setting). docs/eval.md lists the rules. */
#ifndef SSPOSE_EVAL_COCOEVAL_H
#define SSPOSE_EVAL_COCOEVAL_H

#include <stdio.h>

#include "eval/coco_json.h"

#define EVAL_COCO_NSTATS 10
#define EVAL_COCO_NTHR 10  /* OKS thresholds */
#define EVAL_COCO_NREC 101 /* recall thresholds */
#define EVAL_COCO_NAREA 3  /* all, medium, large */
#define EVAL_COCO_MAXDETS 20

/* AP AP50 AP75 APm APl AR AR50 AR75 ARm ARl: the order of pycocotools' stats */
extern const char *const eval_coco_stat_names[EVAL_COCO_NSTATS];

typedef struct {
    double stats[EVAL_COCO_NSTATS];
    int num_images, num_categories;
    int num_gt;         /* ground truth persons that count (area 'all', not ignored) */
    int num_gt_ignored; /* crowd or no labelled keypoints */
    int num_dets;       /* detections scored (after the 20-per-image cap) */
    int num_dets_in;    /* detections given */
} eval_coco_summary;

/* Evaluate dets against gt. */
void eval_coco_evaluate(const eval_coco_gt *gt, const eval_coco_dets *dets, eval_coco_summary *out);

/* The ten lines of pycocotools' summarize(), same wording and format. */
void eval_coco_print(FILE *f, const eval_coco_summary *s);
/* One JSON object: the ten stats by name plus the counts. */
void eval_coco_print_json(FILE *f, const eval_coco_summary *s);

/* Thresholds exactly as numpy.linspace makes them (ties at a threshold decide matches). */
double eval_coco_oks_threshold(int t);
double eval_coco_recall_threshold(int r);

/* OKS of one detection against one ground truth annotation, pycocotools' computeOks. */
double eval_coco_oks(const eval_coco_gt_ann *g, const double dkp[3 * EVAL_COCO_NKP]);

#endif
