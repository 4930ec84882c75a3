/* OpenPose-18 keypoints and limbs (SPEC section 1): the one table that data,
 * loss and evaluation all index by. */
#ifndef SSPOSE_CORE_SKELETON_H
#define SSPOSE_CORE_SKELETON_H

#define SKEL_NUM_KP 18    /* keypoints; heatmap channel 18 is the background */
#define SKEL_NUM_LIMBS 19 /* PAF channels 2l (x) and 2l+1 (y) */
#define SKEL_NUM_COCO 17

extern const char *const skel_kp_names[SKEL_NUM_KP];
/* limb l goes from skel_limbs[l][0] (parent) to skel_limbs[l][1] (child) */
extern const int skel_limbs[SKEL_NUM_LIMBS][2];
/* left/right mirror of each keypoint (itself when none) */
extern const int skel_kp_mirror[SKEL_NUM_KP];
/* mirror of each limb (itself when none) */
extern const int skel_limb_mirror[SKEL_NUM_LIMBS];
/* COCO-17 index of each OpenPose keypoint; -1 for the neck (mean of both shoulders) */
extern const int skel_from_coco[SKEL_NUM_KP];
/* OpenPose index of each COCO-17 keypoint */
extern const int skel_to_coco[SKEL_NUM_COCO];
/* COCO OKS sigmas, COCO-17 order */
extern const double skel_coco_sigmas[SKEL_NUM_COCO];

/* Heatmap channel mirror (19 channels: background maps to itself). */
int skel_heat_mirror(int channel);
/* PAF channel mirror (38 channels): channel 2l+d -> 2*mirror(l)+d. */
int skel_paf_mirror(int channel);

#endif
