/* Targets of SPEC section 2 against values worked out by hand, and the flip. */
#include "test.h"

#include "core/check.h"
#include "dataio/sample.h"
#include "dataio/targets.h"

#define G 46
#define HW (G * G)

static dataio_target_params P368 = {8, G, G, 7.0, 1.0};

static float th[DATAIO_HEAT_CH * HW], tp[DATAIO_PAF_CH * HW], to[DATAIO_OFF_CH * HW], ta[DATAIO_ATT_CH * HW];

static void set_kp(float *kps, int person, int k, float x, float y)
{
    float *p = kps + (person * SKEL_NUM_KP + k) * 3;
    p[0] = x, p[1] = y, p[2] = 1;
}

#define AT(arr, c, i, j) (arr)[(c) * HW + (i) * G + (j)]

/* Nose at (100, 60). Cell (i,j) has centre (8j+3.5, 8i+3.5), sigma = 7 so 2 sigma^2 = 98. */
static void heatmap_hand_values(void)
{
    float kps[2 * 18 * 3] = {0};
    set_kp(kps, 0, 0, 100, 60);
    dataio_targets_compute(&P368, kps, 1, th, NULL, NULL, NULL);
    T_NEAR(AT(th, 0, 7, 12), 0.9949109525, 0, 1e-6);  /* d^2 = 0.25+0.25 */
    T_NEAR(AT(th, 0, 7, 13), 0.5618442447, 0, 1e-6);  /* d^2 = 56.25+0.25 */
    T_NEAR(AT(th, 0, 7, 14), 0.0859420856, 0, 1e-6);  /* d^2 = 240.25+0.25, exponent 2.45 */
    T_NEAR(AT(th, 0, 7, 15), 0.0, 0, 0);              /* d^2 = 552.5: exponent 5.6 > 4.6052 */
    T_NEAR(AT(th, 0, 4, 12), 0.0, 0, 0);              /* dy = 24.5: exponent 6.1 */
    T_NEAR(AT(th, 1, 7, 12), 0.0, 0, 0);              /* other channels empty */
    T_NEAR(AT(th, 18, 7, 12), 0.0050890475, 0, 1e-6); /* background 1 - max */
    T_NEAR(AT(th, 18, 30, 30), 1.0, 0, 0);
    /* a second person: the max, not the sum */
    set_kp(kps, 1, 0, 108, 60);
    dataio_targets_compute(&P368, kps, 2, th, NULL, NULL, NULL);
    T_NEAR(AT(th, 0, 7, 13), 0.9949109525, 0, 1e-6);
    T_NEAR(AT(th, 0, 7, 12), 0.9949109525, 0, 1e-6);
    /* (7,14): p1 d^2 = 240.5 -> 0.0859, p2 d^2 = 56.5 -> 0.5618 */
    T_NEAR(AT(th, 0, 7, 14), 0.5618442447, 0, 1e-6);
    /* unlabelled keypoints contribute nothing */
    kps[2] = 0;
    kps[18 * 3 + 2] = 0;
    dataio_targets_compute(&P368, kps, 2, th, NULL, NULL, NULL);
    for (int c = 0; c < HW; c++) T_CHECK(th[c] == 0 && th[18 * HW + c] == 1);
}

/* Limb 0 (neck -> r_hip) straight down x = 100 from y = 100 to 200; width 8 px. */
static void paf_hand_values(void)
{
    float kps[2 * 18 * 3] = {0};
    set_kp(kps, 0, 1, 100, 100);
    set_kp(kps, 0, 8, 100, 200);
    dataio_targets_compute(&P368, kps, 1, NULL, tp, NULL, NULL);
    T_NEAR(AT(tp, 0, 15, 12), 0, 0, 0); /* x component */
    T_NEAR(AT(tp, 1, 15, 12), 1, 0, 1e-7);
    T_NEAR(AT(tp, 1, 15, 13), 1, 0, 1e-7); /* centre x 107.5: perp 7.5 <= 8 */
    T_NEAR(AT(tp, 1, 15, 11), 0, 0, 0);    /* centre x 91.5: perp 8.5 > 8 */
    T_NEAR(AT(tp, 1, 11, 12), 0, 0, 0);    /* centre y 91.5: 8.5 before the start */
    T_NEAR(AT(tp, 1, 12, 12), 1, 0, 1e-7); /* centre y 99.5 */
    T_NEAR(AT(tp, 1, 25, 12), 1, 0, 1e-7); /* centre y 203.5: 3.5 past the end */
    T_NEAR(AT(tp, 1, 26, 12), 0, 0, 0);    /* centre y 211.5: 11.5 past the end */
    int on = 0;
    for (int c = 0; c < DATAIO_PAF_CH * HW; c++) on += tp[c] != 0;
    T_CHECKF(on == 14 * 2, "%d non-zero PAF values, expected 14 rows x 2 columns", on); /* rows 12..25, cols 12,13 */
    /* a second person's limb 0 going right from (104,100): cells covered by both average */
    set_kp(kps, 1, 1, 104, 100);
    set_kp(kps, 1, 8, 204, 100);
    dataio_targets_compute(&P368, kps, 2, NULL, tp, NULL, NULL);
    T_NEAR(AT(tp, 0, 12, 12), 0.5, 0, 1e-7);
    T_NEAR(AT(tp, 1, 12, 12), 0.5, 0, 1e-7);
    T_NEAR(AT(tp, 0, 12, 20), 1, 0, 1e-7); /* only person 2 */
    T_NEAR(AT(tp, 1, 12, 20), 0, 0, 0);
    T_NEAR(AT(tp, 1, 20, 12), 1, 0, 1e-7); /* only person 1 */
    /* three persons over one cell: plain mean of all three */
    float k3[3 * 18 * 3] = {0};
    memcpy(k3, kps, sizeof kps);
    set_kp(k3, 2, 1, 90, 110);
    set_kp(k3, 2, 8, 110, 90); /* u = (1,-1)/sqrt2, passes through (100,100) */
    dataio_targets_compute(&P368, k3, 3, NULL, tp, NULL, NULL);
    T_NEAR(AT(tp, 0, 12, 12), (0 + 1 + M_SQRT1_2) / 3, 0, 1e-6);
    T_NEAR(AT(tp, 1, 12, 12), (1 + 0 - M_SQRT1_2) / 3, 0, 1e-6);
    /* a limb needs both ends labelled; a zero-length limb has no direction */
    kps[(0 * 18 + 8) * 3 + 2] = 0;
    set_kp(kps, 1, 8, 104, 100);
    dataio_targets_compute(&P368, kps, 2, NULL, tp, NULL, NULL);
    for (int c = 0; c < DATAIO_PAF_CH * HW; c++) T_CHECK(tp[c] == 0);
}

/* Offsets: nose at (100,60) and another at (106,60). */
static void offset_hand_values(void)
{
    float kps[2 * 18 * 3] = {0};
    set_kp(kps, 0, 0, 100, 60);
    dataio_targets_compute(&P368, kps, 1, NULL, NULL, to, NULL);
    T_NEAR(AT(to, 0, 7, 12), 0.0625, 0, 1e-7); /* (100-99.5)/8 */
    T_NEAR(AT(to, 1, 7, 12), 0.0625, 0, 1e-7);
    T_NEAR(AT(to, 0, 7, 13), -0.5, 0, 0);      /* (100-107.5)/8 = -0.94, clamped; Gaussian 0.56 > 0.4 */
    T_NEAR(AT(to, 1, 7, 13), 0.0625, 0, 1e-7);
    T_NEAR(AT(to, 0, 7, 14), 0, 0, 0);         /* Gaussian 0.086 < 0.4 */
    T_NEAR(AT(to, 0, 7, 11), 0.5, 0, 0);       /* (100-91.5)/8 = 1.06 clamped; d^2 72.5 -> 0.477 */
    T_NEAR(AT(to, 2, 7, 12), 0, 0, 0);         /* other keypoints empty */
    set_kp(kps, 1, 0, 106, 60);
    dataio_targets_compute(&P368, kps, 2, NULL, NULL, to, NULL);
    /* (7,12): p1 d^2 0.5, p2 d^2 42.5 (Gaussian 0.648, qualifies too): the nearer, p1, wins */
    T_NEAR(AT(to, 0, 7, 12), 0.0625, 0, 1e-7);
    /* (7,13): p1 d^2 56.5, p2 d^2 2.5: p2 wins although listed later */
    T_NEAR(AT(to, 0, 7, 13), (106 - 107.5) / 8.0, 0, 1e-7);
    T_NEAR(AT(to, 1, 7, 13), 0.0625, 0, 1e-7);
    /* the same with the persons in the other order */
    float sw[2 * 18 * 3];
    memcpy(sw, kps + 18 * 3, sizeof(float) * 18 * 3);
    memcpy(sw + 18 * 3, kps, sizeof(float) * 18 * 3);
    dataio_targets_compute(&P368, sw, 2, NULL, NULL, to, NULL);
    T_NEAR(AT(to, 0, 7, 12), 0.0625, 0, 1e-7);
    T_NEAR(AT(to, 0, 7, 13), (106 - 107.5) / 8.0, 0, 1e-7);
}

/* Attention: limb 14 (neck -> nose), neck (100,100), nose (100,160): |b-a| = 60 px,
 * sigma_l = 60/32 = 1.875 cells; distances in cells. */
static void attention_hand_values(void)
{
    float kps[18 * 3] = {0};
    set_kp(kps, 0, 1, 100, 100);
    set_kp(kps, 0, 0, 100, 160);
    set_kp(kps, 0, 14, 104, 156);
    dataio_targets_compute(&P368, kps, 1, NULL, NULL, NULL, ta);
    /* (12,12): centre (12.4375,12.4375) cells, before the start: distance to a = 0.0884 */
    T_NEAR(AT(ta, 14, 12, 12), 0.9977802451, 0, 1e-6);
    /* (16,14): beside the segment, 1.9375 cells away */
    T_NEAR(AT(ta, 14, 16, 14), 0.3437716061, 0, 1e-6);
    /* (25,12): past the end b = (12.5,20): distance sqrt(0.0625^2 + 5.4375^2) */
    T_NEAR(AT(ta, 14, 25, 12), 0.0002223826, 0, 1e-8);
    /* short limb 15 (nose -> r_eye), 5.7 px: sigma_l floors at 0.5; cell (19,12) projects mid-segment */
    T_NEAR(AT(ta, 15, 19, 12), 0.4578333618, 0, 1e-6);
    /* unlabelled limbs are zero everywhere, labelled ones positive everywhere near */
    for (int c = 0; c < HW; c++) T_CHECK(AT(ta, 0, c / G, c % G) == 0);
    /* the max over persons: a second identical person changes nothing */
    float two[2 * 18 * 3];
    memcpy(two, kps, sizeof kps);
    memcpy(two + 54, kps, sizeof kps);
    static float ta2[DATAIO_ATT_CH * HW];
    dataio_targets_compute(&P368, two, 2, NULL, NULL, NULL, ta2);
    T_CHECK(!memcmp(ta, ta2, sizeof ta2));
}

static void mask_grid_average(void)
{
    /* 16x16 crop, stride 8: 2x2 grid; zero a 4x8 block in the top-left cell */
    float m[256], g[4];
    for (int i = 0; i < 256; i++) m[i] = 1;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 8; x++) m[y * 16 + x] = 0;
    m[15 * 16 + 15] = 0.5f;
    dataio_mask_to_grid(m, 8, 2, 2, g);
    T_NEAR(g[0], 0.5, 0, 1e-7);
    T_NEAR(g[1], 1, 0, 1e-7);
    T_NEAR(g[2], 1, 0, 1e-7);
    T_NEAR(g[3], 1 - 0.5 / 64, 0, 1e-7);
}

static unsigned long long rng_state = 88172645463325252ull;
static double urand(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (rng_state >> 11) * (1.0 / 9007199254740992.0);
}

/* encode(flip(persons)) == flip(encode(persons)) for random crowded scenes. */
static void flip_equivariance(void)
{
    enum { NP = 4 };
    static float a_th[DATAIO_HEAT_CH * HW], a_tp[DATAIO_PAF_CH * HW], a_to[DATAIO_OFF_CH * HW], a_ta[DATAIO_ATT_CH * HW];
    float worst = 0;
    for (int trial = 0; trial < 20; trial++) {
        float kps[NP * 18 * 3];
        for (int q = 0; q < NP; q++) {
            double cx = 60 + 250 * urand(), cy = 60 + 250 * urand();
            for (int k = 0; k < 18; k++) {
                float *p = kps + (q * 18 + k) * 3;
                p[0] = (float)(cx + 120 * (urand() - 0.5));
                p[1] = (float)(cy + 160 * (urand() - 0.5));
                p[2] = urand() < 0.85 ? 1.0f : 0.0f;
                if (trial == 0 && k == 3) p[0] = -30; /* outside the crop */
            }
        }
        dataio_targets_compute(&P368, kps, NP, th, tp, to, ta);
        dataio_flip_targets(G, G, NULL, th, tp, to, ta);
        dataio_flip_keypoints(kps, NP, 368);
        dataio_targets_compute(&P368, kps, NP, a_th, a_tp, a_to, a_ta);
        float *x[4] = {th, tp, to, ta}, *y[4] = {a_th, a_tp, a_to, a_ta};
        int n[4] = {DATAIO_HEAT_CH * HW, DATAIO_PAF_CH * HW, DATAIO_OFF_CH * HW, DATAIO_ATT_CH * HW};
        for (int t = 0; t < 4; t++)
            for (int c = 0; c < n[t]; c++) worst = fmaxf(worst, fabsf(x[t][c] - y[t][c]));
    }
    T_CHECKF(worst < 1e-5f, "flip(encode) and encode(flip) differ by %g", worst);
}

/* The sample flip: channel and sign bookkeeping on a hand-made sample, and flip twice = identity. */
static void flip_sample_channels(void)
{
    dataio_sample s;
    dataio_sample_init(&s, 16, 2, 2, 2);
    for (int i = 0; i < 16 * 16 * 3; i++) s.rgb[i] = (uint8_t)(i * 7);
    s.mask[0] = 0.25f;                         /* (0,0) -> (0,1) */
    s.heatmap[2 * 4 + 0] = 0.5f;               /* r_sho (0,0) -> l_sho (0,1) */
    s.heatmap[18 * 4 + 2] = 0.75f;             /* background (1,0) -> (1,1) */
    s.paf[(2 * 6) * 4 + 0] = 0.6f;             /* limb 6 x -> limb 10 x, negated */
    s.paf[(2 * 6 + 1) * 4 + 0] = 0.8f;         /* limb 6 y -> limb 10 y */
    s.paf[(2 * 14) * 4 + 3] = 0.3f;            /* limb 14 (neck-nose) maps to itself */
    s.offset[(2 * 4) * 4 + 1] = 0.25f;         /* r_wri x -> l_wri x negated */
    s.offset[(2 * 4 + 1) * 4 + 1] = -0.125f;   /* r_wri y -> l_wri y */
    s.attention[17 * 4 + 0] = 0.9f;            /* limb 17 -> 18 */
    float *k = s.keypoints;
    k[2 * 3 + 0] = 3, k[2 * 3 + 1] = 4, k[2 * 3 + 2] = 1;  /* r_sho */
    k[0] = 5, k[1] = 6, k[2] = 1;                         /* nose */
    dataio_sample orig;
    dataio_sample_init(&orig, 16, 2, 2, 2);
    memcpy(orig.rgb, s.rgb, 16 * 16 * 3);
    dataio_flip_sample(&s);
    T_CHECK(s.meta.flipped == 1);
    T_CHECK(s.mask[1] == 0.25f && s.mask[0] == 0);
    T_CHECK(s.heatmap[5 * 4 + 1] == 0.5f && s.heatmap[2 * 4 + 0] == 0);
    T_CHECK(s.heatmap[18 * 4 + 3] == 0.75f);
    T_CHECK(s.paf[(2 * 10) * 4 + 1] == -0.6f && s.paf[(2 * 10 + 1) * 4 + 1] == 0.8f);
    T_CHECK(s.paf[(2 * 14) * 4 + 2] == -0.3f);
    T_CHECK(s.offset[(2 * 7) * 4 + 0] == -0.25f && s.offset[(2 * 7 + 1) * 4 + 0] == -0.125f);
    T_CHECK(s.attention[18 * 4 + 1] == 0.9f);
    T_CHECK(k[5 * 3 + 0] == 12 && k[5 * 3 + 1] == 4 && k[5 * 3 + 2] == 1 && k[2 * 3 + 2] == 0);
    T_CHECK(k[0] == 10 && k[1] == 6);
    T_CHECK(k[18 * 3 + 0] == 0); /* unlabelled rows stay zero */
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) T_CHECK(s.rgb[(y * 16 + x) * 3 + c] == orig.rgb[(y * 16 + 15 - x) * 3 + c]);
    dataio_flip_sample(&s);
    T_CHECK(!memcmp(s.rgb, orig.rgb, 16 * 16 * 3));
    T_CHECK(s.paf[(2 * 6) * 4 + 0] == 0.6f && s.offset[(2 * 4) * 4 + 1] == 0.25f && s.meta.flipped == 0);
    T_CHECK(k[2 * 3 + 0] == 3);
    dataio_sample_free(&s);
    dataio_sample_free(&orig);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(heatmap_hand_values);
    T_RUN(paf_hand_values);
    T_RUN(offset_hand_values);
    T_RUN(attention_hand_values);
    T_RUN(mask_grid_average);
    T_RUN(flip_equivariance);
    T_RUN(flip_sample_channels);
    T_EXIT();
}
