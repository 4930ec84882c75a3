#include "eval/predict.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/progress.h"
#include "dataio/coco.h"
#include "dataio/image.h"

int eval_predict_image(const uint8_t *rgb, int h, int w, const core_config *cfg, eval_forward_fn fn, void *ctx,
                       eval_person **out)
{
    eval_tta_opts o = {cfg->eval.scales, cfg->eval.nscales, cfg->eval.flip, cfg->eval.base_size, cfg->model.stride,
                       cfg->model.offsets, cfg->model.input_norm};
    eval_decode_params dp;
    eval_decode_params_from_config(cfg, &dp);
    eval_image_maps maps;
    eval_tta(rgb, h, w, &o, fn, ctx, &maps);
    eval_maps view = eval_image_maps_view(&maps);
    int n = eval_decode(&view, &dp, out);
    eval_image_maps_free(&maps);
    return n;
}

static void add_people(cJSON *arr, long long image_id, const eval_person *people, int n)
{
    for (int p = 0; p < n; p++) {
        float c[3 * SKEL_NUM_COCO];
        double d[3 * SKEL_NUM_COCO];
        eval_person_to_coco(&people[p], c);
        /* two decimals: sub-pixel positions survive, files stay small */
        for (int q = 0; q < 3 * SKEL_NUM_COCO; q++) d[q] = (double)(long long)(c[q] * 100.0 + (c[q] < 0 ? -0.5 : 0.5)) / 100.0;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "image_id", (double)image_id);
        cJSON_AddNumberToObject(r, "category_id", 1);
        cJSON_AddItemToObject(r, "keypoints", cJSON_CreateDoubleArray(d, 3 * SKEL_NUM_COCO));
        cJSON_AddNumberToObject(r, "score", people[p].score);
        cJSON_AddItemToArray(arr, r);
    }
}

/* Writes the JSON text to path through a temporary file and a rename. */
static void write_json_atomic(const char *path, cJSON *root)
{
    char *txt = cJSON_PrintUnformatted(root);
    CHECK(txt, "cannot serialise the results for %s", path);
    size_t len = strlen(path) + 24;
    char *tmp = core_malloc(len);
    snprintf(tmp, len, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    CHECK(f, "cannot write %s: %s", path, strerror(errno));
    int ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (!ok) {
        unlink(tmp);
        CORE_DIE("cannot write %s: %s", path, strerror(errno));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        CORE_DIE("cannot write %s: %s", path, strerror(e));
    }
    free(tmp);
    free(txt);
}

void eval_write_people_json(const char *out_json, long long image_id, const eval_person *people, int n)
{
    cJSON *arr = cJSON_CreateArray();
    add_people(arr, image_id, people, n);
    write_json_atomic(out_json, arr);
    cJSON_Delete(arr);
}

long eval_predict_coco(const char *gt_json, const char *images_dir, const core_config *cfg, eval_forward_fn fn,
                       void *ctx, const char *out_json)
{
    dataio_coco gt;
    dataio_skips skips = {{0}, 3};
    dataio_coco_load(gt_json, &gt, &skips);
    CHECK(gt.nimages > 0, "%s: no images to run inference on", gt_json);
    cJSON *arr = cJSON_CreateArray();
    long people = 0;
    core_progress pr;
    core_progress_start(&pr, "inference", "img", gt.nimages, stderr, 10);
    for (int i = 0; i < gt.nimages; i++) {
        const dataio_coco_image *im = &gt.images[i];
        size_t len = strlen(images_dir) + strlen(im->file_name) + 2;
        char *path = core_malloc(len);
        snprintf(path, len, "%s/%s", images_dir, im->file_name);
        dataio_image img;
        char err[256];
        if (dataio_image_load(path, &img, err, sizeof err) != 0) CORE_DIE("image %s: %s", path, err);
        /* results are in the annotation's pixel frame: a resized copy would be scored wrongly */
        CHECK(img.width == im->width && img.height == im->height,
              "image %s is %dx%d but %s says %dx%d", path, img.width, img.height, gt_json, im->width, im->height);
        eval_person *ppl;
        int n = eval_predict_image(img.rgb, img.height, img.width, cfg, fn, ctx, &ppl);
        add_people(arr, (long long)im->id, ppl, n);
        people += n;
        free(ppl);
        dataio_image_free(&img);
        free(path);
        core_progress_update(&pr, i + 1);
    }
    core_progress_finish(&pr);
    write_json_atomic(out_json, arr);
    cJSON_Delete(arr);
    dataio_coco_free(&gt);
    return people;
}
