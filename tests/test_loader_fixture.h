/* Small shards for the loader tests and benchmark, written with the project's
 * shard writer: every sample has its own colour pattern and keypoints (so
 * its targets are asymmetric and a misplaced or unflipped sample shows). */
#ifndef SSPOSE_TESTS_LOADER_FIXTURE_H
#define SSPOSE_TESTS_LOADER_FIXTURE_H

#include <stdint.h>
#include <stdio.h>

#include "dataio/shard.h"

static inline uint64_t fx_hash(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Writes `n` samples of an S x S crop at `stride`, tagged with `tag` (samples differ across shards).
 * noise > 0 adds pixel noise of that amplitude (photo-like JPEG sizes for benchmarks). */
static inline void fx_write_shard_noisy(const char *path, int n, int S, int stride, int tag, int noise)
{
    int G = S / stride, P = 3;
    /* one recipe for every shard of a fixture (the loader refuses mixed ones); tag varies the content */
    dataio_shard_attrs a = {.input_size = S, .stride = stride, .sigma = 7, .paf_width = 1, .seed = 1};
    snprintf(a.source, sizeof a.source, "loader-fixture");
    snprintf(a.augment, sizeof a.augment, "none");
    dataio_shard_writer *w = dataio_shard_writer_open(path, &a);
    dataio_packed pk = {0};
    dataio_sample s;
    for (int i = 0; i < n; i++) {
        dataio_sample_init(&s, S, G, G, P);
        uint64_t h = fx_hash((uint64_t)tag * 1000003u + (uint64_t)i);
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                uint8_t *p = s.rgb + ((size_t)y * S + x) * 3;
                p[0] = (uint8_t)(x * 255 / S);
                p[1] = (uint8_t)((h & 255) + y);
                p[2] = (uint8_t)((h >> 8) & 255) ^ (uint8_t)((x / 8 + y / 8) & 1 ? 64 : 0);
                if (noise)
                    for (int c = 0; c < 3; c++) {
                        int v = p[c] + (int)(fx_hash(h ^ ((uint64_t)y << 20) ^ (uint64_t)(x * 3 + c)) % (2 * noise + 1)) - noise;
                        p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                    }
            }
        int np = 1 + (int)((h >> 16) % P);
        for (int q = 0; q < np; q++)
            for (int k = 0; k < 18; k++) {
                uint64_t r = fx_hash(h + (uint64_t)(q * 18 + k));
                float *kp = s.keypoints + (q * 18 + k) * 3;
                kp[0] = (float)(r % (uint64_t)(S * 8)) / 8.0f;
                kp[1] = (float)((r >> 20) % (uint64_t)(S * 8)) / 8.0f;
                kp[2] = (r >> 40) % 5 ? 1.0f : 0.0f;
            }
        dataio_target_params tp = {stride, G, G, 7.0, 1.0};
        dataio_targets_compute(&tp, s.keypoints, np, s.heatmap, s.paf, s.offset, s.attention);
        for (int c = 0; c < G * G; c++) s.mask[c] = ((h >> (c % 48)) & 1) ? 1.0f : (float)(c % 4) / 3.0f;
        s.meta = (dataio_meta){tag * 100000 + i, i, 1.0f, 0, 0, 0, 0};
        dataio_pack_sample(&s, 90, 1, &pk);
        dataio_shard_writer_add(w, &pk);
        dataio_sample_free(&s);
    }
    dataio_packed_free(&pk);
    dataio_shard_writer_close(w);
}

static inline void fx_write_shard(const char *path, int n, int S, int stride, int tag)
{
    fx_write_shard_noisy(path, n, S, stride, tag, 0);
}

#endif
