#include "dataio/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void dataio_aug_draw(const dataio_aug_params *p, const dataio_coco_ann *mp, core_sm64 *rng, dataio_aug *out)
{
    double mult = core_sm64_range(rng, p->scale_min, p->scale_max);
    double deg = core_sm64_range(rng, -p->max_rotate, p->max_rotate);
    double dx = core_sm64_range(rng, -p->center_perturb, p->center_perturb);
    double dy = core_sm64_range(rng, -p->center_perturb, p->center_perturb);
    int flip = core_sm64_uniform(rng) < p->flip;
    double s = p->target_height * p->size / mp->bbox[3] * mult;
    double bx = mp->bbox[0] + mp->bbox[2] / 2, by = mp->bbox[1] + mp->bbox[3] / 2;
    /* x' = s R (x - b) + d + (S-1)/2; image y points down, so a positive angle
     * turns the person counter-clockwise on screen. */
    double th = deg * M_PI / 180, c = cos(th) * s, sn = sin(th) * s, half = (p->size - 1) * 0.5;
    out->m[0] = c, out->m[1] = sn, out->m[2] = -(c * bx + sn * by) + dx + half;
    out->m[3] = -sn, out->m[4] = c, out->m[5] = -(-sn * bx + c * by) + dy + half;
    out->scale = s;
    out->rotation = deg;
    out->flip = flip;
    /* crop centre back in the image: b + R^T (-d) / s */
    double ct = cos(th), st = sin(th);
    out->cx = bx + (ct * -dx - st * -dy) / s;
    out->cy = by + (st * -dx + ct * -dy) / s;
}

static void invert(const double m[6], double inv[6])
{
    double det = m[0] * m[4] - m[1] * m[3];
    CHECK(fabs(det) > 1e-20, "degenerate augmentation (scale 0)");
    inv[0] = m[4] / det, inv[1] = -m[1] / det;
    inv[3] = -m[3] / det, inv[4] = m[0] / det;
    inv[2] = -(inv[0] * m[2] + inv[1] * m[5]);
    inv[5] = -(inv[3] * m[2] + inv[4] * m[5]);
}

/* Both warps step through the source in 16.16 fixed point along each crop row
 * and blend with 8-bit weights; pixels whose four neighbours lie inside the
 * image (almost all) take the fast path. */
#define FX_ONE 65536
#define WARP_STRIP 32

/* r | g << 20 | b << 40 */
static inline uint64_t lanes(const uint8_t *p) { return p[0] | (uint64_t)p[1] << 20 | (uint64_t)p[2] << 40; }
/* rounding: half of 4096 in each lane */
#define LANE_HALF (2048ull | 2048ull << 20 | 2048ull << 40)

void dataio_warp_rgb(const dataio_aug *a, const uint8_t *src, int w, int h, uint8_t *dst, int S)
{
    double inv[6];
    invert(a->m, inv);
    const int64_t dx = llround(inv[0] * FX_ONE), dy = llround(inv[3] * FX_ONE);
    /* column strips keep the (rotated) source footprint small enough for the cache */
    for (int xs = 0; xs < S; xs += WARP_STRIP)
    for (int y = 0; y < S; y++) {
        int xe = xs + WARP_STRIP < S ? xs + WARP_STRIP : S;
        int64_t sx = llround((inv[0] * xs + inv[1] * y + inv[2]) * FX_ONE);
        int64_t sy = llround((inv[3] * xs + inv[4] * y + inv[5]) * FX_ONE);
        uint8_t *o = dst + ((size_t)y * S + xs) * 3;
        for (int x = xs; x < xe; x++, sx += dx, sy += dy, o += 3) {
            int64_t x0 = sx >> 16, y0 = sy >> 16; /* floor */
            unsigned fx = (unsigned)(sx >> 8) & 255, fy = (unsigned)(sy >> 8) & 255;
            if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) {
                /* 6-bit fractions (1/64 pixel; OpenCV's warpAffine uses 1/32) let the three
                 * channels ride in 20-bit lanes of one 64-bit word: 4 multiplies, not 12 */
                const uint8_t *p = src + ((size_t)y0 * w + (size_t)x0) * 3, *q = p + (size_t)w * 3;
                uint64_t gx = fx >> 2, gy = fy >> 2;
                uint64_t acc = lanes(p) * ((64 - gx) * (64 - gy)) + lanes(p + 3) * (gx * (64 - gy)) +
                               lanes(q) * ((64 - gx) * gy) + lanes(q + 3) * (gx * gy) + LANE_HALF;
                o[0] = (uint8_t)((acc >> 12) & 0xff);
                o[1] = (uint8_t)((acc >> 32) & 0xff);
                o[2] = (uint8_t)((acc >> 52) & 0xff);
            } else if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) {
                o[0] = o[1] = o[2] = 128;
            } else { /* on the border: outside neighbours are grey */
                unsigned wt[4] = {(256 - fx) * (256 - fy), fx * (256 - fy), (256 - fx) * fy, fx * fy};
                unsigned acc[3] = {0, 0, 0};
                for (int k = 0; k < 4; k++) {
                    int64_t xx = x0 + (k & 1), yy = y0 + (k >> 1);
                    int in = xx >= 0 && yy >= 0 && xx < w && yy < h;
                    for (int c = 0; c < 3; c++) acc[c] += wt[k] * (in ? src[((size_t)yy * w + (size_t)xx) * 3 + c] : 128u);
                }
                for (int c = 0; c < 3; c++) o[c] = (uint8_t)((acc[c] + 32768) >> 16);
            }
        }
    }
}

void dataio_warp_mask(const dataio_aug *a, const uint8_t *src, int w, int h, float *dst, int S)
{
    double inv[6];
    invert(a->m, inv);
    const int64_t dx = llround(inv[0] * FX_ONE), dy = llround(inv[3] * FX_ONE);
    const float norm = 1.0f / 65536.0f;
    /* column strips keep the (rotated) source footprint small enough for the cache */
    for (int xs = 0; xs < S; xs += WARP_STRIP)
    for (int y = 0; y < S; y++) {
        int xe = xs + WARP_STRIP < S ? xs + WARP_STRIP : S;
        int64_t sx = llround((inv[0] * xs + inv[1] * y + inv[2]) * FX_ONE);
        int64_t sy = llround((inv[3] * xs + inv[4] * y + inv[5]) * FX_ONE);
        float *o = dst + ((size_t)y * S + xs);
        for (int x = xs; x < xe; x++, sx += dx, sy += dy, o++) {
            int64_t x0 = sx >> 16, y0 = sy >> 16;
            unsigned fx = (unsigned)(sx >> 8) & 255, fy = (unsigned)(sy >> 8) & 255;
            unsigned wt[4] = {(256 - fx) * (256 - fy), fx * (256 - fy), (256 - fx) * fy, fx * fy};
            if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) {
                const uint8_t *p = src + (size_t)y0 * w + (size_t)x0, *q = p + w;
                *o = (float)(p[0] * wt[0] + p[1] * wt[1] + q[0] * wt[2] + q[1] * wt[3]) * norm;
            } else if (x0 < -1 || y0 < -1 || x0 >= w || y0 >= h) {
                *o = 1; /* borders created by augmentation count */
            } else {
                unsigned acc = 0;
                for (int k = 0; k < 4; k++) {
                    int64_t xx = x0 + (k & 1), yy = y0 + (k >> 1);
                    acc += wt[k] * ((xx >= 0 && yy >= 0 && xx < w && yy < h) ? src[(size_t)yy * w + (size_t)xx] : 1u);
                }
                *o = (float)acc * norm;
            }
        }
    }
}

static int is_target_person(const dataio_coco_ann *a) { return !a->iscrowd && a->num_keypoints > 0; }

int dataio_count_target_persons(const dataio_coco_image *ci)
{
    int n = 0;
    for (int i = 0; i < ci->nanns; i++) n += is_target_person(&ci->anns[i]);
    return n;
}

uint8_t *dataio_mask_miss(const dataio_coco_image *ci)
{
    uint8_t *m = NULL;
    for (int i = 0; i < ci->nanns; i++) {
        const dataio_coco_ann *a = &ci->anns[i];
        if (!a->has_segm) continue;
        if (!m) {
            m = core_malloc((size_t)ci->width * ci->height);
            memset(m, 1, (size_t)ci->width * ci->height);
        }
        dataio_segm_paint(&a->segm, m, ci->height, ci->width, 0);
    }
    return m;
}

static void map_point(const double m[6], const float *in, float *out)
{
    out[0] = (float)(m[0] * in[0] + m[1] * in[1] + m[2]);
    out[1] = (float)(m[3] * in[0] + m[4] * in[1] + m[5]);
    out[2] = in[2] > 0 ? 1.0f : 0.0f;
    if (!(out[2] > 0)) out[0] = out[1] = 0;
}

void dataio_make_sample(const dataio_aug_params *p, const dataio_image *img, const uint8_t *mask_miss,
                        const dataio_coco_image *ci, int main_idx, const dataio_aug *aug, dataio_sample *out)
{
    const int S = p->size;
    CHECK(out->size == S && out->grid_h * p->stride == S && out->grid_w * p->stride == S,
          "sample buffer does not match crop %d / stride %d", S, p->stride);
    int np = dataio_count_target_persons(ci);
    CHECK(out->max_persons >= np, "sample buffer has %d person rows, image needs %d", out->max_persons, np);
    dataio_warp_rgb(aug, img->rgb, img->width, img->height, out->rgb, S);
    /* main person first, then the others in file order */
    memset(out->keypoints, 0, sizeof(float) * out->max_persons * SKEL_NUM_KP * 3);
    int row = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < ci->nanns; i++) {
            if ((pass == 0) != (i == main_idx) || !is_target_person(&ci->anns[i])) continue;
            for (int k = 0; k < SKEL_NUM_KP; k++)
                map_point(aug->m, ci->anns[i].kps + 3 * k, out->keypoints + (row * SKEL_NUM_KP + k) * 3);
            row++;
        }
    dataio_target_params tp = {p->stride, out->grid_h, out->grid_w, p->sigma, p->paf_width};
    dataio_targets_compute(&tp, out->keypoints, row, out->heatmap, out->paf, out->offset, out->attention);
    if (mask_miss) {
        float *full = core_malloc(sizeof(float) * S * S);
        dataio_warp_mask(aug, mask_miss, img->width, img->height, full, S);
        dataio_mask_to_grid(full, p->stride, out->grid_h, out->grid_w, out->mask);
        free(full);
    } else {
        for (int c = 0; c < out->grid_h * out->grid_w; c++) out->mask[c] = 1;
    }
    const dataio_coco_ann *mp = &ci->anns[main_idx];
    /* SPEC stores the annotation id as int32; COCO's person ids fit, -1 marks one that does not */
    int32_t pid = mp->id >= 0 && mp->id <= INT32_MAX ? (int32_t)mp->id : -1;
    out->meta = (dataio_meta){ci->id, pid, (float)aug->scale, (float)aug->cx, (float)aug->cy, (float)aug->rotation, 0};
    if (aug->flip) dataio_flip_sample(out);
}
