/* Oracle decoding: ground-truth target maps (SPEC section 2) of real COCO
 * annotations or of synthetic people are fed to the decoder, and the people
 * come back. Writes one COCO results file per (stride, variant) and prints
 *   "oracle SET fd=N VARIANT mean_err=E median_err=M found=F/G people=P"
 * lines (localisation error in original-image pixels over the GT's labelled
 * COCO keypoints). tests/test_decode_oracle.py scores the files with
 * pycocotools.
 *
 *   tool_decode_oracle real ANN.json OUTDIR
 *   tool_decode_oracle synth OUTDIR        (also writes OUTDIR/synth_gt.json)
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

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = core_malloc((size_t)n + 1);
    CHECK(fread(s, 1, (size_t)n, f) == (size_t)n, "cannot read %s", path);
    s[n] = 0;
    fclose(f);
    return s;
}

static void coco17_to_op18(const double *c, float kp[18][3])
{
    for (int k = 0; k < 18; k++) {
        int ci = skel_from_coco[k];
        if (ci >= 0) {
            kp[k][0] = (float)c[3 * ci];
            kp[k][1] = (float)c[3 * ci + 1];
            kp[k][2] = c[3 * ci + 2] > 0 ? 1.0f : 0.0f;
        }
    }
    /* neck: mean of the shoulders (COCO 5 and 6), labelled when both are */
    int ok = c[3 * 5 + 2] > 0 && c[3 * 6 + 2] > 0;
    kp[1][0] = ok ? (float)((c[15] + c[18]) / 2) : 0;
    kp[1][1] = ok ? (float)((c[16] + c[19]) / 2) : 0;
    kp[1][2] = ok ? 1.0f : 0.0f;
}

static int load_real(const char *path, image_gt **out)
{
    char *text = read_text(path);
    cJSON *root = cJSON_Parse(text);
    CHECK(root, "%s: malformed JSON", path);
    cJSON *imgs = cJSON_GetObjectItem(root, "images"), *anns = cJSON_GetObjectItem(root, "annotations");
    int n = cJSON_GetArraySize(imgs);
    image_gt *g = core_calloc((size_t)n, sizeof *g);
    for (int i = 0; i < n; i++) {
        cJSON *im = cJSON_GetArrayItem(imgs, i);
        g[i].id = (long)cJSON_GetObjectItem(im, "id")->valuedouble;
        g[i].w = cJSON_GetObjectItem(im, "width")->valueint;
        g[i].h = cJSON_GetObjectItem(im, "height")->valueint;
    }
    cJSON *a;
    cJSON_ArrayForEach(a, anns)
    {
        long id = (long)cJSON_GetObjectItem(a, "image_id")->valuedouble;
        if (cJSON_GetObjectItem(a, "num_keypoints")->valueint <= 0) continue;
        for (int i = 0; i < n; i++) {
            if (g[i].id != id || g[i].np >= MAXP) continue;
            double c[51];
            cJSON *kp = cJSON_GetObjectItem(a, "keypoints");
            for (int q = 0; q < 51; q++) c[q] = cJSON_GetArrayItem(kp, q)->valuedouble;
            coco17_to_op18(c, g[i].kp[g[i].np++]);
        }
    }
    cJSON_Delete(root);
    free(text);
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
    paint_maps pm;
    int have;
} oracle_net;

static void oracle_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out)
{
    oracle_net *o = ctx;
    if (o->have) paint_free(&o->pm);
    paint_init(&o->pm, H / o->fd, W / o->fd, o->fd);
    o->have = 1;
    for (int p = 0; p < o->img->np; p++) {
        float kp[18][3];
        for (int k = 0; k < 18; k++) {
            const float *src = o->img->kp[p][pass->flipped ? skel_kp_mirror[k] : k];
            double X = (src[0] + 0.5) * pass->sx - 0.5, Y = (src[1] + 0.5) * pass->sy - 0.5;
            if (pass->flipped) X = pass->content_w - 1 - X;
            kp[k][0] = (float)X, kp[k][1] = (float)Y, kp[k][2] = src[2];
        }
        paint_person(&o->pm, kp, g_sigma);
    }
    paint_background(&o->pm);
    eval_grid g = {o->pm.h, o->pm.w, o->fd, o->pm.heat, o->pm.paf, o->pm.offset};
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
    core_config cfg;
    core_config_defaults(&cfg);
    eval_decode_params prm;
    eval_decode_params_from_config(&cfg, &prm);
    for (int fd = 8; fd <= 16; fd += 8)
        for (int v = 0; v < 5; v++) {
            cJSON *res = cJSON_CreateArray();
            err_acc acc = {0};
            int people = 0;
            for (int i = 0; i < nimg; i++) {
                const image_gt *img = &imgs[i];
                oracle_net net = {img, fd, {0}, 0};
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
                                       fd, v >= 3};
                    uint8_t *rgb = core_calloc((size_t)img->w * img->h * 3, 1);
                    eval_image_maps im;
                    eval_tta(rgb, img->h, img->w, &o, oracle_forward, &net, &im);
                    eval_maps m = eval_image_maps_view(&im);
                    np = eval_decode(&m, &prm, &ppl);
                    eval_image_maps_free(&im);
                    free(rgb);
                }
                if (net.have) paint_free(&net.pm);
                match_errors(img, ppl, np, &acc);
                add_results(res, img->id, ppl, np);
                people += np;
                free(ppl);
            }
            qsort(acc.err, acc.n, sizeof(double), cmp_d);
            double mean = 0;
            for (int q = 0; q < acc.n; q++) mean += acc.err[q];
            mean = acc.n ? mean / acc.n : NAN;
            printf("oracle %s fd=%d %s mean_err=%.3f median_err=%.3f found=%d/%d people=%d\n", set, fd, VARIANTS[v],
                   mean, acc.n ? acc.err[acc.n / 2] : NAN, acc.n, acc.gt_kp, people);
            char path[4096];
            snprintf(path, sizeof path, "%s/%s_fd%d_%s.json", outdir, set, fd, VARIANTS[v]);
            char *txt = cJSON_PrintUnformatted(res);
            FILE *f = fopen(path, "w");
            CHECK(f && fputs(txt, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
            free(txt);
            cJSON_Delete(res);
            free(acc.err);
        }
    free(imgs);
    return 0;
}
