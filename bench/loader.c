/* Loader throughput: samples/s of one decoding core at the default 368 crop,
 * against the bare shard reader (read + unpack + flip + NCHW in one thread)
 * measured in the same run. CPU time is used so a shared machine's load does
 * not distort the per-core figure; wall-clock rates are printed too.
 *   build/bench/loader [samples=96] [S=368] [stride=8]   (writes a fixture shard)
 *   build/bench/loader 'GLOB'                            (existing shards, e.g. sspose data output) */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "dataio/loader.h"
#include "dataio/shard.h"
#include "../tests/test_loader_fixture.h"

#define GOAL_PER_CORE 1000.0 /* issue goal: loader samples/s per core */

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    core_set_quiet(1);
    int given = argc > 1 && strpbrk(argv[1], "/*.");
    int n = argc > 1 && !given ? atoi(argv[1]) : 96, S = argc > 2 ? atoi(argv[2]) : 368, stride = argc > 3 ? atoi(argv[3]) : 8;
    CHECK(n >= 16 && S > 0 && stride > 0 && S % stride == 0, "usage: loader [samples>=16] [S] [stride] | loader GLOB");
    char dir[] = "/tmp/sspose-bench-loader-XXXXXX";
    char path[1200], pattern[1200];
    if (given) {
        snprintf(pattern, sizeof pattern, "%s", argv[1]);
        dataio_loader_opts o = {.pattern = pattern, .world = 1, .batch = 1, .prefetch = 1};
        dataio_loader *L = dataio_loader_open(&o, NULL);
        n = (int)(dataio_loader_total(L) < 256 ? dataio_loader_total(L) : 256);
        dataio_loader_close(L);
        CHECK(n >= 16, "bench needs at least 16 samples");
        glob_t g;
        CHECK(glob(pattern, 0, NULL, &g) == 0, "no match for '%s'", pattern);
        snprintf(path, sizeof path, "%s", g.gl_pathv[0]);
        globfree(&g);
        printf("shards: %s (reader peer on %s)\n", pattern, path);
    } else {
        CHECK(mkdtemp(dir), "cannot create a temporary directory");
        snprintf(path, sizeof path, "%s/bench-0.h5", dir);
        snprintf(pattern, sizeof pattern, "%s/bench-*.h5", dir);
        fx_write_shard_noisy(path, n, S, stride, 1, 12);
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        printf("shard: %d samples of %dx%d (grid %d), %.1f KiB per sample\n", n, S, S, S / stride, ftell(f) / 1024.0 / n);
        fclose(f);
    }

    /* peer: the reader alone, one thread */
    dataio_shard *r = dataio_shard_open(path);
    dataio_sample s;
    dataio_shard_sample_init(r, &s);
    S = s.size;
    int nr = (int)(dataio_shard_count(r) < n ? dataio_shard_count(r) : n);
    float *img = core_malloc(sizeof(float) * 3 * S * S);
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < nr; i++) {
        dataio_shard_read(r, i, &s);
        if (i & 1) dataio_flip_sample(&s);
        dataio_sample_image_chw(&s, img);
    }
    double peer_cpu = nr / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0), peer_wall = nr / (clock_s(CLOCK_MONOTONIC) - w0);
    dataio_sample_free(&s);
    dataio_shard_close(r);
    free(img);
    printf("reader alone          : %7.0f samples/s per core (%7.0f wall)\n", peer_cpu, peer_wall);

    int threads[2] = {1, 2};
    for (int t = 0; t < 2; t++) {
        dataio_loader_opts o = {.pattern = pattern, .world = 1, .batch = 8, .seed = 1, .flip = 0.5,
                                .threads = threads[t], .prefetch = 3};
        dataio_loader *L = dataio_loader_open(&o, NULL);
        int steps = 4 * n / 8;
        double t0 = clock_s(CLOCK_MONOTONIC);
        for (int k = 0; k < steps; k++) dataio_loader_release(L, dataio_loader_next(L));
        double wall = clock_s(CLOCK_MONOTONIC) - t0;
        dataio_loader_stats st;
        dataio_loader_get_stats(L, &st);
        dataio_loader_close(L);
        printf("loader, %d thread%s     : %7.0f samples/s per core (%7.0f per thread wall), delivered %7.0f samples/s; "
               "ratio to reader %.2f, to the goal of %.0f per core %.2f\n", threads[t], t ? "s" : " ", st.per_core,
               st.per_thread, steps * 8 / wall, st.per_core / peer_cpu, GOAL_PER_CORE, st.per_core / GOAL_PER_CORE);
    }
    if (!given) {
        unlink(path);
        rmdir(dir);
    }
    return 0;
}
