#include "eval/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void eval_decode_params_from_config(const core_config *cfg, eval_decode_params *p)
{
    p->thre1 = cfg->eval.thre1;
    p->thre2 = cfg->eval.thre2;
    p->mid_num = cfg->eval.mid_num;
    p->min_inlier_frac = cfg->eval.min_inlier_frac;
    p->mid_thresh = cfg->eval.mid_thresh;
    p->min_parts = cfg->eval.min_parts;
    p->min_person_score = cfg->eval.min_person_score;
}

int eval_find_peaks(const eval_maps *m, int k, double thre1, eval_peak **out)
{
    const int h = m->h, w = m->w;
    const float *H = m->heat + (size_t)k * h * w;
    const float *ox = m->offset ? m->offset + (size_t)(2 * k) * h * w : NULL;
    const float *oy = m->offset ? m->offset + (size_t)(2 * k + 1) * h * w : NULL;
    int n = 0, cap = 16;
    eval_peak *pk = core_malloc(cap * sizeof *pk);
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            float v = H[(size_t)i * w + j];
            if (!(v > thre1)) continue;
            int peak = 1;
            for (int di = -1; di <= 1 && peak; di++)
                for (int dj = -1; dj <= 1; dj++) {
                    int y = i + di, x = j + dj;
                    if ((!di && !dj) || y < 0 || y >= h || x < 0 || x >= w) continue;
                    float u = H[(size_t)y * w + x];
                    /* Strict against earlier cells, non-strict against later ones: a
                     * plateau of equal values yields its first cell only. */
                    int earlier = di < 0 || (di == 0 && dj < 0);
                    if (earlier ? u >= v : u > v) { peak = 0; break; }
                }
            if (!peak) continue;
            if (n == cap) pk = core_realloc(pk, (cap *= 2) * sizeof *pk);
            double x = m->origin_x + j * m->step_x, y = m->origin_y + i * m->step_y;
            if (ox) {
                x += m->off_unit_x * ox[(size_t)i * w + j];
                y += m->off_unit_y * oy[(size_t)i * w + j];
            }
            pk[n].x = (float)x;
            pk[n].y = (float)y;
            pk[n].score = v;
            n++;
        }
    *out = pk;
    return n;
}

/* Bilinear sample of one map plane at grid coordinates (u = column, v = row), clamped to the grid. */
static float sample_bilinear(const float *P, int h, int w, double u, double v)
{
    if (u < 0) u = 0;
    if (v < 0) v = 0;
    if (u > w - 1) u = w - 1;
    if (v > h - 1) v = h - 1;
    int j0 = (int)u, i0 = (int)v;
    int j1 = j0 + 1 < w ? j0 + 1 : j0, i1 = i0 + 1 < h ? i0 + 1 : i0;
    double fu = u - j0, fv = v - i0;
    double top = P[(size_t)i0 * w + j0] * (1 - fu) + P[(size_t)i0 * w + j1] * fu;
    double bot = P[(size_t)i1 * w + j0] * (1 - fu) + P[(size_t)i1 * w + j1] * fu;
    return (float)(top * (1 - fv) + bot * fv);
}

double eval_paf_score(const eval_maps *m, int l, const float a[2], const float b[2], int mid_num, double thre2,
                      double *inlier_frac)
{
    double dx = b[0] - a[0], dy = b[1] - a[1];
    double norm = sqrt(dx * dx + dy * dy);
    const size_t plane = (size_t)m->h * m->w;
    const float *PX = m->paf + (size_t)(2 * l) * plane, *PY = PX + plane;
    if (inlier_frac) *inlier_frac = 0;
    if (mid_num < 1) return 0;
    if (norm < 1e-6) {
        /* Both ends in one place (a small face at a coarse stride, without offsets):
         * the direction is undefined, so the field's strength there is the evidence. */
        double u = (a[0] - m->origin_x) / m->step_x, v = (a[1] - m->origin_y) / m->step_y;
        double s = hypot(sample_bilinear(PX, m->h, m->w, u, v), sample_bilinear(PY, m->h, m->w, u, v));
        if (inlier_frac) *inlier_frac = s > thre2;
        return s;
    }
    double ux = dx / norm, uy = dy / norm;
    double sum = 0;
    int inl = 0;
    for (int s = 0; s < mid_num; s++) {
        double t = mid_num > 1 ? (double)s / (mid_num - 1) : 0.5;
        double x = a[0] + t * dx, y = a[1] + t * dy;
        double u = (x - m->origin_x) / m->step_x, v = (y - m->origin_y) / m->step_y;
        double sc = sample_bilinear(PX, m->h, m->w, u, v) * ux + sample_bilinear(PY, m->h, m->w, u, v) * uy;
        sum += sc;
        inl += sc > thre2;
    }
    if (inlier_frac) *inlier_frac = (double)inl / mid_num;
    return sum / mid_num;
}

typedef struct {
    int a, b;     /* global candidate ids */
    double score; /* PAF score with the length prior */
    double key;   /* sort key: score plus both peak scores (OpenPose's order) */
} conn;

static int conn_cmp(const void *x, const void *y)
{
    double a = ((const conn *)x)->key, b = ((const conn *)y)->key;
    return (a < b) - (a > b);
}

typedef struct {
    int part[SKEL_NUM_KP]; /* global candidate id or -1 */
    double score;
    int count;
} subset;

static int person_cmp(const void *x, const void *y)
{
    float a = ((const eval_person *)x)->score, b = ((const eval_person *)y)->score;
    return (a < b) - (a > b);
}

static int peak_cmp(const void *x, const void *y)
{
    float a = ((const eval_peak *)x)->score, b = ((const eval_peak *)y)->score;
    return (a < b) - (a > b);
}

int eval_decode(const eval_maps *m, const eval_decode_params *p, eval_person **out)
{
    CHECK(m->h > 0 && m->w > 0 && m->heat && m->paf, "decode: empty maps");
    CHECK(m->step_x > 0 && m->step_y > 0, "decode: map step must be positive");
    /* All peaks in one array; first[k] indexes channel k's. */
    eval_peak *cand = NULL;
    int first[SKEL_NUM_KP + 1], ncand = 0;
    for (int k = 0; k < SKEL_NUM_KP; k++) {
        eval_peak *pk;
        int n = eval_find_peaks(m, k, p->thre1, &pk);
        if (n > EVAL_MAX_PEAKS) {
            qsort(pk, n, sizeof *pk, peak_cmp);
            n = EVAL_MAX_PEAKS;
        }
        cand = core_realloc(cand, (size_t)(ncand + n + 1) * sizeof *cand);
        memcpy(cand + ncand, pk, (size_t)n * sizeof *pk);
        free(pk);
        first[k] = ncand;
        ncand += n;
    }
    first[SKEL_NUM_KP] = ncand;

    int nsub = 0, capsub = 16;
    subset *sub = core_malloc(capsub * sizeof *sub);
    int *used = core_calloc((size_t)ncand + 1, sizeof *used);
    conn *cs = NULL;
    const double image_h = m->image_h > 0 ? m->image_h : m->h * m->step_y;

    for (int l = 0; l < SKEL_NUM_LIMBS; l++) {
        const int ka = skel_limbs[l][0], kb = skel_limbs[l][1];
        const int a0 = first[ka], na = first[ka + 1] - a0, b0 = first[kb], nb = first[kb + 1] - b0;
        if (!na || !nb) continue;
        cs = core_realloc(cs, (size_t)na * nb * sizeof *cs);
        int nc = 0;
        for (int i = 0; i < na; i++)
            for (int j = 0; j < nb; j++) {
                const eval_peak *A = &cand[a0 + i], *B = &cand[b0 + j];
                float pa[2] = {A->x, A->y}, pb[2] = {B->x, B->y};
                double frac;
                double s = eval_paf_score(m, l, pa, pb, p->mid_num, p->thre2, &frac);
                double len = hypot(pb[0] - pa[0], pb[1] - pa[1]);
                /* OpenPose's length prior: limbs longer than half the image are penalised. */
                double prior = len > 0 ? 0.5 * image_h / len - 1 : 0;
                s += prior < 0 ? prior : 0;
                if (frac + 1e-9 < p->min_inlier_frac || !(s > p->mid_thresh)) continue;
                cs[nc].a = a0 + i;
                cs[nc].b = b0 + j;
                cs[nc].score = s;
                cs[nc].key = s + A->score + B->score;
                nc++;
            }
        qsort(cs, nc, sizeof *cs, conn_cmp);
        /* Greedy maximum-weight matching: each candidate joins at most one limb of this type. */
        for (int c = 0; c < nc; c++) used[cs[c].a] = used[cs[c].b] = 0;
        int taken = 0, maxtake = na < nb ? na : nb;
        for (int c = 0; c < nc && taken < maxtake; c++) {
            if (used[cs[c].a] || used[cs[c].b]) continue;
            used[cs[c].a] = used[cs[c].b] = 1;
            cs[taken++] = cs[c];
        }
        /* Assembly into people (OpenPose's subset merging). */
        for (int c = 0; c < taken; c++) {
            const int ia = cs[c].a, ib = cs[c].b;
            const double s = cs[c].score;
            int found[2], nf = 0;
            for (int q = 0; q < nsub && nf < 2; q++)
                if (sub[q].part[ka] == ia || sub[q].part[kb] == ib) found[nf++] = q;
            if (nf == 1) {
                subset *S = &sub[found[0]];
                if (S->part[kb] != ib) {
                    if (S->part[kb] < 0) S->count++;
                    S->part[kb] = ib;
                    S->score += cand[ib].score + s;
                }
            } else if (nf == 2) {
                subset *S1 = &sub[found[0]], *S2 = &sub[found[1]];
                int overlap = 0;
                for (int k = 0; k < SKEL_NUM_KP; k++) overlap |= S1->part[k] >= 0 && S2->part[k] >= 0;
                if (!overlap) {
                    for (int k = 0; k < SKEL_NUM_KP; k++)
                        if (S2->part[k] >= 0) S1->part[k] = S2->part[k];
                    S1->count += S2->count;
                    S1->score += S2->score + s;
                    sub[found[1]] = sub[--nsub];
                } else if (S1->part[kb] != ib) {
                    if (S1->part[kb] < 0) S1->count++;
                    S1->part[kb] = ib;
                    S1->score += cand[ib].score + s;
                }
            } else if (nf == 0 && l < SKEL_NUM_LIMBS - 2) {
                /* The two eye-ear limbs are redundant links; they never start a person. */
                if (nsub == capsub) sub = core_realloc(sub, (capsub *= 2) * sizeof *sub);
                subset *S = &sub[nsub++];
                for (int k = 0; k < SKEL_NUM_KP; k++) S->part[k] = -1;
                S->part[ka] = ia;
                S->part[kb] = ib;
                S->count = 2;
                S->score = cand[ia].score + cand[ib].score + s;
            }
        }
    }

    eval_person *ppl = core_malloc((size_t)(nsub + 1) * sizeof *ppl);
    int np = 0;
    for (int q = 0; q < nsub; q++) {
        const subset *S = &sub[q];
        if (S->count < p->min_parts || S->score / S->count < p->min_person_score) continue;
        eval_person *P = &ppl[np++];
        memset(P, 0, sizeof *P);
        for (int k = 0; k < SKEL_NUM_KP; k++) {
            if (S->part[k] < 0) continue;
            const eval_peak *c = &cand[S->part[k]];
            P->kp[k][0] = c->x;
            P->kp[k][1] = c->y;
            P->kp[k][2] = c->score > 0 ? c->score : 1e-6f;
            P->count++;
        }
        P->score = (float)(S->score / S->count);
    }
    qsort(ppl, np, sizeof *ppl, person_cmp);
    free(cs);
    free(used);
    free(sub);
    free(cand);
    *out = ppl;
    return np;
}

void eval_person_to_coco(const eval_person *person, float out[SKEL_NUM_COCO * 3])
{
    for (int c = 0; c < SKEL_NUM_COCO; c++) {
        const float *k = person->kp[skel_to_coco[c]];
        out[3 * c] = k[0];
        out[3 * c + 1] = k[1];
        out[3 * c + 2] = k[2];
    }
}
