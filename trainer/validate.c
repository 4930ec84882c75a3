#include "trainer/validate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/check.h"
#include "core/h5util.h"
#include "dataio/coco.h"
#include "dataio/image.h"
#include "eval/coco_json.h"
#include "eval/cocoeval.h"
#include "eval/predict.h"
#include "trainer/rundir.h"

/* One gathered detection: image index (file order), score, 51 COCO keypoint numbers. */
#define DET_LEN (2 + 3 * EVAL_COCO_NKP)

struct trainer_val {
    core_config cfg;
    char rundir[4096];
    int rank, world;
    model_net *net;     /* the replica inference runs on */
    eval_model *model;  /* eval/predict.h's view of it */
    dataio_coco images; /* the images validated, file order, capped */
    eval_coco_gt gt;    /* rank 0: ground truth restricted to those images */
    double best_ap;     /* -inf: none yet (pycocotools' -1 for "no ground truth" still counts as a first best) */
    trainer_val_result res;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void trainer_val_best_path(const char *rundir, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/ckpt-best.h5", rundir);
    CHECK(n > 0 && (size_t)n < len, "run directory path too long: '%s'", rundir);
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* Keeps the first `cap` images (file order) and drops the rest from both views,
 * so that the score is that of `sspose eval` on a file holding only them. */
static void cap_images(trainer_val *v, int cap)
{
    if (cap <= 0 || cap >= v->images.nimages) return;
    for (int i = cap; i < v->images.nimages; i++) {
        free(v->images.images[i].file_name);
        for (int a = 0; a < v->images.images[i].nanns; a++) dataio_segm_free(&v->images.images[i].anns[a].segm);
        free(v->images.images[i].anns);
    }
    v->images.nimages = cap;
    if (v->rank != 0) return;
    long long *keep = core_malloc((size_t)cap * sizeof *keep);
    for (int i = 0; i < cap; i++) keep[i] = (long long)v->images.images[i].id;
    qsort(keep, (size_t)cap, sizeof *keep, cmp_ll);
    eval_coco_gt *g = &v->gt;
    int ni = 0, na = 0;
    for (int i = 0; i < g->nimg; i++)
        if (bsearch(&g->img_ids[i], keep, (size_t)cap, sizeof *keep, cmp_ll)) g->img_ids[ni++] = g->img_ids[i];
    for (int a = 0; a < g->nann; a++)
        if (bsearch(&g->anns[a].image_id, keep, (size_t)cap, sizeof *keep, cmp_ll)) g->anns[na++] = g->anns[a];
    g->nimg = ni;
    g->nann = na;
    free(keep);
}

/* Rank 0: the AP to beat, from an existing ckpt-best.h5 of this run (resume). */
static double read_best(const char *rundir, long *step)
{
    char path[4200];
    trainer_val_best_path(rundir, path, sizeof path);
    double ap = -INFINITY;
    int64_t s = -1;
    core_h5_quiet();
    if (access(path, F_OK) != 0) return ap;
    core_h5_lock();
    hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f < 0 || core_h5_attr_read_f64(f, "val_ap", &ap) != 0 || core_h5_attr_read_i64(f, "val_step", &s) != 0) ap = NAN;
    if (f >= 0) H5Fclose(f);
    core_h5_unlock();
    *step = !isnan(ap) ? (long)s : -1;
    if (!isnan(ap)) return ap;
    core_warn("%s has no readable val_ap/val_step: the next validation replaces it", path);
    return -INFINITY;
}

trainer_val *trainer_val_open(const core_config *cfg, core_backend *be, const char *rundir, int resumed)
{
    if (cfg->train.val_every <= 0) return NULL;
    CHECK(cfg->data.val_ann[0] && cfg->data.val_images[0],
          "train.val_every = %d needs data.val_ann (COCO keypoints JSON) and data.val_images (its image folder)",
          cfg->train.val_every);
    trainer_val *v = core_calloc(1, sizeof *v);
    v->cfg = *cfg;
    snprintf(v->rundir, sizeof v->rundir, "%s", rundir);
    v->rank = comm_rank();
    v->world = comm_size();
    dataio_skips skips = {{0}, 3};
    dataio_coco_load(cfg->data.val_ann, &v->images, &skips);
    CHECK(v->images.nimages > 0, "data.val_ann '%s': no images to validate on", cfg->data.val_ann);
    if (v->rank == 0) eval_coco_load_gt(cfg->data.val_ann, &v->gt);
    cap_images(v, cfg->data.val_max_images);
    v->net = model_create(&v->cfg, be);
    /* batch norm with the running statistics (copied with the weights), and no
     * synchronised-BN collectives: the ranks validate different images */
    model_set_train(v->net, 0);
    v->model = eval_model_wrap(v->net, &v->cfg);
    v->best_ap = -INFINITY;
    if (v->rank == 0 && resumed) {
        long step = -1;
        v->best_ap = read_best(rundir, &step);
        if (step >= 0) core_info("best validation so far: AP %.4f at step %ld (ckpt-best.h5)", v->best_ap, step);
    }
    comm_bcast_bytes(&v->best_ap, sizeof v->best_ap, 0);
    return v;
}

void trainer_val_close(trainer_val *v)
{
    if (!v) return;
    eval_model_free(v->model);
    model_destroy(v->net);
    dataio_coco_free(&v->images);
    if (v->rank == 0) eval_coco_gt_free(&v->gt);
    free(v);
}

/* This rank's images through the network: DET_LEN doubles per person, in file
 * order, keypoints rounded as eval_predict_coco writes them to JSON so that the
 * score equals `sspose eval` on the same weights. Returns the count. */
static long predict_share(trainer_val *v, double **out)
{
    long n = 0, cap = 0;
    double *d = NULL;
    for (int i = v->rank; i < v->images.nimages; i += v->world) {
        const dataio_coco_image *im = &v->images.images[i];
        char path[4200], err[256];
        snprintf(path, sizeof path, "%s/%s", v->cfg.data.val_images, im->file_name);
        dataio_image img;
        if (dataio_image_load(path, &img, err, sizeof err) != 0) CORE_DIE("validation image %s: %s", path, err);
        CHECK(img.width == im->width && img.height == im->height, "validation image %s is %dx%d but %s says %dx%d", path,
              img.width, img.height, v->cfg.data.val_ann, im->width, im->height);
        eval_person *ppl;
        int np = eval_predict_image(img.rgb, img.height, img.width, &v->cfg, eval_model_forward, v->model, &ppl);
        for (int p = 0; p < np; p++) {
            if (n == cap) d = core_realloc(d, (size_t)(cap = cap ? 2 * cap : 64) * DET_LEN * sizeof *d);
            double *row = d + (size_t)n++ * DET_LEN;
            float c[3 * EVAL_COCO_NKP];
            eval_person_to_coco(&ppl[p], c);
            row[0] = i;
            row[1] = ppl[p].score;
            for (int q = 0; q < 3 * EVAL_COCO_NKP; q++)
                row[2 + q] = (double)(long long)(c[q] * 100.0 + (c[q] < 0 ? -0.5 : 0.5)) / 100.0;
        }
        free(ppl);
        dataio_image_free(&img);
    }
    *out = d;
    return n;
}

typedef struct { long img, pos; } det_key;

static int cmp_key(const void *a, const void *b)
{
    const det_key *x = a, *y = b;
    if (x->img != y->img) return (x->img > y->img) - (x->img < y->img);
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* All ranks' detections on every rank. Images are dealt round-robin, so the
 * gathered rows are put back in image (file) order, keeping a person's place
 * within its image: the order eval_predict_coco writes them in. */
static long gather(trainer_val *v, double **dets, long n)
{
    if (v->world == 1) return n;
    double *counts = core_calloc((size_t)v->world, sizeof *counts);
    counts[v->rank] = (double)n;
    comm_allreduce_doubles(counts, v->world, COMM_SUM);
    long total = 0, before = 0;
    for (int r = 0; r < v->world; r++) {
        if (r < v->rank) before += (long)counts[r];
        total += (long)counts[r];
    }
    free(counts);
    CHECK(total * DET_LEN < 2147483647L, "validation: %ld detections are too many to gather", total);
    size_t rows = (size_t)(total ? total : 1);
    /* x + 0 is exact, so a sum over zero-filled slots moves the values bit for bit */
    double *all = core_calloc(rows * DET_LEN, sizeof *all);
    if (n) memcpy(all + (size_t)before * DET_LEN, *dets, (size_t)n * DET_LEN * sizeof *all);
    if (total) comm_allreduce_doubles(all, (int)(total * DET_LEN), COMM_SUM);
    free(*dets);
    det_key *key = core_malloc(rows * sizeof *key);
    for (long j = 0; j < total; j++) key[j] = (det_key){(long)all[(size_t)j * DET_LEN], j};
    qsort(key, (size_t)total, sizeof *key, cmp_key);
    double *sorted = core_malloc(rows * DET_LEN * sizeof *sorted);
    for (long j = 0; j < total; j++)
        memcpy(sorted + (size_t)j * DET_LEN, all + (size_t)key[j].pos * DET_LEN, DET_LEN * sizeof *all);
    free(key);
    free(all);
    *dets = sorted;
    return total;
}

/* RUNDIR/val-results.json: the latest validation's detections in the COCO
 * results format `sspose eval --out` writes, for a look at what scored. */
static void write_results(const trainer_val *v, const double *dets, long n)
{
    cJSON *arr = cJSON_CreateArray();
    for (long j = 0; j < n; j++) {
        const double *row = dets + (size_t)j * DET_LEN;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "image_id", (double)v->images.images[(int)row[0]].id);
        cJSON_AddNumberToObject(o, "category_id", 1);
        cJSON_AddItemToObject(o, "keypoints", cJSON_CreateDoubleArray(row + 2, 3 * EVAL_COCO_NKP));
        cJSON_AddNumberToObject(o, "score", row[1]);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_PrintUnformatted(arr);
    CHECK(text, "validation: cannot format the results");
    char path[4200];
    snprintf(path, sizeof path, "%s/val-results.json", v->rundir);
    trainer_write_text_atomic(path, text);
    free(text);
    cJSON_Delete(arr);
}

int trainer_val_due(const trainer_val *v, long step, int last)
{
    return v && (step % v->cfg.train.val_every == 0 || last);
}

const trainer_val_result *trainer_val_step(trainer_val *v, model_net *net, long step)
{
    CHECK(v, "trainer_val_step without validation (train.val_every = 0)");
    double t0 = now_s();
    core_backend *be = model_backend(net);
    be->copy(be, model_params(v->net), model_params(net), model_num_floats(net));
    be->sync(be);
    double *dets;
    long n = predict_share(v, &dets);
    n = gather(v, &dets, n);
    trainer_val_result *res = &v->res;
    memset(res, 0, sizeof *res);
    if (v->rank == 0) {
        eval_coco_dets dd;
        memset(&dd, 0, sizeof dd);
        for (long j = 0; j < n; j++) {
            const double *row = dets + (size_t)j * DET_LEN;
            eval_coco_dets_add(&dd, (long long)v->images.images[(int)row[0]].id, 1, row + 2, row[1]);
        }
        write_results(v, dets, n);
        eval_coco_summary sum;
        eval_coco_evaluate(&v->gt, &dd, &sum);
        eval_coco_dets_free(&dd);
        res->ap = sum.stats[0];
        res->ap50 = sum.stats[1];
        res->ap75 = sum.stats[2];
        res->ar = sum.stats[5];
    }
    free(dets);
    res->step = step;
    res->images = v->images.nimages;
    comm_bcast_bytes(res, sizeof *res, 0);
    res->improved = res->ap > v->best_ap;
    if (res->improved) v->best_ap = res->ap;
    res->time_s = now_s() - t0;
    if (v->rank == 0)
        core_info("validation at step %ld: AP %.4f  AP50 %.4f  AP75 %.4f  AR %.4f  (%d images, %.1f s)%s", step, res->ap,
                  res->ap50, res->ap75, res->ar, res->images, res->time_s, res->improved ? "  best so far" : "");
    return res;
}

/* Copies src to dst byte for byte; dies with one line on failure. */
static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    CHECK(in, "cannot read '%s' for ckpt-best.h5: %s", src, strerror(errno));
    FILE *out = fopen(dst, "wb");
    CHECK(out, "cannot write '%s': %s", dst, strerror(errno));
    char buf[1 << 16];
    size_t got;
    int ok = 1;
    while (ok && (got = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, got, out) == got;
    ok = ok && !ferror(in);
    fclose(in);
    ok = (fclose(out) == 0) && ok;
    if (!ok) unlink(dst);
    CHECK(ok, "cannot copy '%s' to '%s': %s", src, dst, strerror(errno));
}

void trainer_val_keep_best(trainer_val *v, const trainer_val_result *res)
{
    if (!v || !res || !res->improved || v->rank != 0) return;
    char src[4200], dst[4200], tmp[4300];
    trainer_ckpt_path(v->rundir, res->step, src, sizeof src);
    trainer_val_best_path(v->rundir, dst, sizeof dst);
    /* named like the checkpoint writer's temporaries, so a killed copy is cleaned on resume */
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", dst, (int)getpid());
    copy_file(src, tmp);
    core_h5_lock();
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
    H5_CHECK(f, "cannot open '%s' to mark it as the best checkpoint", tmp);
    core_h5_attr_f64(f, "val_ap", res->ap);
    core_h5_attr_f64(f, "val_ap50", res->ap50);
    core_h5_attr_f64(f, "val_ar", res->ar);
    core_h5_attr_i64(f, "val_step", res->step);
    core_h5_unlock();
    core_h5_commit(f, tmp, dst);
}
