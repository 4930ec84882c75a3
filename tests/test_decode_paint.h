/* Test-only painter of hand-made maps: Gaussians, limb PAFs and block-inside
 * offsets on an h x w grid at stride fd, written straight from SPEC section 2
 * so the decoder tests do not depend on the data pipeline. */
#ifndef SSPOSE_TESTS_DECODE_PAINT_H
#define SSPOSE_TESTS_DECODE_PAINT_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/skeleton.h"

typedef struct {
    int h, w, fd;
    float *heat, *paf, *offset; /* [19|38|36][h][w] */
    float *offd2;               /* nearest keypoint distance^2 per offset cell (who wins) */
    float *pafn;                /* PAF vectors summed per cell (count) for averaging */
} paint_maps;

static inline void paint_init(paint_maps *m, int h, int w, int fd)
{
    size_t p = (size_t)h * w;
    m->h = h;
    m->w = w;
    m->fd = fd;
    m->heat = calloc(19 * p, sizeof(float));
    m->paf = calloc(38 * p, sizeof(float));
    m->offset = calloc(36 * p, sizeof(float));
    m->offd2 = malloc(18 * p * sizeof(float));
    m->pafn = calloc(19 * p, sizeof(float));
    for (size_t i = 0; i < 18 * p; i++) m->offd2[i] = INFINITY;
}

static inline void paint_free(paint_maps *m)
{
    free(m->heat);
    free(m->paf);
    free(m->offset);
    free(m->offd2);
    free(m->pafn);
}

static inline float paint_clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One person: kp[k] = {x, y, v} in input pixels, v > 0 labelled. */
static inline void paint_person(paint_maps *m, const float kp[18][3], double sigma)
{
    const int h = m->h, w = m->w, fd = m->fd;
    const size_t p = (size_t)h * w;
    const double c0 = (fd - 1) / 2.0;
    for (int k = 0; k < 18; k++) {
        if (kp[k][2] <= 0) continue;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                double cx = c0 + j * fd, cy = c0 + i * fd;
                double d2 = (cx - kp[k][0]) * (cx - kp[k][0]) + (cy - kp[k][1]) * (cy - kp[k][1]);
                double e = d2 / (2 * sigma * sigma);
                if (e > 4.6052) continue;
                double g = exp(-e);
                float *H = &m->heat[k * p + (size_t)i * w + j];
                if (g > *H) *H = (float)g;
                if (g > 0.4 && d2 < m->offd2[k * p + (size_t)i * w + j]) {
                    m->offd2[k * p + (size_t)i * w + j] = (float)d2;
                    m->offset[2 * k * p + (size_t)i * w + j] = paint_clampf((float)((kp[k][0] - cx) / fd), -0.5f, 0.5f);
                    m->offset[(2 * k + 1) * p + (size_t)i * w + j] =
                        paint_clampf((float)((kp[k][1] - cy) / fd), -0.5f, 0.5f);
                }
            }
    }
    for (int l = 0; l < 19; l++) {
        const float *a = kp[skel_limbs[l][0]], *b = kp[skel_limbs[l][1]];
        if (a[2] <= 0 || b[2] <= 0) continue;
        double dx = b[0] - a[0], dy = b[1] - a[1], len = sqrt(dx * dx + dy * dy);
        if (len < 1e-6) continue;
        double ux = dx / len, uy = dy / len, wd = 1.0 * fd;
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                double cx = c0 + j * fd - a[0], cy = c0 + i * fd - a[1];
                double along = cx * ux + cy * uy, perp = fabs(cx * uy - cy * ux);
                if (perp > wd || along < -wd || along > len + wd) continue;
                size_t q = (size_t)i * w + j;
                float n = m->pafn[l * p + q];
                /* running mean of the persons' vectors at this cell */
                m->paf[2 * l * p + q] = (m->paf[2 * l * p + q] * n + (float)ux) / (n + 1);
                m->paf[(2 * l + 1) * p + q] = (m->paf[(2 * l + 1) * p + q] * n + (float)uy) / (n + 1);
                m->pafn[l * p + q] = n + 1;
            }
    }
}

static inline void paint_background(paint_maps *m)
{
    const size_t p = (size_t)m->h * m->w;
    for (size_t q = 0; q < p; q++) {
        float mx = 0;
        for (int k = 0; k < 18; k++) mx = m->heat[k * p + q] > mx ? m->heat[k * p + q] : mx;
        m->heat[18 * p + q] = 1 - mx;
    }
}

/* A standing person of height ~hgt pixels centred at (x, y), facing the camera. */
static inline void paint_stick_person(float kp[18][3], double x, double y, double hgt)
{
    static const float T[18][2] = {{0, -0.42f},    {0, -0.32f},    {-0.1f, -0.32f}, {-0.14f, -0.15f},
                                   {-0.16f, 0.0f}, {0.1f, -0.32f}, {0.14f, -0.15f}, {0.16f, 0.0f},
                                   {-0.07f, 0.02f}, {-0.08f, 0.25f}, {-0.08f, 0.47f}, {0.07f, 0.02f},
                                   {0.08f, 0.25f}, {0.08f, 0.47f}, {-0.025f, -0.45f}, {0.025f, -0.45f},
                                   {-0.05f, -0.43f}, {0.05f, -0.43f}};
    for (int k = 0; k < 18; k++) {
        kp[k][0] = (float)(x + T[k][0] * hgt);
        kp[k][1] = (float)(y + T[k][1] * hgt);
        kp[k][2] = 1;
    }
}

#endif
