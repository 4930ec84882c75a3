/* GPU suite: the whole network (model/net.h) on the CUDA backend against the
 * CPU backend: same parameters, same input, same output gradients; every
 * stage output must agree to max|gpu - cpu| <= 1e-4 * max|cpu| per tensor
 * (fp32, TF32 off), and every parameter gradient to 5e-4: after ~30 layers a
 * pre-activation within rounding of 0 can take the other side of a ReLU on
 * one device, which moves a gradient by one position's contribution.
 * Configs: a small paper-like net (offsets on, ss both: every output and
 * subnet) at stride 8, and one at stride 16 (the extra pool).
 * Then the overlapped gradient all-reduce on one rank (MPI singleton, NCCL
 * forced on with one rank): the event/stream path of comm/nccl.c runs for
 * real; each bucket's content at launch must equal the finished gradient, the
 * collective must see the gradient times the scale, and so must the result,
 * bit for bit. Snapshots are queued on the streams, never waited for. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
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

static void compare_nets_norm(const char *what, int stride, int batch, int side, core_norm_mode norm, int train)
{
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.model.norm = norm;
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

    model_set_train(nc, train);
    model_set_train(ng, train);
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
        /* batch statistics cancel a conv bias in front of batch norm: its gradient is rounding */
        if (train && p->kind == MODEL_PARAM_BIAS && i + 1 < model_param_count(nc) &&
            model_param_at(nc, i + 1)->kind == MODEL_PARAM_BN_WEIGHT)
            continue;
        double e = rel_err(gg + p->offset, gc + p->offset, p->numel);
        T_CHECKF(e <= 5e-4, "%s: gradient of %s relative error %.3g", what, p->name, e);
    }
    /* running statistics (moved by a training-mode forward) */
    float *wc = to_host(cpu, model_params(nc), np), *wg = to_host(gpu, model_params(ng), np);
    for (int i = 0; i < model_buf_count(nc) && !t_cur_failed; i++) {
        const model_param *p = model_buf_at(nc, i);
        double e = rel_err(wg + p->offset, wc + p->offset, p->numel);
        T_CHECKF(e <= 1e-5, "%s: %s relative error %.3g", what, p->name, e);
    }
    free(wc); free(wg);
    free(gc); free(gg); free(params); free(in);
    model_destroy(nc);
    model_destroy(ng);
}

static void compare_nets(const char *what, int stride, int batch, int side)
{
    compare_nets_norm(what, stride, batch, side, CORE_NORM_NONE, 1);
}

static void gpu_model_bn_matches_cpu(void)
{
    if (!gpu) T_SKIP("skipped: no GPU");
    compare_nets_norm("batch norm, train", 8, 2, 64, CORE_NORM_BATCH, 1);
    compare_nets_norm("batch norm, eval", 8, 2, 64, CORE_NORM_BATCH, 0);
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

/* ---- the overlapped all-reduce on one GPU ----
 * Two snapshots per bucket, neither of which waits for the device (a
 * synchronous download at launch would drain the backend's stream and hide
 * a missing or misplaced event):
 *  - at launch, a copy queued on the backend's stream: the bucket in stream
 *    order when the reducer decided it was final (checks grad_final);
 *  - after the collective, a copy queued on the NCCL stream: the bucket as
 *    the collective saw it. Only the ready event orders that stream behind
 *    the backward kernels and the scale still queued on the backend's stream,
 *    so without it (or with it on the wrong stream) the copy runs ahead and
 *    captures a partial or unscaled gradient. */
typedef struct {
    core_backend *be;
    const float *base;           /* device gradient buffer */
    float *at_launch, *after_op; /* device snapshots, the buffer's size */
    int launches, collectives, in_pass, pass_done;
} launch_check;

static void on_launch(void *ctx, int bucket, const float *data, size_t count)
{
    launch_check *c = ctx;
    (void)bucket;
    core_cuda_copy_on(core_cuda_stream(c->be), c->at_launch + (data - c->base), data, count);
    c->launches++;
    if (!c->pass_done) c->in_pass++;
}

static void on_collective(void *ctx, const float *data, size_t count, void *stream)
{
    launch_check *c = ctx;
    core_cuda_copy_on(stream, c->after_op + (data - c->base), data, count);
    c->collectives++;
}

/* Floats of got that differ bitwise from want, and the first such index. */
static size_t count_diff(const float *got, const float *want, size_t n, size_t *first)
{
    size_t diff = 0;
    *first = n;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float))) {
            if (!diff) *first = i;
            diff++;
        }
    return diff;
}

static void progress_hook(void *ctx, int done) { comm_reducer_progress(ctx, done); }

static void forward_with_grads(model_net *net, const float *in, size_t nin, int stages)
{
    core_backend *be = model_backend(net);
    be->upload(be, model_input(net), in, nin);
    model_forward(net, 1);
    uint64_t keep = rng;
    rng = 0x2545F4914F6CDD1Dull; /* the same output gradients every call */
    for (int s = 0; s < stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output_grad(net, s, (model_out)o);
            if (!t.data) continue;
            size_t n = core_tensor_numel(&t);
            float *g = core_malloc(n * sizeof(float));
            for (size_t i = 0; i < n; i++) g[i] = 1e-2f * rnd();
            be->upload(be, t.data, g, n);
            free(g);
        }
    rng = keep;
    model_zero_grads(net);
}

static void gpu_overlapped_allreduce_one_rank(void)
{
    if (!gpu) T_SKIP("skipped: no GPU");
    core_config cfg;
    core_config_defaults(&cfg);
    cfg.model.width = 0.125;
    cfg.model.stages = 3;
    cfg.model.offsets = 1;
    cfg.model.ss = CORE_SS_BOTH;
    core_config_resolve(&cfg);
    model_net *net = model_create(&cfg, gpu);
    model_init_params(net, 9);
    model_set_input_shape(net, 2, 64, 64);
    size_t nin = 2 * 3 * 64 * 64, n = model_num_floats(net);
    float *in = core_malloc(nin * sizeof(float));
    for (size_t i = 0; i < nin; i++) in[i] = 0.5f * rnd();

    forward_with_grads(net, in, nin, cfg.model.stages);
    model_backward(net);
    float *final = to_host(gpu, model_grads(net), n);
    float *want = core_malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) want[i] = final[i] * 0.5f; /* one rank: the sum is the scaled gradient */

    comm_reducer *r = comm_reducer_create(gpu, 0.01);
    comm_reducer_force_collectives(r);
    int np = model_param_count(net);
    comm_grad_range *ranges = core_calloc((size_t)np, sizeof *ranges);
    for (int i = 0; i < np; i++) {
        const model_param *p = model_param_at(net, i);
        ranges[i] = (comm_grad_range){p->offset, p->numel, model_param_grad_final(net, i)};
    }
    comm_reducer_plan(r, n, ranges, np);
    free(ranges);
    float *at_launch = gpu->alloc(gpu, n), *after_op = gpu->alloc(gpu, n);
    for (int overlap = 1; overlap >= 0 && !t_cur_failed; overlap--) {
        comm_reducer_set_overlap(r, overlap);
        gpu->fill(gpu, at_launch, NAN, n);
        gpu->fill(gpu, after_op, NAN, n);
        launch_check lc = {gpu, model_grads(net), at_launch, after_op, 0, 0, 0, 0};
        comm_reducer_on_launch(r, on_launch, &lc);
        T_CHECK(comm_reducer_on_collective(r, on_collective, &lc));
        forward_with_grads(net, in, nin, cfg.model.stages);
        comm_reducer_begin(r, model_grads(net), 0.5f);
        model_backward_hooked(net, progress_hook, r);
        lc.pass_done = 1;
        comm_reducer_stats st;
        comm_reducer_finish(r, &st);
        comm_reducer_on_launch(r, NULL, NULL);
        comm_reducer_on_collective(r, NULL, NULL);
        T_CHECKF(lc.launches == st.buckets && lc.collectives == st.buckets && st.buckets > 100,
                 "overlap %d: %d launches, %d collectives, %d buckets", overlap, lc.launches, lc.collectives,
                 st.buckets);
        T_CHECKF(overlap ? st.launched_early > st.buckets / 2 : st.launched_early == 0,
                 "overlap %d: %d of %d buckets launched during backward", overlap, st.launched_early, st.buckets);
        /* finish ordered the backend's stream after the collectives (and the taps) */
        float *snap = to_host(gpu, at_launch, n), *seen = to_host(gpu, after_op, n), *got = to_host(gpu, model_grads(net), n);
        size_t first, diff = count_diff(snap, final, n, &first);
        T_CHECKF(diff == 0, "overlap %d: %zu of %zu floats not final when their bucket launched (first at %zu)", overlap,
                 diff, n, first);
        diff = count_diff(seen, want, n, &first);
        T_CHECKF(diff == 0,
                 "overlap %d: %zu of %zu floats seen by the collective differ from gradient x 0.5 (first at %zu: the "
                 "NCCL stream ran ahead of the ready event)",
                 overlap, diff, n, first);
        diff = count_diff(got, want, n, &first);
        T_CHECKF(diff == 0, "overlap %d: %zu of %zu reduced floats differ from gradient x 0.5", overlap, diff, n);
        free(snap); free(seen); free(got);
    }
    gpu->free(gpu, at_launch);
    gpu->free(gpu, after_op);
    comm_reducer_destroy(r);
    free(want);
    free(final);
    free(in);
    model_destroy(net);
}

int main(int argc, char **argv)
{
    comm_init(&argc, &argv); /* an MPI singleton, for the reducer */
    core_set_quiet(1);
    cpu = core_cpu_backend_create(0);
    if (core_cuda_device_count() > 0) gpu = core_cuda_backend_create(0);
    T_RUN(gpu_model_matches_cpu_stride8);
    T_RUN(gpu_model_matches_cpu_stride16);
    T_RUN(gpu_model_bn_matches_cpu);
    T_RUN(gpu_overlapped_allreduce_one_rank);
    if (gpu) core_backend_destroy(gpu);
    core_backend_destroy(cpu);
    comm_finalize();
    T_EXIT();
}
