/* COCO keypoint evaluation, following pycocotools' cocoeval.py step by step:
 * per (category, image) the OKS matrix of the 20 best detections against every
 * gt (computeOks), per area range the greedy matching (evaluateImg), per
 * (category, area range) the precision/recall curves over all images
 * (accumulate), and the ten means (summarize).
 *
 * Orders matter for ties and are reproduced exactly: gt in file order, then
 * stably moved so ignored gt come last; detections stably sorted by score
 * (numpy's mergesort), per image then again over the concatenation of all
 * images in ascending image id order. */
#include "eval/cocoeval.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/skeleton.h"

const char *const eval_coco_stat_names[EVAL_COCO_NSTATS] = {"AP", "AP50", "AP75", "APm", "APl",
                                                            "AR", "AR50", "AR75", "ARm", "ARl"};

/* pycocotools writes the sigmas as tenfold values divided by 10.0, which differs
 * from the literals in skel_coco_sigmas in the last bit for a few keypoints;
 * test_cocoeval checks both tables agree to 1e-15. */
static const double SIGMA10[EVAL_COCO_NKP] = {.26, .25, .25, .35, .35, .79, .79, .72, .72,
                                              .62, .62, 1.07, 1.07, .87, .87, .89, .89};

static const double AREA_LO[EVAL_COCO_NAREA] = {0.0, 32.0 * 32.0, 96.0 * 96.0};
static const double AREA_HI[EVAL_COCO_NAREA] = {1e5 * 1e5, 96.0 * 96.0, 1e5 * 1e5};
static const char *const AREA_LABEL[EVAL_COCO_NAREA] = {"all", "medium", "large"};

/* numpy.linspace(start, stop, n): i * ((stop - start) / (n - 1)) + start, last = stop. */
static double linspace(double start, double stop, int n, int i)
{
    if (i == n - 1) return stop;
    return (double)i * ((stop - start) / (double)(n - 1)) + start;
}

double eval_coco_oks_threshold(int t) { return linspace(0.5, 0.95, EVAL_COCO_NTHR, t); }
double eval_coco_recall_threshold(int r) { return linspace(0.0, 1.0, EVAL_COCO_NREC, r); }

/* numpy's float64 sum for short contiguous arrays: plain below 8 elements, else
 * eight interleaved partial sums combined pairwise, then the tail. Matching it
 * keeps OKS bit-identical, which matters only when an OKS sits on a threshold. */
static double numpy_sum(const double *x, int n)
{
    if (n < 8) {
        double s = 0.0;
        for (int i = 0; i < n; i++) s += x[i];
        return s;
    }
    double r[8];
    for (int j = 0; j < 8; j++) r[j] = x[j];
    int i = 8;
    for (; i < n - (n % 8); i += 8)
        for (int j = 0; j < 8; j++) r[j] += x[i + j];
    double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) s += x[i];
    return s;
}

double eval_coco_oks(const eval_coco_gt_ann *g, const double dkp[3 * EVAL_COCO_NKP])
{
    const double eps = DBL_EPSILON; /* np.spacing(1) */
    int k1 = 0;
    for (int k = 0; k < EVAL_COCO_NKP; k++) k1 += g->kp[3 * k + 2] > 0;
    /* gt without labelled keypoints: distance to the box of twice the gt bbox around it */
    double x0 = g->bbox[0] - g->bbox[2], x1 = g->bbox[0] + g->bbox[2] * 2;
    double y0 = g->bbox[1] - g->bbox[3], y1 = g->bbox[1] + g->bbox[3] * 2;
    double e[EVAL_COCO_NKP];
    int n = 0;
    for (int k = 0; k < EVAL_COCO_NKP; k++) {
        double xd = dkp[3 * k], yd = dkp[3 * k + 1], dx, dy;
        if (k1 > 0) {
            if (!(g->kp[3 * k + 2] > 0)) continue;
            dx = xd - g->kp[3 * k];
            dy = yd - g->kp[3 * k + 1];
        } else {
            dx = fmax(0.0, x0 - xd) + fmax(0.0, xd - x1);
            dy = fmax(0.0, y0 - yd) + fmax(0.0, yd - y1);
        }
        double s2 = (SIGMA10[k] / 10.0) * 2;
        double var = s2 * s2;
        e[n++] = exp(-((dx * dx + dy * dy) / var / (g->area + eps) / 2));
    }
    return numpy_sum(e, n) / n;
}

/* Stable sort of idx[0..n) by key descending (np.argsort(-key, kind='mergesort')). */
static void sort_desc_stable(int *idx, int n, const double *key, int *tmp)
{
    if (n < 2) return;
    int h = n / 2;
    sort_desc_stable(idx, h, key, tmp);
    sort_desc_stable(idx + h, n - h, key, tmp);
    int i = 0, j = h, o = 0;
    while (i < h && j < n) tmp[o++] = (-key[idx[j]] < -key[idx[i]]) ? idx[j++] : idx[i++];
    while (i < h) tmp[o++] = idx[i++];
    while (j < n) tmp[o++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

/* The detections of one (category, area range) over all images, in image order. */
typedef struct {
    double *score;
    unsigned char *tp, *fp; /* [n][T]: counted as true / false positive at threshold t */
    int n, cap;
    int npig; /* gt that count */
} curve_input;

static void curve_push(curve_input *c, double score, const unsigned char *tp, const unsigned char *fp)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->score = core_realloc(c->score, (size_t)c->cap * sizeof *c->score);
        c->tp = core_realloc(c->tp, (size_t)c->cap * EVAL_COCO_NTHR);
        c->fp = core_realloc(c->fp, (size_t)c->cap * EVAL_COCO_NTHR);
    }
    c->score[c->n] = score;
    memcpy(c->tp + (size_t)c->n * EVAL_COCO_NTHR, tp, EVAL_COCO_NTHR);
    memcpy(c->fp + (size_t)c->n * EVAL_COCO_NTHR, fp, EVAL_COCO_NTHR);
    c->n++;
}

/* evaluateImg for one image, category and area range: match, then push each detection's
 * outcome. gi: the image's gt (file order), ng; oks: [nd][ng] for the nd sorted, capped dets. */
static void evaluate_image(const eval_coco_gt *gt, const int *gi, int ng, const eval_coco_dets *dets, const int *di,
                           int nd, const double *oks, int a, curve_input *c)
{
    /* heap, not the stack: a crowded image may carry any number of gt */
    size_t gn = (size_t)(ng ? ng : 1);
    int *order = core_malloc(3 * gn * sizeof *order), *gig = order + gn, *tmp = gig + gn;
    double *neg_ig = core_malloc(gn * sizeof *neg_ig);
    unsigned char *gtm = core_calloc(EVAL_COCO_NTHR * gn, 1);
    for (int g = 0; g < ng; g++) {
        const eval_coco_gt_ann *ann = &gt->anns[gi[g]];
        gig[g] = ann->ignore || ann->area < AREA_LO[a] || ann->area > AREA_HI[a];
        order[g] = g;
        neg_ig[g] = -(double)gig[g]; /* ascending _ignore = descending -_ignore */
    }
    sort_desc_stable(order, ng, neg_ig, tmp);
    for (int g = 0; g < ng; g++)
        if (!gig[g]) c->npig++;

    unsigned char dmatched[EVAL_COCO_MAXDETS][EVAL_COCO_NTHR], dig[EVAL_COCO_MAXDETS][EVAL_COCO_NTHR];
    memset(dmatched, 0, sizeof dmatched);
    memset(dig, 0, sizeof dig);
    for (int t = 0; t < EVAL_COCO_NTHR && ng > 0; t++) {
        for (int d = 0; d < nd; d++) {
            double best = fmin(eval_coco_oks_threshold(t), 1 - 1e-10);
            int m = -1;
            for (int s = 0; s < ng; s++) {
                int g = order[s];
                const eval_coco_gt_ann *ann = &gt->anns[gi[g]];
                if (gtm[t * gn + s] && !ann->iscrowd) continue;
                /* matched a counted gt already and only ignored ones follow */
                if (m > -1 && !gig[order[m]] && gig[g]) break;
                double o = oks[(size_t)d * ng + g];
                if (o < best) continue;
                best = o;
                m = s;
            }
            if (m == -1) continue;
            dig[d][t] = (unsigned char)gig[order[m]];
            /* pycocotools stores the gt id and later reads id 0 as "unmatched" */
            dmatched[d][t] = gt->anns[gi[order[m]]].id != 0;
            gtm[t * gn + m] = 1;
        }
    }
    for (int d = 0; d < nd; d++) {
        const eval_coco_det *e = &dets->dets[di[d]];
        int outside = e->area < AREA_LO[a] || e->area > AREA_HI[a];
        unsigned char tp[EVAL_COCO_NTHR], fp[EVAL_COCO_NTHR];
        for (int t = 0; t < EVAL_COCO_NTHR; t++) {
            int ig = dig[d][t] || (!dmatched[d][t] && outside);
            tp[t] = dmatched[d][t] && !ig;
            fp[t] = !dmatched[d][t] && !ig;
        }
        curve_push(c, e->score, tp, fp);
    }
    free(order);
    free(neg_ig);
    free(gtm);
}

/* accumulate() for one (category, area range): precision[T][R] and recall[T], or -1s. */
static void accumulate(const curve_input *c, double prec[EVAL_COCO_NTHR][EVAL_COCO_NREC], double rec[EVAL_COCO_NTHR])
{
    for (int t = 0; t < EVAL_COCO_NTHR; t++) {
        rec[t] = -1;
        for (int r = 0; r < EVAL_COCO_NREC; r++) prec[t][r] = -1;
    }
    if (c->npig == 0) return;
    int n = c->n;
    int *idx = core_malloc((size_t)(n ? n : 1) * sizeof *idx), *tmp = core_malloc((size_t)(n ? n : 1) * sizeof *tmp);
    double *rc = core_malloc((size_t)(n ? n : 1) * sizeof *rc), *pr = core_malloc((size_t)(n ? n : 1) * sizeof *pr);
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_desc_stable(idx, n, c->score, tmp);
    for (int t = 0; t < EVAL_COCO_NTHR; t++) {
        double tp = 0, fp = 0;
        for (int i = 0; i < n; i++) {
            tp += c->tp[(size_t)idx[i] * EVAL_COCO_NTHR + t];
            fp += c->fp[(size_t)idx[i] * EVAL_COCO_NTHR + t];
            rc[i] = tp / c->npig;
            pr[i] = tp / (fp + tp + DBL_EPSILON);
        }
        rec[t] = n ? rc[n - 1] : 0;
        for (int i = n - 1; i > 0; i--)
            if (pr[i] > pr[i - 1]) pr[i - 1] = pr[i];
        /* np.searchsorted(rc, recThrs, side='left'); past the end precision stays 0 */
        int pi = 0;
        for (int r = 0; r < EVAL_COCO_NREC; r++) {
            double thr = eval_coco_recall_threshold(r);
            while (pi < n && rc[pi] < thr) pi++;
            prec[t][r] = pi < n ? pr[pi] : 0;
        }
    }
    free(idx);
    free(tmp);
    free(rc);
    free(pr);
}

/* Mean of the entries > -1, or -1 when there are none (summarize's _summarize). */
typedef struct { double sum; long n; } mean_acc;
static void mean_add(mean_acc *m, double v)
{
    if (v > -1) { m->sum += v; m->n++; }
}
static double mean_get(const mean_acc *m) { return m->n ? m->sum / m->n : -1; }

static int threshold_index(double v)
{
    for (int t = 0; t < EVAL_COCO_NTHR; t++)
        if (eval_coco_oks_threshold(t) == v) return t;
    return -1;
}

/* Buckets items by (category, image): start[b]..start[b+1] in list, order kept. */
static void bucket(int nb, const int *key, int n, int **start, int **list)
{
    *start = core_calloc((size_t)nb + 1, sizeof **start);
    *list = core_malloc((size_t)(n ? n : 1) * sizeof **list);
    for (int i = 0; i < n; i++)
        if (key[i] >= 0) (*start)[key[i] + 1]++;
    for (int b = 0; b < nb; b++) (*start)[b + 1] += (*start)[b];
    int *fill = core_malloc((size_t)(nb ? nb : 1) * sizeof *fill);
    memcpy(fill, *start, (size_t)nb * sizeof *fill);
    for (int i = 0; i < n; i++)
        if (key[i] >= 0) (*list)[fill[key[i]]++] = i;
    free(fill);
}

void eval_coco_evaluate(const eval_coco_gt *gt, const eval_coco_dets *dets, eval_coco_summary *out)
{
    memset(out, 0, sizeof *out);
    int K = gt->ncat, I = gt->nimg, nb = K * I;
    out->num_images = I;
    out->num_categories = K;
    out->num_dets_in = dets->ndet;

    int *gkey = core_malloc((size_t)(gt->nann ? gt->nann : 1) * sizeof *gkey);
    for (int i = 0; i < gt->nann; i++) {
        const eval_coco_gt_ann *a = &gt->anns[i];
        int k = eval_coco_category_index(gt, a->category_id), im = eval_coco_image_index(gt, a->image_id);
        gkey[i] = (k < 0 || im < 0) ? -1 : k * I + im;
        if (gkey[i] >= 0) out->num_gt_ignored += a->ignore;
    }
    int *dkey = core_malloc((size_t)(dets->ndet ? dets->ndet : 1) * sizeof *dkey);
    for (int i = 0; i < dets->ndet; i++) {
        const eval_coco_det *d = &dets->dets[i];
        int k = eval_coco_category_index(gt, d->category_id), im = eval_coco_image_index(gt, d->image_id);
        dkey[i] = (k < 0 || im < 0) ? -1 : k * I + im;
    }
    int *gstart, *glist, *dstart, *dlist;
    bucket(nb, gkey, gt->nann, &gstart, &glist);
    bucket(nb, dkey, dets->ndet, &dstart, &dlist);

    double(*prec)[EVAL_COCO_NAREA][EVAL_COCO_NTHR][EVAL_COCO_NREC] = core_malloc((size_t)(K ? K : 1) * sizeof *prec);
    double(*rec)[EVAL_COCO_NAREA][EVAL_COCO_NTHR] = core_malloc((size_t)(K ? K : 1) * sizeof *rec);
    curve_input curves[EVAL_COCO_NAREA];
    int maxd = 0;
    for (int b = 0; b < nb; b++)
        if (dstart[b + 1] - dstart[b] > maxd) maxd = dstart[b + 1] - dstart[b];
    int *dsel = core_malloc((size_t)(maxd ? maxd : 1) * sizeof *dsel), *tmp = core_malloc((size_t)(maxd ? maxd : 1) * sizeof *tmp);
    double *dscore = core_malloc((size_t)(dets->ndet ? dets->ndet : 1) * sizeof *dscore);
    for (int i = 0; i < dets->ndet; i++) dscore[i] = dets->dets[i].score;
    double *oks = NULL;
    size_t oks_cap = 0;

    for (int k = 0; k < K; k++) {
        memset(curves, 0, sizeof curves);
        for (int im = 0; im < I; im++) {
            int b = k * I + im;
            const int *gi = glist + gstart[b];
            int ng = gstart[b + 1] - gstart[b];
            int nd = dstart[b + 1] - dstart[b];
            if (ng == 0 && nd == 0) continue;
            memcpy(dsel, dlist + dstart[b], (size_t)nd * sizeof *dsel);
            sort_desc_stable(dsel, nd, dscore, tmp);
            if (nd > EVAL_COCO_MAXDETS) nd = EVAL_COCO_MAXDETS;
            size_t need = (size_t)nd * ng;
            if (need > oks_cap) oks = core_realloc(oks, (oks_cap = need) * sizeof *oks);
            for (int d = 0; d < nd; d++)
                for (int g = 0; g < ng; g++) oks[(size_t)d * ng + g] = eval_coco_oks(&gt->anns[gi[g]], dets->dets[dsel[d]].kp);
            for (int a = 0; a < EVAL_COCO_NAREA; a++) evaluate_image(gt, gi, ng, dets, dsel, nd, oks, a, &curves[a]);
            out->num_dets += nd;
        }
        out->num_gt += curves[0].npig;
        for (int a = 0; a < EVAL_COCO_NAREA; a++) {
            accumulate(&curves[a], prec[k][a], rec[k][a]);
            free(curves[a].score);
            free(curves[a].tp);
            free(curves[a].fp);
        }
    }

    /* summarize: AP over [T][R][K] of one area range (one threshold for AP50/AP75), AR over [T][K]. */
    int t50 = threshold_index(0.5), t75 = threshold_index(0.75);
    struct { int area, thr; } sel[5] = {{0, -2}, {0, t50}, {0, t75}, {1, -2}, {2, -2}};
    for (int s = 0; s < 5; s++) {
        mean_acc ap = {0, 0}, ar = {0, 0};
        int a = sel[s].area;
        for (int t = 0; t < EVAL_COCO_NTHR; t++) {
            if (sel[s].thr != -2 && sel[s].thr != t) continue;
            for (int r = 0; r < EVAL_COCO_NREC; r++)
                for (int k = 0; k < K; k++) mean_add(&ap, prec[k][a][t][r]);
            for (int k = 0; k < K; k++) mean_add(&ar, rec[k][a][t]);
        }
        out->stats[s] = mean_get(&ap);
        out->stats[5 + s] = mean_get(&ar);
    }

    free(gkey);
    free(dkey);
    free(gstart);
    free(glist);
    free(dstart);
    free(dlist);
    free(prec);
    free(rec);
    free(dsel);
    free(tmp);
    free(dscore);
    free(oks);
}

void eval_coco_print(FILE *f, const eval_coco_summary *s)
{
    for (int i = 0; i < EVAL_COCO_NSTATS; i++) {
        int ap = i < 5, w = i % 5;
        const char *iou = w == 1 ? "0.50" : w == 2 ? "0.75" : "0.50:0.95";
        const char *area = w == 3 ? AREA_LABEL[1] : w == 4 ? AREA_LABEL[2] : AREA_LABEL[0];
        fprintf(f, " %-18s %s @[ IoU=%-9s | area=%6s | maxDets=%3d ] = %0.3f\n",
                ap ? "Average Precision" : "Average Recall", ap ? "(AP)" : "(AR)", iou, area, EVAL_COCO_MAXDETS,
                s->stats[i]);
    }
}

void eval_coco_print_json(FILE *f, const eval_coco_summary *s)
{
    fputc('{', f);
    for (int i = 0; i < EVAL_COCO_NSTATS; i++) fprintf(f, "\"%s\": %.17g, ", eval_coco_stat_names[i], s->stats[i]);
    fprintf(f, "\"num_images\": %d, \"num_categories\": %d, \"num_gt\": %d, \"num_gt_ignored\": %d, "
               "\"num_dets\": %d, \"num_dets_in\": %d}\n",
            s->num_images, s->num_categories, s->num_gt, s->num_gt_ignored, s->num_dets, s->num_dets_in);
}
