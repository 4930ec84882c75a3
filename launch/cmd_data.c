/* sspose data: COCO person keypoints (JSON + images) -> training shards (SPEC section 5).
 *
 * Worker threads decode an image, draw the augmentations and build, pack
 * (quantise, deflate, JPEG-encode) every sample of it; the main thread alone
 * talks to HDF5 and writes the samples in a fixed order (image, main person,
 * copy). Each sample's random stream is keyed by (seed, image, person, copy),
 * so the shards are the same for any --threads. */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/config.h"
#include "core/progress.h"
#include "dataio/augment.h"
#include "dataio/coco.h"
#include "dataio/image.h"
#include "dataio/shard.h"
#include "launch/cli.h"

static const char USAGE[] =
    "usage: sspose data --ann ANN.json --images DIR --out PREFIX [options]\n"
    "\n"
    "Converts COCO person-keypoint annotations and their images into training\n"
    "shards PREFIX-00000.h5, PREFIX-00001.h5, ... (format: docs/data.md).\n"
    "One sample per main person (>= 5 keypoints, area >= 32^2, not near an\n"
    "earlier main person), randomly scaled, rotated, shifted and flipped.\n"
    "\n"
    "  --config FILE           config (model.input, model.stride, data.sigma,\n"
    "                          data.paf_width, data.scale_min/max, data.max_rotate,\n"
    "                          data.center_perturb, data.target_height, data.flip)\n"
    "  --set section.key=v     override one config key (repeatable)\n"
    "  --ann FILE              COCO person_keypoints JSON\n"
    "  --images DIR            folder holding the images' file_name\n"
    "  --out PREFIX            output prefix (its folder must exist)\n"
    "  --seed S                augmentation seed (default 1)\n"
    "  --samples-per-shard N   samples per file (default 1000)\n"
    "  --copies K              independently augmented copies per person (default 1)\n"
    "  --threads T             worker threads (default: CPUs online)\n"
    "  --jpeg-quality Q        crop JPEG quality 50..100 (default 90)\n"
    "  --deflate L             zlib level of the targets 1..9 (default 1)\n"
    "  --max-images N          convert only the first N images (0 = all)\n"
    "  --progress-every SEC    seconds between progress lines off a terminal (default 10)\n"
    "  -h, --help              this text\n";

typedef struct {
    int image;
    int nmain, *main; /* indices into the image's annotations */
    dataio_packed *out;
    int nout;
    int done;
} task;

typedef struct {
    const dataio_coco *coco;
    const char *images_dir;
    dataio_aug_params ap;
    int copies, jpeg_quality, deflate;
    int64_t seed;
    task *tasks;
    int ntasks, next, written, window;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dataio_skips *skips;
} job;

static void run_task(job *j, task *t)
{
    const dataio_coco_image *ci = &j->coco->images[t->image];
    char path[8192], err[1024];
    snprintf(path, sizeof path, "%s/%s", j->images_dir, ci->file_name);
    dataio_image img;
    if (access(path, R_OK) != 0) {
        dataio_skip(j->skips, DATAIO_SKIP_MISSING_FILE, "image %lld: '%s': %s", (long long)ci->id, path, strerror(errno));
        return;
    }
    if (dataio_image_load(path, &img, err, sizeof err)) {
        dataio_skip(j->skips, DATAIO_SKIP_CORRUPT_IMAGE, "image %lld: %s", (long long)ci->id, err);
        return;
    }
    if (img.width != ci->width || img.height != ci->height) {
        dataio_skip(j->skips, DATAIO_SKIP_SIZE_MISMATCH, "image %lld: '%s' is %dx%d, the JSON says %dx%d",
                    (long long)ci->id, path, img.width, img.height, ci->width, ci->height);
        dataio_image_free(&img);
        return;
    }
    uint8_t *mask = dataio_mask_miss(ci);
    int S = j->ap.size, g = S / j->ap.stride;
    dataio_sample s;
    dataio_sample_init(&s, S, g, g, dataio_count_target_persons(ci));
    t->out = core_calloc((size_t)t->nmain * j->copies, sizeof(dataio_packed));
    for (int m = 0; m < t->nmain; m++)
        for (int c = 0; c < j->copies; c++) {
            const dataio_coco_ann *mp = &ci->anns[t->main[m]];
            core_sm64 rng = core_sm64_keyed((uint64_t)j->seed, (uint64_t)ci->id, (uint64_t)mp->id, (uint64_t)c);
            dataio_aug aug;
            dataio_aug_draw(&j->ap, mp, &rng, &aug);
            dataio_make_sample(&j->ap, &img, mask, ci, t->main[m], &aug, &s);
            dataio_pack_sample(&s, j->jpeg_quality, j->deflate, &t->out[t->nout++]);
        }
    dataio_sample_free(&s);
    free(mask);
    dataio_image_free(&img);
}

static void *worker(void *arg)
{
    job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        while (j->next < j->ntasks && j->next >= j->written + j->window) pthread_cond_wait(&j->cv, &j->mu);
        if (j->next >= j->ntasks) {
            pthread_mutex_unlock(&j->mu);
            return NULL;
        }
        task *t = &j->tasks[j->next++];
        pthread_mutex_unlock(&j->mu);
        run_task(j, t);
        pthread_mutex_lock(&j->mu);
        t->done = 1;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cmd_data(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 'S'},
        {"ann", required_argument, 0, 'a'}, {"images", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"samples-per-shard", required_argument, 0, 'n'}, {"copies", required_argument, 0, 'k'},
        {"threads", required_argument, 0, 't'}, {"jpeg-quality", required_argument, 0, 'q'},
        {"deflate", required_argument, 0, 'z'}, {"max-images", required_argument, 0, 'm'},
        {"progress-every", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    cli_config_args ca = {0};
    const char *ann = NULL, *images = NULL, *prefix = NULL;
    long seed = 1, per_shard = 1000, copies = 1, threads = online_cpus(), quality = 90, deflate = 1, max_images = 0;
    double every = 10;
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ca.config_path = optarg; break;
        case 'S': cli_config_add_set(&ca, optarg); break;
        case 'a': ann = optarg; break;
        case 'i': images = optarg; break;
        case 'o': prefix = optarg; break;
        case 's': seed = cli_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case 'n': per_shard = cli_long("--samples-per-shard", optarg, 1, 100000000); break;
        case 'k': copies = cli_long("--copies", optarg, 1, 10000); break;
        case 't': threads = cli_long("--threads", optarg, 1, 1024); break;
        case 'q': quality = cli_long("--jpeg-quality", optarg, 50, 100); break;
        case 'z': deflate = cli_long("--deflate", optarg, 1, 9); break;
        case 'm': max_images = cli_long("--max-images", optarg, 0, 1000000000); break;
        case 'p': every = cli_double("--progress-every", optarg, 0.01, 1e6); break;
        default: CORE_DIE("data: unexpected option");
        }
    }
    CHECK(optind == argc, "data: unexpected argument '%s' (see 'sspose data --help')", argv[optind]);
    CHECK(ann, "data: --ann is required (see 'sspose data --help')");
    CHECK(images, "data: --images is required (see 'sspose data --help')");
    CHECK(prefix, "data: --out is required (see 'sspose data --help')");
    core_config cfg;
    cli_config_build(&ca, &cfg);
    core_config_resolve(&cfg);
    CHECK(cfg.model.input % cfg.model.stride == 0, "data: model.input %d is not a multiple of model.stride %d",
          cfg.model.input, cfg.model.stride);
    CHECK(cfg.data.scale_min <= cfg.data.scale_max, "data: data.scale_min %g exceeds data.scale_max %g",
          cfg.data.scale_min, cfg.data.scale_max);
    CHECK(access(images, R_OK | X_OK) == 0, "data: cannot read the images folder '%s': %s", images, strerror(errno));
    {
        char *dup = core_strdup(prefix);
        const char *dir = dirname(dup);
        CHECK(access(dir, W_OK | X_OK) == 0, "data: cannot write to the output folder '%s': %s", dir, strerror(errno));
        free(dup);
    }

    dataio_skips skips = {{0}, 5};
    dataio_coco coco;
    dataio_coco_load(ann, &coco, &skips);
    int nimg = max_images > 0 && max_images < coco.nimages ? (int)max_images : coco.nimages;

    job j = {0};
    j.coco = &coco;
    j.images_dir = images;
    j.ap = (dataio_aug_params){cfg.model.input, cfg.model.stride, cfg.data.sigma, cfg.data.paf_width,
                               cfg.data.scale_min, cfg.data.scale_max, cfg.data.max_rotate,
                               cfg.data.center_perturb, cfg.data.target_height, cfg.data.flip};
    j.copies = (int)copies;
    j.jpeg_quality = (int)quality;
    j.deflate = (int)deflate;
    j.seed = seed;
    j.skips = &skips;
    j.tasks = core_calloc(nimg ? nimg : 1, sizeof(task));
    long expected = 0, main_persons = 0;
    int *scratch = NULL;
    for (int i = 0; i < nimg; i++) {
        const dataio_coco_image *ci = &coco.images[i];
        scratch = core_realloc(scratch, sizeof(int) * (ci->nanns ? ci->nanns : 1));
        int n = dataio_coco_main_persons(ci, scratch);
        if (!n) continue;
        task *t = &j.tasks[j.ntasks++];
        t->image = i;
        t->nmain = n;
        t->main = core_malloc(sizeof(int) * n);
        memcpy(t->main, scratch, sizeof(int) * n);
        expected += (long)n * copies;
        main_persons += n;
    }
    free(scratch);
    CHECK(j.ntasks > 0, "data: no main person (>= 5 keypoints, area >= 32^2) among %d images of '%s'", nimg, ann);
    j.window = 4 * (int)threads + 4;
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);

    core_info("data: %d images with %ld main persons, %ld samples to write (%ld copies), %ld threads", j.ntasks,
              main_persons, expected, copies, threads);
    pthread_t *th = core_malloc(sizeof(pthread_t) * threads);
    for (long i = 0; i < threads; i++)
        CHECK(pthread_create(&th[i], NULL, worker, &j) == 0, "data: cannot start worker thread %ld", i);

    dataio_shard_attrs attrs = {.input_size = cfg.model.input, .stride = cfg.model.stride, .sigma = cfg.data.sigma,
                                .paf_width = cfg.data.paf_width, .seed = seed};
    snprintf(attrs.source, sizeof attrs.source, "%s", ann);
    snprintf(attrs.augment, sizeof attrs.augment,
             "cmu; target_height=%g scale=[%g,%g] max_rotate=%g center_perturb=%g flip=%g copies=%ld "
             "jpeg_quality=%ld deflate=%ld",
             cfg.data.target_height, cfg.data.scale_min, cfg.data.scale_max, cfg.data.max_rotate,
             cfg.data.center_perturb, cfg.data.flip, copies, quality, deflate);
    core_progress prog;
    core_progress_start(&prog, "data", "samples", expected, stdout, every);
    dataio_shard_writer *w = NULL;
    int shard = 0;
    long in_shard = 0, written = 0, crop_persons = 0;
    long long bytes = 0;
    char path[8192];
    for (int ti = 0; ti < j.ntasks; ti++) {
        task *t = &j.tasks[ti];
        pthread_mutex_lock(&j.mu);
        while (!t->done) pthread_cond_wait(&j.cv, &j.mu);
        pthread_mutex_unlock(&j.mu);
        if (!t->out) expected -= (long)t->nmain * copies, prog.total = expected;
        for (int k = 0; k < t->nout; k++) {
            if (!w) {
                snprintf(path, sizeof path, "%s-%05d.h5", prefix, shard);
                w = dataio_shard_writer_open(path, &attrs);
            }
            dataio_shard_writer_add(w, &t->out[k]);
            crop_persons += t->out[k].npersons;
            dataio_packed_free(&t->out[k]);
            written++;
            if (++in_shard == per_shard) {
                bytes += dataio_shard_writer_close(w);
                w = NULL;
                shard++;
                in_shard = 0;
            }
        }
        free(t->out);
        free(t->main);
        t->out = NULL;
        pthread_mutex_lock(&j.mu);
        j.written++;
        pthread_cond_broadcast(&j.cv);
        pthread_mutex_unlock(&j.mu);
        core_progress_update(&prog, written);
    }
    for (long i = 0; i < threads; i++) pthread_join(th[i], NULL);
    if (w) {
        bytes += dataio_shard_writer_close(w);
        shard++;
    }
    core_progress_finish(&prog);
    free(th);
    /* a larger earlier run leaves files that a shard glob would pick up */
    snprintf(path, sizeof path, "%s-%05d.h5", prefix, shard);
    if (access(path, F_OK) == 0)
        core_warn("'%s' and maybe later shards are left from an earlier run; remove them before training on %s-*.h5",
                  path, prefix);
    long skipped = 0;
    for (int r = 0; r < DATAIO_SKIP_N; r++) skipped += skips.count[r];
    char reasons[2048] = "";
    for (int r = 0; r < DATAIO_SKIP_N; r++)
        if (skips.count[r]) {
            size_t l = strlen(reasons);
            snprintf(reasons + l, sizeof reasons - l, "%s%ld %s", l ? ", " : "", skips.count[r], dataio_skip_names[r]);
        }
    double el = core_progress_elapsed(&prog);
    core_info("data: wrote %ld samples (%ld main persons x %ld copies; %ld persons in crops) to %d shard%s %s-*.h5, "
              "%.0f bytes/sample, %.1f samples/s",
              written, written / copies, copies, crop_persons, shard, shard == 1 ? "" : "s", prefix,
              written ? (double)bytes / written : 0.0, el > 0 ? written / el : 0.0);
    core_info("data: skipped %ld%s%s%s", skipped, skipped ? " (" : "", reasons, skipped ? ")" : "");
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    free(j.tasks);
    dataio_coco_free(&coco);
    CHECK(written > 0, "data: no sample written: every image with a main person was skipped (%s)", reasons);
    return 0;
}
