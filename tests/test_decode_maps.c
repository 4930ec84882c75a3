/* Decoder and test-time-augmentation unit tests on hand-made maps. */
#include "tests/test.h"

#include <stdint.h>

#include "core/check.h"
#include "eval/decode.h"
#include "eval/testtime.h"
#include "tests/test_decode_paint.h"

static eval_maps grid_maps(const paint_maps *p, int with_offsets)
{
    eval_maps m = {p->h, p->w, p->heat, p->paf, with_offsets ? p->offset : NULL,
                   p->fd, p->fd, (p->fd - 1) / 2.0, (p->fd - 1) / 2.0, p->fd, p->fd, p->h * p->fd};
    return m;
}

static eval_decode_params default_params(void)
{
    core_config cfg;
    core_config_defaults(&cfg);
    eval_decode_params p;
    eval_decode_params_from_config(&cfg, &p);
    return p;
}

static void test_nms_peaks_threshold_and_plateau(void)
{
    enum { H = 6, W = 7 };
    float heat[19 * H * W] = {0};
    float paf[38 * H * W] = {0};
    float *h0 = heat; /* channel 0 */
    h0[1 * W + 1] = 0.9f;           /* isolated peak */
    h0[1 * W + 2] = 0.5f;           /* its neighbour: not a peak */
    h0[4 * W + 4] = h0[4 * W + 5] = 0.7f; /* plateau of two: one peak, the first */
    h0[0 * W + 6] = 0.05f;          /* local max below thre1 = 0.1 */
    h0[5 * W + 0] = 0.3f;           /* peak on the border */
    eval_maps m = {H, W, heat, paf, NULL, 8, 8, 3.5, 3.5, 8, 8, H * 8};
    eval_peak *pk;
    int n = eval_find_peaks(&m, 0, 0.1, &pk);
    T_CHECKF(n == 3, "found %d peaks, expected 3", n);
    if (n == 3) {
        T_NEAR(pk[0].x, 3.5 + 8, 0, 1e-5);
        T_NEAR(pk[0].y, 3.5 + 8, 0, 1e-5);
        T_NEAR(pk[0].score, 0.9, 0, 1e-6);
        T_NEAR(pk[1].x, 3.5 + 4 * 8, 0, 1e-5); /* the plateau's first cell (column 4) */
        T_NEAR(pk[1].y, 3.5 + 4 * 8, 0, 1e-5);
        T_NEAR(pk[2].x, 3.5, 0, 1e-5);
        T_NEAR(pk[2].y, 3.5 + 5 * 8, 0, 1e-5);
    }
    free(pk);
    n = eval_find_peaks(&m, 1, 0.1, &pk); /* an empty channel */
    T_CHECK(n == 0);
    free(pk);
}

static void test_offsets_give_subcell_position(void)
{
    enum { H = 5, W = 5 };
    for (int fd = 8; fd <= 16; fd += 8) {
        float heat[19 * H * W] = {0}, paf[38 * H * W] = {0}, off[36 * H * W] = {0};
        const int k = 7;
        heat[k * H * W + 2 * W + 3] = 1.0f;
        off[(2 * k) * H * W + 2 * W + 3] = 0.25f;
        off[(2 * k + 1) * H * W + 2 * W + 3] = -0.375f;
        eval_maps m = {H, W, heat, paf, off, fd, fd, (fd - 1) / 2.0, (fd - 1) / 2.0, fd, fd, H * fd};
        eval_peak *pk;
        int n = eval_find_peaks(&m, k, 0.1, &pk);
        T_CHECK(n == 1);
        if (n == 1) {
            /* SPEC: x = cx + fd*O[2k], cx = j*fd + (fd-1)/2 */
            T_NEAR(pk[0].x, 3 * fd + (fd - 1) / 2.0 + fd * 0.25, 0, 1e-5);
            T_NEAR(pk[0].y, 2 * fd + (fd - 1) / 2.0 - fd * 0.375, 0, 1e-5);
        }
        free(pk);
    }
}

static void test_paf_score_alignment(void)
{
    enum { H = 10, W = 10 };
    static float heat[19 * H * W], paf[38 * H * W];
    const int l = 4;
    for (int q = 0; q < H * W; q++) paf[2 * l * H * W + q] = 1.0f; /* unit vectors along +x */
    eval_maps m = {H, W, heat, paf, NULL, 8, 8, 3.5, 3.5, 8, 8, H * 8};
    float a[2] = {10, 20}, b[2] = {60, 20}, c[2] = {10, 70};
    double frac;
    T_NEAR(eval_paf_score(&m, l, a, b, 10, 0.05, &frac), 1.0, 0, 1e-6);
    T_NEAR(frac, 1.0, 0, 0);
    T_NEAR(eval_paf_score(&m, l, b, a, 10, 0.05, &frac), -1.0, 0, 1e-6);
    T_NEAR(frac, 0.0, 0, 0);
    T_NEAR(eval_paf_score(&m, l, a, c, 10, 0.05, &frac), 0.0, 0, 1e-6);
    float d[2] = {60, 70}; /* 45 degrees: cos = 0.7071 */
    T_NEAR(eval_paf_score(&m, l, a, d, 10, 0.05, NULL), sqrt(0.5), 1e-6, 0);
    /* half the segment on the field: fraction 1/2 */
    for (int i = 0; i < H; i++)
        for (int j = 5; j < W; j++) paf[2 * l * H * W + i * W + j] = 0;
    float e[2] = {3.5f, 20}, f[2] = {3.5f + 9 * 8, 20}; /* 10 samples at columns 0..9 */
    eval_paf_score(&m, l, e, f, 10, 0.05, &frac);
    T_NEAR(frac, 0.5, 0, 1e-9);
    /* both ends in one spot: the field's magnitude */
    T_NEAR(eval_paf_score(&m, l, a, a, 10, 0.05, &frac), 1.0, 0, 1e-6);
    T_NEAR(frac, 1.0, 0, 0);
    T_NEAR(eval_paf_score(&m, l, f, f, 10, 0.05, &frac), 0.0, 0, 1e-6);
    T_NEAR(frac, 0.0, 0, 0);
}

/* Two necks, two right hips, PAF for limb 0 (neck -> r_hip) only along the
 * true pairs, which cross diagonally: matching must follow the PAF, not
 * proximity. */
static void test_matching_follows_paf(void)
{
    paint_maps p;
    paint_init(&p, 30, 30, 8);
    float A[18][3] = {{0}}, B[18][3] = {{0}};
    A[1][0] = 40, A[1][1] = 40, A[1][2] = 1;
    A[8][0] = 150, A[8][1] = 160, A[8][2] = 1;
    B[1][0] = 150, B[1][1] = 40, B[1][2] = 1;
    B[8][0] = 40, B[8][1] = 160, B[8][2] = 1;
    A[9][0] = 150, A[9][1] = 220, A[9][2] = 1; /* knees make each person 3 parts */
    B[9][0] = 40, B[9][1] = 220, B[9][2] = 1;
    paint_person(&p, A, 7);
    paint_person(&p, B, 7);
    eval_maps m = grid_maps(&p, 1);
    eval_decode_params prm = default_params();
    eval_person *ppl;
    int n = eval_decode(&m, &prm, &ppl);
    T_CHECKF(n == 2, "decoded %d people, expected 2", n);
    for (int q = 0; q < n && q < 2; q++) {
        float nx = ppl[q].kp[1][0], hx = ppl[q].kp[8][0], kx = ppl[q].kp[9][0];
        T_CHECKF(fabsf(nx - hx) > 100 && fabsf(hx - kx) < 1, "person %d: neck x %g, hip x %g, knee x %g", q, nx, hx,
                 kx);
        T_CHECK(ppl[q].count == 3);
    }
    free(ppl);
    /* min_parts = 4 drops both 3-part people */
    prm.min_parts = 4;
    n = eval_decode(&m, &prm, &ppl);
    T_CHECK(n == 0);
    free(ppl);
    paint_free(&p);
}

/* Three full people of different sizes at stride 8 and 16: every keypoint is
 * recovered exactly with offsets, and within half a cell without. sigma grows
 * with the stride (7 at 8): with sigma = 7 at stride 16 a keypoint near a cell
 * corner has no cell within the Gaussian's 0.4 level, so it gets no offset
 * target at all (see docs/decode.md). */
static void test_decode_three_people(void)
{
    for (int fd = 8; fd <= 16; fd += 8) {
        paint_maps p;
        int W = 640 / fd, H = 480 / fd;
        paint_init(&p, H, W, fd);
        float kp[3][18][3];
        paint_stick_person(kp[0], 120.3, 240.7, 380);
        paint_stick_person(kp[1], 330.9, 200.2, 300);
        paint_stick_person(kp[2], 520.6, 300.4, 260);
        for (int q = 0; q < 3; q++) paint_person(&p, kp[q], 7.0 * fd / 8);
        paint_background(&p);
        eval_decode_params prm = default_params();
        for (int off = 1; off >= 0; off--) {
            eval_maps m = grid_maps(&p, off);
            eval_person *ppl;
            int n = eval_decode(&m, &prm, &ppl);
            T_CHECKF(n == 3, "fd %d offsets %d: %d people", fd, off, n);
            double worst = 0;
            for (int q = 0; q < n; q++) {
                /* match by neck */
                int best = 0;
                for (int r = 1; r < 3; r++)
                    if (fabsf(kp[r][1][0] - ppl[q].kp[1][0]) < fabsf(kp[best][1][0] - ppl[q].kp[1][0])) best = r;
                T_CHECKF(ppl[q].count == 18, "fd %d offsets %d: person with %d keypoints", fd, off, ppl[q].count);
                for (int k = 0; k < 18; k++) {
                    if (ppl[q].kp[k][2] == 0) continue;
                    double e = hypot(ppl[q].kp[k][0] - kp[best][k][0], ppl[q].kp[k][1] - kp[best][k][1]);
                    worst = e > worst ? e : worst;
                }
            }
            if (off) T_CHECKF(worst < 1e-3, "fd %d with offsets: worst error %g px", fd, worst);
            else T_CHECKF(worst <= fd * sqrt(0.5) + 1e-3, "fd %d without offsets: worst error %g px", fd, worst);
            free(ppl);
        }
        paint_free(&p);
    }
}

/* A noisy map (every other cell a local maximum, 4800 peaks a channel) must
 * not make grouping quadratic in thousands of peaks: only the EVAL_MAX_PEAKS
 * best take part (without the cap this case runs for minutes). */
static void test_decode_caps_noisy_peaks(void)
{
    enum { H = 120, W = 160 };
    static float heat[19 * H * W], paf[38 * H * W];
    for (int c = 0; c < 18; c++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++)
                heat[c * H * W + i * W + j] = (i % 2 == 0 && j % 2 == 0) ? 0.2f + 0.5f * ((i * 7 + j * 13) % 97) / 97 : 0;
    for (int q = 0; q < 38 * H * W; q++) paf[q] = 0.3f;
    eval_maps m = {H, W, heat, paf, NULL, 1, 1, 0, 0, 1, 1, H};
    eval_peak *pk;
    int n = eval_find_peaks(&m, 0, 0.1, &pk);
    free(pk);
    T_CHECKF(n == (H / 2) * (W / 2), "found %d peaks", n);
    eval_decode_params prm = default_params();
    eval_person *ppl;
    int np = eval_decode(&m, &prm, &ppl);
    T_CHECKF(np > 0, "no people from the noisy maps");
    /* every keypoint used comes from its channel's EVAL_MAX_PEAKS best peaks */
    for (int k = 0; k < 18; k++) {
        static float sc[(H / 2) * (W / 2)];
        int ns = 0;
        for (int q = 0; q < H * W; q++)
            if (heat[k * H * W + q] > 0.1f) sc[ns++] = heat[k * H * W + q];
        /* the EVAL_MAX_PEAKS-th largest score by counting */
        float lo = 0;
        for (int a = 0; a < ns; a++) {
            int above = 0;
            for (int b = 0; b < ns; b++) above += sc[b] > sc[a];
            if (above < EVAL_MAX_PEAKS && (lo == 0 || sc[a] < lo)) lo = sc[a];
        }
        for (int q = 0; q < np; q++)
            if (ppl[q].kp[k][2] > 0) T_CHECKF(ppl[q].kp[k][2] >= lo, "keypoint %d of score %g below the cap's %g", k,
                                             ppl[q].kp[k][2], lo);
    }
    free(ppl);
}

static void test_person_to_coco_order(void)
{
    eval_person p;
    memset(&p, 0, sizeof p);
    for (int k = 0; k < 18; k++) p.kp[k][0] = (float)k, p.kp[k][1] = 100.0f + k, p.kp[k][2] = 0.5f;
    float c[51];
    eval_person_to_coco(&p, c);
    static const int expect[17] = {0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10};
    for (int i = 0; i < 17; i++) {
        T_NEAR(c[3 * i], expect[i], 0, 0);
        T_NEAR(c[3 * i + 1], 100 + expect[i], 0, 0);
    }
}

/* Cubic convolution reproduces linear functions: a ramp on the grid must come
 * back as the same ramp of the pixel positions, which pins down the
 * pixel-centre / cell-centre convention of the resampling. */
static void test_resample_ramp_convention(void)
{
    const int fd = 8, gh = 6, gw = 10;
    static float heat[19 * 6 * 10], paf[38 * 6 * 10];
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            heat[i * gw + j] = (float)(j * fd + (fd - 1) / 2.0); /* channel 0: input x of the cell centre */
            heat[gh * gw + i * gw + j] = (float)(i * fd + (fd - 1) / 2.0); /* channel 1: input y */
        }
    eval_grid g = {gh, gw, fd, heat, paf, NULL};
    /* the image was scaled by 0.5: 160x96 original -> 80x48 input */
    eval_pass pass = {0.5, 0.5, 80, 48, 0};
    eval_image_maps acc;
    eval_image_maps_init(&acc, 96, 160, 0);
    eval_accumulate(&acc, &g, &pass, 1.0);
    double worst = 0;
    /* where all four cubic taps are inside the grid (the edge is replicated outside) */
    for (int y = 24; y < 56; y++)
        for (int x = 24; x < 120; x++) {
            double ex = (x + 0.5) * 0.5 - 0.5, ey = (y + 0.5) * 0.5 - 0.5;
            double e = fmax(fabs(acc.heat[y * 160 + x] - ex), fabs(acc.heat[96 * 160 + y * 160 + x] - ey));
            worst = e > worst ? e : worst;
        }
    T_CHECKF(worst < 1e-3, "ramp error %g", worst);
    eval_image_maps_free(&acc);
}

/* A symmetric map set (each channel equal to its mirror channel mirrored, PAF x
 * negated) is invariant under flip averaging. */
typedef struct {
    eval_grid g;
    int calls;
} fixed_net;

static void fixed_forward(void *ctx, const float *input, int H, int W, const eval_pass *pass, eval_grid *out)
{
    fixed_net *n = ctx;
    *out = n->g;
    n->calls++;
}

/* One keypoint seen through a pass at scale 0.5: the raw grid's view and the
 * image-resolution vote maps must both put it back at its original position. */
static void test_scaled_pass_positions(void)
{
    const int fd = 8, iw = 320, ih = 240;
    const double s = 0.5, ox = 137.3, oy = 88.6;
    eval_pass pass = {s, s, (int)(iw * s), (int)(ih * s), 0};
    paint_maps p;
    paint_init(&p, ih * s / fd, iw * s / fd, fd);
    float kp[18][3] = {{0}};
    kp[3][0] = (float)((ox + 0.5) * s - 0.5), kp[3][1] = (float)((oy + 0.5) * s - 0.5), kp[3][2] = 1;
    paint_person(&p, kp, 7);
    eval_grid g = {p.h, p.w, fd, p.heat, p.paf, p.offset};
    eval_maps gv = eval_grid_view(&g, &pass, ih);
    eval_peak *pk;
    int n = eval_find_peaks(&gv, 3, 0.1, &pk);
    T_CHECK(n == 1);
    if (n == 1) {
        T_NEAR(pk[0].x, ox, 0, 1e-3);
        T_NEAR(pk[0].y, oy, 0, 1e-3);
    }
    free(pk);
    eval_image_maps acc;
    eval_image_maps_init(&acc, ih, iw, 1);
    eval_accumulate(&acc, &g, &pass, 1.0);
    eval_maps iv = eval_image_maps_view(&acc);
    n = eval_find_peaks(&iv, 3, 0.1, &pk);
    T_CHECKF(n == 1, "%d peaks at image resolution", n);
    if (n == 1) {
        T_NEAR(pk[0].x, ox, 0, 1e-3);
        T_NEAR(pk[0].y, oy, 0, 1e-3);
    }
    free(pk);
    /* the same pass mirrored: votes come back un-mirrored */
    paint_free(&p);
    paint_init(&p, ih * s / fd, iw * s / fd, fd);
    float mk[18][3] = {{0}};
    mk[6][0] = (float)(pass.content_w - 1 - kp[3][0]), mk[6][1] = kp[3][1], mk[6][2] = 1; /* r_elb -> l_elb */
    paint_person(&p, mk, 7);
    eval_grid gm = {p.h, p.w, fd, p.heat, p.paf, p.offset};
    eval_pass mp = pass;
    mp.flipped = 1;
    eval_image_maps accm;
    eval_image_maps_init(&accm, ih, iw, 1);
    eval_accumulate(&accm, &gm, &mp, 1.0);
    iv = eval_image_maps_view(&accm);
    n = eval_find_peaks(&iv, 3, 0.1, &pk);
    T_CHECKF(n == 1, "%d peaks from the mirrored pass", n);
    if (n == 1) {
        T_NEAR(pk[0].x, ox, 0, 1e-3);
        T_NEAR(pk[0].y, oy, 0, 1e-3);
    }
    free(pk);
    eval_image_maps_free(&acc);
    eval_image_maps_free(&accm);
    paint_free(&p);
}

static void test_flip_symmetric_invariant(void)
{
    const int fd = 8, gh = 8, gw = 12, P = gh * gw;
    float *heat = calloc(19 * P, sizeof(float)), *paf = calloc(38 * P, sizeof(float)),
          *off = calloc(36 * P, sizeof(float));
    /* symmetrise random maps: S[c](j) = (B[c](j) + sign * B[mirror c](gw-1-j)) / 2 */
    uint32_t s = 12345;
    float *B = malloc(38 * (size_t)P * sizeof(float));
    float *planes[3] = {heat, paf, off};
    const int nch[3] = {19, 38, 36};
    for (int t = 0; t < 3; t++) {
        for (int q = 0; q < nch[t] * P; q++) {
            s = s * 1664525u + 1013904223u;
            B[q] = (s >> 8) / 16777216.0f - (t ? 0.5f : 0.0f);
        }
        for (int c = 0; c < nch[t]; c++) {
            int mc = t == 0 ? skel_heat_mirror(c) : t == 1 ? skel_paf_mirror(c) : 2 * skel_kp_mirror[c / 2] + (c & 1);
            float sg = t > 0 && !(c & 1) ? -1.0f : 1.0f; /* x components flip sign */
            for (int i = 0; i < gh; i++)
                for (int j = 0; j < gw; j++)
                    planes[t][c * P + i * gw + j] = 0.5f * (B[c * P + i * gw + j] + sg * B[mc * P + i * gw + gw - 1 - j]);
        }
    }
    free(B);
    /* image exactly 96x64 at scale 1 so the grid covers it without padding */
    const int iw = gw * fd, ih = gh * fd;
    uint8_t *rgb = calloc((size_t)iw * ih * 3, 1);
    fixed_net net = {{gh, gw, fd, heat, paf, off}, 0};
    double scale1 = 1.0;
    eval_tta_opts o = {&scale1, 1, 0, ih, fd, 1, CORE_NORM_CENTERED};
    eval_image_maps plain, flipped;
    eval_tta(rgb, ih, iw, &o, fixed_forward, &net, &plain);
    o.flip = 1;
    eval_tta(rgb, ih, iw, &o, fixed_forward, &net, &flipped);
    T_CHECK(net.calls == 3);
    double worst = 0;
    size_t pl = (size_t)ih * iw;
    for (size_t q = 0; q < 19 * pl; q++) worst = fmax(worst, fabs(plain.heat[q] - flipped.heat[q]));
    for (size_t q = 0; q < 38 * pl; q++) worst = fmax(worst, fabs(plain.paf[q] - flipped.paf[q]));
    for (size_t q = 0; q < 36 * pl; q++) worst = fmax(worst, fabs(plain.vote[q] - flipped.vote[q]));
    T_CHECKF(worst < 1e-4, "flip average differs from the plain maps by %g", worst);
    eval_image_maps_free(&plain);
    eval_image_maps_free(&flipped);
    free(rgb);
    free(heat);
    free(paf);
    free(off);
}

static void test_make_input_resize_flip_pad(void)
{
    const int h = 20, w = 30;
    uint8_t *rgb = malloc((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            rgb[(y * w + x) * 3] = (uint8_t)(x * 8); /* red: ramp in x */
            rgb[(y * w + x) * 3 + 1] = 100;          /* green: constant */
            rgb[(y * w + x) * 3 + 2] = (uint8_t)(y * 10);
        }
    int H, W;
    eval_pass ps;
    float *in = eval_make_input(rgb, h, w, 1.0, 0, 8, &H, &W, &ps);
    T_CHECK(H == 24 && W == 32 && ps.content_w == 30 && ps.content_h == 20);
    T_NEAR(in[0 * H * W + 5 * W + 7], 7 * 8 / 255.0 - 0.5, 0, 1e-5);
    T_NEAR(in[1 * H * W + 19 * W + 29], 100 / 255.0 - 0.5, 0, 1e-5);
    T_NEAR(in[1 * H * W + 21 * W + 31], 0, 0, 0); /* padding */
    free(in);
    in = eval_make_input(rgb, h, w, 1.0, 1, 8, &H, &W, &ps);
    T_NEAR(in[0 * H * W + 5 * W + 7], (29 - 7) * 8 / 255.0 - 0.5, 0, 1e-5);
    T_CHECK(ps.flipped == 1);
    free(in);
    /* scale 0.5: the antialiased ramp of a 2:1 reduction averages neighbours */
    in = eval_make_input(rgb, h, w, 0.5, 0, 8, &H, &W, &ps);
    T_CHECK(ps.content_w == 15 && ps.content_h == 10 && W == 16 && H == 16);
    T_NEAR(in[0 * H * W + 3 * W + 5], (2 * 5 + 0.5) * 8 / 255.0 - 0.5, 0, 1e-4);
    T_NEAR(in[1 * H * W + 3 * W + 5], 100 / 255.0 - 0.5, 0, 1e-5);
    free(in);
    free(rgb);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(test_nms_peaks_threshold_and_plateau);
    T_RUN(test_offsets_give_subcell_position);
    T_RUN(test_paf_score_alignment);
    T_RUN(test_matching_follows_paf);
    T_RUN(test_decode_three_people);
    T_RUN(test_decode_caps_noisy_peaks);
    T_RUN(test_person_to_coco_order);
    T_RUN(test_resample_ramp_convention);
    T_RUN(test_scaled_pass_positions);
    T_RUN(test_flip_symmetric_invariant);
    T_RUN(test_make_input_resize_flip_pad);
    T_EXIT();
}
