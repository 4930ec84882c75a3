/* CPU convolutions, internal to the CPU backend (and its test and benchmark).
 *
 * Two implementations with the exact semantics of core_backend.conv_forward /
 * conv_backward (core/backend.h): forward fuses bias and ReLU; backward
 * overwrites dy with the ReLU-masked gradient when s->relu, and ACCUMULATES
 * into dx (may be NULL), dw and db.
 *   gemm: im2col + OpenBLAS sgemm (core/cpu_conv_gemm.c), always built;
 *   dnnl: oneDNN primitives (core/cpu_conv_dnnl.c), built when SSPOSE_DNNL.
 * core/cpu_backend.c picks one per shape (core_cpu_conv_pick); the rule and
 * the measurements behind it are in docs/design.md, "CPU convolutions". */
#ifndef SSPOSE_CORE_CPU_CONV_H
#define SSPOSE_CORE_CPU_CONV_H

#include "core/backend.h"

typedef enum { CORE_CPU_CONV_GEMM = 0, CORE_CPU_CONV_DNNL = 1 } core_cpu_conv_path;

/* ---- im2col + sgemm ---- */
typedef struct core_cpu_gemm core_cpu_gemm;
core_cpu_gemm *core_cpu_gemm_create(void);
void core_cpu_gemm_destroy(core_cpu_gemm *g);
void core_cpu_gemm_conv_forward(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *w,
                                const float *b, float *y);
void core_cpu_gemm_conv_backward(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db);

/* The parameter gradients, shared by both paths (their reductions run over
 * N*H*W terms, too many for a float accumulator):
 * db += sum of dy over samples and pixels, in double; */
void core_cpu_conv_bias_grad(const core_conv_shape *s, const float *dy, float *db);
/* dw += dy * im2col(x)^T as float sgemm products over blocks of pixels, summed in double. */
void core_cpu_gemm_conv_backward_weights(core_cpu_gemm *g, const core_conv_shape *s, const float *x, const float *dy,
                                         float *dw);

/* dy[i] = 0 where y[i] <= 0 (or NaN): the ReLU mask both paths apply when s->relu. */
void core_cpu_conv_relu_mask(const core_conv_shape *s, const float *y, float *dy);

/* ---- oneDNN ---- */
typedef struct core_cpu_dnnl core_cpu_dnnl;
/* 1 when this build has the oneDNN path. */
int core_cpu_dnnl_built(void);
/* Primitives are created for the OpenMP thread count in effect at the first
 * call of each shape, so the caller fixes its thread count first. Dies when
 * not built. */
core_cpu_dnnl *core_cpu_dnnl_create(void);
void core_cpu_dnnl_destroy(core_cpu_dnnl *d);
void core_cpu_dnnl_conv_forward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                const float *b, float *y);
void core_cpu_dnnl_conv_backward(core_cpu_dnnl *d, const core_conv_shape *s, const float *x, const float *w,
                                 const float *y, float *dy, float *dx, float *dw, float *db);

/* ---- selection (core/cpu_backend.c) ---- */
/* The path the CPU backend `be` uses for shape s (honours SSPOSE_CPU_CONV as read at create time). */
core_cpu_conv_path core_cpu_conv_pick(core_backend *be, const core_conv_shape *s);
/* The built-in rule for SSPOSE_CPU_CONV=auto, given that oneDNN is built. */
core_cpu_conv_path core_cpu_conv_auto_rule(const core_conv_shape *s);
const char *core_cpu_conv_path_name(core_cpu_conv_path p);

#endif
