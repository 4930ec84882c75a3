/* eval/cocoeval + eval/coco_json: OKS and AP on hand-computed cases, the
 * threshold tables, the parsers' error lines, and a short fuzz of both parsers
 * (every mutated input parses or yields one error line; run under SANITIZE=1
 * to catch memory errors). Agreement with pycocotools: tests/test_eval_coco.py. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/skeleton.h"
#include "eval/coco_json.h"
#include "eval/cocoeval.h"
#include "tests/test.h"

static const char GT_JSON[] =
    "{\"images\":[{\"id\":7},{\"id\":3}],\"categories\":[{\"id\":1,\"name\":\"person\"}],"
    "\"annotations\":["
    "{\"id\":1,\"image_id\":3,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":1,\"area\":10000,"
    " \"bbox\":[100,100,50,200],\"keypoints\":[120,110,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]},"
    "{\"id\":2,\"image_id\":3,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":0,\"area\":5000,"
    " \"bbox\":[300,100,50,100],\"keypoints\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]},"
    "{\"id\":3,\"image_id\":99,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":0}"
    "]}";

static void load_gt(eval_coco_gt *gt)
{
    char err[256];
    int rc = eval_coco_parse_gt(GT_JSON, sizeof GT_JSON - 1, gt, err, sizeof err);
    if (rc) T_FAILF("parse_gt: %s", err);
}

static void kp_at(double kp[51], double x, double y)
{
    for (int k = 0; k < 17; k++) kp[3 * k] = x, kp[3 * k + 1] = y, kp[3 * k + 2] = 1;
}

static void test_sigmas_match_skeleton(void)
{
    /* the OKS uses pycocotools' spelling of the sigmas; they are the SPEC's values */
    eval_coco_gt_ann g = {0};
    g.area = 1000;
    for (int k = 0; k < 17; k++) {
        memset(g.kp, 0, sizeof g.kp);
        g.kp[3 * k] = 10, g.kp[3 * k + 1] = 10, g.kp[3 * k + 2] = 2;
        double d[51] = {0};
        d[3 * k] = 13, d[3 * k + 1] = 14; /* 5 pixels away */
        double s = skel_coco_sigmas[k];
        double want = exp(-25.0 / (4 * s * s) / (2 * 1000.0));
        T_NEAR(eval_coco_oks(&g, d), want, 1e-13, 0);
    }
}

static void test_thresholds(void)
{
    T_CHECK(eval_coco_oks_threshold(0) == 0.5);
    T_CHECK(eval_coco_oks_threshold(5) == 0.75); /* AP75 looks it up by equality */
    T_CHECK(eval_coco_oks_threshold(9) == 0.95);
    T_CHECK(eval_coco_recall_threshold(100) == 1.0);
    T_CHECK(eval_coco_recall_threshold(7) == 0.07);
    T_CHECK(eval_coco_recall_threshold(57) == 0.5700000000000001); /* numpy's value, not 0.57 */
}

static void test_gt_loading_rules(void)
{
    eval_coco_gt gt;
    load_gt(&gt);
    T_CHECK(gt.nimg == 2 && gt.img_ids[0] == 3 && gt.img_ids[1] == 7);
    T_CHECK(gt.ncat == 1);
    /* the annotation on image 99 (not listed) is not loaded, nor validated */
    T_CHECK(gt.nann == 2);
    T_CHECK(!gt.anns[0].ignore && gt.anns[1].ignore);
    eval_coco_gt_free(&gt);
}

static void test_oks_bbox_rule(void)
{
    eval_coco_gt gt;
    load_gt(&gt);
    const eval_coco_gt_ann *g = &gt.anns[1]; /* no labelled keypoints, bbox 300,100,50,100 */
    double d[51] = {0};
    kp_at(d, 320, 150);
    T_NEAR(eval_coco_oks(g, d), 1.0, 0, 1e-15); /* inside the doubled box: distance 0 */
    kp_at(d, 250 - 10, 150);                    /* 10 px left of x0 = 300 - 50 */
    double s = 0;
    for (int k = 0; k < 17; k++) {
        double sg = skel_coco_sigmas[k];
        s += exp(-100.0 / (4 * sg * sg) / (2 * 5000.0));
    }
    T_NEAR(eval_coco_oks(g, d), s / 17, 1e-12, 0);
    eval_coco_gt_free(&gt);
}

static int parse_dets(const char *json, const eval_coco_gt *gt, eval_coco_dets *d, char *err)
{
    return eval_coco_parse_results(json, strlen(json), gt, d, err, 256);
}

static char *det_json(long long img, int ncoords, double x, double y, double score)
{
    static char buf[4096];
    int n = snprintf(buf, sizeof buf, "{\"image_id\":%lld,\"category_id\":1,\"score\":%g,\"keypoints\":[", img, score);
    for (int i = 0; i < ncoords; i++) n += snprintf(buf + n, sizeof buf - n, "%s%g", i ? "," : "", i % 3 == 0 ? x : i % 3 == 1 ? y : 1.0);
    snprintf(buf + n, sizeof buf - n, "]}");
    return buf;
}

static void test_ap_hand_case(void)
{
    /* Image 3: gt 1 (counted, large? area 10000 -> large), gt 2 ignored. Detections: a false
     * positive far away with the best score, then an exact hit. Recall thresholds up to 1
     * are reached at the second detection with precision 1/2: AP = 0.5 at every OKS
     * threshold; AR = 1. The false positive is far from gt 2's doubled box too. */
    eval_coco_gt gt;
    load_gt(&gt);
    char json[16384], err[256];
    int n = snprintf(json, sizeof json, "[%s,", det_json(3, 51, 600, 600, 0.9));
    n += snprintf(json + n, sizeof json - n, "%s]", det_json(3, 51, 120, 110, 0.8));
    eval_coco_dets d;
    T_CHECKF(!parse_dets(json, &gt, &d, err), "parse: %s", err);
    eval_coco_summary s;
    eval_coco_evaluate(&gt, &d, &s);
    /* precision envelope is 0.5 at all 101 recall points */
    T_NEAR(s.stats[0], 0.5, 0, 1e-12);
    T_NEAR(s.stats[1], 0.5, 0, 1e-12);
    T_NEAR(s.stats[5], 1.0, 0, 1e-12);
    /* the gt's area 10000 is "large" (> 96^2): medium has no counted gt -> -1 */
    T_CHECK(s.stats[3] == -1 && s.stats[8] == -1);
    /* every keypoint of the false positive sits on one point: area 0, outside 'large', and
     * unmatched detections outside the range are ignored there -> APl = 1 */
    T_NEAR(s.stats[4], 1.0, 0, 1e-12);
    T_CHECK(s.num_gt == 1 && s.num_gt_ignored == 1 && s.num_dets == 2);
    eval_coco_dets_free(&d);

    /* Swap the scores: the hit first -> AP 1. */
    n = snprintf(json, sizeof json, "[%s,", det_json(3, 51, 600, 600, 0.5));
    n += snprintf(json + n, sizeof json - n, "%s]", det_json(3, 51, 120, 110, 0.8));
    T_CHECKF(!parse_dets(json, &gt, &d, err), "parse: %s", err);
    eval_coco_evaluate(&gt, &d, &s);
    T_NEAR(s.stats[0], 1.0, 0, 1e-12);
    eval_coco_dets_free(&d);

    /* A detection on gt 2's box matches the ignored gt: neither true nor false positive. */
    n = snprintf(json, sizeof json, "[%s,", det_json(3, 51, 320, 150, 0.9));
    n += snprintf(json + n, sizeof json - n, "%s]", det_json(3, 51, 120, 110, 0.8));
    T_CHECKF(!parse_dets(json, &gt, &d, err), "parse: %s", err);
    eval_coco_evaluate(&gt, &d, &s);
    T_NEAR(s.stats[0], 1.0, 0, 1e-12);
    eval_coco_dets_free(&d);
    eval_coco_gt_free(&gt);
}

static void test_empty_results_defined(void)
{
    eval_coco_gt gt;
    load_gt(&gt);
    eval_coco_dets d;
    char err[256];
    T_CHECKF(!parse_dets("[]", &gt, &d, err), "parse: %s", err);
    T_CHECK(d.ndet == 0);
    eval_coco_summary s;
    eval_coco_evaluate(&gt, &d, &s);
    T_CHECK(s.stats[0] == 0 && s.stats[5] == 0 && s.stats[3] == -1 && s.stats[4] == 0);
    eval_coco_dets_free(&d);
    eval_coco_gt_free(&gt);
}

static void expect_error(const char *json, const eval_coco_gt *gt, const char *needle)
{
    eval_coco_dets d;
    char err[256] = "";
    int rc = parse_dets(json, gt, &d, err);
    T_CHECKF(rc == -1, "accepted bad results %.60s", json);
    T_CHECKF(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
    T_CHECKF(!strchr(err, '\n'), "error has a newline: %s", err);
}

static void test_results_errors(void)
{
    eval_coco_gt gt;
    load_gt(&gt);
    char buf[8192];
    expect_error("{\"a\":1}", &gt, "not a JSON array");
    expect_error("[1,2]", &gt, "results[0] is not an object");
    expect_error("[{\"image_id\":3", &gt, "malformed JSON");
    expect_error("[{\"image_id\":3,}]", &gt, "malformed JSON at line 1");
    expect_error("", &gt, "malformed JSON");
    snprintf(buf, sizeof buf, "[%s]", det_json(3, 48, 1, 1, 0.5));
    expect_error(buf, &gt, "has 48 keypoint values, want 51");
    snprintf(buf, sizeof buf, "[%s]", det_json(12345, 51, 1, 1, 0.5));
    expect_error(buf, &gt, "images not in the ground truth (first: image_id 12345)");
    expect_error("[{\"image_id\":3,\"category_id\":1,\"keypoints\":[]}]", &gt, "no finite numeric 'score'");
    expect_error("[{\"image_id\":\"3\",\"category_id\":1,\"score\":1,\"keypoints\":[]}]", &gt, "no integer 'image_id'");
    expect_error("[{\"image_id\":3,\"category_id\":1,\"score\":1e999,\"keypoints\":[]}]", &gt, "score");
    /* category outside the gt: dropped and counted, as pycocotools ignores it */
    snprintf(buf, sizeof buf, "[%s]", det_json(3, 51, 1, 1, 0.5));
    char *c = strstr(buf, "\"category_id\":1");
    c[14] = '5';
    eval_coco_dets d;
    char err[256];
    T_CHECKF(!parse_dets(buf, &gt, &d, err), "parse: %s", err);
    T_CHECK(d.ndet == 0 && d.n_other_category == 1);
    eval_coco_dets_free(&d);
    eval_coco_gt_free(&gt);
}

static void test_gt_errors(void)
{
    static const struct { const char *json, *needle; } cases[] = {
        {"[]", "not a JSON object"},
        {"{\"categories\":[],\"annotations\":[]}", "no 'images' array"},
        {"{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}]}", "no 'annotations' array"},
        {"{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":5,\"image_id\":1,"
         "\"category_id\":1,\"area\":1,\"bbox\":[0,0,1,1],\"num_keypoints\":1,\"keypoints\":[1,2,3]}]}",
         "has 3 keypoint values, want 51"},
        {"{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":5,\"image_id\":1,"
         "\"category_id\":1,\"area\":1,\"bbox\":[0,0,1,1],\"keypoints\":[]}]}",
         "no 'num_keypoints'"},
        {"{\"images\":[{\"id\":1}],\"categories\":[{\"id\":1}],\"annotations\":[{\"id\":5,\"image_id\":1,\"category_id\":1,"
         "\"area\":1,\"bbox\":[0,0,1,1],\"num_keypoints\":0,\"keypoints\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
         "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]},{\"id\":5,\"image_id\":1,\"category_id\":1,"
         "\"area\":1,\"bbox\":[0,0,1,1],\"num_keypoints\":0,\"keypoints\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,"
         "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}",
         "id 5 appears twice"},
        {"{\"images\":[{\"id\":1.5}],\"categories\":[],\"annotations\":[]}", "no integer 'id'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        eval_coco_gt gt;
        char err[256] = "";
        int rc = eval_coco_parse_gt(cases[i].json, strlen(cases[i].json), &gt, err, sizeof err);
        T_CHECKF(rc == -1, "case %zu accepted", i);
        T_CHECKF(strstr(err, cases[i].needle), "case %zu: error '%s' lacks '%s'", i, err, cases[i].needle);
    }
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(n + 1);
    *len = fread(b, 1, n, f);
    fclose(f);
    return b;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mutates text in place-ish: flips, deletions, duplications of a span, JSON-ish tokens. */
static size_t mutate(const char *src, size_t len, char *dst, size_t cap)
{
    static const char *tokens[] = {"[", "]", "{", "}", ",", ":", "\"", "-", "1e999", "null", "true", "\"x\"",
                                   "[]", "{}", "0", "-1", "1e308", "\\u0000", "9999999999999999999"};
    memcpy(dst, src, len);
    size_t n = len;
    int edits = 1 + (int)(rnd() % 4);
    for (int e = 0; e < edits && n > 0; e++) {
        size_t pos = rnd() % n;
        switch (rnd() % 5) {
        case 0: /* flip a byte */
            dst[pos] = (char)(rnd() & 0xff);
            break;
        case 1: { /* delete a span */
            size_t span = 1 + rnd() % 64;
            if (span > n - pos) span = n - pos;
            memmove(dst + pos, dst + pos + span, n - pos - span);
            n -= span;
            break;
        }
        case 2: { /* insert a JSON-ish token */
            const char *t = tokens[rnd() % (sizeof tokens / sizeof *tokens)];
            size_t tl = strlen(t);
            if (n + tl >= cap) break;
            memmove(dst + pos + tl, dst + pos, n - pos);
            memcpy(dst + pos, t, tl);
            n += tl;
            break;
        }
        case 3: /* truncate */
            n = pos;
            break;
        default: { /* duplicate a span in place */
            size_t span = 1 + rnd() % 200;
            if (span > n - pos) span = n - pos;
            if (n + span >= cap) break;
            memmove(dst + pos + span, dst + pos, n - pos);
            n += span;
            break;
        }
        }
    }
    return n;
}

static void test_fuzz_parsers(void)
{
    size_t glen, rlen;
    char *gtext = slurp(T_SHARED_DATA "/test_coco.json", &glen);
    char *rtext = slurp(T_SHARED_DATA "/example_preds.json", &rlen);
    if (!gtext || !rtext) { free(gtext); free(rtext); T_SKIP("shared sample data not found"); }
    eval_coco_gt gt;
    char err[512];
    T_CHECKF(!eval_coco_parse_gt(gtext, glen, &gt, err, sizeof err), "sample gt: %.200s", err);
    size_t cap = (glen > rlen ? glen : rlen) + 4096;
    char *buf = malloc(cap);
    int ok_r = 0, bad_r = 0, ok_g = 0, bad_g = 0;
    const int iters = getenv("SSPOSE_FUZZ_ITERS") ? atoi(getenv("SSPOSE_FUZZ_ITERS")) : 1500;
    for (int it = 0; it < iters; it++) {
        size_t n = mutate(rtext, rlen, buf, cap);
        eval_coco_dets d;
        err[0] = 0;
        if (eval_coco_parse_results(buf, n, &gt, &d, err, sizeof err) == 0) {
            ok_r++;
            eval_coco_summary s;
            eval_coco_evaluate(&gt, &d, &s); /* whatever parsed must evaluate */
            for (int i = 0; i < EVAL_COCO_NSTATS; i++)
                T_CHECKF(s.stats[i] == -1 || (s.stats[i] >= 0 && s.stats[i] <= 1), "stat %d = %g", i, s.stats[i]);
            eval_coco_dets_free(&d);
        } else {
            bad_r++;
            T_CHECKF(err[0] && !strchr(err, '\n'), "bad error line '%.200s'", err);
        }
        if (it % 3 == 0) {
            eval_coco_gt g2;
            n = mutate(gtext, glen, buf, cap);
            err[0] = 0;
            if (eval_coco_parse_gt(buf, n, &g2, err, sizeof err) == 0) {
                ok_g++;
                eval_coco_gt_free(&g2);
            } else {
                bad_g++;
                T_CHECKF(err[0] && !strchr(err, '\n'), "bad gt error line '%.200s'", err);
            }
        }
    }
    /* the mutations must exercise both outcomes */
    T_CHECKF(ok_r > 0 && bad_r > 0 && bad_g > 0, "fuzz outcomes: results %d ok %d bad, gt %d ok %d bad", ok_r, bad_r, ok_g, bad_g);
    free(buf);
    free(gtext);
    free(rtext);
    eval_coco_gt_free(&gt);
}

int main(void)
{
    T_RUN(test_sigmas_match_skeleton);
    T_RUN(test_thresholds);
    T_RUN(test_gt_loading_rules);
    T_RUN(test_oks_bbox_rule);
    T_RUN(test_ap_hand_case);
    T_RUN(test_empty_results_defined);
    T_RUN(test_results_errors);
    T_RUN(test_gt_errors);
    T_RUN(test_fuzz_parsers);
    T_EXIT();
}
