/* Data-pipeline benchmark.
 *
 *   build/bench/data [--ann ANN.json --images DIR] [--samples N] [--threads T]
 *
 * 1. Preprocessing (sspose data's worker side, one thread): crops/s per core
 *    and where the time goes (warp, targets, mask, quantise+deflate, JPEG),
 *    and bytes per sample as stored. Source images are decoded once up front
 *    (sspose data decodes each image once for all its persons and copies);
 *    the decode cost per image is printed separately.
 * 2. The same with T threads (scaling).
 * 3. Loader samples/s per core and per thread on a shard of these crops.
 * 4. The whole `sspose data` pipeline (dataio_convert: decode, workers, ordered
 *    writer, shard rollover) with 1 and with T threads: samples/s and the ratio.
 * Goals (issue 4): >= 300 crops/s per core, <= 150 KB per sample, >= 1000
 * loader samples/s per core; the ratio to each goal is printed (>= 1 is met). */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "core/progress.h"
#include "dataio/augment.h"
#include "dataio/coco.h"
#include "dataio/convert.h"
#include "dataio/loader.h"
#include "dataio/shard.h"

#define GOAL_CROPS_PER_CORE 300.0
#define GOAL_BYTES_PER_SAMPLE (150.0 * 1024)
#define GOAL_SAMPLES_PER_CORE 1000.0

typedef struct {
    const dataio_coco_image *ci;
    dataio_image img;
    uint8_t *mask;
    int nmain, main[64];
} bench_image;

/* Per-thread CPU seconds: on a shared machine wall time measures the neighbours too. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bench_image *imgs;
static int nimgs;
static dataio_aug_params AP = {368, 8, 7.0, 1.0, 0.5, 1.1, 40, 40, 0.6, 0.5};

typedef struct {
    long n, first;
    double t_warp, t_targets, t_mask, t_pack_targets, t_jpeg, total;
    double bytes;
} run_stats;

/* Generates samples first..first+n-1 (round-robin over main persons) with stage timings. */
static void run(run_stats *st)
{
    int S = AP.size, g = S / AP.stride, maxp = 1;
    for (int i = 0; i < nimgs; i++) {
        int p = dataio_count_target_persons(imgs[i].ci);
        maxp = p > maxp ? p : maxp;
    }
    dataio_sample s;
    dataio_sample_init(&s, S, g, g, maxp);
    dataio_packed pk = {0};
    float *full = core_malloc(sizeof(float) * S * S);
    double t0 = cpu_now();
    for (long k = st->first; k < st->first + st->n; k++) {
        bench_image *b = &imgs[k % nimgs];
        int mi = b->main[(k / nimgs) % b->nmain];
        const dataio_coco_ann *mp = &b->ci->anns[mi];
        core_sm64 rng = core_sm64_keyed(1, (uint64_t)b->ci->id, (uint64_t)mp->id, (uint64_t)k);
        dataio_aug aug;
        dataio_aug_draw(&AP, mp, &rng, &aug);
        double a = cpu_now();
        /* the stages of dataio_make_sample, timed one by one */
        dataio_warp_rgb(&aug, b->img.rgb, b->img.width, b->img.height, s.rgb, S);
        double bt = cpu_now();
        dataio_make_sample(&AP, &b->img, b->mask, b->ci, mi, &aug, &s); /* repeats the warp: subtracted below */
        double c = cpu_now();
        dataio_target_params tp = {AP.stride, g, g, AP.sigma, AP.paf_width};
        dataio_targets_compute(&tp, s.keypoints, maxp, s.heatmap, s.paf, s.offset, s.attention);
        double d = cpu_now();
        if (b->mask) {
            dataio_warp_mask(&aug, b->mask, b->img.width, b->img.height, full, S);
            dataio_mask_to_grid(full, AP.stride, g, g, s.mask);
        }
        double e = cpu_now();
        dataio_pack_sample(&s, 90, 1, &pk);
        double f = cpu_now();
        uint8_t *jpg;
        size_t len;
        char err[200];
        CHECK(dataio_jpeg_encode(s.rgb, S, S, 90, &jpg, &len, err, sizeof err) == 0, "%s", err);
        free(jpg);
        double h = cpu_now();
        st->t_warp += bt - a;
        st->t_targets += d - c;
        st->t_mask += e - d;
        st->t_jpeg += h - f;
        st->t_pack_targets += (f - e) - (h - f); /* pack = quantise+deflate + JPEG */
        /* time of one real sample = make_sample + pack; the extra timed repeats are excluded */
        st->total += (c - bt) + (f - e);
        st->bytes += pk.jpeg_len + pk.npersons * 18 * 3 * 4 + 28;
        for (int d2 = 0; d2 < DATAIO_NDS; d2++) st->bytes += pk.chunk_len[d2];
    }
    (void)t0;
    free(full);
    dataio_packed_free(&pk);
    dataio_sample_free(&s);
}

static void *run_thread(void *arg)
{
    run((run_stats *)arg);
    return NULL;
}

/* ---- LOADER: the streaming loader's samples/s on crops made here. The
 * samples of the preprocessing run are written to a temporary shard (as
 * sspose data would), then read back by the loader (368 crop, batch 8,
 * flip 0.5, 3 batches prefetched): with 0 worker threads (the caller
 * decodes: samples per CPU-second of one core) and with `threads` workers.
 * Per core uses the decoding threads' CPU time, per thread their wall time
 * (which includes waiting for a core on a loaded machine). */
static void bench_loader(long samples, int threads)
{
    char dir[] = "/tmp/sspose-bench-data-XXXXXX", path[600], pattern[600];
    CHECK(mkdtemp(dir), "cannot create a temporary directory");
    snprintf(path, sizeof path, "%s/bench-00000.h5", dir);
    snprintf(pattern, sizeof pattern, "%s/bench-*.h5", dir);
    int S = AP.size, g = S / AP.stride, maxp = 1;
    for (int i = 0; i < nimgs; i++) {
        int p = dataio_count_target_persons(imgs[i].ci);
        maxp = p > maxp ? p : maxp;
    }
    long n = samples < 64 ? 64 : samples; /* at least 8 batches of 8 */
    dataio_shard_attrs a = {.input_size = S, .stride = AP.stride, .sigma = AP.sigma, .paf_width = AP.paf_width, .seed = 1};
    snprintf(a.source, sizeof a.source, "bench/data");
    snprintf(a.augment, sizeof a.augment, "bench");
    dataio_shard_writer *w = dataio_shard_writer_open(path, &a);
    dataio_sample s;
    dataio_sample_init(&s, S, g, g, maxp);
    dataio_packed pk = {0};
    for (long k = 0; k < n; k++) {
        bench_image *b = &imgs[k % nimgs];
        int mi = b->main[(k / nimgs) % b->nmain];
        core_sm64 rng = core_sm64_keyed(1, (uint64_t)b->ci->id, (uint64_t)b->ci->anns[mi].id, (uint64_t)k);
        dataio_aug aug;
        dataio_aug_draw(&AP, &b->ci->anns[mi], &rng, &aug);
        dataio_make_sample(&AP, &b->img, b->mask, b->ci, mi, &aug, &s);
        dataio_pack_sample(&s, 90, 1, &pk);
        dataio_shard_writer_add(w, &pk);
    }
    dataio_packed_free(&pk);
    dataio_sample_free(&s);
    long long file_bytes = dataio_shard_writer_close(w);
    printf("loader shard: %ld samples, %.1f KB per sample in the file (with HDF5 overhead)\n", n,
           file_bytes / 1024.0 / n);
    int counts[2] = {0, threads};
    for (int t = 0; t < 2; t++) {
        dataio_loader_opts o = {.pattern = pattern, .world = 1, .batch = 8, .seed = 1, .flip = 0.5,
                                .threads = counts[t], .prefetch = 3};
        dataio_loader *L = dataio_loader_open(&o, NULL);
        long steps = 3 * n / 8; /* three epochs: chunk locations are learned in the first */
        for (long k = 0; k < steps; k++) dataio_loader_release(L, dataio_loader_next(L));
        dataio_loader_stats st;
        dataio_loader_get_stats(L, &st);
        dataio_loader_close(L);
        printf("loader, %d worker thread%s: %.0f samples/s per core, %.0f per thread (wall)  goal %.0f per core -> "
               "ratio %.2f\n", counts[t], counts[t] == 1 ? "" : "s", st.per_core, st.per_thread, GOAL_SAMPLES_PER_CORE,
               st.per_core / GOAL_SAMPLES_PER_CORE);
    }
    unlink(path);
    rmdir(dir);
}

/* ---- CONVERT: dataio_convert end to end, as `sspose data` runs it, with 1 and
 * `threads` workers on the same input (copies chosen to give about `samples`). */
static void bench_convert(const char *ann, const char *images, long samples, long main_persons, int threads)
{
    char dir[] = "/tmp/sspose-bench-convert-XXXXXX", prefix[600];
    CHECK(mkdtemp(dir), "cannot create a temporary directory");
    snprintf(prefix, sizeof prefix, "%s/c", dir);
    long copies = main_persons > 0 ? (samples + main_persons - 1) / main_persons : 1;
    double rate[2] = {0, 0};
    int counts[2] = {1, threads};
    for (int t = 0; t < 2; t++) {
        dataio_convert_opts o = {.ann = ann, .images_dir = images, .prefix = prefix, .ap = AP, .seed = 1,
                                 .per_shard = 1000, .copies = (int)(copies < 10000 ? copies : 10000),
                                 .threads = counts[t], .jpeg_quality = 90, .deflate = 1, .progress_every = 1e9,
                                 .overwrite = 1, .quiet = 1};
        dataio_convert_stats st;
        double t0 = core_now();
        dataio_convert(&o, &st);
        double el = core_now() - t0;
        rate[t] = st.written / el;
        printf("convert (dataio_convert), %d thread%s: %ld samples in %d shard%s, %.1f samples/s wall\n", counts[t],
               counts[t] == 1 ? "" : "s", st.written, st.shards, st.shards == 1 ? "" : "s", rate[t]);
        char **old;
        int n = dataio_convert_list_shards(prefix, &old);
        for (int i = 0; i < n; i++) unlink(old[i]), free(old[i]);
        free(old);
    }
    printf("convert: %d threads vs 1 -> ratio %.2f (wall-clock; only meaningful on an idle machine)\n", threads,
           rate[0] > 0 ? rate[1] / rate[0] : 0);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    const char *ann = "../shared/data/coco-sample/test_coco.json", *dir = "../shared/data/coco-sample";
    long samples = 300;
    int threads = 2;
    static const struct option opts[] = {{"ann", 1, 0, 'a'}, {"images", 1, 0, 'i'}, {"samples", 1, 0, 'n'},
                                         {"threads", 1, 0, 't'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == 'a') ann = optarg;
        else if (c == 'i') dir = optarg;
        else if (c == 'n') samples = atol(optarg);
        else if (c == 't') threads = atoi(optarg);
        else CORE_DIE("usage: data [--ann ANN.json --images DIR] [--samples N] [--threads T]");
    }
    CHECK(samples > 0 && threads > 0, "bad --samples or --threads");
    dataio_skips sk = {{0}, 5};
    dataio_coco coco;
    dataio_coco_load(ann, &coco, &sk);
    imgs = core_calloc(coco.nimages, sizeof *imgs);
    double t_decode = 0;
    for (int i = 0; i < coco.nimages; i++) {
        bench_image *b = &imgs[nimgs];
        b->ci = &coco.images[i];
        int tmp[4096];
        if (b->ci->nanns > 4096) continue;
        int n = dataio_coco_main_persons(b->ci, tmp);
        if (!n) continue;
        b->nmain = n < 64 ? n : 64;
        memcpy(b->main, tmp, sizeof(int) * b->nmain);
        char path[4096], err[512];
        snprintf(path, sizeof path, "%s/%s", dir, b->ci->file_name);
        double t = core_now();
        if (dataio_image_load(path, &b->img, err, sizeof err)) continue;
        t_decode += core_now() - t;
        b->mask = dataio_mask_miss(b->ci);
        nimgs++;
    }
    CHECK(nimgs > 0, "no image with a main person under %s", dir);
    printf("data bench: %d source images, crop %d, stride %d, %ld samples\n", nimgs, AP.size, AP.stride, samples);
    printf("  source decode: %.2f ms/image (once per image, shared by its persons and copies)\n",
           1e3 * t_decode / nimgs);

    run_stats one = {.n = samples};
    run(&one);
    double per = one.total / samples;
    printf("preprocessing, 1 thread: %.1f crops/s per core (%.2f ms/crop)  goal %.0f -> ratio %.2f\n", 1 / per,
           1e3 * per, GOAL_CROPS_PER_CORE, (1 / per) / GOAL_CROPS_PER_CORE);
    printf("  per crop: warp %.2f ms, targets %.2f ms, mask %.2f ms, quantise+deflate %.2f ms, JPEG %.2f ms\n",
           1e3 * one.t_warp / samples, 1e3 * one.t_targets / samples, 1e3 * one.t_mask / samples,
           1e3 * one.t_pack_targets / samples, 1e3 * one.t_jpeg / samples);
    double bps = one.bytes / samples;
    printf("bytes per sample (payload as stored): %.0f (%.1f KB)  goal %.0f KB -> ratio %.2f\n", bps, bps / 1024,
           GOAL_BYTES_PER_SAMPLE / 1024, GOAL_BYTES_PER_SAMPLE / bps);

    run_stats *ts = core_calloc(threads, sizeof *ts);
    pthread_t *th = core_malloc(sizeof(pthread_t) * threads);
    double t = core_now();
    for (int i = 0; i < threads; i++) {
        ts[i].n = samples;
        ts[i].first = (long)i * samples;
        CHECK(pthread_create(&th[i], NULL, run_thread, &ts[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    double wall = core_now() - t;
    /* the timed repeats inflate wall time; scale by the share that is real work */
    double work = 0, all = 0;
    for (int i = 0; i < threads; i++) work += ts[i].total, all += ts[i].total + ts[i].t_warp + ts[i].t_targets + ts[i].t_mask + ts[i].t_jpeg;
    double rate = threads * samples / (wall * work / all);
    double cpu_rate = threads * samples / work; /* crops per CPU-second, all threads */
    double load[1] = {0};
    getloadavg(load, 1);
    printf("preprocessing, %d threads: %.1f crops/s per core (CPU time), %.1f crops/s wall-clock total "
           "(load average %.1f on %ld CPUs: wall-clock scaling is only meaningful on an idle machine)\n",
           threads, cpu_rate, rate, load[0], sysconf(_SC_NPROCESSORS_ONLN));
    bench_loader(samples, threads);
    long main_persons = 0;
    for (int i = 0; i < nimgs; i++) main_persons += imgs[i].nmain;
    bench_convert(ann, dir, samples, main_persons, threads);
    free(ts);
    free(th);
    for (int i = 0; i < nimgs; i++) {
        dataio_image_free(&imgs[i].img);
        free(imgs[i].mask);
    }
    free(imgs);
    dataio_coco_free(&coco);
    return 0;
}
