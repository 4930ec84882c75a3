/* GPU training-step benchmark: samples/s and model FLOP utilisation of one
 * forward+backward of the configured network (default configs/paper.ini at
 * 368x368, batch 10) on the CUDA backend, against the same network in
 * PyTorch as its users train it (bench/gpu_step_torch.py: eager, bf16
 * autocast, channels_last, cudnn.benchmark; --torch-precision tf32|fp32 for
 * the other modes), measured in the same run, and the trainer's own
 * samples/s (`sspose train`: loader, loss, all-reduce, optimizer included).
 *
 *   build/bench/gpu_step [--config configs/paper.ini] [--batch 10] [--input 368]
 *       [--tf32 0|1] [--torch-precision bf16|tf32|fp32] [--rounds 5] [--round-s 1]
 *       [--warmup 3] [--clock-mhz F] [--no-torch] [--no-train] [--shards GLOB]
 *
 * sspose runs the training policy: deterministic cuDNN algorithms from a
 * timed search (the same code path and choices as `sspose train`; the
 * search happens in the warm-up, untimed).
 * Timing: CUDA events around each round on each side (no host timers), the
 * two sides alternating round by round so that clock and thermal drift hit
 * both alike; a round is as many steps as fill --round-s seconds, so the
 * default gives about 5 s per side. Reported: the median round of each side,
 * and the ratio per round.
 * FLOPs are the convolutions' multiply-adds x 2, counted from the network's
 * parameter shapes and the grid each layer runs on (the shared p2h/h2p
 * subnets once per stage); a training step is forward + backward-data +
 * backward-filter = 3x forward, less the input layer's backward-data. The
 * PyTorch script counts its own convolutions with hooks; the two counts must
 * agree, which checks that both sides run the same network.
 * MFU = achieved conv FLOP/s / the GPU's dense peak for the precision that
 * side actually runs (sspose: fp32 FMA, or TF32 with --tf32 1; PyTorch: bf16,
 * TF32 or fp32 tensor-core/FMA peak) at the clock the device reports as its
 * maximum (or --clock-mhz).
 *
 * Without a GPU it exits 1 with one line. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/gpu_step_peer.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/config.h"
#include "core/cuda_backend.h"
#include "model/net.h"

static const char *USAGE =
    "usage: gpu_step [--config PATH] [--batch N] [--input S] [--tf32 0|1] [--torch-precision P]\n"
    "                [--rounds N] [--round-s S] [--warmup N] [--clock-mhz F] [--no-torch] [--no-train]\n"
    "                [--shards GLOB] [--train-steps N] [--sspose PATH] [--python PATH]\n"
    "  --config PATH          network config (default configs/paper.ini)\n"
    "  --batch N              samples per step (default 10)\n"
    "  --input S              square input size, a multiple of the stride (default 368)\n"
    "  --tf32 0|1             sspose: TF32 tensor cores for cuDNN (default: the config's comm.tf32)\n"
    "  --torch-precision P    PyTorch: bf16 (autocast, default), tf32 or fp32\n"
    "  --rounds N             alternating timed rounds per side (default 5)\n"
    "  --round-s S            seconds per round per side (default 1: about 5 s per side)\n"
    "  --warmup N             untimed steps first on each side (default 3)\n"
    "  --clock-mhz F          SM clock for the MFU peak (default: the device's reported maximum)\n"
    "  --no-torch             skip the PyTorch peer\n"
    "  --no-train             skip the `sspose train` run (end-to-end samples/s)\n"
    "  --shards GLOB          shards for that run (default: made here with sspose synth + data)\n"
    "  --train-steps N        steps of that run (default 40; samples/s of its second half)\n"
    "  --sspose PATH          the sspose binary (default bin/sspose)\n"
    "  --python PATH          interpreter for bench/gpu_step_torch.py (default /usr/bin/python3)\n"
    "  --deterministic 0|1, --iters N   accepted and ignored, with a note (../shared/gpu/first-run.sh\n"
    "                         passes them: the algorithm policy is training's, rounds are timed by --round-s)\n";

typedef struct {
    const char *config, *python, *sspose, *shards, *torch_precision;
    int batch, input, tf32, rounds, warmup, torch, train, train_steps;
    double round_s, clock_mhz;
} opts;

static double num_arg(const char *flag, const char *v, double lo, double hi)
{
    char *end = NULL;
    double x = strtod(v, &end);
    CHECK(end != v && *end == 0 && x >= lo && x <= hi, "gpu_step: bad value '%s' for --%s (expected %g..%g)", v, flag,
          lo, hi);
    return x;
}

static void parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){"configs/paper.ini", "/usr/bin/python3", "bin/sspose", NULL, "bf16", 10, 368, -1, 5, 3, 1, 1, 40,
                1.0, 0};
    static const struct option lo[] = {
        {"config", required_argument, 0, 'c'},      {"batch", required_argument, 0, 'b'},
        {"input", required_argument, 0, 'i'},       {"tf32", required_argument, 0, 't'},
        {"torch-precision", required_argument, 0, 'P'}, {"rounds", required_argument, 0, 'r'},
        {"round-s", required_argument, 0, 's'},     {"warmup", required_argument, 0, 'w'},
        {"clock-mhz", required_argument, 0, 'k'},   {"no-torch", no_argument, 0, 'T'},
        {"no-train", no_argument, 0, 'N'},          {"shards", required_argument, 0, 'S'},
        {"train-steps", required_argument, 0, 'n'}, {"sspose", required_argument, 0, 'x'},
        {"python", required_argument, 0, 'p'},      {"help", no_argument, 0, 'h'},
        {"deterministic", required_argument, 0, 'D'}, {"iters", required_argument, 0, 'I'},
        {0, 0, 0, 0}};
    opterr = 0;
    for (int ch; (ch = getopt_long(argc, argv, "h", lo, NULL)) != -1;) {
        switch (ch) {
        case 'c': o->config = optarg; break;
        case 'b': o->batch = (int)num_arg("batch", optarg, 1, 4096); break;
        case 'i': o->input = (int)num_arg("input", optarg, 16, 8192); break;
        case 't': o->tf32 = (int)num_arg("tf32", optarg, 0, 1); break;
        case 'P':
            CHECK(!strcmp(optarg, "bf16") || !strcmp(optarg, "tf32") || !strcmp(optarg, "fp32"),
                  "gpu_step: --torch-precision must be bf16, tf32 or fp32, got '%s'", optarg);
            o->torch_precision = optarg;
            break;
        case 'r': o->rounds = (int)num_arg("rounds", optarg, 1, 1000); break;
        case 's': o->round_s = num_arg("round-s", optarg, 0.01, 600); break;
        case 'w': o->warmup = (int)num_arg("warmup", optarg, 1, 100000); break;
        case 'k': o->clock_mhz = num_arg("clock-mhz", optarg, 1, 10000); break;
        case 'T': o->torch = 0; break;
        case 'N': o->train = 0; break;
        case 'S': o->shards = optarg; break;
        case 'n': o->train_steps = (int)num_arg("train-steps", optarg, 4, 1000000); break;
        case 'x': o->sspose = optarg; break;
        case 'p': o->python = optarg; break;
        case 'D':
            num_arg("deterministic", optarg, 0, 1);
            fprintf(stderr, "gpu_step: note: --deterministic is ignored: training and this benchmark share one "
                            "algorithm policy (deterministic algorithms, timed once)\n");
            break;
        case 'I':
            num_arg("iters", optarg, 1, 1e9);
            fprintf(stderr, "gpu_step: note: --iters is ignored: each side is timed in --rounds rounds of --round-s "
                            "seconds\n");
            break;
        case 'h': fputs(USAGE, stdout); exit(0);
        default: CORE_DIE("gpu_step: unknown or incomplete option '%s' (see --help)", argv[optind - 1]);
        }
    }
    CHECK(optind == argc, "gpu_step: unexpected argument '%s' (see --help)", argv[optind]);
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

static const char *ss_name(core_ss_mode m)
{
    return m == CORE_SS_P2H ? "p2h" : m == CORE_SS_H2P ? "h2p" : m == CORE_SS_BOTH ? "both" : "off";
}

/* ---- the sspose side: the network on the CUDA backend ---- */
typedef struct {
    core_backend *be;
    model_net *net;
    core_cuda_timer *timer;
    int stages;
} ours;

static void ours_create(ours *s, const core_config *cfg, int tf32, int batch, int input)
{
    s->be = core_cuda_backend_create(0);
    core_cuda_set_math(s->be, tf32, 1); /* the training policy: deterministic algorithms */
    core_cuda_set_workspace(s->be, (size_t)cfg->comm.cudnn_workspace_mb);
    s->net = model_create(cfg, s->be);
    s->stages = cfg->model.stages;
    model_init_params(s->net, 1);
    model_set_input_shape(s->net, batch, input, input);
    size_t nin = (size_t)batch * 3 * input * input;
    float *host = core_malloc(nin * sizeof(float));
    uint64_t r = 88172645463325252ull;
    for (size_t i = 0; i < nin; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        host[i] = (float)((r >> 40) / 16777216.0 - 0.5); /* pixel/255 - 0.5 range */
    }
    s->be->upload(s->be, model_input(s->net), host, nin);
    s->be->sync(s->be);
    free(host);
    s->timer = core_cuda_timer_create(s->be);
}

static void ours_step(ours *s)
{
    model_forward(s->net, 1);
    for (int st = 0; st < s->stages; st++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            if (!model_has_output(s->net, (model_out)o)) continue;
            core_tensor g = model_output_grad(s->net, st, (model_out)o);
            if (g.data) s->be->fill(s->be, g.data, 1e-3f, core_tensor_numel(&g));
        }
    model_zero_grads(s->net);
    model_backward(s->net);
}

/* Total ms of n steps, CUDA events on the backend's stream. */
static double ours_round(ours *s, int n)
{
    core_cuda_timer_start(s->timer);
    for (int i = 0; i < n; i++) ours_step(s);
    return core_cuda_timer_stop_ms(s->timer);
}

static void ours_destroy(ours *s)
{
    core_cuda_timer_destroy(s->timer);
    model_destroy(s->net);
    core_backend_destroy(s->be);
}

/* Steps that fill round_s seconds at ms_per_step. */
static int steps_for(double round_s, double ms_per_step)
{
    double n = ceil(round_s * 1e3 / (ms_per_step > 1e-3 ? ms_per_step : 1e-3));
    return n < 1 ? 1 : n > 1e6 ? 1000000 : (int)n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n)
{
    double *t = core_malloc((size_t)n * sizeof *t);
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return m;
}

static void report(const char *who, int batch, double ms, double flops, double peak, const char *prec)
{
    double tflops = flops / (ms * 1e-3) / 1e12;
    printf("%-8s %8.2f samples/s  %8.2f ms/step  %7.2f TFLOP/s  MFU %5.1f%% of the %s peak (%.0f TFLOP/s)\n", who,
           batch / (ms * 1e-3), ms, tflops, 100 * tflops / peak, prec, peak);
}

static double peak_of(const core_cuda_peak *pk, const char *prec)
{
    return !strcmp(prec, "bf16") ? pk->bf16 : !strcmp(prec, "tf32") ? pk->tf32 : pk->fp32;
}

/* Alternating rounds; returns the median ms per step of each side (theirs 0 without the peer). */
static void alternate(const opts *o, ours *s, gpu_peer *peer, double *ours_ms, double *theirs_ms)
{
    double t0 = ours_round(s, o->warmup) / o->warmup; /* includes the one-time algorithm search */
    double cal = ours_round(s, 2) / 2;
    int n_ours = steps_for(o->round_s, cal < t0 ? cal : t0), n_theirs = 0;
    if (peer) {
        gpu_peer_warmup(peer, o->warmup);
        n_theirs = steps_for(o->round_s, gpu_peer_round(peer, 2) / 2);
    }
    double *a = core_calloc((size_t)o->rounds, sizeof *a), *b = core_calloc((size_t)o->rounds, sizeof *b);
    printf("rounds: %d, sspose %d steps each%s", o->rounds, n_ours, peer ? "" : "\n");
    if (peer) printf(", pytorch %d steps each\n", n_theirs);
    for (int r = 0; r < o->rounds; r++) {
        a[r] = ours_round(s, n_ours) / n_ours;
        if (peer) b[r] = gpu_peer_round(peer, n_theirs) / n_theirs;
        if (peer) printf("  round %d: sspose %.2f ms/step, pytorch %.2f ms/step, ratio %.3f\n", r + 1, a[r], b[r],
                         b[r] / a[r]);
        else printf("  round %d: sspose %.2f ms/step\n", r + 1, a[r]);
        fflush(stdout);
    }
    *ours_ms = median(a, o->rounds);
    *theirs_ms = peer ? median(b, o->rounds) : 0;
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(argc, argv, &o);
    int ngpu = core_cuda_device_count();
    CHECK(ngpu > 0, "gpu_step: no GPU visible (%s); run it on a CUDA machine (docs/gpu.md)",
          strstr(core_backends_built(), "cuda") ? "no driver or device" : "built without CUDA");
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_load(&cfg, o.config);
    core_config_resolve(&cfg);
    CHECK(o.input % cfg.model.stride == 0, "gpu_step: --input %d is not a multiple of model.stride %d", o.input,
          cfg.model.stride);
    if (o.tf32 < 0) o.tf32 = cfg.comm.tf32;
    core_cuda_peak pk;
    CHECK(core_cuda_device_peak(0, o.clock_mhz, &pk) == 0,
          "gpu_step: GPU 0's architecture has no tabulated peak (core_cuda_device_peak); MFU cannot be computed");
    const char *our_prec = o.tf32 ? "tf32" : "fp32";

    ours s;
    ours_create(&s, &cfg, o.tf32, o.batch, o.input);
    double fwd_flops, flops = step_flops(s.net, &cfg, o.batch, o.input, &fwd_flops);
    printf("gpu_step: %s at %.0f MHz, %s (width %g, %d stages, stride %d, offsets %d, ss %s), batch %d, %dx%d\n",
           pk.name, pk.clock_mhz, o.config, cfg.model.width, cfg.model.stages, cfg.model.stride, cfg.model.offsets,
           ss_name(cfg.model.ss), o.batch, o.input, o.input);
    printf("conv FLOPs per step: %.4g (forward %.4g); dense peaks fp32 %.1f, tf32 %.1f, bf16 %.1f TFLOP/s\n", flops,
           fwd_flops, pk.fp32, pk.tf32, pk.bf16);
    printf("sspose: %s, deterministic cuDNN algorithms (timed search), NCHW; pytorch: %s\n", our_prec,
           o.torch ? o.torch_precision : "not run");
    fflush(stdout);

    gpu_peer *peer = NULL;
    double their_flops = 0;
    if (o.torch) {
        char args[1024];
        snprintf(args, sizeof args,
                 "--width %.17g --stages %d --stride %d --offsets %d --ss %s --batch %d --input %d --precision %s",
                 cfg.model.width, cfg.model.stages, cfg.model.stride, cfg.model.offsets, ss_name(cfg.model.ss),
                 o.batch, o.input, o.torch_precision);
        peer = gpu_peer_start(o.python, "bench/gpu_step_torch.py", args, &their_flops);
    }
    double ours_ms, theirs_ms;
    alternate(&o, &s, peer, &ours_ms, &theirs_ms);
    ours_destroy(&s);
    if (peer) gpu_peer_stop(peer);

    report("sspose:", o.batch, ours_ms, flops, peak_of(&pk, our_prec), our_prec);
    if (peer) {
        report("pytorch:", o.batch, theirs_ms, their_flops, peak_of(&pk, o.torch_precision), o.torch_precision);
        double agree = their_flops > 0 ? flops / their_flops : 0;
        if (agree < 0.999 || agree > 1.001)
            printf("warning: FLOP counts differ (sspose %.6g, pytorch %.6g): the two networks are not the same\n",
                   flops, their_flops);
        printf("ratio sspose/pytorch (step time, median round): %.3f\n", theirs_ms / ours_ms);
    }
    fflush(stdout);
    if (o.train) {
        double sps = gpu_train_samples_per_s(o.sspose, o.config, o.shards, o.batch, o.input, o.tf32, o.train_steps);
        printf("sspose train: %8.2f samples/s end to end (loader, loss, optimizer, all-reduce; 1 rank, %s), vs %.2f "
               "for the network step alone\n",
               sps, our_prec, o.batch / (ours_ms * 1e-3));
    }
    return 0;
}
