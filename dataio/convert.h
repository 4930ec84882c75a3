/* COCO person keypoints (JSON + images) -> training shards: the pipeline
 * behind `sspose data` (SPEC section 5), usable by benchmarks too.
 *
 * Worker threads decode an image, draw the augmentations and build, pack
 * (quantise, deflate, JPEG-encode) every sample of it; the calling thread
 * alone talks to HDF5 and writes the samples in a fixed order (image, main
 * person, copy), rolling over to a new shard every `per_shard` samples. Each
 * sample's random stream is keyed by (seed, image, person, copy), so the
 * shards are the same for any thread count. */
#ifndef SSPOSE_DATAIO_CONVERT_H
#define SSPOSE_DATAIO_CONVERT_H

#include <stdint.h>

#include "dataio/augment.h"
#include "dataio/coco.h"

typedef struct {
    const char *ann;        /* COCO person_keypoints JSON */
    const char *images_dir; /* folder holding the images' file_name */
    const char *prefix;     /* shards PREFIX-00000.h5, ... */
    dataio_aug_params ap;
    int64_t seed;
    long per_shard;         /* samples per file */
    int copies;             /* independently augmented copies per main person */
    int threads;            /* worker threads, >= 1 */
    int jpeg_quality;       /* 50..100 */
    int deflate;            /* zlib level of the targets, 1..9 */
    long max_images;        /* 0 = all */
    double progress_every;  /* seconds between progress lines off a terminal */
    int overwrite;          /* replace PREFIX-*.h5 shards of an earlier run (else refuse) */
    int quiet;              /* no progress or summary lines (benchmarks) */
} dataio_convert_opts;

typedef struct {
    long written;        /* samples */
    long main_persons;   /* main persons in the converted images */
    long crop_persons;   /* persons in all crops */
    int shards;
    long long bytes;     /* shard file bytes */
    double seconds;
    long skipped[DATAIO_SKIP_N];
    int removed_stale;   /* shards of an earlier run removed (overwrite) */
} dataio_convert_stats;

/* Runs the whole conversion; dies with one line on unusable input, on an
 * existing PREFIX-*.h5 without `overwrite`, when a shard would replace the
 * annotation file, or when no sample could be written. Malformed annotations
 * and unusable images are skipped, each warned about once, and counted. */
void dataio_convert(const dataio_convert_opts *o, dataio_convert_stats *st);

/* Existing files PREFIX-<5 digits>.h5, sorted; returns the count (*paths and each malloc'd). */
int dataio_convert_list_shards(const char *prefix, char ***paths);

#endif
