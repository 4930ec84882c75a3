/* COCO keypoint ground truth / results JSON -> eval_coco_gt / eval_coco_dets.
 *
 * Parsing never dies: every problem becomes one line in err so that the fuzz
 * test can feed thousands of bad inputs through one process; the load_*
 * wrappers turn that line into the fatal error. */
#include "eval/coco_json.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static int fail(char *err, size_t errlen, const char *fmt, ...) CORE_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* cJSON's own message is only a pointer; turn it into line:column. */
static int parse_json(const char *text, size_t len, cJSON **out, char *err, size_t errlen)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (*out) return 0;
    if (!end || end < text || end > text + len) end = text + len;
    int line = 1, col = 1;
    for (const char *p = text; p < end; p++) {
        if (*p == '\n') { line++; col = 1; }
        else col++;
    }
    /* cJSON reports a failure at the end of the buffer on its last byte; a last byte that
     * does not close anything means the text stops early */
    if (end + 1 >= text + len && len > 0 && text[len - 1] != ']' && text[len - 1] != '}')
        return fail(err, errlen, "malformed JSON: unexpected end of input at line %d (truncated?)", line);
    if (len == 0) return fail(err, errlen, "malformed JSON: empty input");
    return fail(err, errlen, "malformed JSON at line %d column %d", line, col);
}

/* A JSON number that is a whole value fitting a long long (ids). */
static int get_id(const cJSON *obj, const char *key, long long *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it)) return -1;
    double d = it->valuedouble;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9.0e15) return -1;
    *v = (long long)d;
    return 0;
}

static int get_finite(const cJSON *obj, const char *key, double *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble)) return -1;
    *v = it->valuedouble;
    return 0;
}

/* Fills out[n] from a numeric array of exactly n finite numbers.
 * Returns 0, -1 when missing/not an array, -2 on wrong length, -3 on a non-number. */
static int get_numbers(const cJSON *obj, const char *key, double *out, int n, int *got)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsArray(arr)) return -1;
    *got = cJSON_GetArraySize(arr);
    if (*got != n) return -2;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr) {
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return -3;
        out[i++] = x->valuedouble;
    }
    return 0;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

/* Sorts and removes duplicates (np.unique); returns the new count. */
static int sort_unique(long long *v, int n)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_ll);
    int m = 1;
    for (int i = 1; i < n; i++)
        if (v[i] != v[m - 1]) v[m++] = v[i];
    return m;
}

static int find_ll(const long long *v, int n, long long x)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (v[mid] == x) return mid;
        if (v[mid] < x) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

int eval_coco_image_index(const eval_coco_gt *gt, long long image_id) { return find_ll(gt->img_ids, gt->nimg, image_id); }
int eval_coco_category_index(const eval_coco_gt *gt, long long category_id)
{
    return find_ll(gt->cat_ids, gt->ncat, category_id);
}

/* ids of the objects of a top-level array, e.g. images[].id */
static int collect_ids(const cJSON *root, const char *key, long long **ids, int *n, char *err, size_t errlen)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!cJSON_IsArray(arr)) return fail(err, errlen, "ground truth has no '%s' array", key);
    int cap = cJSON_GetArraySize(arr), i = 0;
    *ids = core_malloc((size_t)(cap ? cap : 1) * sizeof **ids);
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        if (!cJSON_IsObject(o) || get_id(o, "id", &(*ids)[i]))
            return fail(err, errlen, "ground truth %s[%d] has no integer 'id'", key, i);
        i++;
    }
    /* two image entries of one id are two different images to `sspose data`, which refuses
     * them; pycocotools would silently keep the last: refuse here too */
    if (i > 1 && !strcmp(key, "images")) {
        qsort(*ids, i, sizeof **ids, cmp_ll);
        for (int k = 1; k < i; k++)
            if ((*ids)[k] == (*ids)[k - 1])
                return fail(err, errlen, "ground truth lists image id %lld more than once; image ids must be unique",
                            (*ids)[k]);
    }
    *n = sort_unique(*ids, i);
    return 0;
}

static int cmp_ann_id(const void *a, const void *b)
{
    const eval_coco_gt_ann *x = *(eval_coco_gt_ann *const *)a, *y = *(eval_coco_gt_ann *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int parse_gt_ann(const cJSON *o, int i, eval_coco_gt_ann *a, char *err, size_t errlen)
{
    int got = 0, rc;
    if (get_id(o, "id", &a->id)) return fail(err, errlen, "ground truth annotations[%d] has no integer 'id'", i);
    double nk;
    if (get_finite(o, "num_keypoints", &nk))
        return fail(err, errlen, "ground truth annotation id %lld has no 'num_keypoints' (not a keypoint file?)", a->id);
    if ((rc = get_numbers(o, "keypoints", a->kp, 3 * EVAL_COCO_NKP, &got)))
        return rc == -2 ? fail(err, errlen, "ground truth annotation id %lld has %d keypoint values, want %d (17 x, y, v)",
                               a->id, got, 3 * EVAL_COCO_NKP)
                        : fail(err, errlen, "ground truth annotation id %lld has no numeric 'keypoints' array", a->id);
    if (get_finite(o, "area", &a->area)) return fail(err, errlen, "ground truth annotation id %lld has no numeric 'area'", a->id);
    if (get_numbers(o, "bbox", a->bbox, 4, &got))
        return fail(err, errlen, "ground truth annotation id %lld has no 'bbox' of 4 numbers", a->id);
    /* pycocotools: ignore = ('iscrowd' in gt and gt['iscrowd']) or num_keypoints == 0;
     * a missing iscrowd (which pycocotools' matching would trip over) reads as 0. */
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "iscrowd");
    int truthy = 0;
    a->iscrowd = 0;
    if (cJSON_IsBool(c)) truthy = a->iscrowd = cJSON_IsTrue(c);
    else if (cJSON_IsNumber(c) && isfinite(c->valuedouble)) {
        truthy = c->valuedouble != 0;
        a->iscrowd = trunc(c->valuedouble) != 0; /* int(iscrowd), as the matching reads it */
    } else if (c && !cJSON_IsNull(c))
        return fail(err, errlen, "ground truth annotation id %lld has a non-numeric 'iscrowd'", a->id);
    a->ignore = truthy || nk == 0;
    return 0;
}

int eval_coco_parse_gt(const char *text, size_t len, eval_coco_gt *gt, char *err, size_t errlen)
{
    memset(gt, 0, sizeof *gt);
    cJSON *root;
    if (parse_json(text, len, &root, err, errlen)) return -1;
    int rc = -1;
    if (!cJSON_IsObject(root)) { fail(err, errlen, "ground truth is not a JSON object"); goto done; }
    if (collect_ids(root, "images", &gt->img_ids, &gt->nimg, err, errlen)) goto done;
    if (collect_ids(root, "categories", &gt->cat_ids, &gt->ncat, err, errlen)) goto done;
    const cJSON *anns = cJSON_GetObjectItemCaseSensitive(root, "annotations");
    if (!cJSON_IsArray(anns)) { fail(err, errlen, "ground truth has no 'annotations' array"); goto done; }
    int n = cJSON_GetArraySize(anns), i = 0;
    gt->anns = core_malloc((size_t)(n ? n : 1) * sizeof *gt->anns);
    const cJSON *o;
    cJSON_ArrayForEach(o, anns) {
        eval_coco_gt_ann *a = &gt->anns[gt->nann];
        if (!cJSON_IsObject(o)) { fail(err, errlen, "ground truth annotations[%d] is not an object", i); goto done; }
        if (get_id(o, "image_id", &a->image_id) || get_id(o, "category_id", &a->category_id)) {
            fail(err, errlen, "ground truth annotations[%d] has no integer 'image_id' / 'category_id'", i);
            goto done;
        }
        /* COCOeval loads only annotations of the listed images and categories. */
        if (eval_coco_image_index(gt, a->image_id) >= 0 && eval_coco_category_index(gt, a->category_id) >= 0) {
            if (parse_gt_ann(o, i, a, err, errlen)) goto done;
            gt->nann++;
        }
        i++;
    }
    /* pycocotools indexes annotations by id, so a repeated id silently replaces another
     * annotation (even one on another image); refuse instead of guessing. */
    eval_coco_gt_ann **byid = core_malloc((size_t)(gt->nann ? gt->nann : 1) * sizeof *byid);
    for (int k = 0; k < gt->nann; k++) byid[k] = &gt->anns[k];
    qsort(byid, gt->nann, sizeof *byid, cmp_ann_id);
    for (int k = 1; k < gt->nann; k++)
        if (byid[k]->id == byid[k - 1]->id) {
            fail(err, errlen, "ground truth annotation id %lld appears twice", byid[k]->id);
            free(byid);
            goto done;
        }
    free(byid);
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) eval_coco_gt_free(gt);
    return rc;
}

void eval_coco_dets_add(eval_coco_dets *d, long long image_id, long long category_id,
                        const double kp[3 * EVAL_COCO_NKP], double score)
{
    if (d->ndet == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 256;
        d->dets = core_realloc(d->dets, (size_t)d->cap * sizeof *d->dets);
    }
    eval_coco_det *e = &d->dets[d->ndet++];
    e->image_id = image_id;
    e->category_id = category_id;
    e->score = score;
    memcpy(e->kp, kp, sizeof e->kp);
    /* loadRes: area = (max x - min x) * (max y - min y) over all 17 points, unlabelled ones
     * (often 0, 0) included: that is the area the area-range rule sees. */
    double x0 = kp[0], x1 = kp[0], y0 = kp[1], y1 = kp[1];
    for (int k = 1; k < EVAL_COCO_NKP; k++) {
        x0 = fmin(x0, kp[3 * k]), x1 = fmax(x1, kp[3 * k]);
        y0 = fmin(y0, kp[3 * k + 1]), y1 = fmax(y1, kp[3 * k + 1]);
    }
    e->area = (x1 - x0) * (y1 - y0);
}

int eval_coco_parse_results(const char *text, size_t len, const eval_coco_gt *gt, eval_coco_dets *dets,
                            char *err, size_t errlen)
{
    memset(dets, 0, sizeof *dets);
    cJSON *root;
    if (parse_json(text, len, &root, err, errlen)) return -1;
    int rc = -1;
    if (!cJSON_IsArray(root)) { fail(err, errlen, "results are not a JSON array of objects"); goto done; }
    /* loadRes decides from the first result alone: a non-empty 'bbox' there makes every
     * result's area its bbox w*h; otherwise the keypoints' extent. */
    const cJSON *first = cJSON_GetArrayItem(root, 0);
    const cJSON *fb = first ? cJSON_GetObjectItemCaseSensitive(first, "bbox") : NULL;
    int use_bbox = fb && !(cJSON_IsArray(fb) && cJSON_GetArraySize(fb) == 0);
    if (first && !use_bbox && cJSON_GetObjectItemCaseSensitive(first, "segmentation")) {
        fail(err, errlen, "results carry 'segmentation' (pycocotools would score mask areas); keypoint results only");
        goto done;
    }
    int i = 0, n_unknown = 0;
    long long first_unknown = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, root) {
        long long img, cat;
        double score, kp[3 * EVAL_COCO_NKP], bb[4];
        int got = 0, r;
        if (!cJSON_IsObject(o)) { fail(err, errlen, "results[%d] is not an object", i); goto done; }
        if (get_id(o, "image_id", &img)) { fail(err, errlen, "results[%d] has no integer 'image_id'", i); goto done; }
        if (get_id(o, "category_id", &cat)) { fail(err, errlen, "results[%d] has no integer 'category_id'", i); goto done; }
        if (get_finite(o, "score", &score)) { fail(err, errlen, "results[%d] has no finite numeric 'score'", i); goto done; }
        if ((r = get_numbers(o, "keypoints", kp, 3 * EVAL_COCO_NKP, &got))) {
            if (r == -2) fail(err, errlen, "results[%d] has %d keypoint values, want %d (17 x, y, v)", i, got, 3 * EVAL_COCO_NKP);
            else if (r == -3) fail(err, errlen, "results[%d] 'keypoints' holds a non-number or non-finite value", i);
            else fail(err, errlen, "results[%d] has no 'keypoints' array", i);
            goto done;
        }
        if (use_bbox && get_numbers(o, "bbox", bb, 4, &got)) {
            fail(err, errlen, "results[%d] has no 'bbox' of 4 numbers (results[0] has one, so all need one)", i);
            goto done;
        }
        if (eval_coco_image_index(gt, img) < 0) {
            if (!n_unknown++) first_unknown = img;
        } else if (eval_coco_category_index(gt, cat) < 0) {
            dets->n_other_category++;
        } else {
            eval_coco_dets_add(dets, img, cat, kp, score);
            if (use_bbox) dets->dets[dets->ndet - 1].area = bb[2] * bb[3];
        }
        i++;
    }
    if (n_unknown) {
        fail(err, errlen, "%d results are for images not in the ground truth (first: image_id %lld)", n_unknown, first_unknown);
        goto done;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    if (rc) eval_coco_dets_free(dets);
    return rc;
}

static char *read_file(const char *path, size_t *len, const char *what)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open %s file '%s': %s", what, path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = core_malloc(cap);
    for (;;) {
        if (n == cap) buf = core_realloc(buf, cap *= 2);
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); CORE_DIE("cannot read %s file '%s'", what, path); }
    *len = n;
    return buf;
}

void eval_coco_load_gt(const char *path, eval_coco_gt *gt)
{
    size_t len;
    char *text = read_file(path, &len, "ground truth"), err[512];
    int rc = eval_coco_parse_gt(text, len, gt, err, sizeof err);
    free(text);
    CHECK(!rc, "%s: %s", path, err);
}

void eval_coco_load_results(const char *path, const eval_coco_gt *gt, eval_coco_dets *dets)
{
    size_t len;
    char *text = read_file(path, &len, "results"), err[512];
    int rc = eval_coco_parse_results(text, len, gt, dets, err, sizeof err);
    free(text);
    CHECK(!rc, "%s: %s", path, err);
}

void eval_coco_gt_free(eval_coco_gt *gt)
{
    free(gt->img_ids);
    free(gt->cat_ids);
    free(gt->anns);
    memset(gt, 0, sizeof *gt);
}

void eval_coco_dets_free(eval_coco_dets *d)
{
    free(d->dets);
    memset(d, 0, sizeof *d);
}
