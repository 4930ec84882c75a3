/* Test tool: runs the loader as one rank and prints (or dumps) what it delivers.
 *   tool_loader --glob G --batch B --steps K [--world W --rank R --seed S --flip P
 *               --threads T --prefetch N --state a,b,c,d,e,f --dump FILE]
 * stdout: one line per step "step <n> epoch <e> <index>[f] ..." (f = flipped), then
 * "state <six packed values>". --dump appends per sample: int64 index, uint8 flipped,
 * float32 image [3,S,S], heatmap, paf, offset, attention, mask. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "dataio/loader.h"

static long num(const char *flag, const char *v, long lo, long hi)
{
    char *end;
    long x = strtol(v, &end, 10);
    CHECK(end != v && !*end && x >= lo && x <= hi, "tool_loader: bad value for %s: '%s'", flag, v);
    return x;
}

static const char USAGE[] = "usage: tool_loader --glob G --batch B --steps K [--world W] [--rank R] [--seed S] "
                            "[--flip P] [--threads T] [--prefetch N] [--state a,b,c,d,e,f] [--dump FILE]\n";

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"glob", required_argument, 0, 'g'},    {"batch", required_argument, 0, 'b'},
        {"steps", required_argument, 0, 'k'},   {"world", required_argument, 0, 'w'},
        {"rank", required_argument, 0, 'r'},    {"seed", required_argument, 0, 's'},
        {"flip", required_argument, 0, 'f'},    {"threads", required_argument, 0, 't'},
        {"prefetch", required_argument, 0, 'p'}, {"state", required_argument, 0, 'S'},
        {"dump", required_argument, 0, 'd'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    dataio_loader_opts o = {.world = 1, .batch = 1, .threads = 2, .prefetch = 2, .flip = 0.5};
    long steps = 1;
    const char *dump = NULL, *state = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'g': o.pattern = optarg; break;
        case 'b': o.batch = (int)num("--batch", optarg, 1, 100000); break;
        case 'k': steps = num("--steps", optarg, 0, 1000000000); break;
        case 'w': o.world = (int)num("--world", optarg, 1, 100000); break;
        case 'r': o.rank = (int)num("--rank", optarg, 0, 100000); break;
        case 's': o.seed = (uint64_t)num("--seed", optarg, 0, INT64_MAX); break;
        case 'f': o.flip = atof(optarg); break;
        case 't': o.threads = (int)num("--threads", optarg, 0, 256); break;
        case 'p': o.prefetch = (int)num("--prefetch", optarg, 1, 64); break;
        case 'S': state = optarg; break;
        case 'd': dump = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: CORE_DIE("tool_loader: bad option '%s'", argv[optind - 1]);
        }
    }
    dataio_loader_state st, *resume = NULL;
    if (state) {
        int64_t v[DATAIO_LOADER_STATE_LEN];
        char *p = (char *)state, *end;
        for (int i = 0; i < DATAIO_LOADER_STATE_LEN; i++) {
            v[i] = strtoll(p, &end, 0);
            CHECK(end != p && (*end == ',' || (!*end && i == DATAIO_LOADER_STATE_LEN - 1)), "tool_loader: bad --state '%s'", state);
            p = end + 1;
        }
        dataio_loader_state_unpack(v, &st);
        resume = &st;
    }
    FILE *fd = NULL;
    if (dump) CHECK(fd = fopen(dump, "wb"), "tool_loader: cannot write '%s'", dump);
    dataio_loader *L = dataio_loader_open(&o, resume);
    for (long t = 0; t < steps; t++) {
        const dataio_batch *b = dataio_loader_next(L);
        printf("step %" PRId64 " epoch %" PRId64, b->step, b->epoch);
        for (int j = 0; j < b->n; j++) printf(" %" PRId64 "%s", b->index[j], b->flipped[j] ? "f" : "");
        printf("\n");
        if (fd) {
            size_t hw = (size_t)b->grid_h * b->grid_w;
            const float *arr[6] = {b->image, b->heatmap, b->paf, b->offset, b->attention, b->mask};
            size_t per[6] = {(size_t)3 * b->size * b->size, 19 * hw, 38 * hw, 36 * hw, 19 * hw, hw};
            for (int j = 0; j < b->n; j++) {
                int ok = fwrite(&b->index[j], 8, 1, fd) == 1 && fwrite(&b->flipped[j], 1, 1, fd) == 1;
                for (int k = 0; k < 6; k++) ok = ok && fwrite(arr[k] + j * per[k], 4, per[k], fd) == per[k];
                CHECK(ok, "tool_loader: cannot write '%s'", dump);
            }
        }
        dataio_loader_release(L, b);
    }
    dataio_loader_get_state(L, &st);
    int64_t v[DATAIO_LOADER_STATE_LEN];
    dataio_loader_state_pack(&st, v);
    printf("state");
    for (int i = 0; i < DATAIO_LOADER_STATE_LEN; i++) printf("%s%" PRId64, i ? "," : " ", v[i]);
    printf("\n");
    dataio_loader_stats s;
    dataio_loader_get_stats(L, &s);
    fprintf(stderr, "tool_loader: %lld samples, %.0f samples/s per thread, %.0f per core\n", (long long)s.samples,
            s.per_thread, s.per_core);
    dataio_loader_close(L);
    if (fd) CHECK(fclose(fd) == 0, "tool_loader: cannot write '%s'", dump);
    return 0;
}
