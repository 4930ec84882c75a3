/* Streaming loader: rank sharding, determinism, resume, online flip. */
#include "test.h"

#include <stdint.h>

#include "core/check.h"
#include "core/config.h"
#include "core/h5util.h"
#include "dataio/loader.h"
#include "dataio/shard.h"
#include "test_loader_fixture.h"

#define S 72 /* not a multiple of 16 pixels: the SIMD conversion's scalar tail runs too */
#define STRIDE 8
#define GRID (S / STRIDE)
#define HW (GRID * GRID)
#define NSAMPLES 30 /* 10 + 7 + 13 over three shards */
#define SAMPLE_FLOATS (3 * S * S + (19 + 38 + 36 + 19 + 1) * HW)

static char glob_pat[600];

typedef struct {
    int steps, g;
    int64_t *index, *epoch;
    uint8_t *flip;
    float *data;
} rec_t;

static void rec_init(rec_t *r, int steps, int g)
{
    r->steps = steps;
    r->g = g;
    r->index = core_calloc((size_t)steps * g, sizeof *r->index);
    r->epoch = core_calloc((size_t)steps * g, sizeof *r->epoch);
    r->flip = core_calloc((size_t)steps * g, 1);
    r->data = core_calloc((size_t)steps * g * SAMPLE_FLOATS, sizeof(float));
}

static void rec_free(rec_t *r)
{
    free(r->index);
    free(r->epoch);
    free(r->flip);
    free(r->data);
}

/* Copies sample j of a batch into one flat record. */
static void pack_sample(const dataio_batch *b, int j, float *out)
{
    const float *src[6] = {b->image, b->heatmap, b->paf, b->offset, b->attention, b->mask};
    size_t per[6] = {3 * S * S, 19 * HW, 38 * HW, 36 * HW, 19 * HW, HW};
    for (int k = 0; k < 6; k++) {
        memcpy(out, src[k] + j * per[k], per[k] * sizeof(float));
        out += per[k];
    }
}

static dataio_loader_opts opts_for(int rank, int world, int batch, uint64_t seed, double flip, int threads, int prefetch)
{
    dataio_loader_opts o = {.pattern = glob_pat, .rank = rank, .world = world, .batch = batch, .seed = seed,
                            .flip = flip, .threads = threads, .prefetch = prefetch};
    return o;
}

/* Runs every rank of a world for `steps` steps; entry [t][r*batch+j] of rec is rank r's sample j. */
static void record(int world, int batch, int steps, uint64_t seed, double flip, int threads, int prefetch,
                   const dataio_loader_state *resume, rec_t *rec)
{
    int g = world * batch;
    rec_init(rec, steps, g);
    for (int r = 0; r < world; r++) {
        dataio_loader_opts o = opts_for(r, world, batch, seed, flip, threads, prefetch);
        dataio_loader *L = dataio_loader_open(&o, resume);
        for (int t = 0; t < steps; t++) {
            const dataio_batch *b = dataio_loader_next(L);
            T_CHECK(b->n == batch && b->size == S && b->grid_h == GRID && b->grid_w == GRID);
            T_CHECK(b->step == (resume ? resume->step : 0) + t);
            for (int j = 0; j < batch; j++) {
                size_t at = (size_t)t * g + r * batch + j;
                rec->index[at] = b->index[j];
                rec->epoch[at] = b->epoch;
                rec->flip[at] = b->flipped[j];
                pack_sample(b, j, rec->data + at * SAMPLE_FLOATS);
            }
            dataio_loader_release(L, b);
        }
        dataio_loader_close(L);
    }
}

static int rec_equal(const rec_t *a, const rec_t *b, int from_a, int steps)
{
    size_t g = a->g, off = (size_t)from_a * g, n = (size_t)steps * g;
    return a->g == b->g && !memcmp(a->index + off, b->index, n * sizeof *a->index) &&
           !memcmp(a->flip + off, b->flip, n) && !memcmp(a->epoch + off, b->epoch, n * sizeof *a->epoch) &&
           !memcmp(a->data + off * SAMPLE_FLOATS, b->data, n * SAMPLE_FLOATS * sizeof(float));
}

static void ranks_disjoint_union_is_global_batch(void)
{
    rec_t r1, r2, r3;
    record(1, 6, 12, 5, 0.5, 2, 2, NULL, &r1);
    record(2, 3, 12, 5, 0.5, 1, 3, NULL, &r2);
    record(3, 2, 12, 5, 0.5, 0, 1, NULL, &r3);
    for (int t = 0; t < 12; t++) {
        /* no sample twice within a global batch: the ranks' shares are disjoint */
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < i; j++) {
                T_CHECKF(r2.index[t * 6 + i] != r2.index[t * 6 + j], "2 ranks overlap at step %d", t);
                T_CHECKF(r3.index[t * 6 + i] != r3.index[t * 6 + j], "3 ranks overlap at step %d", t);
            }
        for (int i = 0; i < 6; i++) T_CHECK(r1.index[t * 6 + i] >= 0 && r1.index[t * 6 + i] < NSAMPLES);
    }
    /* the union over ranks is the 1-rank global batch, sample for sample */
    T_CHECKF(!memcmp(r1.index, r2.index, 12 * 6 * sizeof(int64_t)), "2-rank global batches differ");
    T_CHECKF(!memcmp(r1.index, r3.index, 12 * 6 * sizeof(int64_t)), "3-rank global batches differ");
    /* an epoch (5 steps of 6) visits all 30 samples once */
    for (int e = 0; e < 2; e++) {
        int seen[NSAMPLES] = {0};
        for (int i = 0; i < 30; i++) seen[r1.index[e * 30 + i]]++;
        for (int i = 0; i < NSAMPLES; i++) T_CHECKF(seen[i] == 1, "epoch %d: sample %d seen %d times", e, i, seen[i]);
        T_CHECK(r1.epoch[e * 30] == e && r1.epoch[e * 30 + 29] == e);
    }
    T_CHECKF(memcmp(r1.index, r1.index + 30, 30 * sizeof(int64_t)), "epochs 0 and 1 in the same order");
    rec_free(&r1);
    rec_free(&r2);
    rec_free(&r3);
}

static void global_batch_content_same_for_any_rank_count(void)
{
    rec_t r1, r3;
    record(1, 6, 7, 9, 0.5, 2, 2, NULL, &r1);
    record(3, 2, 7, 9, 0.5, 2, 2, NULL, &r3);
    T_CHECKF(rec_equal(&r1, &r3, 0, 7), "pixels, targets or flips differ between 1 and 3 ranks");
    int flips = 0;
    for (int i = 0; i < 42; i++) flips += r1.flip[i];
    T_CHECKF(flips > 5 && flips < 37, "flip=0.5 flipped %d of 42", flips);
    rec_free(&r1);
    rec_free(&r3);
}

static void deterministic_across_runs_and_threads(void)
{
    rec_t a, b, c, d;
    record(1, 5, 9, 3, 0.5, 3, 4, NULL, &a);
    record(1, 5, 9, 3, 0.5, 0, 1, NULL, &b);
    record(1, 5, 9, 3, 0.5, 3, 4, NULL, &c);
    record(1, 5, 9, 4, 0.5, 3, 4, NULL, &d);
    T_CHECKF(rec_equal(&a, &c, 0, 9), "two identical runs differ");
    T_CHECKF(rec_equal(&a, &b, 0, 9), "3 threads and 0 threads differ");
    T_CHECKF(memcmp(a.index, d.index, 45 * sizeof(int64_t)), "seed 3 and seed 4 give the same order");
    rec_free(&a);
    rec_free(&b);
    rec_free(&c);
    rec_free(&d);
}

static void resume_continues_exact_sequence(void)
{
    rec_t full, rest, rest2;
    record(1, 6, 13, 21, 0.5, 2, 3, NULL, &full);
    dataio_loader_opts o = opts_for(0, 1, 6, 21, 0.5, 2, 3);
    dataio_loader *L = dataio_loader_open(&o, NULL);
    dataio_loader_state st;
    dataio_loader_get_state(L, &st);
    T_CHECK(st.epoch == 0 && st.position == 0 && st.step == 0 && st.total == NSAMPLES && st.seed == 21);
    for (int t = 0; t < 7; t++) dataio_loader_release(L, dataio_loader_next(L));
    dataio_loader_get_state(L, &st); /* taken while later batches are already being prefetched */
    dataio_loader_close(L);
    T_CHECKF(st.epoch == 1 && st.position == 12 && st.step == 7, "state epoch %lld position %lld step %lld",
             (long long)st.epoch, (long long)st.position, (long long)st.step);
    int64_t packed[DATAIO_LOADER_STATE_LEN];
    dataio_loader_state back;
    dataio_loader_state_pack(&st, packed);
    dataio_loader_state_unpack(packed, &back);
    T_CHECK(!memcmp(&st, &back, sizeof st));
    record(1, 6, 6, 21, 0.5, 1, 1, &back, &rest);
    T_CHECKF(rec_equal(&full, &rest, 7, 6), "resumed run differs from the uninterrupted one");
    /* resuming on another rank count continues the same global sequence */
    record(2, 3, 6, 21, 0.5, 2, 2, &back, &rest2);
    T_CHECKF(rec_equal(&full, &rest2, 7, 6), "resume on 2 ranks differs");
    rec_free(&full);
    rec_free(&rest);
    rec_free(&rest2);
}

/* The reader's sample g, optionally flipped with the reader's own flip, as one flat record. */
static void reader_sample(int64_t g, int flip, float *out)
{
    static const int counts[3] = {10, 7, 13};
    int f = 0;
    while (g >= counts[f]) g -= counts[f++];
    char path[600];
    snprintf(path, sizeof path, "%s/shard-%d.h5", t_tmpdir(), f);
    dataio_shard *r = dataio_shard_open(path);
    dataio_sample s;
    dataio_shard_sample_init(r, &s);
    dataio_shard_read(r, (long)g, &s);
    if (flip) dataio_flip_sample(&s);
    dataio_sample_image_chw(&s, out);
    float *o = out + 3 * S * S;
    memcpy(o, s.heatmap, 19 * HW * sizeof(float));
    memcpy(o + 19 * HW, s.paf, 38 * HW * sizeof(float));
    memcpy(o + 57 * HW, s.offset, 36 * HW * sizeof(float));
    memcpy(o + 93 * HW, s.attention, 19 * HW * sizeof(float));
    memcpy(o + 112 * HW, s.mask, HW * sizeof(float));
    dataio_sample_free(&s);
    dataio_shard_close(r);
}

static void flip_matches_reader_sample_flipped(void)
{
    float *ref = core_malloc(SAMPLE_FLOATS * sizeof(float)), *refu = core_malloc(SAMPLE_FLOATS * sizeof(float));
    double probs[3] = {0, 1, 0.5};
    for (int pi = 0; pi < 3; pi++) {
        rec_t r;
        record(1, 6, 5, 13, probs[pi], 2, 2, NULL, &r);
        int nflip = 0;
        for (int i = 0; i < 30; i++) {
            if (probs[pi] == 0) T_CHECK(r.flip[i] == 0);
            if (probs[pi] == 1) T_CHECK(r.flip[i] == 1);
            nflip += r.flip[i];
            reader_sample(r.index[i], r.flip[i], ref);
            T_CHECKF(!memcmp(ref, r.data + (size_t)i * SAMPLE_FLOATS, SAMPLE_FLOATS * sizeof(float)),
                     "p=%g: sample %lld (flipped %d) differs from the reader's", probs[pi], (long long)r.index[i], r.flip[i]);
            reader_sample(r.index[i], !r.flip[i], refu);
            T_CHECKF(memcmp(refu, r.data + (size_t)i * SAMPLE_FLOATS, SAMPLE_FLOATS * sizeof(float)),
                     "sample %lld is mirror-symmetric: the test cannot see a flip", (long long)r.index[i]);
        }
        if (probs[pi] == 0.5) T_CHECKF(nflip >= 6 && nflip <= 24, "p=0.5 flipped %d of 30", nflip);
        rec_free(&r);
    }
    free(ref);
    free(refu);
}

static void flip_twice_is_identity(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/shard-1.h5", t_tmpdir());
    dataio_shard *r = dataio_shard_open(path);
    dataio_sample a, b;
    dataio_shard_sample_init(r, &a);
    dataio_shard_sample_init(r, &b);
    for (long i = 0; i < 7; i++) {
        dataio_shard_read(r, i, &a);
        dataio_shard_read(r, i, &b);
        dataio_flip_sample(&b);
        T_CHECK(memcmp(a.heatmap, b.heatmap, 19 * HW * sizeof(float)));
        dataio_flip_sample(&b);
        T_CHECK(!memcmp(a.rgb, b.rgb, 3 * S * S) && !memcmp(a.heatmap, b.heatmap, 19 * HW * sizeof(float)) &&
                !memcmp(a.paf, b.paf, 38 * HW * sizeof(float)) && !memcmp(a.offset, b.offset, 36 * HW * sizeof(float)) &&
                !memcmp(a.attention, b.attention, 19 * HW * sizeof(float)) && !memcmp(a.mask, b.mask, HW * sizeof(float)) &&
                !memcmp(a.keypoints, b.keypoints, 3 * 54 * sizeof(float)) && a.meta.flipped == b.meta.flipped);
    }
    /* loader level: flip p=1 then the reader's flip gives the unflipped loader output back */
    rec_t r0, r1;
    record(1, 6, 1, 2, 0.0, 1, 1, NULL, &r0);
    record(1, 6, 1, 2, 1.0, 1, 1, NULL, &r1);
    T_CHECK(!memcmp(r0.index, r1.index, 6 * sizeof(int64_t)));
    float *ref = core_malloc(SAMPLE_FLOATS * sizeof(float));
    for (int i = 0; i < 6; i++) {
        reader_sample(r1.index[i], 1, ref);
        T_CHECK(!memcmp(ref, r1.data + (size_t)i * SAMPLE_FLOATS, SAMPLE_FLOATS * sizeof(float)));
        T_CHECK(memcmp(r0.data + (size_t)i * SAMPLE_FLOATS, r1.data + (size_t)i * SAMPLE_FLOATS, SAMPLE_FLOATS * sizeof(float)));
    }
    free(ref);
    rec_free(&r0);
    rec_free(&r1);
    dataio_sample_free(&a);
    dataio_sample_free(&b);
    dataio_shard_close(r);
}

static void epoch_drops_incomplete_batch(void)
{
    rec_t r;
    record(1, 7, 9, 1, 0, 2, 2, NULL, &r); /* 30 samples, G = 7: 4 steps an epoch, 2 samples wait */
    for (int e = 0; e < 2; e++) {
        int seen[NSAMPLES] = {0};
        for (int i = 0; i < 28; i++) {
            T_CHECK(r.epoch[e * 28 + i] == e);
            seen[r.index[e * 28 + i]]++;
        }
        for (int i = 0; i < NSAMPLES; i++) T_CHECK(seen[i] <= 1);
    }
    T_CHECK(r.epoch[8 * 7] == 2);
    dataio_loader_opts o = opts_for(0, 1, 7, 1, 0, 0, 1);
    dataio_loader *L = dataio_loader_open(&o, NULL);
    T_CHECK(dataio_loader_total(L) == NSAMPLES && dataio_loader_steps_per_epoch(L) == 4);
    for (int t = 0; t < 4; t++) dataio_loader_release(L, dataio_loader_next(L));
    dataio_loader_state st;
    dataio_loader_get_state(L, &st);
    T_CHECKF(st.epoch == 1 && st.position == 0, "after a full epoch: epoch %lld position %lld", (long long)st.epoch,
             (long long)st.position);
    dataio_loader_close(L);
    rec_free(&r);
}

static int n_alloc, n_free;
static char *arena[64];
static void *hook_alloc(size_t bytes, void *ctx)
{
    T_CHECK(ctx == (void *)&n_alloc);
    return arena[n_alloc++] = malloc(bytes);
}
static void hook_free(void *p, void *ctx)
{
    n_free++;
    free(p);
}

static void alloc_hooks_own_the_buffers(void)
{
    dataio_loader_opts o = opts_for(0, 1, 4, 1, 0.5, 1, 2);
    o.alloc = hook_alloc;
    o.free = hook_free;
    o.alloc_ctx = &n_alloc;
    dataio_loader *L = dataio_loader_open(&o, NULL);
    T_CHECKF(n_alloc == 6 * 3, "%d buffers allocated through the hook, expected 18", n_alloc);
    for (int t = 0; t < 5; t++) {
        const dataio_batch *b = dataio_loader_next(L);
        int found = 0;
        for (int i = 0; i < n_alloc; i++) found += (char *)b->image == arena[i] || (char *)b->mask == arena[i];
        T_CHECK(found == 2);
        T_CHECK(b->bytes[0] == 4 * 3 * S * S * sizeof(float) && b->bytes[5] == 4 * HW * sizeof(float));
        dataio_loader_release(L, b);
    }
    dataio_loader_stats s;
    dataio_loader_get_stats(L, &s);
    T_CHECKF(s.samples >= 20 && s.per_thread > 0 && s.busy_s > 0 && s.wall_s > 0, "stats %lld %g", (long long)s.samples,
             s.per_thread);
    dataio_loader_close(L);
    T_CHECK(n_free == n_alloc);
}

/* Checkpoint-style HDF5 writes and reads on the caller's thread while three
 * workers read shards: every HDF5 call holds core_h5_lock, which is recursive
 * (taken twice here, as by a caller that already holds it), so nothing
 * deadlocks and the batches equal those of a run without the writes. */
static void hdf5_writes_while_loading(void)
{
    rec_t ref;
    record(1, 5, 8, 11, 0.5, 3, 4, NULL, &ref);
    dataio_loader_opts o = opts_for(0, 1, 5, 11, 0.5, 3, 4);
    dataio_loader *L = dataio_loader_open(&o, NULL);
    enum { NV = 50000 };
    float *vals = core_malloc(NV * sizeof(float)), *back = core_malloc(NV * sizeof(float));
    float *one = core_malloc(SAMPLE_FLOATS * sizeof(float));
    for (int t = 0; t < 8; t++) {
        const dataio_batch *b = dataio_loader_next(L);
        for (int i = 0; i < NV; i++) vals[i] = (float)(t * NV + i);
        char path[600], tmp[700], err[300];
        snprintf(path, sizeof path, "%s/ckpt-%d.h5", t_tmpdir(), t);
        hid_t f = core_h5_create_tmp(path, tmp, sizeof tmp);
        core_h5_lock();
        core_h5_lock();
        int64_t dims[1] = {NV};
        core_h5_write_f32(f, "/params/w", 1, dims, vals);
        core_h5_attr_i64(f, "step", t);
        core_h5_unlock();
        core_h5_unlock();
        core_h5_commit(f, tmp, path);
        core_h5_lock();
        hid_t g = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        int64_t step = -1;
        int ok = g >= 0 && core_h5_read_f32(g, "/params/w", 1, dims, back, err, sizeof err) == 0 &&
                 core_h5_attr_read_i64(g, "step", &step) == 0;
        if (g >= 0) ok &= H5Fclose(g) >= 0;
        core_h5_unlock();
        T_CHECKF(ok && step == t && !memcmp(vals, back, NV * sizeof(float)), "step %d: file written under load differs", t);
        for (int j = 0; j < 5; j++) {
            size_t at = (size_t)t * 5 + j;
            pack_sample(b, j, one);
            T_CHECKF(b->index[j] == ref.index[at] && !memcmp(one, ref.data + at * SAMPLE_FLOATS, SAMPLE_FLOATS * sizeof(float)),
                     "step %d sample %d differs from the run without HDF5 writes", t, j);
        }
        dataio_loader_release(L, b);
    }
    dataio_loader_close(L);
    free(vals);
    free(back);
    free(one);
    rec_free(&ref);
}

static void opts_from_config(void)
{
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_set(&cfg, "data.train=/x/*.h5");
    core_config_set(&cfg, "train.batch=7");
    core_config_set(&cfg, "train.seed=99");
    core_config_set(&cfg, "data.flip=0.25");
    core_config_set(&cfg, "data.threads=3");
    core_config_set(&cfg, "data.prefetch=5");
    dataio_loader_opts o = dataio_loader_opts_from_config(&cfg, 2, 4);
    T_CHECK(!strcmp(o.pattern, "/x/*.h5") && o.batch == 7 && o.seed == 99 && o.flip == 0.25 && o.threads == 3 &&
            o.prefetch == 5 && o.rank == 2 && o.world == 4 && !o.alloc && !o.free);
}

int main(void)
{
    core_set_quiet(1);
    static const int counts[3] = {10, 7, 13};
    for (int i = 0; i < 3; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/shard-%d.h5", t_tmpdir(), i);
        fx_write_shard(path, counts[i], S, STRIDE, 7 + i);
    }
    snprintf(glob_pat, sizeof glob_pat, "%s/shard-*.h5", t_tmpdir());
    T_RUN(ranks_disjoint_union_is_global_batch);
    T_RUN(global_batch_content_same_for_any_rank_count);
    T_RUN(deterministic_across_runs_and_threads);
    T_RUN(resume_continues_exact_sequence);
    T_RUN(flip_matches_reader_sample_flipped);
    T_RUN(flip_twice_is_identity);
    T_RUN(epoch_drops_incomplete_batch);
    T_RUN(alloc_hooks_own_the_buffers);
    T_RUN(hdf5_writes_while_loading);
    T_RUN(opts_from_config);
    T_EXIT();
}
