/* Streaming training-data loader over many shards (SPEC section 5).
 *
 * Sampling is defined globally, independent of the number of ranks: the
 * shards matched by the glob (sorted by name) form one list of N samples;
 * epoch e visits them in a permutation seeded by (seed, e); the global batch
 * at each step is the next G = batch*world entries of that permutation
 * (an epoch ends when fewer than G are left: those wait for the next epoch's
 * permutation), and rank r takes entries [r*batch, (r+1)*batch) of it.
 * Each sample is flipped left-right with probability `flip`, decided by
 * (seed, epoch, sample index). So the global batch, its flips and therefore
 * the whole run are the same on 1 or 64 ranks, and on any thread count.
 *
 * Worker threads read each sample's JPEG bytes under the HDF5 lock
 * (core_h5_lock), its raw target chunks with pread, and do everything else
 * (inflate, JPEG decode, flip, dequantise, NCHW) outside the lock,
 * `prefetch` batches ahead of the trainer.
 *
 * Usage:
 *   dataio_loader *L = dataio_loader_open(&opts, resume_or_NULL);
 *   for (...) { const dataio_batch *b = dataio_loader_next(L);
 *               ...copy b->image etc. to the device...; dataio_loader_release(L, b); }
 *   dataio_loader_state st; dataio_loader_get_state(L, &st);   // for the checkpoint
 *   dataio_loader_close(L); */
#ifndef SSPOSE_DATAIO_LOADER_H
#define SSPOSE_DATAIO_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct {
    const char *pattern;  /* shard glob (config data.train); several separated by ',', each must match */
    int rank, world;      /* this process and the number of ranks */
    int batch;            /* samples per rank per step (train.batch) */
    uint64_t seed;        /* train.seed */
    double flip;          /* probability of the online left-right flip (data.flip) */
    int threads;          /* worker threads (data.threads); 0 = decode in the caller of next() */
    int prefetch;         /* batches decoded ahead (data.prefetch), >= 1 */
    core_input_norm input_norm; /* model.input_norm: how pixels become the image (dataio/input_norm.h) */
    /* Batch buffer allocation, e.g. cudaHostAlloc for pinned memory; NULL = malloc/free.
     * alloc must return memory aligned for float or NULL (fatal). */
    void *(*alloc)(size_t bytes, void *ctx);
    void (*free)(void *ptr, void *ctx);
    void *alloc_ctx;
    /* A corrupt sample (checksum mismatch, JPEG decode error or warning, not a
     * JPEG) is a fatal error naming shard and sample; with skip_corrupt it is
     * delivered as an empty sample instead (grey image, all targets and the
     * mask 0, so it adds nothing to the loss) and counted (stats.corrupt). */
    int skip_corrupt;     /* data.skip_corrupt */
    /* Shards made with another seed, augmentation or target parameters than the
     * first are refused unless mix_shards (data.mix_shards). */
    int mix_shards;
} dataio_loader_opts;

/* Options from the config keys data.train, data.flip, data.threads, data.prefetch,
 * data.skip_corrupt, data.mix_shards, train.batch, train.seed and model.input_norm,
 * for `rank` of `world`; no allocation hooks. */
dataio_loader_opts dataio_loader_opts_from_config(const core_config *cfg, int rank, int world);

/* One rank's share of one global batch; float NCHW, ready to copy to a device. */
typedef struct {
    int n;                   /* samples: opts.batch */
    int size;                /* S: input crop */
    int grid_h, grid_w;      /* h x w output grid */
    float *image;            /* [n,3,S,S]  normalised by opts.input_norm (default pixel/255 - 0.5) */
    float *heatmap;          /* [n,19,h,w] */
    float *paf;              /* [n,38,h,w] */
    float *offset;           /* [n,36,h,w] */
    float *attention;        /* [n,19,h,w] */
    float *mask;             /* [n,1,h,w] */
    int64_t *index;          /* [n] sample index in the concatenated shard list */
    uint8_t *flipped;        /* [n] 1 when the sample was mirrored online */
    int64_t step;            /* global step (continues across resume) */
    int64_t epoch;
    size_t bytes[6];         /* sizes of image, heatmap, paf, offset, attention, mask in bytes */
} dataio_batch;

/* Where the loader stands: enough to resume the exact same sequence. */
typedef struct {
    uint64_t seed;
    int64_t epoch;
    int64_t position;  /* entries of this epoch's permutation already consumed (all ranks) */
    int64_t total;     /* N, samples in all shards: checked on resume */
    int64_t step;      /* global batches consumed */
} dataio_loader_state;

#define DATAIO_LOADER_STATE_LEN 6
/* As int64 values (a version word first), e.g. for a checkpoint's /state/loader dataset. */
void dataio_loader_state_pack(const dataio_loader_state *st, int64_t out[DATAIO_LOADER_STATE_LEN]);
/* 0 when the array is a packed loader state, else -1 with the reason in err
 * (resume treats that checkpoint as unusable and falls back to an older one). */
int dataio_loader_state_check(const int64_t in[DATAIO_LOADER_STATE_LEN], char *err, size_t errlen);
/* Fatal (one line) when the array is not a packed loader state. */
void dataio_loader_state_unpack(const int64_t in[DATAIO_LOADER_STATE_LEN], dataio_loader_state *st);

typedef struct dataio_loader dataio_loader;

/* Opens every shard the glob matches (fatal when none, when their sizes
 * disagree, or when there are fewer samples than one global batch) and
 * starts the workers. resume = NULL starts at epoch 0, step 0; otherwise it
 * must come from the same shards and seed (fatal when not). */
dataio_loader *dataio_loader_open(const dataio_loader_opts *opts, const dataio_loader_state *resume);

/* The next batch of this rank, blocking until it is decoded. It stays valid
 * until dataio_loader_release; release each batch before asking for
 * prefetch+1 batches further on. */
const dataio_batch *dataio_loader_next(dataio_loader *L);
void dataio_loader_release(dataio_loader *L, const dataio_batch *b);

/* Position after the last batch returned by next (resume continues right after it). */
void dataio_loader_get_state(const dataio_loader *L, dataio_loader_state *st);

/* Samples in all shards, and global batches in a full epoch. */
int64_t dataio_loader_total(const dataio_loader *L);
int64_t dataio_loader_steps_per_epoch(const dataio_loader *L);

typedef struct {
    int64_t samples;       /* decoded since open */
    double busy_s;         /* thread-seconds (wall) spent decoding, workers and caller, HDF5 lock waits included */
    double cpu_s;          /* CPU seconds those threads used for it */
    double wait_s;         /* seconds next() blocked the caller: > 0 means the trainer waited for data */
    double wall_s;         /* seconds since open */
    double per_thread;     /* samples / busy_s: throughput of one decoding thread */
    double per_core;       /* samples / cpu_s: throughput of one fully used core */
    int64_t corrupt;       /* corrupt samples skipped (skip_corrupt) since open */
} dataio_loader_stats;
void dataio_loader_get_stats(const dataio_loader *L, dataio_loader_stats *s);

/* Stops and joins the workers, frees everything (through opts.free). */
void dataio_loader_close(dataio_loader *L);

#endif
