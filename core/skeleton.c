#include "core/skeleton.h"

const char *const skel_kp_names[SKEL_NUM_KP] = {
    "nose", "neck", "r_sho", "r_elb", "r_wri", "l_sho", "l_elb", "l_wri", "r_hip",
    "r_knee", "r_ank", "l_hip", "l_knee", "l_ank", "r_eye", "l_eye", "r_ear", "l_ear"};

const int skel_limbs[SKEL_NUM_LIMBS][2] = {
    {1, 8}, {8, 9}, {9, 10}, {1, 11}, {11, 12}, {12, 13}, {1, 2}, {2, 3}, {3, 4}, {2, 16},
    {1, 5}, {5, 6}, {6, 7}, {5, 17}, {1, 0}, {0, 14}, {0, 15}, {14, 16}, {15, 17}};

const int skel_kp_mirror[SKEL_NUM_KP] = {0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16};

const int skel_limb_mirror[SKEL_NUM_LIMBS] = {3, 4, 5, 0, 1, 2, 10, 11, 12, 13, 6, 7, 8, 9, 14, 16, 15, 18, 17};

const int skel_from_coco[SKEL_NUM_KP] = {0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3};

const int skel_to_coco[SKEL_NUM_COCO] = {0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10};

const double skel_coco_sigmas[SKEL_NUM_COCO] = {.026, .025, .025, .035, .035, .079, .079, .072, .072,
                                                .062, .062, .107, .107, .087, .087, .089, .089};

int skel_heat_mirror(int channel) { return channel < SKEL_NUM_KP ? skel_kp_mirror[channel] : channel; }

int skel_paf_mirror(int channel) { return 2 * skel_limb_mirror[channel / 2] + (channel & 1); }
