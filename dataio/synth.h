/* Synthetic COCO-format person-keypoint dataset (`sspose synth`).
 *
 * Each image is a textured, cluttered background with rendered people:
 * articulated figures (thick limbs, filled torso, a head with eyes, nose and
 * ears) in sampled poses, scales and facings, overlapping one another and
 * partly hidden behind foreground objects. The annotation file follows the
 * official person_keypoints format so every tool that reads COCO reads it.
 * The whole output is a pure function of (seed, image count): same bytes. */
#ifndef SSPOSE_DATAIO_SYNTH_H
#define SSPOSE_DATAIO_SYNTH_H

#include <stdint.h>

typedef struct {
    const char *out_dir;  /* receives annotations.json and images/ */
    int images;           /* number of images, >= 1 */
    uint64_t seed;
    int threads;          /* rendering threads; 0 = OpenMP's default */
    int no_people;        /* render the same scenes without the figures (tests:
                             the pixels the figures change); annotations unchanged */
} dataio_synth_opts;

typedef struct {
    int images, persons, persons_no_kp, crowds, keypoints_visible, keypoints_occluded;
} dataio_synth_stats;

/* Writes out_dir/images/%012d.jpg and out_dir/annotations.json (temp names,
 * then renamed). Fatal (one line) when out_dir cannot be created or written. */
void dataio_synth_write(const dataio_synth_opts *opts, dataio_synth_stats *stats);

#endif
