/* GPU suite: the whole network (model/net.h) on the CUDA backend against the
 * CPU backend: same parameters, same input, same output gradients; every
 * stage output must agree to max|gpu - cpu| <= 1e-4 * max|cpu| per tensor
 * (fp32, TF32 off), and every parameter gradient to 5e-4: after ~30 layers a
 * pre-activation within rounding of 0 can take the other side of a ReLU on
 * one device, which moves a gradient by one position's contribution.
 * Configs: a small paper-like net (offsets on, ss both: every output and
 * subnet) at stride 8, and one at stride 16 (the extra pool). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/config.h"
#include "core/cuda_backend.h"
#include "model/net.h"
#include "tests/test.h"

static core_backend *cpu, *gpu;
static uint64_t rng = 0x853c49e6748fea9bull;

static float rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) / 8388608.0 - 1.0);
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (isnan(d)) return NAN;
        if (d > num) num = d;
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

static float *to_host(core_backend *be, const float *p, size_t n)
{
    float *h = core_malloc((n ? n : 1) * sizeof(float));
    be->download(be, h, p, n);
    return h;
}

static void compare_nets(const char *what, int stride, int batch, int side)
{
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.model.width = 0.125;
    cfg.model.stages = 3;
    cfg.model.stride = stride;
    cfg.model.offsets = 1;
    cfg.model.ss = CORE_SS_BOTH;
    core_config_resolve(&cfg);
    model_net *nc = model_create(&cfg, cpu), *ng = model_create(&cfg, gpu);
    model_init_params(nc, 7);
    size_t np = model_num_floats(nc);
    T_CHECK(np == model_num_floats(ng));
    float *params = core_malloc(np * sizeof(float));
    model_params_to_host(nc, params);
    model_params_from_host(ng, params);

    model_set_input_shape(nc, batch, side, side);
    model_set_input_shape(ng, batch, side, side);
    size_t nin = (size_t)batch * 3 * side * side;
    float *in = core_malloc(nin * sizeof(float));
    for (size_t i = 0; i < nin; i++) in[i] = 0.5f * rnd();
    cpu->upload(cpu, model_input(nc), in, nin);
    gpu->upload(gpu, model_input(ng), in, nin);

    model_forward(nc, 1);
    model_forward(ng, 1);
    for (int s = 0; s < cfg.model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            if (!model_has_output(nc, (model_out)o)) continue;
            core_tensor yc = model_output(nc, s, (model_out)o), yg = model_output(ng, s, (model_out)o);
            size_t n = core_tensor_numel(&yc);
            T_CHECK(n == core_tensor_numel(&yg));
            float *a = to_host(gpu, yg.data, n), *b = to_host(cpu, yc.data, n);
            double e = rel_err(a, b, n);
            T_CHECKF(e <= 1e-4, "%s: stage %d output %d relative error %.3g", what, s + 1, o, e);
            free(a); free(b);
            /* the same output gradient on both */
            core_tensor gc = model_output_grad(nc, s, (model_out)o), gg = model_output_grad(ng, s, (model_out)o);
            float *g = core_malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) g[i] = 1e-2f * rnd();
            cpu->upload(cpu, gc.data, g, n);
            gpu->upload(gpu, gg.data, g, n);
            free(g);
        }
    model_zero_grads(nc);
    model_zero_grads(ng);
    model_backward(nc);
    model_backward(ng);
    float *gc = to_host(cpu, model_grads(nc), np), *gg = to_host(gpu, model_grads(ng), np);
    for (int i = 0; i < model_param_count(nc) && !t_cur_failed; i++) {
        const model_param *p = model_param_at(nc, i);
        double e = rel_err(gg + p->offset, gc + p->offset, p->numel);
        T_CHECKF(e <= 5e-4, "%s: gradient of %s relative error %.3g", what, p->name, e);
    }
    free(gc); free(gg); free(params); free(in);
    model_destroy(nc);
    model_destroy(ng);
}

static void gpu_model_matches_cpu_stride8(void)
{
    if (!gpu) T_SKIP("skipped: no GPU");
    compare_nets("stride 8", 8, 2, 64);
}

static void gpu_model_matches_cpu_stride16(void)
{
    if (!gpu) T_SKIP("skipped: no GPU");
    compare_nets("stride 16", 16, 3, 96);
}

int main(void)
{
    core_set_quiet(1);
    cpu = core_cpu_backend_create(0);
    if (core_cuda_device_count() > 0) gpu = core_cuda_backend_create(0);
    T_RUN(gpu_model_matches_cpu_stride8);
    T_RUN(gpu_model_matches_cpu_stride16);
    if (gpu) core_backend_destroy(gpu);
    core_backend_destroy(cpu);
    T_EXIT();
}
