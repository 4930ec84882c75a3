/* Shard writer and reader round trip (SPEC section 5), raw-chunk and plain paths. */
#include "test.h"

#include <pthread.h>
#include <unistd.h>

#include "core/check.h"
#include "dataio/shard.h"

#define S 64
#define STRIDE 8
#define G (S / STRIDE)

static void make_sample(dataio_sample *s, int seed, int npersons)
{
    dataio_sample_init(s, S, G, G, 3);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            uint8_t *p = s->rgb + (y * S + x) * 3;
            p[0] = (uint8_t)(x * 4), p[1] = (uint8_t)(y * 4), p[2] = (uint8_t)(seed * 40 + 20);
        }
    for (int q = 0; q < npersons; q++)
        for (int k = 0; k < 18; k++) {
            float *kp = s->keypoints + (q * 18 + k) * 3;
            kp[0] = 5.5f + 3 * k + q + seed, kp[1] = 60.25f - 2 * k - 5 * q, kp[2] = (k + q) % 5 ? 1.0f : 0.0f;
        }
    dataio_target_params tp = {STRIDE, G, G, 7.0, 1.0};
    dataio_targets_compute(&tp, s->keypoints, npersons, s->heatmap, s->paf, s->offset, s->attention);
    for (int c = 0; c < G * G; c++) s->mask[c] = (c % 3) / 2.0f;
    s->meta = (dataio_meta){1000 + seed, 77 + seed, 0.5f + seed, 10.25f, 20.5f, -12.5f, (uint8_t)(seed & 1)};
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static void round_trip(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rt.h5", t_tmpdir());
    dataio_shard_attrs a = {.input_size = S, .stride = STRIDE, .sigma = 7, .paf_width = 1, .seed = 42};
    snprintf(a.source, sizeof a.source, "ann.json");
    snprintf(a.augment, sizeof a.augment, "scale=0.5..1.1");
    unlink(path); /* a left-over from an earlier run would defeat the temp-name check */
    dataio_shard_writer *w = dataio_shard_writer_open(path, &a);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    T_CHECK(access(tmp, F_OK) == 0 && access(path, F_OK) != 0); /* temp name until complete */
    dataio_sample in[3];
    int np[3] = {2, 3, 1};
    dataio_packed pk = {0};
    for (int i = 0; i < 3; i++) {
        make_sample(&in[i], i, np[i]);
        dataio_pack_sample(&in[i], 95, 1, &pk);
        dataio_shard_writer_add(w, &pk);
    }
    dataio_packed_free(&pk);
    long long bytes = dataio_shard_writer_close(w);
    T_CHECK(bytes > 0 && access(tmp, F_OK) != 0 && access(path, F_OK) == 0);

    dataio_shard *r = dataio_shard_open(path);
    const dataio_shard_attrs *ra = dataio_shard_info(r);
    T_CHECK(dataio_shard_count(r) == 3);
    T_CHECK(ra->input_size == S && ra->stride == STRIDE && ra->grid_h == G && ra->max_persons == 3);
    T_CHECK(ra->seed == 42 && !strcmp(ra->source, "ann.json") && !strcmp(ra->augment, "scale=0.5..1.1"));
    dataio_sample out;
    dataio_shard_sample_init(r, &out);
    for (int i = 0; i < 3; i++) {
        dataio_shard_read(r, i, &out);
        size_t hw = G * G;
        /* quantisation error at most half a step */
        T_CHECKF(max_diff(out.mask, in[i].mask, hw) <= 0.5f / 255 + 1e-6f, "mask");
        T_CHECKF(max_diff(out.heatmap, in[i].heatmap, 19 * hw) <= 0.5f / 255 + 1e-6f, "heatmap");
        T_CHECKF(max_diff(out.paf, in[i].paf, 38 * hw) <= 0.5f / 127 + 1e-6f, "paf");
        T_CHECKF(max_diff(out.offset, in[i].offset, 36 * hw) <= 0.5f / 254 + 1e-6f, "offset");
        T_CHECKF(max_diff(out.attention, in[i].attention, 19 * hw) <= 0.5f / 255 + 1e-6f, "attention");
        /* keypoints exact, rows beyond the sample's persons zero */
        T_CHECK(!memcmp(out.keypoints, in[i].keypoints, sizeof(float) * np[i] * 54));
        for (int k = np[i] * 54; k < 3 * 54; k++) T_CHECK(out.keypoints[k] == 0);
        T_CHECK(!memcmp(&out.meta, &in[i].meta, sizeof out.meta));
        /* JPEG at quality 95: close to the input */
        double se = 0;
        for (int p = 0; p < S * S * 3; p++) se += (out.rgb[p] - in[i].rgb[p]) * (double)(out.rgb[p] - in[i].rgb[p]);
        double psnr = 10 * log10(255.0 * 255.0 / (se / (S * S * 3) + 1e-12));
        T_CHECKF(psnr > 35, "JPEG PSNR %.1f dB", psnr);
        /* float NCHW view */
        float *chw = malloc(sizeof(float) * 3 * S * S);
        dataio_sample_image_chw(&out, chw);
        T_NEAR(chw[1 * S * S + 5 * S + 7], out.rgb[(5 * S + 7) * 3 + 1] / 255.0 - 0.5, 0, 1e-6);
        free(chw);
    }
    /* raw read + decode on the packed path gives the same as the one-call read */
    dataio_packed raw = {0};
    dataio_shard_read_packed(r, 1, &raw);
    T_CHECK(!raw.raw[DATAIO_DS_HEATMAP]); /* deflated chunk copied as stored */
    dataio_sample s2;
    dataio_shard_sample_init(r, &s2);
    dataio_unpack_sample(&raw, ra, &s2, "test");
    dataio_shard_read(r, 1, &out);
    T_CHECK(!memcmp(s2.heatmap, out.heatmap, sizeof(float) * 19 * G * G));
    T_CHECK(!memcmp(s2.rgb, out.rgb, S * S * 3));
    dataio_packed_free(&raw);
    dataio_sample_free(&s2);
    dataio_sample_free(&out);
    dataio_shard_close(r);
    for (int i = 0; i < 3; i++) dataio_sample_free(&in[i]);
}

/* Loader-style use: several threads read packed samples (the reader takes the
 * HDF5 lock) and unpack them concurrently; results equal a serial read. */
typedef struct {
    dataio_shard *r;
    int tid;
    float sum[3];
} reader_arg;

static void *reader_thread(void *p)
{
    reader_arg *a = p;
    dataio_sample s;
    dataio_shard_sample_init(a->r, &s);
    dataio_packed pk = {0};
    for (int rep = 0; rep < 20; rep++)
        for (long i = 0; i < dataio_shard_count(a->r); i++) {
            dataio_shard_read_packed(a->r, (i + a->tid) % dataio_shard_count(a->r), &pk);
            dataio_unpack_sample(&pk, dataio_shard_info(a->r), &s, "thread");
            if (rep == 0) a->sum[(i + a->tid) % 3] = s.heatmap[5] + s.paf[100] + s.rgb[7] + s.keypoints[3];
        }
    dataio_packed_free(&pk);
    dataio_sample_free(&s);
    return NULL;
}

static void concurrent_readers(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rt.h5", t_tmpdir());
    if (access(path, R_OK)) T_SKIP("round_trip left no shard");
    dataio_shard *r = dataio_shard_open(path);
    float want[3];
    dataio_sample s;
    dataio_shard_sample_init(r, &s);
    for (int i = 0; i < 3; i++) {
        dataio_shard_read(r, i, &s);
        want[i] = s.heatmap[5] + s.paf[100] + s.rgb[7] + s.keypoints[3];
    }
    dataio_sample_free(&s);
    reader_arg args[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        args[t] = (reader_arg){r, t, {0}};
        T_CHECK(pthread_create(&th[t], NULL, reader_thread, &args[t]) == 0);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 3; i++) T_CHECK(args[t].sum[i] == want[i]);
    dataio_shard_close(r);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(round_trip);
    T_RUN(concurrent_readers);
    T_EXIT();
}
