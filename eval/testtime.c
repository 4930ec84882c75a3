#include "eval/testtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/skeleton.h"
#include "dataio/input_norm.h"

/* Separable resampling: output index o reads source coordinate a*o + b through
 * a fixed number of taps (edge-replicated indices, precomputed weights). */
typedef struct {
    int n, ntap;
    int *idx;
    float *wt;
} taps;

/* Keys' cubic convolution with a = -0.5 (Catmull-Rom). OpenCV's INTER_CUBIC,
 * which OpenPose upsamples with, uses a = -0.75; only a = -0.5 reproduces
 * linear ramps exactly, so it does not shift a peak lying between cells. */
static double cubic_w(double t)
{
    const double A = -0.5;
    t = fabs(t);
    if (t <= 1) return ((A + 2) * t - (A + 3)) * t * t + 1;
    if (t < 2) return ((A * t - 5 * A) * t + 8 * A) * t - 4 * A;
    return 0;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void taps_cubic(taps *t, int n, int nsrc, double a, double b)
{
    t->n = n;
    t->ntap = 4;
    t->idx = core_malloc((size_t)n * 4 * sizeof *t->idx);
    t->wt = core_malloc((size_t)n * 4 * sizeof *t->wt);
    for (int o = 0; o < n; o++) {
        double c = a * o + b;
        int f = (int)floor(c);
        for (int q = 0; q < 4; q++) {
            int s = f - 1 + q;
            t->idx[o * 4 + q] = clampi(s, 0, nsrc - 1);
            t->wt[o * 4 + q] = (float)cubic_w(c - s);
        }
    }
}

/* Triangle (bilinear) filter of radius r source pixels, weights normalised:
 * r = 1 is bilinear interpolation, r = 1/scale antialiases a reduction. */
static void taps_triangle(taps *t, int n, int nsrc, double a, double b, double r)
{
    int nt = 2 * (int)ceil(r) + 2;
    t->n = n;
    t->ntap = nt;
    t->idx = core_malloc((size_t)n * nt * sizeof *t->idx);
    t->wt = core_calloc((size_t)n * nt, sizeof *t->wt);
    for (int o = 0; o < n; o++) {
        double c = a * o + b, sum = 0;
        int s0 = (int)floor(c - r) + 1;
        for (int q = 0; q < nt; q++) {
            int s = s0 + q;
            double wgt = 1 - fabs(c - s) / r;
            if (wgt < 0) wgt = 0;
            t->idx[o * nt + q] = clampi(s, 0, nsrc - 1);
            t->wt[o * nt + q] = (float)wgt;
            sum += wgt;
        }
        for (int q = 0; q < nt; q++) t->wt[o * nt + q] = (float)(sum > 0 ? t->wt[o * nt + q] / sum : 0);
        if (sum <= 0) t->wt[o * nt] = 1; /* unreachable for r >= 1; keeps the output defined */
    }
}

static void taps_free(taps *t)
{
    free(t->idx);
    free(t->wt);
}

/* dst[dh][dw] += weight * resample(src[sh][sw]); tmp holds sh*dw floats. */
static void resample_plane(const float *src, int sh, int sw, const taps *tx, const taps *ty, float *tmp, float *dst,
                           float weight)
{
    const int dw = tx->n, dh = ty->n;
    for (int r = 0; r < sh; r++) {
        const float *row = src + (size_t)r * sw;
        float *out = tmp + (size_t)r * dw;
        for (int o = 0; o < dw; o++) {
            const int *ix = tx->idx + (size_t)o * tx->ntap;
            const float *wx = tx->wt + (size_t)o * tx->ntap;
            float s = 0;
            for (int q = 0; q < tx->ntap; q++) s += wx[q] * row[ix[q]];
            out[o] = s;
        }
    }
    for (int o = 0; o < dh; o++) {
        const int *iy = ty->idx + (size_t)o * ty->ntap;
        const float *wy = ty->wt + (size_t)o * ty->ntap;
        float *out = dst + (size_t)o * dw;
        for (int q = 0; q < ty->ntap; q++) {
            const float *in = tmp + (size_t)iy[q] * dw;
            const float wq = weight * wy[q];
            if (wq == 0) continue;
            for (int x = 0; x < dw; x++) out[x] += wq * in[x];
        }
    }
}

void eval_image_maps_init(eval_image_maps *m, int h, int w, int with_votes)
{
    const size_t plane = (size_t)h * w;
    m->h = h;
    m->w = w;
    m->heat = core_calloc(plane * SKEL_NUM_KP + plane, sizeof *m->heat);
    m->paf = core_calloc(plane * 2 * SKEL_NUM_LIMBS, sizeof *m->paf);
    m->vote = with_votes ? core_calloc(plane * 2 * SKEL_NUM_KP, sizeof *m->vote) : NULL;
}

void eval_image_maps_free(eval_image_maps *m)
{
    free(m->heat);
    free(m->paf);
    free(m->vote);
    memset(m, 0, sizeof *m);
}

eval_maps eval_image_maps_view(const eval_image_maps *m)
{
    eval_maps v = {m->h, m->w, m->heat, m->paf, m->vote, 1, 1, 0, 0, 1, 1, m->h};
    return v;
}

eval_maps eval_grid_view(const eval_grid *g, const eval_pass *pass, int image_h)
{
    CHECK(!pass->flipped, "decode: a mirrored pass has no direct grid view");
    const double fd = g->stride, c0 = (fd - 1) / 2;
    /* original x = (input X + 0.5)/sx - 0.5 with X = c0 + j*fd + fd*O */
    eval_maps v = {g->h, g->w, g->heat, g->paf, g->offset,
                   fd / pass->sx, fd / pass->sy,
                   (c0 + 0.5) / pass->sx - 0.5, (c0 + 0.5) / pass->sy - 0.5,
                   fd / pass->sx, fd / pass->sy, image_h};
    return v;
}

float *eval_make_input(const uint8_t *rgb, int h, int w, double scale, int flip, int stride, int *H, int *W,
                       eval_pass *pass)
{
    return eval_make_input_norm(rgb, h, w, scale, flip, stride, CORE_NORM_CENTERED, H, W, pass);
}

float *eval_make_input_norm(const uint8_t *rgb, int h, int w, double scale, int flip, int stride,
                            core_input_norm norm, int *H, int *W, eval_pass *pass)
{
    CHECK(h > 0 && w > 0 && scale > 0 && stride > 0, "testtime: bad image %dx%d or scale %g", w, h, scale);
    int ws = (int)lround(w * scale), hs = (int)lround(h * scale);
    if (ws < 1) ws = 1;
    if (hs < 1) hs = 1;
    const int Wp = (ws + stride - 1) / stride * stride, Hp = (hs + stride - 1) / stride * stride;
    const double sx = (double)ws / w, sy = (double)hs / h;
    taps tx, ty;
    /* source x = (o + 0.5)/sx - 0.5, or of the mirrored column ws-1-o */
    if (flip) taps_triangle(&tx, ws, w, -1 / sx, (ws - 0.5) / sx - 0.5, sx < 1 ? 1 / sx : 1);
    else taps_triangle(&tx, ws, w, 1 / sx, 0.5 / sx - 0.5, sx < 1 ? 1 / sx : 1);
    taps_triangle(&ty, hs, h, 1 / sy, 0.5 / sy - 0.5, sy < 1 ? 1 / sy : 1);
    float *plane = core_malloc((size_t)h * w * sizeof *plane);
    float *tmp = core_malloc((size_t)h * ws * sizeof *tmp);
    float *res = core_malloc((size_t)hs * ws * sizeof *res);
    float *in = core_calloc((size_t)3 * Hp * Wp, sizeof *in);
    const dataio_input_norm nm = dataio_input_norm_get(norm);
    for (int c = 0; c < 3; c++) {
        dataio_input_norm_plane(&nm, c, rgb, (size_t)h * w, plane);
        memset(res, 0, (size_t)hs * ws * sizeof *res);
        resample_plane(plane, h, w, &tx, &ty, tmp, res, 1.0f);
        for (int y = 0; y < hs; y++)
            memcpy(in + ((size_t)c * Hp + y) * Wp, res + (size_t)y * ws, (size_t)ws * sizeof *res);
    }
    free(plane);
    free(tmp);
    free(res);
    taps_free(&tx);
    taps_free(&ty);
    *H = Hp;
    *W = Wp;
    pass->sx = sx;
    pass->sy = sy;
    pass->content_w = ws;
    pass->content_h = hs;
    pass->flipped = flip;
    return in;
}

void eval_accumulate(eval_image_maps *acc, const eval_grid *g, const eval_pass *pass, double weight)
{
    const int H = acc->h, W = acc->w, gh = g->h, gw = g->w;
    const double fd = g->stride, c0 = (fd - 1) / 2, sx = pass->sx, sy = pass->sy;
    const int cw = pass->content_w, fl = pass->flipped;
    /* Grid column of original pixel x: input X = (x+0.5)*sx - 0.5 (mirrored: cw-1-X), column (X - c0)/fd. */
    double ax = sx / fd, bx = (0.5 * sx - 0.5 - c0) / fd;
    if (fl) {
        ax = -sx / fd;
        bx = (cw - 0.5 - 0.5 * sx - c0) / fd;
    }
    const double ay = sy / fd, by = (0.5 * sy - 0.5 - c0) / fd;
    taps tx, ty;
    taps_cubic(&tx, W, gw, ax, bx);
    taps_cubic(&ty, H, gh, ay, by);
    const size_t plane = (size_t)H * W, gplane = (size_t)gh * gw;
    float *tmp = core_malloc((size_t)gh * W * sizeof *tmp);
    for (int c = 0; c <= SKEL_NUM_KP; c++) {
        int src = fl ? skel_heat_mirror(c) : c;
        resample_plane(g->heat + src * gplane, gh, gw, &tx, &ty, tmp, acc->heat + c * plane, (float)weight);
    }
    for (int c = 0; c < 2 * SKEL_NUM_LIMBS; c++) {
        int src = fl ? skel_paf_mirror(c) : c;
        float sgn = fl && !(c & 1) ? -1.0f : 1.0f; /* mirroring reverses x components */
        resample_plane(g->paf + src * gplane, gh, gw, &tx, &ty, tmp, acc->paf + c * plane, (float)weight * sgn);
    }
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    if (!acc->vote) return;
    CHECK(g->offset, "testtime: offset votes requested but the network gives no offsets");
    int *col = core_malloc((size_t)W * sizeof *col), *row = core_malloc((size_t)H * sizeof *row);
    for (int x = 0; x < W; x++) col[x] = clampi((int)lround(ax * x + bx), 0, gw - 1);
    for (int y = 0; y < H; y++) row[y] = clampi((int)lround(ay * y + by), 0, gh - 1);
    for (int k = 0; k < SKEL_NUM_KP; k++) {
        const int ks = fl ? skel_kp_mirror[k] : k;
        const float *OX = g->offset + (size_t)(2 * ks) * gplane, *OY = OX + gplane;
        float *VX = acc->vote + (size_t)(2 * k) * plane, *VY = VX + plane;
        for (int y = 0; y < H; y++) {
            const int i = row[y];
            for (int x = 0; x < W; x++) {
                const int j = col[x];
                const size_t q = (size_t)i * gw + j;
                double X = c0 + j * fd + fd * OX[q], Y = c0 + i * fd + fd * OY[q];
                if (fl) X = cw - 1 - X;
                VX[(size_t)y * W + x] += (float)(weight * ((X + 0.5) / sx - 0.5 - x));
                VY[(size_t)y * W + x] += (float)(weight * ((Y + 0.5) / sy - 0.5 - y));
            }
        }
    }
    free(col);
    free(row);
}

void eval_tta(const uint8_t *rgb, int h, int w, const eval_tta_opts *o, eval_forward_fn fn, void *ctx,
              eval_image_maps *out)
{
    CHECK(o->nscales > 0, "testtime: no scales");
    eval_image_maps_init(out, h, w, o->offsets);
    const int npass = o->nscales * (o->flip ? 2 : 1);
    const int short_side = h < w ? h : w;
    for (int s = 0; s < o->nscales; s++)
        for (int f = 0; f <= (o->flip ? 1 : 0); f++) {
            double scale = o->base_size * o->scales[s] / short_side;
            int H, W;
            eval_pass pass;
            float *in = eval_make_input_norm(rgb, h, w, scale, f, o->stride, o->input_norm, &H, &W, &pass);
            eval_grid g;
            memset(&g, 0, sizeof g);
            fn(ctx, in, H, W, &pass, &g);
            CHECK(g.stride == o->stride && g.h * g.stride == H && g.w * g.stride == W,
                  "testtime: network maps %dx%d at stride %d do not match input %dx%d", g.w, g.h, g.stride, W, H);
            eval_accumulate(out, &g, &pass, 1.0 / npass);
            free(in);
        }
}
