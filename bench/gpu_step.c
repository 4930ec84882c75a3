/* GPU training-step benchmark: samples/s and model FLOP utilisation of one
 * forward+backward of the configured network (default configs/paper.ini at
 * 368x368, batch 10) on the CUDA backend, against the same network in
 * PyTorch (bench/gpu_step_torch.py: channels-last, cudnn.benchmark) measured
 * in the same run, printed as a ratio.
 *
 *   build/bench/gpu_step [--config configs/paper.ini] [--batch 10] [--input 368]
 *       [--iters 20] [--warmup 5] [--tf32 0|1] [--deterministic 0|1] [--no-torch]
 *
 * FLOPs are the convolutions' multiply-adds x 2, counted from the network's
 * parameter shapes and the grid each layer runs on (the shared p2h/h2p
 * subnets once per stage); a training step is forward + backward-data +
 * backward-filter = 3x forward, less the input layer's backward-data. The
 * PyTorch script counts its own convolutions with hooks; the two counts must
 * agree, which checks that both sides run the same network.
 * MFU = achieved conv FLOP/s / the GPU's dense peak for the math in use
 * (fp32 FMA peak with tf32 off, TF32 tensor-core peak with it on).
 *
 * Without a GPU it exits 1 with one line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/config.h"
#include "core/cuda_backend.h"
#include "model/net.h"

static const char *USAGE =
    "usage: gpu_step [--config PATH] [--batch N] [--input S] [--iters N] [--warmup N]\n"
    "                [--tf32 0|1] [--deterministic 0|1] [--no-torch] [--python PATH]\n"
    "  --config PATH        network config (default configs/paper.ini)\n"
    "  --batch N            samples per step (default 10)\n"
    "  --input S            square input size, a multiple of the stride (default 368)\n"
    "  --iters N            timed steps (default 20); --warmup N untimed steps first (default 5)\n"
    "  --tf32 0|1           TF32 tensor cores on both sides (default: the config's comm.tf32)\n"
    "  --deterministic 0|1  sspose: deterministic cuDNN algorithms (default 0, the timed search,\n"
    "                       as PyTorch's cudnn.benchmark); PyTorch gets cudnn.deterministic alike\n"
    "  --no-torch           skip the PyTorch peer\n"
    "  --python PATH        interpreter for bench/gpu_step_torch.py (default /usr/bin/python3)\n";

static long num_arg(const char *flag, const char *v, long lo, long hi)
{
    char *end = NULL;
    long x = strtol(v, &end, 10);
    CHECK(end != v && *end == 0 && x >= lo && x <= hi, "gpu_step: bad value '%s' for --%s (expected %ld..%ld)", v, flag,
          lo, hi);
    return x;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* Grid side a layer runs on, from its SPEC section 3 name. */
static int layer_side(const char *name, int input, int stride)
{
    if (!strncmp(name, "conv1_", 6)) return input;
    if (!strncmp(name, "conv2_", 6)) return input / 2;
    if (!strncmp(name, "conv3_", 6)) return input / 4;
    if (!strncmp(name, "conv4_1/", 8) || !strncmp(name, "conv4_2/", 8)) return input / 8;
    return input / stride; /* conv4_3_CPM, conv4_4_CPM, stages, p2h, h2p */
}

/* Training FLOPs of one step; *fwd gets the forward part. */
static double step_flops(model_net *net, const core_config *cfg, int batch, int input, double *fwd)
{
    double f = 0, first = 0;
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        if (p->is_bias) continue;
        int side = layer_side(p->name, input, cfg->model.stride);
        int uses = (!strncmp(p->name, "p2h/", 4) || !strncmp(p->name, "h2p/", 4)) ? cfg->model.stages : 1;
        double macs = (double)batch * side * side * p->shape[0] * p->shape[1] * p->shape[2] * p->shape[3];
        f += 2.0 * macs * uses;
        if (!strncmp(p->name, "conv1_1/", 8)) first = 2.0 * macs;
    }
    *fwd = f;
    return 3 * f - first;
}

static void fill_output_grads(model_net *net, core_backend *be, int stages)
{
    for (int s = 0; s < stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            if (!model_has_output(net, (model_out)o)) continue;
            core_tensor g = model_output_grad(net, s, (model_out)o);
            if (g.data) be->fill(be, g.data, 1e-3f, core_tensor_numel(&g));
        }
}

static const char *ss_name(core_ss_mode m)
{
    return m == CORE_SS_P2H ? "p2h" : m == CORE_SS_H2P ? "h2p" : m == CORE_SS_BOTH ? "both" : "off";
}

int main(int argc, char **argv)
{
    const char *config = "configs/paper.ini", *python = "/usr/bin/python3";
    int batch = 10, input = 368, iters = 20, warmup = 5, tf32 = -1, det = 0, torch = 1;
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"batch", required_argument, 0, 'b'},
        {"input", required_argument, 0, 'i'},  {"iters", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'}, {"tf32", required_argument, 0, 't'},
        {"deterministic", required_argument, 0, 'd'}, {"no-torch", no_argument, 0, 'T'},
        {"python", required_argument, 0, 'p'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opterr = 0;
    for (int ch; (ch = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'b': batch = (int)num_arg("batch", optarg, 1, 4096); break;
        case 'i': input = (int)num_arg("input", optarg, 16, 8192); break;
        case 'n': iters = (int)num_arg("iters", optarg, 1, 100000); break;
        case 'w': warmup = (int)num_arg("warmup", optarg, 0, 100000); break;
        case 't': tf32 = (int)num_arg("tf32", optarg, 0, 1); break;
        case 'd': det = (int)num_arg("deterministic", optarg, 0, 1); break;
        case 'T': torch = 0; break;
        case 'p': python = optarg; break;
        case 'h': fputs(USAGE, stdout); return 0;
        default: CORE_DIE("gpu_step: unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    CHECK(optind == argc, "gpu_step: unexpected argument '%s' (see --help)", argv[optind]);

    int ngpu = core_cuda_device_count();
    CHECK(ngpu > 0, "gpu_step: no GPU visible (%s); run it on a CUDA machine (docs/gpu.md)",
          strstr(core_backends_built(), "cuda") ? "no driver or device" : "built without CUDA");

    core_config cfg;
    core_config_defaults(&cfg);
    core_config_load(&cfg, config);
    core_config_resolve(&cfg);
    CHECK(input % cfg.model.stride == 0, "gpu_step: --input %d is not a multiple of model.stride %d", input,
          cfg.model.stride);
    if (tf32 < 0) tf32 = cfg.comm.tf32;

    char gpu_name[256] = "?";
    double peak32 = 0, peaktf32 = 0;
    core_cuda_device_peak(0, gpu_name, sizeof gpu_name, &peak32, &peaktf32);
    double peak = tf32 ? peaktf32 : peak32;

    core_backend *be = core_cuda_backend_create(0);
    core_cuda_set_math(be, tf32, det);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, 1);
    model_set_input_shape(net, batch, input, input);
    size_t nin = (size_t)batch * 3 * input * input;
    float *host = core_malloc(nin * sizeof(float));
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < nin; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        host[i] = (float)((r >> 40) / 16777216.0 - 0.5); /* pixel/255 - 0.5 range */
    }
    be->upload(be, model_input(net), host, nin);

    double fwd_flops, flops = step_flops(net, &cfg, batch, input, &fwd_flops);
    printf("gpu_step: %s, %s (width %g, %d stages, stride %d, offsets %d, ss %s), batch %d, %dx%d, tf32 %d, "
           "deterministic %d\n",
           gpu_name, config, cfg.model.width, cfg.model.stages, cfg.model.stride, cfg.model.offsets,
           ss_name(cfg.model.ss), batch, input, input, tf32, det);
    printf("conv FLOPs per step: %.4g (forward %.4g); GPU dense peak %.1f TFLOP/s (%s)\n", flops, fwd_flops,
           peak, tf32 ? "tf32" : "fp32");
    fflush(stdout);

    double t0 = 0;
    for (int it = 0; it < warmup + iters; it++) {
        if (it == warmup) {
            be->sync(be);
            t0 = now_s();
        }
        model_forward(net, 1);
        fill_output_grads(net, be, cfg.model.stages);
        model_zero_grads(net);
        model_backward(net);
    }
    be->sync(be);
    double dt = (now_s() - t0) / iters;
    double ours = batch / dt, ours_tflops = flops / dt / 1e12;
    printf("sspose:  %8.2f samples/s  %8.2f ms/step  %7.2f TFLOP/s  MFU %5.1f%%\n", ours, dt * 1e3, ours_tflops,
           100 * ours_tflops / peak);
    fflush(stdout);

    model_destroy(net);
    core_backend_destroy(be);
    free(host);
    if (!torch) return 0;

    char cmd[2048], line[1024];
    snprintf(cmd, sizeof cmd,
             "'%s' bench/gpu_step_torch.py --width %.17g --stages %d --stride %d --offsets %d --ss %s --batch %d "
             "--input %d --iters %d --warmup %d --tf32 %d --deterministic %d 2>&1",
             python, cfg.model.width, cfg.model.stages, cfg.model.stride, cfg.model.offsets, ss_name(cfg.model.ss),
             batch, input, iters, warmup, tf32, det);
    FILE *f = popen(cmd, "r");
    CHECK(f, "gpu_step: cannot run the PyTorch peer (%s)", cmd);
    double theirs = 0, their_flops = 0;
    char last[1024] = "";
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "torch_samples_per_s %lf", &theirs) == 1) continue;
        if (sscanf(line, "torch_flops_per_step %lf", &their_flops) == 1) continue;
        line[strcspn(line, "\n")] = 0;
        if (line[0]) snprintf(last, sizeof last, "%s", line);
    }
    int rc = pclose(f);
    CHECK(rc == 0 && theirs > 0, "gpu_step: the PyTorch peer failed (exit %d): %s", rc, last[0] ? last : "no output");
    double their_tflops = their_flops / (batch / theirs) / 1e12;
    printf("pytorch: %8.2f samples/s  %8.2f ms/step  %7.2f TFLOP/s  MFU %5.1f%%\n", theirs, 1e3 * batch / theirs,
           their_tflops, 100 * their_tflops / peak);
    double agree = their_flops > 0 ? flops / their_flops : 0;
    if (agree < 0.999 || agree > 1.001)
        printf("warning: FLOP counts differ (sspose %.6g, pytorch %.6g): the two networks are not the same\n", flops,
               their_flops);
    printf("ratio sspose/pytorch: %.3f\n", ours / theirs);
    return 0;
}
