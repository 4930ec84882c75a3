#include "dataio/sample.h"

#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "dataio/input_norm.h"

void dataio_sample_init(dataio_sample *s, int size, int gh, int gw, int P)
{
    CHECK(size > 0 && gh > 0 && gw > 0 && P >= 0, "sample: bad sizes %d %dx%d %d", size, gh, gw, P);
    memset(s, 0, sizeof *s);
    s->size = size;
    s->grid_h = gh;
    s->grid_w = gw;
    s->max_persons = P;
    size_t hw = (size_t)gh * gw;
    s->rgb = core_calloc((size_t)size * size * 3, 1);
    s->mask = core_calloc(hw, sizeof(float));
    s->heatmap = core_calloc(DATAIO_HEAT_CH * hw, sizeof(float));
    s->paf = core_calloc(DATAIO_PAF_CH * hw, sizeof(float));
    s->offset = core_calloc(DATAIO_OFF_CH * hw, sizeof(float));
    s->attention = core_calloc(DATAIO_ATT_CH * hw, sizeof(float));
    s->keypoints = core_calloc((size_t)(P ? P : 1) * SKEL_NUM_KP * 3, sizeof(float));
}

void dataio_sample_free(dataio_sample *s)
{
    free(s->rgb);
    free(s->mask);
    free(s->heatmap);
    free(s->paf);
    free(s->offset);
    free(s->attention);
    free(s->keypoints);
    memset(s, 0, sizeof *s);
}

void dataio_sample_image_chw(const dataio_sample *s, float *out)
{
    dataio_sample_input(s, CORE_NORM_CENTERED, out);
}

void dataio_sample_input(const dataio_sample *s, core_input_norm mode, float *out)
{
    dataio_input_norm_image(mode, s->rgb, (size_t)s->size * s->size, out);
}

static void reverse_rows(float *plane, int h, int w)
{
    for (int i = 0; i < h; i++) {
        float *r = plane + (size_t)i * w;
        for (int a = 0, b = w - 1; a < b; a++, b--) {
            float t = r[a];
            r[a] = r[b];
            r[b] = t;
        }
    }
}

static void swap_planes(float *a, float *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

static void negate(float *a, size_t n)
{
    for (size_t i = 0; i < n; i++) a[i] = a[i] == 0 ? 0.0f : -a[i]; /* no -0 in the output */
}

/* Reverses every plane along x and exchanges plane c with plane mirror(c). */
static void flip_planes(float *t, int nch, int h, int w, int (*mirror)(int))
{
    size_t hw = (size_t)h * w;
    for (int c = 0; c < nch; c++) reverse_rows(t + c * hw, h, w);
    for (int c = 0; c < nch; c++) {
        int m = mirror(c);
        if (m > c) swap_planes(t + c * hw, t + m * hw, hw);
    }
}

static int limb_mirror(int l) { return skel_limb_mirror[l]; }
static int offset_mirror(int c) { return 2 * skel_kp_mirror[c / 2] + (c & 1); }

void dataio_flip_targets(int h, int w, float *mask, float *heatmap, float *paf, float *offset, float *attention)
{
    size_t hw = (size_t)h * w;
    if (mask) reverse_rows(mask, h, w);
    if (heatmap) flip_planes(heatmap, DATAIO_HEAT_CH, h, w, skel_heat_mirror);
    if (paf) {
        flip_planes(paf, DATAIO_PAF_CH, h, w, skel_paf_mirror);
        for (int l = 0; l < SKEL_NUM_LIMBS; l++) negate(paf + 2 * l * hw, hw);
    }
    if (offset) {
        flip_planes(offset, DATAIO_OFF_CH, h, w, offset_mirror);
        for (int k = 0; k < SKEL_NUM_KP; k++) negate(offset + 2 * k * hw, hw);
    }
    if (attention) flip_planes(attention, DATAIO_ATT_CH, h, w, limb_mirror);
}

void dataio_flip_keypoints(float *kps, int np, int size)
{
    for (int q = 0; q < np; q++) {
        float *p = kps + (size_t)q * SKEL_NUM_KP * 3;
        for (int k = 0; k < SKEL_NUM_KP; k++) {
            int m = skel_kp_mirror[k];
            if (m > k)
                for (int d = 0; d < 3; d++) {
                    float t = p[k * 3 + d];
                    p[k * 3 + d] = p[m * 3 + d];
                    p[m * 3 + d] = t;
                }
        }
        for (int k = 0; k < SKEL_NUM_KP; k++)
            if (p[k * 3 + 2] > 0) p[k * 3] = (float)(size - 1) - p[k * 3];
    }
}

void dataio_flip_rgb(uint8_t *rgb, int h, int w)
{
    for (int i = 0; i < h; i++) {
        uint8_t *r = rgb + (size_t)i * w * 3;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int c = 0; c < 3; c++) {
                uint8_t t = r[a * 3 + c];
                r[a * 3 + c] = r[b * 3 + c];
                r[b * 3 + c] = t;
            }
    }
}

void dataio_flip_sample(dataio_sample *s)
{
    dataio_flip_rgb(s->rgb, s->size, s->size);
    dataio_flip_targets(s->grid_h, s->grid_w, s->mask, s->heatmap, s->paf, s->offset, s->attention);
    dataio_flip_keypoints(s->keypoints, s->max_persons, s->size);
    s->meta.flipped ^= 1;
}
