#include "dataio/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void dataio_aug_draw(const dataio_aug_params *p, const dataio_coco_ann *mp, dataio_rng *rng, dataio_aug *out)
{
    double mult = dataio_rng_range(rng, p->scale_min, p->scale_max);
    double deg = dataio_rng_range(rng, -p->max_rotate, p->max_rotate);
    double dx = dataio_rng_range(rng, -p->center_perturb, p->center_perturb);
    double dy = dataio_rng_range(rng, -p->center_perturb, p->center_perturb);
    int flip = dataio_rng_uniform(rng) < p->flip;
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

void dataio_warp_rgb(const dataio_aug *a, const uint8_t *src, int w, int h, uint8_t *dst, int S)
{
    double inv[6];
    invert(a->m, inv);
    for (int y = 0; y < S; y++) {
        double sx = inv[1] * y + inv[2], sy = inv[4] * y + inv[5];
        uint8_t *o = dst + (size_t)y * S * 3;
        for (int x = 0; x < S; x++, sx += inv[0], sy += inv[3], o += 3) {
            double fx0 = floor(sx), fy0 = floor(sy);
            if (fx0 < -1 || fy0 < -1 || fx0 >= w || fy0 >= h) {
                o[0] = o[1] = o[2] = 128;
                continue;
            }
            int x0 = (int)fx0, y0 = (int)fy0;
            float fx = (float)(sx - fx0), fy = (float)(sy - fy0);
            float wt[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
            float acc[3] = {0, 0, 0};
            for (int q = 0; q < 4; q++) {
                int xx = x0 + (q & 1), yy = y0 + (q >> 1);
                if (xx < 0 || yy < 0 || xx >= w || yy >= h) {
                    for (int c = 0; c < 3; c++) acc[c] += wt[q] * 128;
                } else {
                    const uint8_t *p = src + ((size_t)yy * w + xx) * 3;
                    for (int c = 0; c < 3; c++) acc[c] += wt[q] * p[c];
                }
            }
            for (int c = 0; c < 3; c++) o[c] = (uint8_t)(acc[c] + 0.5f);
        }
    }
}

void dataio_warp_mask(const dataio_aug *a, const uint8_t *src, int w, int h, float *dst, int S)
{
    double inv[6];
    invert(a->m, inv);
    for (int y = 0; y < S; y++) {
        double sx = inv[1] * y + inv[2], sy = inv[4] * y + inv[5];
        float *o = dst + (size_t)y * S;
        for (int x = 0; x < S; x++, sx += inv[0], sy += inv[3], o++) {
            double fx0 = floor(sx), fy0 = floor(sy);
            if (fx0 < -1 || fy0 < -1 || fx0 >= w || fy0 >= h) {
                *o = 1;
                continue;
            }
            int x0 = (int)fx0, y0 = (int)fy0;
            float fx = (float)(sx - fx0), fy = (float)(sy - fy0);
            float wt[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy}, acc = 0;
            for (int q = 0; q < 4; q++) {
                int xx = x0 + (q & 1), yy = y0 + (q >> 1);
                acc += wt[q] * ((xx < 0 || yy < 0 || xx >= w || yy >= h) ? 1.0f : (float)src[(size_t)yy * w + xx]);
            }
            *o = acc;
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
    out->meta = (dataio_meta){ci->id, (int32_t)mp->id, (float)aug->scale, (float)aug->cx, (float)aug->cy,
                              (float)aug->rotation, 0};
    if (aug->flip) dataio_flip_sample(out);
}
