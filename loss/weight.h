/* The per-element weight of the weighted squared error (loss_l2_args in
 * loss/kernels.h), written once for the CPU kernels (loss/kernels_cpu.c) and
 * the CUDA kernels (loss/kernels_cuda.cu): the functions are
 * __host__ __device__ under nvcc and plain C elsewhere.
 *
 * Device code rounds every product and sum on its own (__dmul_rn,
 * __dadd_rn): nvcc would otherwise fuse alpha*att + 1 into an FMA, and the
 * weight would differ from the CPU's in the last bit. */
#ifndef SSPOSE_LOSS_WEIGHT_H
#define SSPOSE_LOSS_WEIGHT_H

#include <stddef.h>

#include "loss/kernels.h"

#ifdef __CUDACC__
#define LOSS_HD __host__ __device__
#else
#define LOSS_HD
#endif

#ifdef __CUDA_ARCH__
#define LOSS_DMUL(a, b) __dmul_rn((a), (b))
#define LOSS_DADD(a, b) __dadd_rn((a), (b))
#else
#define LOSS_DMUL(a, b) ((a) * (b))
#define LOSS_DADD(a, b) ((a) + (b))
#endif

/* One (sample, channel) plane of an l2 term: the rows its weight reads. */
typedef struct loss_l2_plane {
    const float *tgt_n;            /* the sample's targets, every channel */
    const float *mask, *att, *gate; /* this plane's rows, NULL when the factor is off */
    int c, mc;                      /* the channel and its PDD mirror (mc == c: no PDD factor) */
} loss_l2_plane;

LOSS_HD static inline loss_l2_plane loss_l2_plane_at(const loss_l2_args *a, int s, int c)
{
    loss_l2_plane p;
    p.tgt_n = a->target + (size_t)s * a->c * a->hw;
    p.mask = a->mask ? a->mask + (size_t)s * a->hw : NULL;
    p.att = a->att ? a->att + ((size_t)s * a->att_c + c / a->att_group) * a->hw : NULL;
    p.gate = a->gate ? a->gate + ((size_t)s * a->gate_c + c / a->gate_group) * a->hw : NULL;
    p.c = c;
    p.mc = a->pdd != LOSS_PDD_NONE ? a->mirror[c] : c;
    return p;
}

/* Whether channel c's target is "active" at cell i for the PDD weight. */
LOSS_HD static inline int loss_pdd_active(const loss_l2_args *a, const float *tgt_n, int c, int i)
{
    if (a->pdd == LOSS_PDD_SCALAR) return tgt_n[(size_t)c * a->hw + i] > a->pdd_thr;
    int x = c & ~1; /* vector mode: channels 2l and 2l+1 form limb l's vector */
    return tgt_n[(size_t)x * a->hw + i] != 0.0f || tgt_n[(size_t)(x + 1) * a->hw + i] != 0.0f;
}

/* w = mask * (beta where the mirror is active and c is not) * (alpha*att + 1) * [gate > thr] */
LOSS_HD static inline double loss_l2_weight(const loss_l2_args *a, const loss_l2_plane *p, int i)
{
    double w = 1;
    if (p->mask) w = LOSS_DMUL(w, (double)p->mask[i]);
    if (p->mc != p->c && loss_pdd_active(a, p->tgt_n, p->mc, i) && !loss_pdd_active(a, p->tgt_n, p->c, i))
        w = LOSS_DMUL(w, (double)a->beta);
    if (p->att) w = LOSS_DMUL(w, LOSS_DADD(LOSS_DMUL((double)a->alpha, (double)p->att[i]), 1.0));
    if (p->gate && !(p->gate[i] > a->gate_thr)) w = 0;
    return w;
}

#endif
