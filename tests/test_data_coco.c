/* COCO JSON reading: COCO-17 -> OpenPose-18, neck rule, main-person rules, skips. */
#include "test.h"

#include "core/check.h"
#include "dataio/coco.h"

static int parse(const char *json, dataio_coco *c, dataio_skips *sk, char *err)
{
    memset(sk, 0, sizeof *sk);
    sk->max_warnings = 1000;
    return dataio_coco_parse(json, strlen(json), c, sk, err, 256);
}

/* COCO-17 keypoints x = 10*k + 1, y = 100 + k, v = 2, with some unlabelled */
static void kp_json(char *buf, size_t n, const int *unlabelled, int nun)
{
    size_t at = snprintf(buf, n, "[");
    for (int k = 0; k < 17; k++) {
        int v = 2;
        for (int u = 0; u < nun; u++) v = unlabelled[u] == k ? 0 : v;
        at += snprintf(buf + at, n - at, "%s%d,%d,%d", k ? "," : "", v ? 10 * k + 1 : 0, v ? 100 + k : 0, v);
    }
    snprintf(buf + at, n - at, "]");
}

static void mapping_and_neck(void)
{
    char k1[600], k2[600], json[4000], err[256];
    kp_json(k1, sizeof k1, NULL, 0);
    int no_lsho[1] = {5};
    kp_json(k2, sizeof k2, no_lsho, 1);
    snprintf(json, sizeof json,
             "{\"images\":[{\"id\":7,\"file_name\":\"a.jpg\",\"width\":400,\"height\":300}],"
             "\"annotations\":[{\"id\":1,\"image_id\":7,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":17,"
             "\"keypoints\":%s,\"bbox\":[0,0,200,200],\"area\":20000,\"segmentation\":[[0,0,1,0,1,1]]},"
             "{\"id\":2,\"image_id\":7,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":99,"
             "\"keypoints\":%s,\"bbox\":[0,0,200,200],\"area\":20000,\"segmentation\":[]}]}",
             k1, k2);
    dataio_coco c;
    dataio_skips sk;
    T_CHECK(parse(json, &c, &sk, err) == 0);
    T_CHECK(c.nimages == 1 && c.images[0].nanns == 2 && c.images[0].id == 7);
    const dataio_coco_ann *a = &c.images[0].anns[0];
    /* OpenPose k takes COCO skel_from_coco[k]: e.g. r_sho (2) = COCO 6, l_ear (17) = COCO 3 */
    for (int k = 0; k < 18; k++) {
        int ci = skel_from_coco[k];
        if (ci < 0) continue;
        T_CHECK(a->kps[3 * k] == 10 * ci + 1 && a->kps[3 * k + 1] == 100 + ci && a->kps[3 * k + 2] == 1);
    }
    T_CHECK(a->kps[3 * 2] == 61 && a->kps[3 * 17] == 31);
    /* neck = mean of COCO shoulders 5 (51,105) and 6 (61,106) */
    T_NEAR(a->kps[3 * 1], 56, 0, 0);
    T_NEAR(a->kps[3 * 1 + 1], 105.5, 0, 0);
    T_CHECK(a->kps[3 * 1 + 2] == 1 && a->num_keypoints == 17 && !a->has_segm);
    /* second person: left shoulder unlabelled -> no neck; num_keypoints counted (16), not the file's 99 */
    const dataio_coco_ann *b = &c.images[0].anns[1];
    T_CHECK(b->kps[3 * 1 + 2] == 0 && b->kps[3 * 5 + 2] == 0 && b->num_keypoints == 16);
    dataio_coco_free(&c);
}

static void skips_and_drops(void)
{
    char k1[600], json[6000], err[256];
    kp_json(k1, sizeof k1, NULL, 0);
    snprintf(json, sizeof json,
             "{\"images\":[{\"id\":1,\"file_name\":\"a.jpg\",\"width\":100,\"height\":300},{\"id\":2}],"
             "\"annotations\":["
             /* keypoints with x up to 161 > width 100: those dropped, annotation kept */
             "{\"id\":1,\"image_id\":1,\"category_id\":1,\"keypoints\":%s,\"bbox\":[0,0,50,50],\"area\":2500},"
             /* unknown image */
             "{\"id\":2,\"image_id\":99,\"category_id\":1,\"keypoints\":%s,\"bbox\":[0,0,50,50],\"area\":2500},"
             /* zero-size box with keypoints: dropped */
             "{\"id\":3,\"image_id\":1,\"category_id\":1,\"keypoints\":%s,\"bbox\":[0,0,0,50],\"area\":0},"
             /* not a person */
             "{\"id\":4,\"image_id\":1,\"category_id\":3,\"bbox\":[0,0,5,5],\"area\":25},"
             /* malformed: keypoints too short, bbox strings */
             "{\"id\":5,\"image_id\":1,\"category_id\":1,\"keypoints\":[1,2],\"bbox\":[0,0,5,5],\"area\":25},"
             "{\"id\":6,\"image_id\":1,\"category_id\":1,\"bbox\":[\"a\",0,5,5],\"area\":25},"
             "{\"id\":7,\"image_id\":\"x\"},"
             /* crowd region without segmentation */
             "{\"id\":8,\"image_id\":1,\"category_id\":1,\"iscrowd\":1,\"bbox\":[0,0,5,5],\"area\":25}"
             "]}",
             k1, k1, k1);
    dataio_coco c;
    dataio_skips sk;
    T_CHECK(parse(json, &c, &sk, err) == 0);
    T_CHECK(c.nimages == 1 && c.images[0].nanns == 1);
    T_CHECK(sk.count[DATAIO_SKIP_MALFORMED_IMAGE] == 1);
    T_CHECK(sk.count[DATAIO_SKIP_KP_OUTSIDE] == 2); /* annotations 1 and 3 */
    T_CHECK(sk.count[DATAIO_SKIP_UNKNOWN_IMAGE] == 1);
    T_CHECK(sk.count[DATAIO_SKIP_ZERO_BOX] == 1);
    T_CHECK(sk.count[DATAIO_SKIP_NOT_PERSON] == 1);
    T_CHECKF(sk.count[DATAIO_SKIP_MALFORMED_ANN] == 3, "%ld malformed", sk.count[DATAIO_SKIP_MALFORMED_ANN]);
    T_CHECK(sk.count[DATAIO_SKIP_BAD_SEGM] == 1);
    const dataio_coco_ann *a = &c.images[0].anns[0];
    /* COCO x = 10k+1, width 100, 1 px of slack: COCO 0..10 kept, 11..16 dropped (6 keypoints) */
    T_CHECK(a->num_keypoints == 11);
    T_CHECK(a->kps[3 * 4 + 2] == 1);  /* r_wri = COCO 10, x = 101: within the slack */
    T_CHECK(a->kps[3 * 11 + 2] == 0); /* l_hip = COCO 11, x = 111 */
    T_CHECK(a->kps[3 * 3 + 2] == 1);  /* r_elb = COCO 8, x = 81 */
    dataio_coco_free(&c);
}

static void fatal_documents(void)
{
    dataio_coco c;
    dataio_skips sk;
    char err[256];
    T_CHECK(parse("{\"images\":[{\"id\":1,", &c, &sk, err) == -1 && strstr(err, "truncated"));
    T_CHECK(parse("[1,2,3]", &c, &sk, err) == -1 && strstr(err, "not a COCO"));
    T_CHECK(parse("{\"images\":{}, \"annotations\":[]}", &c, &sk, err) == -1);
    T_CHECK(parse("", &c, &sk, err) == -1);
    T_CHECK(parse("{\"images\":[{\"id\":1,\"file_name\":\"a\",\"width\":5,\"height\":5},"
                  "{\"id\":1,\"file_name\":\"b\",\"width\":5,\"height\":5}],\"annotations\":[]}",
                  &c, &sk, err) == -1 && strstr(err, "twice"));
    T_CHECK(parse("{\"images\":[],\"annotations\":[]}", &c, &sk, err) == 0 && c.nimages == 0);
    dataio_coco_free(&c);
}

static dataio_coco_ann person(double x, double y, double w, double h, double area, int nkp)
{
    dataio_coco_ann a;
    memset(&a, 0, sizeof a);
    a.bbox[0] = x, a.bbox[1] = y, a.bbox[2] = w, a.bbox[3] = h;
    a.area = area;
    a.num_keypoints = nkp;
    return a;
}

static void main_person_rules(void)
{
    dataio_coco_ann anns[7];
    anns[0] = person(0, 0, 100, 200, 5000, 10);     /* main; centre (50,100), radius 0.3*200 = 60 */
    anns[1] = person(40, 40, 100, 200, 5000, 10);   /* centre (90,140): 56.6 < 60 from #0 -> not main */
    anns[2] = person(300, 0, 100, 100, 1023, 10);   /* area < 32^2 */
    anns[3] = person(300, 200, 100, 100, 2000, 4);  /* 4 keypoints */
    anns[4] = person(50, 60, 100, 200, 5000, 10);   /* centre (100,160): 78.1 >= 60 -> main */
    anns[5] = person(600, 0, 100, 100, 1024, 5);    /* exactly the limits -> main */
    anns[6] = person(0, 0, 100, 200, 5000, 10);
    anns[6].iscrowd = 1;                            /* crowd never main */
    dataio_coco_image img = {.id = 1, .width = 800, .height = 600, .anns = anns, .nanns = 7};
    int out[7];
    int n = dataio_coco_main_persons(&img, out);
    T_CHECKF(n == 3 && out[0] == 0 && out[1] == 4 && out[2] == 5, "n = %d", n);
}

/* Masks at known pixels, worked out by hand. */
static void masks_known_pixels(void)
{
    /* counts "324O": 3, 2, 4, then 'O' = 31 -> 5-bit group with the sign bit: -1, plus counts[1] = 2 -> 1 */
    uint32_t *c = NULL;
    int n = 0;
    char err[200];
    T_CHECK(dataio_rle_from_string("324O", &c, &n, err, sizeof err) == 0);
    T_CHECK(n == 4 && c[0] == 3 && c[1] == 2 && c[2] == 4 && c[3] == 1);
    T_CHECK(dataio_rle_check(c, n, 2, 5, err, sizeof err) == 0);
    T_CHECK(dataio_rle_check(c, n, 3, 5, err, sizeof err) == -1 && strstr(err, "sum to 10"));
    /* 2x5 image, column-major: positions 3,4 (x=1 y=1, x=2 y=0) and 9 (x=4 y=1) are ones */
    dataio_segm rle = {.rle_h = 2, .rle_w = 5, .counts = c, .ncounts = n};
    uint8_t m[10];
    memset(m, 1, sizeof m);
    dataio_segm_paint(&rle, m, 2, 5, 0);
    uint8_t want[10] = {1, 1, 0, 1, 1, /* row 0 */ 1, 0, 1, 1, 0 /* row 1 */};
    T_CHECK(!memcmp(m, want, 10));
    free(c);
    /* a two-group count: 'P' (48+32: value 0, more follows) then '1' (value 1): 0 + 1*32 = 32 */
    T_CHECK(dataio_rle_from_string("P1", &c, &n, err, sizeof err) == 0 && n == 1 && c[0] == 32);
    free(c);
    T_CHECK(dataio_rle_from_string("P", &c, &n, err, sizeof err) == -1 && strstr(err, "ends inside"));
    /* polygon: the rectangle x in [2,6], y in [2,5] covers the pixels whose centres (x+.5, y+.5) are inside */
    float xy[8] = {2, 2, 6, 2, 6, 5, 2, 5};
    int len = 4;
    dataio_segm poly = {.npoly = 1, .poly_len = &len, .xy = xy};
    uint8_t pm[8 * 10];
    memset(pm, 1, sizeof pm);
    dataio_segm_paint(&poly, pm, 8, 10, 0);
    int bad = 0;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 10; x++) bad += pm[y * 10 + x] != ((x >= 2 && x <= 5 && y >= 2 && y <= 4) ? 0 : 1);
    T_CHECKF(bad == 0, "%d pixels wrong", bad);
    /* a triangle: (0,0) (8.3,0) (0,8.3): pixel (x,y) inside when its centre is, x+y+1 < 8.3
     * (no centre lies on the slanted edge, where the tie rule would decide) */
    float tri[6] = {0, 0, 8.3f, 0, 0, 8.3f};
    len = 3;
    poly.xy = tri;
    memset(pm, 1, sizeof pm);
    dataio_segm_paint(&poly, pm, 8, 10, 0);
    bad = 0;
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 10; x++) bad += pm[y * 10 + x] != (x + y + 1 < 8.3 ? 0 : 1);
    T_CHECKF(bad == 0, "%d pixels wrong", bad);
}

int main(void)
{
    core_set_quiet(1);
    CHECK(freopen("/dev/null", "w", stderr), "cannot silence stderr"); /* skips warn; the counts are tested */
    T_RUN(mapping_and_neck);
    T_RUN(skips_and_drops);
    T_RUN(fatal_documents);
    T_RUN(main_person_rules);
    T_RUN(masks_known_pixels);
    T_EXIT();
}
