/* CPU loss kernels. Sums run in double in a fixed order (one partial per
 * (sample, channel), added in channel order), so results do not depend on the
 * thread count; each thread owns whole channels, so gradient writes never race. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "loss/kernels.h"
#include "loss/weight.h"

static void cpu_l2(core_backend *be, const loss_l2_args *a, double *per_sample)
{
    CHECK(a->c <= LOSS_MAX_CHANNELS, "loss: %d channels exceed LOSS_MAX_CHANNELS", a->c);
    const int n = a->n, C = a->c, hw = a->hw;
    double *part = core_calloc((size_t)n * C, sizeof(double));
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)n * C * hw > 65536)
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) {
            const size_t base = ((size_t)s * C + c) * hw;
            const loss_l2_plane pl = loss_l2_plane_at(a, s, c);
            double acc = 0;
            for (int i = 0; i < hw; i++) {
                const double w = loss_l2_weight(a, &pl, i);
                if (w == 0) continue; /* also keeps 0*inf out of the sum */
                double d = (double)a->pred[base + i] - (double)a->target[base + i];
                acc += w * d * d;
                float g = (float)(2.0 * a->coef * w * d);
                if (a->grad_pred) a->grad_pred[base + i] += g;
                if (a->grad_target) a->grad_target[base + i] -= g;
            }
            part[(size_t)s * C + c] = acc;
        }
    for (int s = 0; s < n; s++) {
        double acc = 0;
        for (int c = 0; c < C; c++) acc += part[(size_t)s * C + c];
        per_sample[s] = acc;
    }
    free(part);
}

static void cpu_kl(core_backend *be, const loss_kl_args *a, double *per_sample)
{
    const int n = a->n, C = a->c, hw = a->hw;
    const double eps = a->eps;
    double *part = core_calloc((size_t)n * C, sizeof(double));
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)n * C * hw > 65536)
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) {
            const size_t base = ((size_t)s * C + c) * hw;
            const float *h = a->h + base, *q_in = a->hps + base;
            double sp = 0, sq = 0;
            for (int i = 0; i < hw; i++) {
                sp += fmax((double)h[i], 0.0) + eps;
                sq += fmax((double)q_in[i], 0.0) + eps;
            }
            const double lsp = log(sp), lsq = log(sq);
            double kl = 0;
            for (int i = 0; i < hw; i++) {
                double p = fmax((double)h[i], 0.0) + eps, q = fmax((double)q_in[i], 0.0) + eps;
                /* log(P/Q) from the unnormalised values: no underflow of P or Q */
                kl += (p / sp) * ((log(p) - lsp) - (log(q) - lsq));
            }
            if (a->grad_h || a->grad_hps)
                for (int i = 0; i < hw; i++) {
                    double p = fmax((double)h[i], 0.0) + eps, q = fmax((double)q_in[i], 0.0) + eps;
                    if (a->grad_h && h[i] > 0)
                        a->grad_h[base + i] += (float)(a->coef * (((log(p) - lsp) - (log(q) - lsq)) - kl) / sp);
                    if (a->grad_hps && q_in[i] > 0)
                        a->grad_hps[base + i] += (float)(a->coef * (1.0 / sq - (p / sp) / q));
                }
            part[(size_t)s * C + c] = kl;
        }
    for (int s = 0; s < n; s++) {
        double acc = 0;
        for (int c = 0; c < C; c++) acc += part[(size_t)s * C + c];
        per_sample[s] = acc;
    }
    free(part);
}

const loss_kernels loss_kernels_cpu = {"cpu", cpu_l2, cpu_kl};

/* loss/kernels_cuda.cu defines these in every CUDA build. */
#ifdef SSPOSE_CUDA
#define LOSS_HAVE_CUDA 1
extern const loss_kernels loss_kernels_cuda;
#endif

int loss_kernels_built(core_device dev)
{
#ifdef LOSS_HAVE_CUDA
    if (dev == CORE_DEV_CUDA) return 1;
#endif
    return dev == CORE_DEV_CPU;
}

const loss_kernels *loss_kernels_for(const core_backend *be)
{
    if (be->dev == CORE_DEV_CPU) return &loss_kernels_cpu;
#ifdef LOSS_HAVE_CUDA
    if (be->dev == CORE_DEV_CUDA) return &loss_kernels_cuda;
#endif
    CORE_DIE("loss: no loss kernels built for the '%s' backend", be->name);
}
