#include "dataio/convert.h"

#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/fileid.h"
#include "core/progress.h"
#include "dataio/image.h"
#include "dataio/shard.h"

typedef struct {
    int image;
    int nmain, *main; /* indices into the image's annotations */
    dataio_packed *out;
    int nout;
    int done;
} task;

typedef struct {
    const dataio_convert_opts *o;
    const dataio_coco *coco;
    task *tasks;
    int ntasks, next, written, window;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dataio_skips *skips;
} job;

/* Singular or absurd draws cannot make a crop; coco.c already drops boxes
 * far outside the image, this catches whatever is left (e.g. a huge height). */
static int aug_usable(const dataio_aug *a)
{
    double det = a->m[0] * a->m[4] - a->m[1] * a->m[3];
    return isfinite(det) && fabs(det) > 1e-12 && isfinite(a->m[2]) && isfinite(a->m[5]);
}

static int load_image(job *j, const dataio_coco_image *ci, dataio_image *img)
{
    char path[8192], err[1024];
    snprintf(path, sizeof path, "%s/%s", j->o->images_dir, ci->file_name);
    if (access(path, R_OK) != 0) {
        dataio_skip(j->skips, DATAIO_SKIP_MISSING_FILE, "image %lld: '%s': %s", (long long)ci->id, path, strerror(errno));
        return -1;
    }
    if (dataio_image_load(path, img, err, sizeof err)) {
        dataio_skip(j->skips, DATAIO_SKIP_CORRUPT_IMAGE, "image %lld: %s", (long long)ci->id, err);
        return -1;
    }
    if (img->width != ci->width || img->height != ci->height) {
        dataio_skip(j->skips, DATAIO_SKIP_SIZE_MISMATCH, "image %lld: '%s' is %dx%d, the JSON says %dx%d",
                    (long long)ci->id, path, img->width, img->height, ci->width, ci->height);
        dataio_image_free(img);
        return -1;
    }
    return 0;
}

static void run_task(job *j, task *t)
{
    const dataio_convert_opts *o = j->o;
    const dataio_coco_image *ci = &j->coco->images[t->image];
    dataio_image img;
    if (load_image(j, ci, &img)) return;
    uint8_t *mask = dataio_mask_miss(ci);
    int S = o->ap.size, g = S / o->ap.stride;
    dataio_sample s;
    dataio_sample_init(&s, S, g, g, dataio_count_target_persons(ci));
    t->out = core_calloc((size_t)t->nmain * o->copies, sizeof(dataio_packed));
    for (int m = 0; m < t->nmain; m++)
        for (int c = 0; c < o->copies; c++) {
            const dataio_coco_ann *mp = &ci->anns[t->main[m]];
            core_sm64 rng = core_sm64_keyed((uint64_t)o->seed, (uint64_t)ci->id, (uint64_t)mp->id, (uint64_t)c);
            dataio_aug aug;
            dataio_aug_draw(&o->ap, mp, &rng, &aug);
            if (!aug_usable(&aug)) {
                if (c == 0)
                    dataio_skip(j->skips, DATAIO_SKIP_BAD_BOX, "annotation %lld in image %lld: box %gx%g gives no usable crop",
                                (long long)mp->id, (long long)ci->id, mp->bbox[2], mp->bbox[3]);
                continue;
            }
            dataio_make_sample(&o->ap, &img, mask, ci, t->main[m], &aug, &s);
            dataio_pack_sample(&s, o->jpeg_quality, o->deflate, &t->out[t->nout++]);
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

int dataio_convert_list_shards(const char *prefix, char ***paths)
{
    /* the prefix may hold glob characters: match the digits by hand */
    char pat[8192];
    size_t k = 0;
    for (const char *p = prefix; *p && k + 2 < sizeof pat - 32; p++) {
        if (strchr("*?[]\\", *p)) pat[k++] = '\\';
        pat[k++] = *p;
    }
    snprintf(pat + k, sizeof pat - k, "-[0-9][0-9][0-9][0-9][0-9].h5");
    glob_t g;
    int rc = glob(pat, 0, NULL, &g);
    CHECK(rc == 0 || rc == GLOB_NOMATCH, "data: cannot list the shards of '%s'", prefix);
    int n = rc == 0 ? (int)g.gl_pathc : 0;
    *paths = core_calloc(n ? n : 1, sizeof **paths);
    for (int i = 0; i < n; i++) (*paths)[i] = core_strdup(g.gl_pathv[i]);
    if (rc == 0) globfree(&g);
    return n;
}

static void free_list(char **paths, int n)
{
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

static void check_inputs(const dataio_convert_opts *o)
{
    CHECK(o->ap.size % o->ap.stride == 0, "data: model.input %d is not a multiple of model.stride %d", o->ap.size,
          o->ap.stride);
    CHECK(o->ap.scale_min <= o->ap.scale_max, "data: data.scale_min %g exceeds data.scale_max %g", o->ap.scale_min,
          o->ap.scale_max);
    CHECK(o->threads >= 1 && o->per_shard >= 1 && o->copies >= 1, "data: bad threads/samples-per-shard/copies");
    CHECK(access(o->images_dir, R_OK | X_OK) == 0, "data: cannot read the images folder '%s': %s", o->images_dir,
          strerror(errno));
    char *dup = core_strdup(o->prefix);
    const char *dir = dirname(dup);
    CHECK(access(dir, W_OK | X_OK) == 0, "data: cannot write to the output folder '%s': %s", dir, strerror(errno));
    free(dup);
    char **old;
    int n = dataio_convert_list_shards(o->prefix, &old);
    for (int i = 0; i < n; i++)
        core_refuse_input_output("data", "shard", old[i], (const char *const[]){o->ann}, (const char *const[]){"--ann"}, 1);
    /* a shard glob would mix the old run's files into the new one */
    CHECK(!n || o->overwrite, "data: '%s' already exists (%d shard%s of an earlier run); pass --overwrite to replace them "
          "or choose another --out", old[0], n, n == 1 ? "" : "s");
    free_list(old, n);
}

/* Plans one task per image with a main person; returns the samples expected. */
static long plan(job *j, int nimg, long *main_persons)
{
    long expected = 0;
    int *scratch = NULL;
    j->tasks = core_calloc(nimg ? nimg : 1, sizeof(task));
    for (int i = 0; i < nimg; i++) {
        const dataio_coco_image *ci = &j->coco->images[i];
        scratch = core_realloc(scratch, sizeof(int) * (ci->nanns ? ci->nanns : 1));
        int n = dataio_coco_main_persons(ci, scratch);
        if (!n) continue;
        task *t = &j->tasks[j->ntasks++];
        t->image = i;
        t->nmain = n;
        t->main = core_malloc(sizeof(int) * n);
        memcpy(t->main, scratch, sizeof(int) * n);
        expected += (long)n * j->o->copies;
        *main_persons += n;
    }
    free(scratch);
    return expected;
}

static void shard_attrs(const dataio_convert_opts *o, dataio_shard_attrs *a)
{
    memset(a, 0, sizeof *a);
    *a = (dataio_shard_attrs){.input_size = o->ap.size, .stride = o->ap.stride, .sigma = o->ap.sigma,
                              .paf_width = o->ap.paf_width, .seed = o->seed};
    snprintf(a->source, sizeof a->source, "%s", o->ann);
    snprintf(a->augment, sizeof a->augment,
             "cmu; target_height=%g scale=[%g,%g] max_rotate=%g center_perturb=%g flip=%g copies=%d "
             "jpeg_quality=%d deflate=%d",
             o->ap.target_height, o->ap.scale_min, o->ap.scale_max, o->ap.max_rotate, o->ap.center_perturb, o->ap.flip,
             o->copies, o->jpeg_quality, o->deflate);
}

/* The ordered writer: waits for each task in turn and rolls shards over. */
static void write_all(job *j, long expected, dataio_convert_stats *st)
{
    const dataio_convert_opts *o = j->o;
    dataio_shard_attrs attrs;
    shard_attrs(o, &attrs);
    core_progress prog;
    core_progress_start(&prog, "data", "samples", expected, o->quiet ? NULL : stdout, o->progress_every);
    dataio_shard_writer *w = NULL;
    long in_shard = 0;
    char path[8192];
    for (int ti = 0; ti < j->ntasks; ti++) {
        task *t = &j->tasks[ti];
        pthread_mutex_lock(&j->mu);
        while (!t->done) pthread_cond_wait(&j->cv, &j->mu);
        pthread_mutex_unlock(&j->mu);
        expected -= (long)t->nmain * o->copies - t->nout;
        prog.total = expected;
        for (int k = 0; k < t->nout; k++) {
            if (!w) {
                snprintf(path, sizeof path, "%s-%05d.h5", o->prefix, st->shards);
                w = dataio_shard_writer_open(path, &attrs);
            }
            dataio_shard_writer_add(w, &t->out[k]);
            st->crop_persons += t->out[k].npersons;
            dataio_packed_free(&t->out[k]);
            st->written++;
            if (++in_shard == o->per_shard) {
                st->bytes += dataio_shard_writer_close(w);
                w = NULL;
                st->shards++;
                in_shard = 0;
            }
        }
        free(t->out);
        free(t->main);
        t->out = NULL;
        pthread_mutex_lock(&j->mu);
        j->written++;
        pthread_cond_broadcast(&j->cv);
        pthread_mutex_unlock(&j->mu);
        core_progress_update(&prog, st->written);
    }
    if (w) {
        st->bytes += dataio_shard_writer_close(w);
        st->shards++;
    }
    core_progress_finish(&prog);
    st->seconds = core_progress_elapsed(&prog);
}

/* --overwrite: the shards past the new last one belong to the earlier run. */
static int remove_stale(const char *prefix, int shards)
{
    char **old;
    int n = dataio_convert_list_shards(prefix, &old), removed = 0;
    for (int i = 0; i < n; i++) {
        const char *digits = old[i] + strlen(old[i]) - 8;
        if (atoi(digits) < shards) continue;
        if (unlink(old[i]) == 0) removed++;
        else core_warn("data: cannot remove the old shard '%s': %s", old[i], strerror(errno));
    }
    free_list(old, n);
    return removed;
}

static void report(const dataio_convert_opts *o, const dataio_convert_stats *st)
{
    long skipped = 0;
    char reasons[2048] = "";
    for (int r = 0; r < DATAIO_SKIP_N; r++)
        if (st->skipped[r]) {
            size_t l = strlen(reasons);
            skipped += st->skipped[r];
            snprintf(reasons + l, sizeof reasons - l, "%s%ld %s", l ? ", " : "", st->skipped[r], dataio_skip_names[r]);
        }
    if (!o->quiet) {
        core_info("data: wrote %ld samples (%ld main persons x %d copies; %ld persons in crops) to %d shard%s %s-*.h5, "
                  "%.0f bytes/sample, %.1f samples/s",
                  st->written, st->written / o->copies, o->copies, st->crop_persons, st->shards,
                  st->shards == 1 ? "" : "s", o->prefix, st->written ? (double)st->bytes / st->written : 0.0,
                  st->seconds > 0 ? st->written / st->seconds : 0.0);
        if (st->removed_stale) core_info("data: removed %d shard(s) of the earlier run", st->removed_stale);
        core_info("data: skipped %ld%s%s%s", skipped, skipped ? " (" : "", reasons, skipped ? ")" : "");
    }
    CHECK(st->written > 0, "data: no sample written: every image with a main person was skipped (%s)", reasons);
}

void dataio_convert(const dataio_convert_opts *o, dataio_convert_stats *st)
{
    memset(st, 0, sizeof *st);
    check_inputs(o);
    /* every skipped annotation is named once (image and annotation id); the counts close the run */
    dataio_skips skips = {{0}, 1 << 30};
    dataio_coco coco;
    dataio_coco_load(o->ann, &coco, &skips);
    int nimg = o->max_images > 0 && o->max_images < coco.nimages ? (int)o->max_images : coco.nimages;
    job j = {0};
    j.o = o;
    j.coco = &coco;
    j.skips = &skips;
    long expected = plan(&j, nimg, &st->main_persons);
    CHECK(j.ntasks > 0, "data: no main person (>= 5 keypoints, area >= 32^2) among %d images of '%s'", nimg, o->ann);
    j.window = 4 * o->threads + 4;
    CHECK(pthread_mutex_init(&j.mu, NULL) == 0 && pthread_cond_init(&j.cv, NULL) == 0, "data: cannot create a lock");
    if (!o->quiet)
        core_info("data: %d images with %ld main persons, %ld samples to write (%d copies), %d threads", j.ntasks,
                  st->main_persons, expected, o->copies, o->threads);
    pthread_t *th = core_malloc(sizeof(pthread_t) * o->threads);
    for (int i = 0; i < o->threads; i++)
        CHECK(pthread_create(&th[i], NULL, worker, &j) == 0, "data: cannot start worker thread %d", i);
    write_all(&j, expected, st);
    for (int i = 0; i < o->threads; i++) pthread_join(th[i], NULL);
    free(th);
    if (st->written) st->removed_stale = remove_stale(o->prefix, st->shards);
    memcpy(st->skipped, skips.count, sizeof st->skipped);
    pthread_mutex_destroy(&j.mu);
    pthread_cond_destroy(&j.cv);
    free(j.tasks);
    dataio_coco_free(&coco);
    report(o, st);
}
