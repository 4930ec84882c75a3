/* The inference pipeline over a COCO file (eval/predict.h) with a map source
 * standing in for the network: real JPEG files are read and decoded, every
 * pass's maps are the SPEC targets of the image's people as that pass sees
 * them (through dataio/targets.h), and the results file must score AP 1 with
 * our evaluator. Each image has its own size, which is how the stand-in knows
 * which image a pass comes from. */
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <sys/stat.h>

#include "core/check.h"
#include "dataio/image.h"
#include "dataio/targets.h"
#include "eval/cocoeval.h"
#include "eval/predict.h"
#include "tests/test_decode_paint.h"

#define NIMG 3
static const int IMG_W[NIMG] = {320, 304, 256}, IMG_H[NIMG] = {240, 200, 256};
static float g_kp[NIMG][2][18][3]; /* two people per image */

typedef struct {
    float *heat, *paf, *offset;
    int calls;
} stand_in;

static void stand_in_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out)
{
    stand_in *s = ctx;
    const int fd = 8, gh = H / fd, gw = W / fd;
    int which = -1, matches = 0;
    for (int i = 0; i < NIMG; i++)
        if (lround(IMG_W[i] * pass->sx) == pass->content_w && lround(IMG_H[i] * pass->sy) == pass->content_h)
            which = i, matches++;
    if (matches != 1) CORE_DIE("stand-in network: %d images of size %dx%d", matches, pass->content_w, pass->content_h);
    float kps[2 * 18 * 3];
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 18; k++) {
            const float *src = g_kp[which][p][pass->flipped ? skel_kp_mirror[k] : k];
            double X = (src[0] + 0.5) * pass->sx - 0.5, Y = (src[1] + 0.5) * pass->sy - 0.5;
            if (pass->flipped) X = pass->content_w - 1 - X;
            kps[(p * 18 + k) * 3] = (float)X;
            kps[(p * 18 + k) * 3 + 1] = (float)Y;
            kps[(p * 18 + k) * 3 + 2] = src[2];
        }
    free(s->heat);
    free(s->paf);
    free(s->offset);
    size_t plane = (size_t)gh * gw;
    s->heat = malloc(19 * plane * sizeof(float));
    s->paf = malloc(38 * plane * sizeof(float));
    s->offset = malloc(36 * plane * sizeof(float));
    dataio_target_params tp = {fd, gh, gw, 7.0, 1.0};
    dataio_targets_compute(&tp, kps, 2, s->heat, s->paf, s->offset, NULL);
    eval_grid g = {gh, gw, fd, s->heat, s->paf, s->offset};
    *out = g;
    s->calls++;
}

static char g_dir[1024], g_gt[1100];

/* JPEG images and a COCO ground-truth file with their people. */
static void make_dataset(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/images", t_tmpdir());
    mkdir(g_dir, 0755);
    cJSON *root = cJSON_CreateObject(), *imgs = cJSON_AddArrayToObject(root, "images"),
          *anns = cJSON_AddArrayToObject(root, "annotations"), *cats = cJSON_AddArrayToObject(root, "categories");
    cJSON *cat = cJSON_CreateObject();
    cJSON_AddNumberToObject(cat, "id", 1);
    cJSON_AddStringToObject(cat, "name", "person");
    cJSON_AddItemToArray(cats, cat);
    int aid = 1;
    for (int i = 0; i < NIMG; i++) {
        const int w = IMG_W[i], h = IMG_H[i];
        uint8_t *rgb = malloc((size_t)w * h * 3);
        for (int q = 0; q < w * h * 3; q++) rgb[q] = (uint8_t)(q * 37 + i);
        uint8_t *jpg;
        size_t len;
        char err[256], name[64], path[1200];
        if (dataio_jpeg_encode(rgb, w, h, 90, &jpg, &len, err, sizeof err) != 0) CORE_DIE("encode: %s", err);
        snprintf(name, sizeof name, "img%d.jpg", i);
        snprintf(path, sizeof path, "%s/%s", g_dir, name);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(jpg, 1, len, f) == len && fclose(f) == 0, "cannot write %s", path);
        free(jpg);
        free(rgb);
        cJSON *im = cJSON_CreateObject();
        cJSON_AddNumberToObject(im, "id", 10 + i);
        cJSON_AddStringToObject(im, "file_name", name);
        cJSON_AddNumberToObject(im, "width", w);
        cJSON_AddNumberToObject(im, "height", h);
        cJSON_AddItemToArray(imgs, im);
        for (int p = 0; p < 2; p++) {
            paint_stick_person(g_kp[i][p], w * (0.28 + 0.45 * p) + 3.3 * i, h * 0.5 + 1.7 * p, h * (0.75 - 0.1 * p));
            double c[51], x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
            for (int q = 0; q < 17; q++) {
                const float *k = g_kp[i][p][skel_to_coco[q]];
                c[3 * q] = k[0], c[3 * q + 1] = k[1], c[3 * q + 2] = 2;
                x0 = fmin(x0, k[0]), x1 = fmax(x1, k[0]), y0 = fmin(y0, k[1]), y1 = fmax(y1, k[1]);
            }
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", aid++);
            cJSON_AddNumberToObject(a, "image_id", 10 + i);
            cJSON_AddNumberToObject(a, "category_id", 1);
            cJSON_AddNumberToObject(a, "iscrowd", 0);
            cJSON_AddNumberToObject(a, "num_keypoints", 17);
            cJSON_AddNumberToObject(a, "area", 0.5 * (x1 - x0 + 20) * (y1 - y0 + 20));
            double bb[4] = {x0 - 10, y0 - 10, x1 - x0 + 20, y1 - y0 + 20};
            cJSON_AddItemToObject(a, "bbox", cJSON_CreateDoubleArray(bb, 4));
            cJSON_AddItemToObject(a, "keypoints", cJSON_CreateDoubleArray(c, 51));
            cJSON_AddItemToArray(anns, a);
        }
    }
    snprintf(g_gt, sizeof g_gt, "%s/gt.json", t_tmpdir());
    char *txt = cJSON_Print(root);
    FILE *f = fopen(g_gt, "w");
    CHECK(f && fputs(txt, f) >= 0 && fclose(f) == 0, "cannot write %s", g_gt);
    free(txt);
    cJSON_Delete(root);
}

static double score_file(const char *results, int *ndet)
{
    eval_coco_gt gt;
    eval_coco_dets dets;
    eval_coco_summary sum;
    eval_coco_load_gt(g_gt, &gt);
    eval_coco_load_results(results, &gt, &dets);
    eval_coco_evaluate(&gt, &dets, &sum);
    *ndet = dets.ndet;
    eval_coco_dets_free(&dets);
    eval_coco_gt_free(&gt);
    return sum.stats[0];
}

static void run_config(const char *name, const char *scales, int flip, double min_ap)
{
    core_config cfg;
    core_config_defaults(&cfg);
    char set[128];
    snprintf(set, sizeof set, "eval.scales=%s", scales);
    core_config_set(&cfg, set);
    cfg.eval.flip = flip;
    cfg.eval.base_size = 240;
    stand_in s = {0};
    char out[1200];
    snprintf(out, sizeof out, "%s/%s.json", t_tmpdir(), name);
    long n = eval_predict_coco(g_gt, g_dir, &cfg, stand_in_forward, &s, out);
    T_CHECKF(n == 2 * NIMG, "%s: %ld people, expected %d", name, n, 2 * NIMG);
    T_CHECK(s.calls == NIMG * cfg.eval.nscales * (flip ? 2 : 1));
    int ndet;
    double ap = score_file(out, &ndet);
    T_CHECKF(ap >= min_ap && ndet == 2 * NIMG, "%s: AP %.4f with %d results", name, ap, ndet);
    free(s.heat);
    free(s.paf);
    free(s.offset);
}

static void test_predict_coco_single_scale(void) { run_config("single", "1", 0, 0.999); }
static void test_predict_coco_multiscale_flip(void) { run_config("tta", "0.5,1,1.5", 1, 0.999); }

static void test_write_people_json(void)
{
    eval_person p[2];
    memset(p, 0, sizeof p);
    for (int k = 0; k < 18; k++) p[0].kp[k][0] = 10.25f + k, p[0].kp[k][1] = 20.5f, p[0].kp[k][2] = 0.75f;
    p[0].score = 1.5f;
    p[1].kp[0][0] = 3, p[1].kp[0][1] = 4, p[1].kp[0][2] = 0.5f;
    p[1].score = 0.25f;
    char path[1200];
    snprintf(path, sizeof path, "%s/people.json", t_tmpdir());
    eval_write_people_json(path, 42, p, 2);
    FILE *f = fopen(path, "r");
    T_CHECK(f != NULL);
    if (!f) return;
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *root = cJSON_Parse(buf);
    T_CHECK(cJSON_IsArray(root) && cJSON_GetArraySize(root) == 2);
    cJSON *r = cJSON_GetArrayItem(root, 0);
    cJSON *kp = cJSON_GetObjectItem(r, "keypoints");
    T_CHECK(cJSON_GetArraySize(kp) == 51);
    T_NEAR(cJSON_GetObjectItem(r, "image_id")->valuedouble, 42, 0, 0);
    T_NEAR(cJSON_GetObjectItem(r, "score")->valuedouble, 1.5, 0, 1e-6);
    /* COCO 1 (left eye) is OpenPose 15 */
    T_NEAR(cJSON_GetArrayItem(kp, 3)->valuedouble, 10.25 + 15, 0, 1e-6);
    T_NEAR(cJSON_GetArrayItem(kp, 5)->valuedouble, 0.75, 0, 1e-6);
    cJSON *kp1 = cJSON_GetObjectItem(cJSON_GetArrayItem(root, 1), "keypoints");
    T_NEAR(cJSON_GetArrayItem(kp1, 3)->valuedouble, 0, 0, 0); /* absent keypoints are 0,0,0 */
    T_NEAR(cJSON_GetArrayItem(kp1, 5)->valuedouble, 0, 0, 0);
    cJSON_Delete(root);
}

int main(void)
{
    core_set_quiet(1);
    make_dataset();
    T_RUN(test_predict_coco_single_scale);
    T_RUN(test_predict_coco_multiscale_flip);
    T_RUN(test_write_people_json);
    T_EXIT();
}
