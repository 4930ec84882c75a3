/* The CUDA loss kernels against the CPU ones (make test-gpu): the same batch on
 * both backends, every term's value and every output gradient, and bit-identical
 * results from repeated runs (deterministic reductions). */
#include "tests/test.h"
#include "tests/test_loss_util.h"

static core_backend *cpu, *gpu;

static core_tensor to_gpu(const core_tensor *x)
{
    if (!x->data) return (core_tensor){0};
    size_t n = core_tensor_numel(x);
    float *d = gpu->alloc(gpu, n);
    gpu->upload(gpu, d, x->data, n);
    return core_tensor_view(d, x->n, x->c, x->h, x->w, CORE_DEV_CUDA);
}

static void compare(const char **sets, int nsets)
{
    core_config cfg;
    tl_config(&cfg, sets, nsets);
    tl_batch b;
    tl_batch_init(&b, &cfg, 3, 23, 17);
    tl_fill_random(&b);
    loss_ctx *lc = loss_create(&cfg, cpu), *lg = loss_create(&cfg, gpu);
    loss_values vc, vg, vg2;
    tl_zero_grads(&b);
    loss_compute(lc, b.stages, b.io, &b.t, 1, &vc);

    loss_stage_io io[CORE_MAX_STAGES];
    loss_targets t = {to_gpu(&b.t.heat), to_gpu(&b.t.paf), to_gpu(&b.t.offset), to_gpu(&b.t.attention),
                      to_gpu(&b.t.mask)};
    for (int s = 0; s < b.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            io[s].out[o] = to_gpu(&b.io[s].out[o]);
            core_tensor z = b.io[s].grad[o];
            if (z.data) memset(z.data, 0, core_tensor_numel(&z) * 4);
            io[s].grad[o] = to_gpu(&z);
        }
    loss_compute(lg, b.stages, io, &t, 1, &vg);
    loss_compute(lg, b.stages, io, &t, 0, &vg2);
    T_CHECKF(memcmp(&vg, &vg2, sizeof vg) == 0, "two GPU runs differ");
    T_NEAR(vg.total, vc.total, 1e-5, 0);
    for (int s = 0; s < b.stages; s++)
        for (int k = 0; k < LOSS_NUM_TERMS; k++) T_NEAR(vg.term[s][k], vc.term[s][k], 1e-5, 1e-9);
    for (int s = 0; s < b.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor *g = &io[s].grad[o];
            if (!g->data) continue;
            size_t n = core_tensor_numel(g);
            float *h = malloc(n * sizeof(float));
            gpu->download(gpu, h, g->data, n);
            double gmax = 0, err = 0;
            for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(b.io[s].grad[o].data[i]));
            for (size_t i = 0; i < n; i++) err = fmax(err, fabs(h[i] - b.io[s].grad[o].data[i]));
            T_CHECKF(err <= 1e-5 * gmax, "stage %d output %d: gradient error %g of %g", s + 1, o, err, gmax);
            free(h);
            gpu->free(gpu, g->data);
            gpu->free(gpu, io[s].out[o].data);
        }
    gpu->free(gpu, t.heat.data), gpu->free(gpu, t.paf.data), gpu->free(gpu, t.offset.data);
    gpu->free(gpu, t.attention.data), gpu->free(gpu, t.mask.data);
    loss_destroy(lc);
    loss_destroy(lg);
    tl_batch_free(&b);
}

#define CMP(...) do { const char *s_[] = {__VA_ARGS__}; compare(s_, (int)(sizeof s_ / sizeof *s_)); } while (0)

static void test_gpu_loss_p2h(void) { CMP("model.stages=3", "model.ss=p2h", "model.offsets=1"); }
static void test_gpu_loss_both_detach(void) { CMP("model.stages=2", "model.ss=both", "loss.kl_detach=1"); }
static void test_gpu_loss_baseline(void)
{
    CMP("model.stages=2", "loss.gamma=1", "loss.delta=1", "loss.alpha=0", "loss.beta=uniform", "model.offsets=0",
        "model.ss=off");
}

int main(void)
{
    core_set_quiet(1);
    if (core_cuda_device_count() == 0 || !loss_kernels_built(CORE_DEV_CUDA)) {
        printf("skip - test_gpu_loss: %s\n", core_cuda_device_count() ? "no CUDA loss kernels built" : "no GPU");
        return 0;
    }
    cpu = core_cpu_backend_create(2);
    gpu = core_cuda_backend_create(0);
    T_RUN(test_gpu_loss_p2h);
    T_RUN(test_gpu_loss_both_detach);
    T_RUN(test_gpu_loss_baseline);
    core_backend_destroy(gpu);
    core_backend_destroy(cpu);
    T_EXIT();
}
