#include "dataio/coco.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "dataio/image.h"

const char *const dataio_skip_names[DATAIO_SKIP_N] = {
    "malformed annotation",     "annotation of an unknown image", "not a person",
    "zero-size box",            "keypoints outside the image",    "malformed segmentation",
    "malformed image entry",    "image file missing",             "corrupt image",
    "image size differs from the JSON", "box outside the image"};

static pthread_mutex_t skip_mutex = PTHREAD_MUTEX_INITIALIZER;

void dataio_skip(dataio_skips *s, dataio_skip_reason why, const char *fmt, ...)
{
    pthread_mutex_lock(&skip_mutex);
    long n = ++s->count[why];
    int maxw = s->max_warnings > 0 ? s->max_warnings : 5;
    if (n <= maxw && fmt) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        core_warn("%s: %s%s", dataio_skip_names[why], msg, n == maxw ? " (further ones of this kind only counted)" : "");
    }
    pthread_mutex_unlock(&skip_mutex);
}

static int get_num(const cJSON *o, const char *key, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *out = v->valuedouble;
    return 0;
}

/* Integer ids must be exact in a double. */
static int get_id(const cJSON *o, const char *key, int64_t *out)
{
    double d;
    if (get_num(o, key, &d) || d != floor(d) || fabs(d) > 9007199254740992.0) return -1;
    *out = (int64_t)d;
    return 0;
}

static int parse_segm(const cJSON *sg, const dataio_coco_image *img, dataio_segm *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (cJSON_IsObject(sg)) {
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(sg, "size");
        const cJSON *counts = cJSON_GetObjectItemCaseSensitive(sg, "counts");
        if (!cJSON_IsArray(size) || cJSON_GetArraySize(size) != 2 || !cJSON_IsNumber(size->child) ||
            !cJSON_IsNumber(size->child->next)) {
            snprintf(err, errlen, "RLE without a [h, w] size");
            return -1;
        }
        /* compared as doubles: a huge size must not reach an int conversion */
        double hd = size->child->valuedouble, wd = size->child->next->valuedouble;
        if (hd != img->height || wd != img->width) {
            snprintf(err, errlen, "RLE size %gx%g differs from the image's %dx%d", hd, wd, img->height, img->width);
            return -1;
        }
        int h = img->height, w = img->width;
        if (cJSON_IsString(counts)) {
            if (dataio_rle_from_string(counts->valuestring, &out->counts, &out->ncounts, err, errlen)) return -1;
        } else if (cJSON_IsArray(counts)) {
            int n = cJSON_GetArraySize(counts);
            out->counts = core_malloc(sizeof(uint32_t) * (n ? n : 1));
            const cJSON *c;
            int i = 0;
            cJSON_ArrayForEach(c, counts)
            {
                if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 4294967295.0 ||
                    c->valuedouble != floor(c->valuedouble)) {
                    snprintf(err, errlen, "RLE count %d is not a non-negative integer", i);
                    dataio_segm_free(out);
                    return -1;
                }
                out->counts[i++] = (uint32_t)c->valuedouble;
            }
            out->ncounts = n;
        } else {
            snprintf(err, errlen, "RLE counts are neither a string nor a list");
            return -1;
        }
        if (dataio_rle_check(out->counts, out->ncounts, h, w, err, errlen)) {
            dataio_segm_free(out);
            return -1;
        }
        out->rle_h = h;
        out->rle_w = w;
        return 0;
    }
    if (!cJSON_IsArray(sg)) {
        snprintf(err, errlen, "segmentation is neither a polygon list nor an RLE");
        return -1;
    }
    int np = cJSON_GetArraySize(sg), total = 0;
    const cJSON *poly;
    cJSON_ArrayForEach(poly, sg)
    {
        int n = cJSON_GetArraySize(poly);
        if (!cJSON_IsArray(poly) || n % 2 || n < 6) {
            snprintf(err, errlen, "polygon is not a list of at least 3 x,y pairs");
            return -1;
        }
        total += n;
    }
    out->npoly = np;
    out->poly_len = core_malloc(sizeof(int) * (np ? np : 1));
    out->xy = core_malloc(sizeof(float) * (total ? total : 1));
    int pi = 0, at = 0;
    cJSON_ArrayForEach(poly, sg)
    {
        const cJSON *v;
        cJSON_ArrayForEach(v, poly)
        {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e7) {
                snprintf(err, errlen, "polygon coordinate is not a finite number");
                dataio_segm_free(out);
                return -1;
            }
            out->xy[at++] = (float)v->valuedouble;
        }
        out->poly_len[pi++] = cJSON_GetArraySize(poly) / 2;
    }
    return 0;
}

/* Fills one annotation; returns 0 when usable, else the skip reason + 1. */
static int parse_ann(const cJSON *a, const dataio_coco_image *img, dataio_coco_ann *out, dataio_skips *skips)
{
    char err[256];
    memset(out, 0, sizeof *out);
    double cat = 1, crowd = 0;
    if (get_id(a, "id", &out->id)) out->id = -1;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "category_id");
    if (c && (get_num(a, "category_id", &cat))) {
        dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %lld in image %lld: category_id is not a number",
                    (long long)out->id, (long long)img->id);
        return 1;
    }
    if (cat != 1) {
        dataio_skip(skips, DATAIO_SKIP_NOT_PERSON, NULL);
        return 1;
    }
    if (cJSON_GetObjectItemCaseSensitive(a, "iscrowd") && get_num(a, "iscrowd", &crowd)) {
        dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %lld in image %lld: iscrowd is not a number",
                    (long long)out->id, (long long)img->id);
        return 1;
    }
    out->iscrowd = crowd != 0;
    const cJSON *bb = cJSON_GetObjectItemCaseSensitive(a, "bbox");
    int ok = cJSON_IsArray(bb) && cJSON_GetArraySize(bb) == 4;
    for (int i = 0; ok && i < 4; i++) {
        const cJSON *v = cJSON_GetArrayItem(bb, i);
        ok = cJSON_IsNumber(v) && isfinite(v->valuedouble);
        if (ok) out->bbox[i] = v->valuedouble;
    }
    if (!ok || get_num(a, "area", &out->area)) {
        dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %lld in image %lld: bbox or area missing or not numbers",
                    (long long)out->id, (long long)img->id);
        return 1;
    }
    /* A box reaching far past the image (e.g. [0,0,1e30,1e30]) gives no usable
     * crop scale: the augmentation would be singular. COCO boxes lie inside. */
    {
        const double *b = out->bbox, W = img->width, H = img->height;
        if (b[0] < -W || b[1] < -H || b[0] + b[2] > 2 * W || b[1] + b[3] > 2 * H || fabs(out->area) > 4 * W * H) {
            dataio_skip(skips, DATAIO_SKIP_BAD_BOX, "annotation %lld in image %lld: box [%g, %g, %g, %g] in a %dx%d image",
                        (long long)out->id, (long long)img->id, b[0], b[1], b[2], b[3], img->width, img->height);
            return 1;
        }
    }
    /* keypoints: optional for crowd regions */
    const cJSON *kp = cJSON_GetObjectItemCaseSensitive(a, "keypoints");
    float coco[SKEL_NUM_COCO * 3] = {0};
    if (kp) {
        if (!cJSON_IsArray(kp) || cJSON_GetArraySize(kp) != SKEL_NUM_COCO * 3) {
            dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %lld in image %lld: keypoints is not a list of 51 numbers",
                        (long long)out->id, (long long)img->id);
            return 1;
        }
        int i = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, kp)
        {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e7) {
                dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %lld in image %lld: keypoint value %d is not a number",
                            (long long)out->id, (long long)img->id, i);
                return 1;
            }
            coco[i++] = (float)v->valuedouble;
        }
    }
    int outside = 0;
    for (int k = 0; k < SKEL_NUM_COCO; k++) {
        float *p = coco + 3 * k;
        int labelled = p[2] == 1 || p[2] == 2;
        /* COCO coordinates run over [0, w] x [0, h] (pixel edges); a pixel of slack
         * for annotation tools that round past the border */
        if (labelled && (p[0] < -1 || p[1] < -1 || p[0] > img->width + 1 || p[1] > img->height + 1)) {
            outside++;
            labelled = 0;
        }
        p[2] = labelled ? 1.0f : 0.0f;
        out->num_keypoints += labelled;
    }
    if (outside)
        dataio_skip(skips, DATAIO_SKIP_KP_OUTSIDE, "annotation %lld in image %lld: %d keypoints dropped",
                    (long long)out->id, (long long)img->id, outside);
    for (int k = 0; k < SKEL_NUM_KP; k++) {
        float *d = out->kps + 3 * k;
        int ci = skel_from_coco[k];
        if (ci >= 0) {
            memcpy(d, coco + 3 * ci, sizeof(float) * 3);
        } else {
            const float *l = coco + 3 * 5, *r = coco + 3 * 6; /* COCO shoulders */
            if (l[2] > 0 && r[2] > 0) d[0] = 0.5f * (l[0] + r[0]), d[1] = 0.5f * (l[1] + r[1]), d[2] = 1;
        }
    }
    if (!out->iscrowd && !(out->bbox[2] > 0 && out->bbox[3] > 0)) {
        dataio_skip(skips, DATAIO_SKIP_ZERO_BOX, "annotation %lld in image %lld: box %gx%g", (long long)out->id,
                    (long long)img->id, out->bbox[2], out->bbox[3]);
        if (out->num_keypoints > 0) return 1; /* no usable scale; a keypoint-less one still masks */
    }
    if (out->iscrowd || out->num_keypoints == 0) {
        const cJSON *sg = cJSON_GetObjectItemCaseSensitive(a, "segmentation");
        if (!sg || parse_segm(sg, img, &out->segm, err, sizeof err)) {
            dataio_skip(skips, DATAIO_SKIP_BAD_SEGM, "annotation %lld in image %lld: %s", (long long)out->id,
                        (long long)img->id, sg ? err : "no segmentation");
            return 1;
        }
        out->has_segm = 1;
    }
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
    return x < y ? -1 : x > y;
}

int dataio_coco_parse(const char *text, size_t len, dataio_coco *c, dataio_skips *skips, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        /* cJSON stops on the last character when the text simply ends */
        snprintf(err, errlen, "not valid JSON (parse error near byte %zu of %zu%s)", at, len,
                 at + 1 >= len ? ": truncated?" : "");
        return -1;
    }
    const cJSON *images = cJSON_GetObjectItemCaseSensitive(root, "images");
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(images) || !cJSON_IsArray(anns)) {
        snprintf(err, errlen, "not a COCO annotation file (needs 'images' and 'annotations' lists)");
        cJSON_Delete(root);
        return -1;
    }
    int ni = cJSON_GetArraySize(images);
    c->images = core_calloc(ni ? ni : 1, sizeof *c->images);
    /* (id, index) pairs sorted by id for the annotation -> image lookup */
    int64_t *byid = core_malloc(sizeof(int64_t) * 2 * (ni ? ni : 1));
    const cJSON *im;
    cJSON_ArrayForEach(im, images)
    {
        dataio_coco_image *d = &c->images[c->nimages];
        double w, h;
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(im, "file_name");
        if (get_id(im, "id", &d->id) || !cJSON_IsString(fn) || !fn->valuestring[0] || get_num(im, "width", &w) ||
            get_num(im, "height", &h) || w < 1 || h < 1 || w > 65535 || h > 65535 || w != floor(w) || h != floor(h)) {
            dataio_skip(skips, DATAIO_SKIP_MALFORMED_IMAGE, "image entry %d lacks id, file_name, width or height",
                        c->nimages);
            continue;
        }
        d->file_name = core_strdup(fn->valuestring);
        d->width = (int)w;
        d->height = (int)h;
        byid[2 * c->nimages] = d->id;
        byid[2 * c->nimages + 1] = c->nimages;
        c->nimages++;
    }
    qsort(byid, c->nimages, 2 * sizeof(int64_t), cmp_id);
    for (int i = 1; i < c->nimages; i++)
        if (byid[2 * i] == byid[2 * i - 2]) {
            snprintf(err, errlen, "image id %lld appears twice", (long long)byid[2 * i]);
            free(byid);
            cJSON_Delete(root);
            dataio_coco_free(c);
            return -1;
        }
    /* two passes: count per image, then fill in file order */
    int na = cJSON_GetArraySize(anns);
    int *owner = core_malloc(sizeof(int) * (na ? na : 1));
    int *cap = core_calloc(c->nimages ? c->nimages : 1, sizeof(int));
    int ai = 0;
    const cJSON *a;
    cJSON_ArrayForEach(a, anns)
    {
        int64_t iid;
        owner[ai] = -1;
        if (!cJSON_IsObject(a) || get_id(a, "image_id", &iid)) {
            dataio_skip(skips, DATAIO_SKIP_MALFORMED_ANN, "annotation %d has no numeric image_id", ai);
        } else {
            int64_t key[2] = {iid, 0};
            const int64_t *hit = bsearch(key, byid, c->nimages, 2 * sizeof(int64_t), cmp_id);
            if (!hit) dataio_skip(skips, DATAIO_SKIP_UNKNOWN_IMAGE, "annotation %d refers to image %lld", ai, (long long)iid);
            else owner[ai] = (int)hit[1], cap[hit[1]]++;
        }
        ai++;
    }
    for (int i = 0; i < c->nimages; i++) c->images[i].anns = core_calloc(cap[i] ? cap[i] : 1, sizeof(dataio_coco_ann));
    ai = 0;
    cJSON_ArrayForEach(a, anns)
    {
        int o = owner[ai++];
        if (o < 0) continue;
        dataio_coco_image *img = &c->images[o];
        if (parse_ann(a, img, &img->anns[img->nanns], skips) == 0) img->nanns++, c->nanns++;
    }
    free(cap);
    free(owner);
    free(byid);
    cJSON_Delete(root);
    return 0;
}

void dataio_coco_load(const char *path, dataio_coco *c, dataio_skips *skips)
{
    char err[512];
    size_t len;
    uint8_t *text = dataio_read_file(path, (size_t)8 << 30, &len, err, sizeof err);
    CHECK(text, "annotations: %s", err);
    int rc = dataio_coco_parse((const char *)text, len, c, skips, err, sizeof err);
    free(text);
    CHECK(rc == 0, "annotations '%s': %s", path, err);
}

void dataio_coco_free(dataio_coco *c)
{
    for (int i = 0; i < c->nimages; i++) {
        for (int k = 0; k < c->images[i].nanns; k++) dataio_segm_free(&c->images[i].anns[k].segm);
        free(c->images[i].anns);
        free(c->images[i].file_name);
    }
    free(c->images);
    memset(c, 0, sizeof *c);
}

int dataio_coco_main_persons(const dataio_coco_image *img, int *out)
{
    int n = 0;
    for (int i = 0; i < img->nanns; i++) {
        const dataio_coco_ann *a = &img->anns[i];
        if (a->iscrowd || a->num_keypoints < 5 || a->area < 32 * 32 || !(a->bbox[2] > 0 && a->bbox[3] > 0)) continue;
        double cx = a->bbox[0] + a->bbox[2] / 2, cy = a->bbox[1] + a->bbox[3] / 2;
        int near = 0;
        for (int k = 0; k < n && !near; k++) {
            const dataio_coco_ann *b = &img->anns[out[k]];
            double bx = b->bbox[0] + b->bbox[2] / 2, by = b->bbox[1] + b->bbox[3] / 2;
            near = hypot(cx - bx, cy - by) < 0.3 * fmax(b->bbox[2], b->bbox[3]);
        }
        if (!near) out[n++] = i;
    }
    return n;
}
