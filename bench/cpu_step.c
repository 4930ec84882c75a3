/* Forward+backward time of the network on the CPU backend.
 *   cpu_step CONFIG INPUT BATCH THREADS ITERS
 * Prints one JSON line: {"config":..., "input":..., "batch":..., "threads":..., "conv": SSPOSE_CPU_CONV,
 * "ms": median of ITERS, "cpu_ms": median process CPU time of ITERS (all threads)}. CPU time
 * is what the step costs whatever else runs on the machine (with OMP_WAIT_POLICY=passive,
 * where waiting threads sleep instead of spinning); wall time is what counts on an idle one.
 * bench/cpu_step.py runs it beside the PyTorch peer and prints the ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/check.h"
#include "core/rng.h"
#include "model/net.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    CHECK(argc == 6, "usage: cpu_step CONFIG INPUT BATCH THREADS ITERS");
    core_set_quiet(1);
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_load(&cfg, argv[1]);
    int input = atoi(argv[2]), batch = atoi(argv[3]), threads = atoi(argv[4]), iters = atoi(argv[5]);
    core_backend *be = core_cpu_backend_create(threads);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, 1);
    model_set_input_shape(net, batch, input, input);
    core_rng r;
    core_rng_seed(&r, 3);
    size_t n = (size_t)batch * 3 * input * input;
    for (size_t i = 0; i < n; i++) model_input(net)[i] = (float)(core_rng_uniform(&r) - 0.5);
    double *t = malloc((iters + 1) * sizeof(double)), *c = malloc((iters + 1) * sizeof(double));
    for (int it = 0; it <= iters; it++) { /* iteration 0 warms up */
        double t0 = now_ms(), c0 = cpu_ms();
        model_forward(net, 1);
        for (int s = 0; s < cfg.model.stages; s++)
            for (int o = 0; o < MODEL_NUM_OUT; o++) {
                core_tensor g = model_output_grad(net, s, o);
                if (g.data) be->fill(be, g.data, 1e-3f, core_tensor_numel(&g));
            }
        model_zero_grads(net);
        model_backward(net);
        t[it] = now_ms() - t0;
        c[it] = cpu_ms() - c0;
    }
    qsort(t + 1, iters, sizeof(double), cmp);
    qsort(c + 1, iters, sizeof(double), cmp);
    const char *conv = getenv("SSPOSE_CPU_CONV");
    printf("{\"config\": \"%s\", \"input\": %d, \"batch\": %d, \"threads\": %d, \"conv\": \"%s\", \"ms\": %.2f, "
           "\"cpu_ms\": %.2f, \"params\": %zu}\n",
           argv[1], input, batch, threads, conv && *conv ? conv : "auto", t[1 + iters / 2], c[1 + iters / 2],
           model_num_floats(net));
    free(t);
    free(c);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
