#include "dataio/targets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

static inline double cell_centre(int idx, int stride) { return idx * stride + (stride - 1) * 0.5; }

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Range of cell indices whose centres can lie within `r` pixels of coordinate c. */
static void cell_range(double c, double r, int stride, int n, int *lo, int *hi)
{
    double a = (c - r - (stride - 1) * 0.5) / stride, b = (c + r - (stride - 1) * 0.5) / stride;
    if (!(a < n) || !(b >= 0)) { *lo = 0; *hi = -1; return; }
    *lo = clampi((int)floor(a), 0, n - 1);
    *hi = clampi((int)ceil(b), 0, n - 1);
}

static void heatmaps(const dataio_target_params *p, const float *kps, int np, float *th)
{
    const int h = p->grid_h, w = p->grid_w, hw = h * w;
    const double s2 = 2.0 * p->sigma * p->sigma;
    const double r = p->sigma * sqrt(2.0 * DATAIO_HEAT_CUTOFF);
    memset(th, 0, sizeof(float) * DATAIO_HEAT_CH * hw);
    for (int q = 0; q < np; q++)
        for (int k = 0; k < SKEL_NUM_KP; k++) {
            const float *kp = kps + (q * SKEL_NUM_KP + k) * 3;
            if (!(kp[2] > 0)) continue;
            int i0, i1, j0, j1;
            cell_range(kp[1], r, p->stride, h, &i0, &i1);
            cell_range(kp[0], r, p->stride, w, &j0, &j1);
            float *out = th + k * hw;
            for (int i = i0; i <= i1; i++) {
                double dy = cell_centre(i, p->stride) - kp[1];
                for (int j = j0; j <= j1; j++) {
                    double dx = cell_centre(j, p->stride) - kp[0];
                    double e = (dx * dx + dy * dy) / s2;
                    if (e > DATAIO_HEAT_CUTOFF) continue;
                    float v = expf((float)-e);
                    if (v > out[i * w + j]) out[i * w + j] = v;
                }
            }
        }
    float *bg = th + SKEL_NUM_KP * hw;
    for (int c = 0; c < hw; c++) {
        float m = 0;
        for (int k = 0; k < SKEL_NUM_KP; k++) m = th[k * hw + c] > m ? th[k * hw + c] : m;
        bg[c] = m < 1.f ? 1.f - m : 0.f;
    }
}

static void pafs(const dataio_target_params *p, const float *kps, int np, float *tp)
{
    const int h = p->grid_h, w = p->grid_w, hw = h * w;
    const double thr = p->paf_width * p->stride;
    memset(tp, 0, sizeof(float) * DATAIO_PAF_CH * hw);
    int *count = core_malloc(sizeof(int) * hw);
    for (int l = 0; l < SKEL_NUM_LIMBS; l++) {
        memset(count, 0, sizeof(int) * hw);
        float *px = tp + 2 * l * hw, *py = px + hw;
        for (int q = 0; q < np; q++) {
            const float *a = kps + (q * SKEL_NUM_KP + skel_limbs[l][0]) * 3;
            const float *b = kps + (q * SKEL_NUM_KP + skel_limbs[l][1]) * 3;
            if (!(a[2] > 0 && b[2] > 0)) continue;
            double vx = (double)b[0] - a[0], vy = (double)b[1] - a[1], len = sqrt(vx * vx + vy * vy);
            if (!(len > 0)) continue;
            double ux = vx / len, uy = vy / len;
            int i0, i1, j0, j1;
            /* every on-limb centre lies within thr of the segment's bounding box */
            cell_range(0.5 * (a[1] + b[1]), 0.5 * fabs(vy) + thr, p->stride, h, &i0, &i1);
            cell_range(0.5 * (a[0] + b[0]), 0.5 * fabs(vx) + thr, p->stride, w, &j0, &j1);
            for (int i = i0; i <= i1; i++) {
                double dy = cell_centre(i, p->stride) - a[1];
                for (int j = j0; j <= j1; j++) {
                    double dx = cell_centre(j, p->stride) - a[0];
                    double along = dx * ux + dy * uy, perp = fabs(dx * uy - dy * ux);
                    if (perp > thr || along < -thr || along > len + thr) continue;
                    int c = i * w + j;
                    /* running mean over the persons covering this cell */
                    int n = ++count[c];
                    px[c] += (float)((ux - px[c]) / n);
                    py[c] += (float)((uy - py[c]) / n);
                }
            }
        }
    }
    free(count);
}

static void offsets(const dataio_target_params *p, const float *kps, int np, float *to)
{
    const int h = p->grid_h, w = p->grid_w, hw = h * w;
    const double s2 = 2.0 * p->sigma * p->sigma;
    /* exp(-d^2/2s^2) > thr  <=>  d^2 < -2 s^2 ln(thr) */
    const double dmax2 = -s2 * log(DATAIO_OFFSET_THRESHOLD);
    const double r = sqrt(dmax2);
    memset(to, 0, sizeof(float) * DATAIO_OFF_CH * hw);
    double *best = core_malloc(sizeof(double) * hw);
    for (int k = 0; k < SKEL_NUM_KP; k++) {
        for (int c = 0; c < hw; c++) best[c] = INFINITY;
        float *ox = to + 2 * k * hw, *oy = ox + hw;
        for (int q = 0; q < np; q++) {
            const float *kp = kps + (q * SKEL_NUM_KP + k) * 3;
            if (!(kp[2] > 0)) continue;
            int i0, i1, j0, j1;
            cell_range(kp[1], r, p->stride, h, &i0, &i1);
            cell_range(kp[0], r, p->stride, w, &j0, &j1);
            for (int i = i0; i <= i1; i++) {
                double dy = kp[1] - cell_centre(i, p->stride);
                for (int j = j0; j <= j1; j++) {
                    double dx = kp[0] - cell_centre(j, p->stride);
                    double d2 = dx * dx + dy * dy;
                    int c = i * w + j;
                    if (!(d2 < dmax2) || !(d2 < best[c])) continue;
                    best[c] = d2;
                    ox[c] = (float)fmin(0.5, fmax(-0.5, dx / p->stride));
                    oy[c] = (float)fmin(0.5, fmax(-0.5, dy / p->stride));
                }
            }
        }
    }
    free(best);
}

static void attention(const dataio_target_params *p, const float *kps, int np, float *ta)
{
    const int h = p->grid_h, w = p->grid_w, hw = h * w;
    const double fd = p->stride;
    memset(ta, 0, sizeof(float) * DATAIO_ATT_CH * hw);
    for (int l = 0; l < SKEL_NUM_LIMBS; l++) {
        float *out = ta + l * hw;
        for (int q = 0; q < np; q++) {
            const float *a = kps + (q * SKEL_NUM_KP + skel_limbs[l][0]) * 3;
            const float *b = kps + (q * SKEL_NUM_KP + skel_limbs[l][1]) * 3;
            if (!(a[2] > 0 && b[2] > 0)) continue;
            /* work in output-cell units */
            double ax = a[0] / fd, ay = a[1] / fd, vx = (b[0] - (double)a[0]) / fd, vy = (b[1] - (double)a[1]) / fd;
            double len2 = vx * vx + vy * vy;
            double sl = fmax(0.5, sqrt(len2) / 4.0);
            double inv = 1.0 / (sl * sl);
            /* cells farther than this from the segment get less than e^-ATT_CUTOFF */
            double r = sl * sqrt(DATAIO_ATT_CUTOFF) * fd;
            int i0, i1, j0, j1;
            cell_range(0.5 * (a[1] + b[1]), 0.5 * fabs(vy) * fd + r, p->stride, h, &i0, &i1);
            cell_range(0.5 * (a[0] + b[0]), 0.5 * fabs(vx) * fd + r, p->stride, w, &j0, &j1);
            for (int i = i0; i <= i1; i++) {
                double dy = cell_centre(i, p->stride) / fd - ay;
                for (int j = j0; j <= j1; j++) {
                    double dx = cell_centre(j, p->stride) / fd - ax;
                    double t = len2 > 0 ? (dx * vx + dy * vy) / len2 : 0;
                    t = t < 0 ? 0 : t > 1 ? 1 : t;
                    double ex = dx - t * vx, ey = dy - t * vy, e = (ex * ex + ey * ey) * inv;
                    if (e > DATAIO_ATT_CUTOFF) continue;
                    float v = expf((float)-e);
                    if (v > out[i * w + j]) out[i * w + j] = v;
                }
            }
        }
    }
}

void dataio_targets_compute(const dataio_target_params *p, const float *kps, int npersons, float *th, float *tp,
                            float *to, float *ta)
{
    CHECK(p->stride > 0 && p->grid_h > 0 && p->grid_w > 0,
          "targets: bad grid %dx%d or stride %d", p->grid_h, p->grid_w, p->stride);
    CHECK(p->sigma > 0 && p->paf_width > 0, "targets: sigma and paf_width must be positive");
    CHECK(npersons >= 0 && (npersons == 0 || kps), "targets: bad person list");
    if (th) heatmaps(p, kps, npersons, th);
    if (tp) pafs(p, kps, npersons, tp);
    if (to) offsets(p, kps, npersons, to);
    if (ta) attention(p, kps, npersons, ta);
}

void dataio_mask_to_grid(const float *m, int stride, int gh, int gw, float *out)
{
    const int S = gw * stride;
    const float inv = 1.0f / (float)(stride * stride);
    for (int i = 0; i < gh; i++)
        for (int j = 0; j < gw; j++) {
            float s = 0;
            for (int y = i * stride; y < (i + 1) * stride; y++)
                for (int x = j * stride; x < (j + 1) * stride; x++) s += m[y * S + x];
            out[i * gw + j] = s * inv;
        }
}
