/* Oracle decoding: ground-truth target maps (SPEC section 2, computed by
 * dataio/targets.h) of real COCO annotations (read by dataio/coco.h) or of
 * synthetic people are fed to the decoder, and the people come back. Writes
 * one COCO results file per (stride, variant) and prints
 *   "oracle SET fd=N VARIANT mean_err=E median_err=M found=F/G people=P ap=A"
 * lines (localisation error in original-image pixels over the GT's labelled
 * COCO keypoints; ap from eval/cocoeval.h). tests/test_decode_oracle.py
 * scores the files again with pycocotools.
 *
 *   tool_decode_oracle real ANN.json OUTDIR [SIGMA [FD]]
 *   tool_decode_oracle synth OUTDIR [SIGMA [FD]]   (also writes OUTDIR/synth_gt.json)
 * SIGMA defaults to SPEC's 7; FD (8 or 16) limits the run to one stride.
 *
 * Variants: grid_off (network grid with offsets), grid_cell (grid, cell
 * centres), up (maps upsampled to the image, OpenPose's way, no offsets),
 * vote (upsampled maps plus offset votes, eval/testtime.h), vote_tta (votes,
 * scales 0.75,1,1.25 and flip). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
#include "core/skeleton.h"
#include "dataio/coco.h"
#include "dataio/targets.h"
#include "eval/cocoeval.h"
#include "eval/decode.h"
#include "eval/testtime.h"
#include "tests/test_decode_paint.h"

#define MAXP 64

typedef struct {
    long id;
    int w, h;
    int np;
    float kp[MAXP][18][3]; /* OpenPose-18, image pixels, v > 0 labelled */
} image_gt;

static double g_sigma = 7;

static int load_real(const char *path, image_gt **out)
{
    dataio_coco c;
    dataio_skips skips = {{0}, 3};
    dataio_coco_load(path, &c, &skips);
    image_gt *g = core_calloc((size_t)c.nimages, sizeof *g);
    for (int i = 0; i < c.nimages; i++) {
        const dataio_coco_image *im = &c.images[i];
        g[i].id = (long)im->id;
        g[i].w = im->width;
        g[i].h = im->height;
        for (int a = 0; a < im->nanns && g[i].np < MAXP; a++) {
            if (im->anns[a].iscrowd || im->anns[a].num_keypoints <= 0) continue;
            memcpy(g[i].kp[g[i].np++], im->anns[a].kps, sizeof g[i].kp[0]);
        }
    }
    int n = c.nimages;
    dataio_coco_free(&c);
    *out = g;
    return n;
}

/* Synthetic scenes: 640x480, four people in a row, random height, lean and
 * missing keypoints; written as a COCO keypoint GT file. */
static int make_synth(const char *outdir, image_gt **out)
{
    const int n = 4;
    image_gt *g = core_calloc(n, sizeof *g);
    uint32_t s = 7;
#define RND() ((s = s * 1664525u + 1013904223u) >> 8) / 16777216.0
    cJSON *root = cJSON_CreateObject(), *imgs = cJSON_AddArrayToObject(root, "images"),
          *anns = cJSON_AddArrayToObject(root, "annotations"), *cats = cJSON_AddArrayToObject(root, "categories");
    cJSON *cat = cJSON_CreateObject();
    cJSON_AddNumberToObject(cat, "id", 1);
    cJSON_AddStringToObject(cat, "name", "person");
    cJSON_AddItemToArray(cats, cat);
    int ann_id = 1;
    for (int i = 0; i < n; i++) {
        g[i].id = 1000 + i;
        g[i].w = 640;
        g[i].h = 480;
        cJSON *im = cJSON_CreateObject();
        cJSON_AddNumberToObject(im, "id", (double)g[i].id);
        cJSON_AddNumberToObject(im, "width", 640);
        cJSON_AddNumberToObject(im, "height", 480);
        char fn[32];
        snprintf(fn, sizeof fn, "synth_%d.jpg", i);
        cJSON_AddStringToObject(im, "file_name", fn);
        cJSON_AddItemToArray(imgs, im);
        for (int p = 0; p < 4; p++) {
            float (*kp)[3] = g[i].kp[g[i].np++];
            double hgt = 120 + 260 * RND(), cx = 80 + p * 160 + 20 * (RND() - 0.5), cy = 240 + 60 * (RND() - 0.5);
            paint_stick_person(kp, cx, cy, hgt);
            double th = (RND() - 0.5) * 0.6, ct = cos(th), st = sin(th);
            for (int k = 0; k < 18; k++) {
                double dx = kp[k][0] - cx, dy = kp[k][1] - cy;
                kp[k][0] = (float)(cx + ct * dx - st * dy);
                kp[k][1] = (float)(cy + st * dx + ct * dy);
                /* unlabelled limb ends (wrists, ankles, eyes, ears): a missing middle joint
                 * would cut a keypoint off every limb, which no bottom-up decoder recovers */
                int leaf = k == 4 || k == 7 || k == 10 || k == 13 || k >= 14;
                if (leaf && RND() < 0.15) kp[k][2] = 0;
                if (kp[k][0] < 0 || kp[k][1] < 0 || kp[k][0] > 639 || kp[k][1] > 479) kp[k][2] = 0;
            }
            double c[51], x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
            int nk = 0;
            for (int q = 0; q < 17; q++) {
                const float *k = kp[skel_to_coco[q]];
                c[3 * q] = k[2] > 0 ? k[0] : 0;
                c[3 * q + 1] = k[2] > 0 ? k[1] : 0;
                c[3 * q + 2] = k[2] > 0 ? 2 : 0;
                if (k[2] > 0) {
                    nk++;
                    x0 = fmin(x0, k[0]), x1 = fmax(x1, k[0]), y0 = fmin(y0, k[1]), y1 = fmax(y1, k[1]);
                }
            }
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", ann_id++);
            cJSON_AddNumberToObject(a, "image_id", (double)g[i].id);
            cJSON_AddNumberToObject(a, "category_id", 1);
            cJSON_AddNumberToObject(a, "iscrowd", 0);
            cJSON_AddNumberToObject(a, "num_keypoints", nk);
            /* segment area of a person ~ half the keypoint box, padded */
            double bw = x1 - x0 + 20, bh = y1 - y0 + 20;
            cJSON_AddNumberToObject(a, "area", 0.5 * bw * bh);
            double bb[4] = {x0 - 10, y0 - 10, bw, bh};
            cJSON_AddItemToObject(a, "bbox", cJSON_CreateDoubleArray(bb, 4));
            cJSON_AddItemToObject(a, "keypoints", cJSON_CreateDoubleArray(c, 51));
            cJSON_AddItemToArray(anns, a);
        }
    }
#undef RND
    char path[4096];
    snprintf(path, sizeof path, "%s/synth_gt.json", outdir);
    char *txt = cJSON_PrintUnformatted(root);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(txt, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
    free(txt);
    cJSON_Delete(root);
    *out = g;
    return n;
}

/* The fake network: targets of the image's people as this pass sees them. */
typedef struct {
    const image_gt *img;
    int fd;
    float *heat, *paf, *offset;
} oracle_net;

static void oracle_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out)
{
    oracle_net *o = ctx;
    const int np = o->img->np, gh = H / o->fd, gw = W / o->fd;
    float *kps = core_malloc((size_t)(np ? np : 1) * 18 * 3 * sizeof *kps);
    for (int p = 0; p < np; p++)
        for (int k = 0; k < 18; k++) {
            const float *src = o->img->kp[p][pass->flipped ? skel_kp_mirror[k] : k];
            double X = (src[0] + 0.5) * pass->sx - 0.5, Y = (src[1] + 0.5) * pass->sy - 0.5;
            if (pass->flipped) X = pass->content_w - 1 - X;
            float *d = kps + (p * 18 + k) * 3;
            d[0] = (float)X, d[1] = (float)Y, d[2] = src[2];
        }
    free(o->heat);
    free(o->paf);
    free(o->offset);
    const size_t plane = (size_t)gh * gw;
    o->heat = core_malloc(DATAIO_HEAT_CH * plane * sizeof(float));
    o->paf = core_malloc(DATAIO_PAF_CH * plane * sizeof(float));
    o->offset = core_malloc(DATAIO_OFF_CH * plane * sizeof(float));
    dataio_target_params tp = {o->fd, gh, gw, g_sigma, 1.0};
    dataio_targets_compute(&tp, kps, np, o->heat, o->paf, o->offset, NULL);
    free(kps);
    eval_grid g = {gh, gw, o->fd, o->heat, o->paf, o->offset};
    *out = g;
}

/* Localisation error: GT people matched greedily to decoded people by mean distance. */
typedef struct {
    double *err;
    int n, cap, gt_kp;
} err_acc;

static void match_errors(const image_gt *img, const eval_person *ppl, int np, err_acc *acc)
{
    int used[256] = {0};
    int done[MAXP] = {0};
    for (int round = 0; round < img->np; round++) {
        double best = 1e30;
        int bg = -1, bp = -1;
        for (int g = 0; g < img->np; g++) {
            if (done[g]) continue;
            for (int p = 0; p < np && p < 256; p++) {
                if (used[p]) continue;
                double s = 0;
                int c = 0;
                for (int k = 0; k < 18; k++)
                    if (img->kp[g][k][2] > 0 && ppl[p].kp[k][2] > 0) {
                        s += hypot(img->kp[g][k][0] - ppl[p].kp[k][0], img->kp[g][k][1] - ppl[p].kp[k][1]);
                        c++;
                    }
                if (c && s / c < best) best = s / c, bg = g, bp = p;
            }
        }
        if (bg < 0) break;
        done[bg] = 1;
        used[bp] = 1;
        for (int q = 0; q < 17; q++) {
            int k = skel_to_coco[q];
            if (img->kp[bg][k][2] <= 0 || ppl[bp].kp[k][2] <= 0) continue;
            if (acc->n == acc->cap) acc->err = core_realloc(acc->err, (acc->cap = acc->cap * 2 + 64) * sizeof(double));
            acc->err[acc->n++] = hypot(img->kp[bg][k][0] - ppl[bp].kp[k][0], img->kp[bg][k][1] - ppl[bp].kp[k][1]);
        }
    }
    for (int g = 0; g < img->np; g++)
        for (int q = 0; q < 17; q++) acc->gt_kp += img->kp[g][skel_to_coco[q]][2] > 0;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void add_results(cJSON *arr, long image_id, const eval_person *ppl, int np)
{
    for (int p = 0; p < np; p++) {
        float c[51];
        double d[51];
        eval_person_to_coco(&ppl[p], c);
        for (int q = 0; q < 51; q++) d[q] = c[q];
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "image_id", (double)image_id);
        cJSON_AddNumberToObject(r, "category_id", 1);
        cJSON_AddItemToObject(r, "keypoints", cJSON_CreateDoubleArray(d, 51));
        cJSON_AddNumberToObject(r, "score", ppl[p].score);
        cJSON_AddItemToArray(arr, r);
    }
}

static const char *VARIANTS[] = {"grid_off", "grid_cell", "up", "vote", "vote_tta"};

int main(int argc, char **argv)
{
    CHECK(argc >= 3, "usage: tool_decode_oracle real ANN.json OUTDIR | synth OUTDIR [sigma]");
    image_gt *imgs;
    int nimg;
    const char *set = argv[1], *outdir;
    int argi;
    if (!strcmp(set, "real")) {
        CHECK(argc >= 4, "usage: tool_decode_oracle real ANN.json OUTDIR [sigma]");
        outdir = argv[3];
        nimg = load_real(argv[2], &imgs);
        argi = 4;
    } else {
        outdir = argv[2];
        nimg = make_synth(outdir, &imgs);
        argi = 3;
    }
    if (argc > argi) g_sigma = atof(argv[argi]);
    int fd_lo = 8, fd_hi = 16;
    if (argc > argi + 1) fd_lo = fd_hi = atoi(argv[argi + 1]);
    CHECK(g_sigma > 0 && (fd_lo == 8 || fd_lo == 16), "bad sigma or stride");
    char gt_path[4096];
    if (!strcmp(set, "real")) snprintf(gt_path, sizeof gt_path, "%s", argv[2]);
    else snprintf(gt_path, sizeof gt_path, "%s/synth_gt.json", outdir);
    eval_coco_gt gt;
    eval_coco_load_gt(gt_path, &gt);
    core_config cfg;
    core_config_defaults(&cfg);
    eval_decode_params prm;
    eval_decode_params_from_config(&cfg, &prm);
    for (int fd = fd_lo; fd <= fd_hi; fd += 8)
        for (int v = 0; v < 5; v++) {
            cJSON *res = cJSON_CreateArray();
            err_acc acc = {0};
            int people = 0;
            for (int i = 0; i < nimg; i++) {
                const image_gt *img = &imgs[i];
                oracle_net net = {img, fd, NULL, NULL, NULL};
                eval_person *ppl;
                int np;
                if (v <= 1) {
                    /* the network's grid at scale 1: the image padded to the stride */
                    int H = (img->h + fd - 1) / fd * fd, W = (img->w + fd - 1) / fd * fd;
                    eval_pass pass = {1, 1, img->w, img->h, 0};
                    eval_grid g;
                    oracle_forward(&net, NULL, H, W, &pass, &g);
                    if (v == 1) g.offset = NULL;
                    eval_maps m = eval_grid_view(&g, &pass, img->h);
                    np = eval_decode(&m, &prm, &ppl);
                } else {
                    static const double one[1] = {1}, three[3] = {0.75, 1, 1.25};
                    eval_tta_opts o = {v == 4 ? three : one, v == 4 ? 3 : 1, v == 4, img->h < img->w ? img->h : img->w,
                                       fd, v >= 3, CORE_NORM_CENTERED};
                    uint8_t *rgb = core_calloc((size_t)img->w * img->h * 3, 1);
                    eval_image_maps im;
                    eval_tta(rgb, img->h, img->w, &o, oracle_forward, &net, &im);
                    eval_maps m = eval_image_maps_view(&im);
                    np = eval_decode(&m, &prm, &ppl);
                    eval_image_maps_free(&im);
                    free(rgb);
                }
                free(net.heat);
                free(net.paf);
                free(net.offset);
                match_errors(img, ppl, np, &acc);
                add_results(res, img->id, ppl, np);
                people += np;
                free(ppl);
            }
            qsort(acc.err, acc.n, sizeof(double), cmp_d);
            double mean = 0;
            for (int q = 0; q < acc.n; q++) mean += acc.err[q];
            mean = acc.n ? mean / acc.n : NAN;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_fd%d_%s.json", outdir, set, fd, VARIANTS[v]);
            char *txt = cJSON_PrintUnformatted(res);
            FILE *f = fopen(path, "w");
            CHECK(f && fputs(txt, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
            free(txt);
            eval_coco_dets dets;
            eval_coco_summary sum;
            eval_coco_load_results(path, &gt, &dets);
            eval_coco_evaluate(&gt, &dets, &sum);
            eval_coco_dets_free(&dets);
            printf("oracle %s fd=%d %s mean_err=%.3f median_err=%.3f found=%d/%d people=%d ap=%.4f\n", set, fd,
                   VARIANTS[v], mean, acc.n ? acc.err[acc.n / 2] : NAN, acc.n, acc.gt_kp, people, sum.stats[0]);
            cJSON_Delete(res);
            free(acc.err);
        }
    eval_coco_gt_free(&gt);
    free(imgs);
    return 0;
}
