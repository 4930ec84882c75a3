/* The training loop: batch -> forward -> loss -> backward -> all-reduce ->
 * guards -> clipping -> optimizer update, with checkpoints, resume, metrics
 * and preemption. trainer_run is the loop; each part of a step is a named
 * function below it. */
#include "trainer/train.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "core/check.h"
#include "core/cuda_backend.h"
#include "dataio/shard.h"
#include "loss/loss.h"
#include "model/checkpoint.h"
#include "model/net.h"
#include "trainer/batch.h"
#include "trainer/cudnn_algos.h"
#include "trainer/faults.h"
#include "trainer/metrics.h"
#include "trainer/optim.h"
#include "trainer/resume.h"
#include "trainer/rundir.h"
#include "trainer/schedule.h"
#include "trainer/signals.h"
#include "trainer/validate.h"
#include "trainer/window.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the gradient all-reduce, overlapped with backward -------------------------
 * Each parameter's gradient is final after its last backward use; the reducer
 * turns that into a ready position per bucket and launches each bucket's
 * all-reduce from the backward hook as soon as it is ready. */
static void plan_allreduce(comm_reducer *red, model_net *net, int overlap)
{
    int np = model_param_count(net);
    comm_grad_range *g = core_calloc((size_t)np, sizeof *g);
    for (int i = 0; i < np; i++) {
        const model_param *p = model_param_at(net, i);
        g[i] = (comm_grad_range){p->offset, p->numel, model_param_grad_final(net, i)};
    }
    /* the spare float after the parameters carries each rank's loss verdict (model_grad_flag) */
    comm_reducer_plan(red, model_num_floats(net) + MODEL_GRAD_SPARE, g, np);
    comm_reducer_set_overlap(red, overlap);
    free(g);
}

typedef struct {
    comm_reducer *red;
    trainer_fault_ctx *fault; /* a nan_grad fault poisons its float at its backward position */
} backward_hook;

static void on_backward(void *ctx, int done)
{
    backward_hook *h = ctx;
    if (done == h->fault->poison_at) trainer_fault_poison(h->fault->net, h->fault->poison);
    comm_reducer_progress(h->red, done);
}

/* Synchronised batch norm: the per-channel sums of every rank's share of the
 * batch, summed in the backend's memory (NCCL on GPUs: no host wait). */
static void bn_sum_over_ranks(void *ctx, double *v, int n) { comm_reducer_allreduce_doubles(ctx, v, (size_t)n); }

/* ---- the run ---------------------------------------------------------------- */
typedef struct {
    const core_config *cfg;
    const char *rundir;
    int rank, world;
    core_backend *be;
    model_net *net;
    loss_ctx *loss;
    comm_reducer *red;
    trainer_batches *data;
    trainer_metrics *metrics;
    trainer_optim *optim;
    trainer_val *val;    /* NULL without train.val_every */
    size_t nfloats;
    char *config_text;
    trainer_state st;
    double start_wall;   /* now_s() when this process started training */
    loss_values v;       /* the run's loss layout (stages, active terms, weights) */
    trainer_window win;  /* rank 0 */
    long last_ckpt;      /* step of the newest checkpoint */
    trainer_algos *algos; /* RUNDIR/cudnn_algos.txt (CUDA backend) */

    /* The step's guard (core/step_guard.h): its state and the per-parameter
     * gradient sums of squares live in the backend's memory; gs is the host's
     * copy from the latest sync point. */
    core_step_state *guard;
    double *param_sq;
    size_t *seg_off;     /* parameter i's gradient: [seg_off[i], seg_off[i+1]) */
    int nseg;
    core_step_state gs;
    int reset_window, reset_bad; /* for the next step's guard */
    /* SSPOSE_TRACE_WAITS: host waits for the device inside steps (docs/gpu.md) */
    long waits_first, waits_later, steps_later;
} run_ctx;

/* One step as the ranks agreed on it, plus what the update needs. */
typedef struct {
    trainer_step_result res;
    int stop;          /* some rank got a stop signal */
    double t_reduced;  /* now_s() after the host all-reduce */
} step_ctx;

/* Per-step host all-reduce of what the host knows, in one message (the
 * losses and the gradient's verdict stay on the device):
 * [stop, t_data, t_compute, gradient fraction hidden under backward, corrupt samples] */
enum { M_STOP = 0, M_TDATA, M_TCOMPUTE, M_HIDDEN, M_CORRUPT, M_LEN };

/* Batch, forward, loss and its guard, backward with the overlapped gradient
 * all-reduce, the step's guard, and the all-reduce of flags and timings.
 * Nothing here waits for the device (docs/gpu.md, "Host synchronisation"). */
static void forward_backward(run_ctx *r, long step, step_ctx *s)
{
    const double inv_world = 1.0 / r->world;
    double t0 = now_s();
    loss_targets tg;
    s->res.epoch = trainer_batches_next(r->data, &tg);
    double t1 = now_s();

    model_zero_grads(r->net);
    model_forward(r->net, 1);
    loss_queue_net(r->loss, r->net, &tg, 1);
    trainer_fault_ctx fault = {.net = r->net, .loss_sums = loss_sums_device(r->loss), .poison_at = -1};
    trainer_fault(TRAINER_AT_LOSS, step + 1, &fault);
    /* this rank's terms, and its "loss not finite" flag into the gradient's spare float */
    core_guard_loss_args la;
    loss_guard_args(r->loss, &la);
    la.flag = model_grad_flag(r->net);
    r->be->guard_loss(r->be, &la, r->guard);
    loss_queue_done(r->loss);
    trainer_fault(TRAINER_AT_BACKWARD, step + 1, &fault);
    backward_hook hook = {r->red, &fault};
    /* Each rank's loss is the mean over its samples; the global loss is the
     * mean over all ranks' samples, so gradients are summed with weight 1/world
     * (each bucket is scaled as it is launched). */
    comm_reducer_begin(r->red, model_grads(r->net), r->world > 1 ? (float)inv_world : 1.0f);
    model_backward_hooked(r->net, on_backward, &hook);
    double t2 = now_s();

    /* t_comm from here: the communication that backward did not hide */
    comm_reducer_stats cs;
    comm_reducer_finish(r->red, &cs);
    /* The reduced gradients are identical on every rank, and so the flag, the
     * norm and the guard's decision (skip, stop, clip) are too. */
    r->be->sumsq_segments(r->be, model_grads(r->net), r->nseg, r->seg_off, r->param_sq);
    core_guard_args ga = {
        .step = step + 1, .flag = model_grad_flag(r->net), .param_sq = r->param_sq, .nparams = r->nseg,
        .clip_norm = r->cfg->train.clip_norm, .skip_nonfinite = r->cfg->train.skip_nonfinite,
        .beta1 = r->cfg->train.beta1, .beta2 = r->cfg->train.beta2,
        .reset_window = r->reset_window, .reset_bad = r->reset_bad,
    };
    r->be->guard_step(r->be, &ga, r->guard);
    r->reset_window = r->reset_bad = 0;

    double msg[M_LEN];
    memset(msg, 0, sizeof msg);
    msg[M_STOP] = trainer_stop_signal() != 0;
    msg[M_TDATA] = (t1 - t0) * inv_world;
    msg[M_TCOMPUTE] = (t2 - t1) * inv_world;
    msg[M_HIDDEN] = cs.floats ? (double)cs.floats_hidden / (double)cs.floats * inv_world : 0;
    msg[M_CORRUPT] = r->cfg->data.skip_corrupt ? (double)trainer_batches_corrupt(r->data) : 0;
    comm_allreduce_doubles(msg, M_LEN, COMM_SUM);
    s->t_reduced = now_s();

    s->res.t_data = msg[M_TDATA];
    s->res.t_compute = msg[M_TCOMPUTE];
    s->res.t_comm = s->t_reduced - t2;
    s->res.hidden = msg[M_HIDDEN];
    s->res.corrupt = (long)msg[M_CORRUPT];
    s->stop = msg[M_STOP] > 0;
}

/* The optimizer's update, gated on the device by the step's guard (no update
 * for a non-finite step; the clipping factor applied in the kernels). */
static void update(run_ctx *r, long step, step_ctx *s)
{
    trainer_optim_step(r->optim, trainer_lr(r->cfg, step), r->guard);
    trainer_fault_ctx fault = {.net = r->net};
    trainer_fault(TRAINER_AT_UPDATE, step + 1, &fault);
    s->res.t_compute += now_s() - s->t_reduced;
}

/* The guard's segments: one per parameter, each running to the next one's
 * offset (alignment padding, and buffers after the last, have zero gradient). */
static void open_guard(run_ctx *r)
{
    int np = model_param_count(r->net);
    r->nseg = np;
    r->seg_off = core_malloc(((size_t)np + 1) * sizeof *r->seg_off);
    for (int i = 0; i < np; i++) r->seg_off[i] = model_param_at(r->net, i)->offset;
    r->seg_off[np] = r->nfloats;
    r->param_sq = (double *)r->be->alloc(r->be, 2 * (size_t)(np ? np : 1));
    r->guard = (core_step_state *)r->be->alloc(r->be, CORE_GUARD_STATE_FLOATS);
    /* a resumed run continues the update count (Adam's bias correction) and the skip count */
    core_step_state init;
    memset(&init, 0, sizeof init);
    init.updates = (double)trainer_optim_updates(r->optim);
    init.skipped = (double)r->st.skipped;
    r->be->upload(r->be, (float *)r->guard, (const float *)&init, CORE_GUARD_STATE_FLOATS);
    r->reset_window = r->reset_bad = 1;
    loss_values_layout(r->loss, r->cfg->model.stages, &r->v);
}

static void close_guard(run_ctx *r)
{
    if (r->guard) r->be->free(r->be, (float *)r->guard);
    if (r->param_sq) r->be->free(r->be, (float *)r->param_sq);
    free(r->seg_off);
}

/* First non-finite (stage, term) of v, as "stage3/paf = nan". */
static int nonfinite_term(const loss_values *v, char *out, size_t len)
{
    for (int s = 0; s < v->stages; s++)
        for (int t = 0; t < LOSS_NUM_TERMS; t++)
            if ((v->active & (1u << t)) && !isfinite(v->term[s][t])) {
                snprintf(out, len, "stage%d/%s = %g", s + 1, loss_term_names[t], v->term[s][t]);
                return 1;
            }
    return 0;
}

/* The guard's record of the first non-finite step since the last report:
 * stops the run (its weights as before that step: the guard allowed no update
 * since), or with train.skip_nonfinite warns. Collective: the record is the
 * same on every rank, but only the ranks whose loss failed know which term. */
static void report_nonfinite(run_ctx *r)
{
    const core_step_state *g = &r->gs;
    char what[200];
    if ((int)g->b_kind == CORE_GUARD_BAD_LOSS) {
        double msg[CORE_GUARD_TERMS + 1];
        for (int k = 0; k < CORE_GUARD_TERMS; k++) msg[k] = g->b_terms[k] / r->world;
        msg[CORE_GUARD_TERMS] = g->b_total / r->world;
        comm_allreduce_doubles(msg, CORE_GUARD_TERMS + 1, COMM_SUM); /* a NaN on any rank stays NaN */
        loss_values v = r->v;
        loss_values_from_terms(&v, msg);
        char term[96];
        if (!nonfinite_term(&v, term, sizeof term)) snprintf(term, sizeof term, "total = %g", msg[CORE_GUARD_TERMS]);
        snprintf(what, sizeof what, "loss term %s", term);
    } else {
        int p = (int)g->b_param;
        snprintf(what, sizeof what, "gradient of %s is not finite",
                 p >= 0 && p < model_param_count(r->net) ? model_param_at(r->net, p)->name
                                                         : "(the sum of squares overflows)");
    }
    long step = (long)g->b_step;
    CHECK(!g->halted, "step %ld: %s; stopping (last checkpoint: step %ld; set train.skip_nonfinite=1 to skip such "
          "steps)", step, what, r->last_ckpt);
    if (r->rank != 0) return;
    core_warn("step %ld: %s; step skipped (%lld so far)", step, what, (long long)g->b_skipped);
    if (g->b_count > 1)
        core_warn("%.0f more non-finite step(s) skipped after step %ld, up to step %lld (%lld so far)", g->b_count - 1,
                  step, (long long)r->st.step, (long long)g->skipped);
}

/* A sync point: the one download of the guard state (after the latest
 * gradient all-reduce is known complete), the counts it carries, a report of
 * non-finite steps and, on logged steps, the window's loss averaged over
 * ranks. Every rank calls it at the same steps. */
static void sync_point(run_ctx *r, int log_due)
{
    comm_reducer_quiesce(r->red);
    r->be->download(r->be, (float *)&r->gs, (const float *)r->guard, CORE_GUARD_STATE_FLOATS);
    r->st.skipped = (int64_t)r->gs.skipped;
    trainer_optim_set_updates(r->optim, (int64_t)r->gs.updates);
    if (r->gs.b_count > 0) {
        report_nonfinite(r);
        r->reset_bad = 1;
    }
    if (!log_due) return;
    trainer_window_dev d;
    memset(&d, 0, sizeof d);
    double msg[CORE_GUARD_TERMS + 1];
    for (int k = 0; k < CORE_GUARD_TERMS; k++) msg[k] = r->gs.w_terms[k] / r->world;
    msg[CORE_GUARD_TERMS] = r->gs.w_total / r->world;
    comm_allreduce_doubles(msg, CORE_GUARD_TERMS + 1, COMM_SUM);
    memcpy(d.terms, msg, sizeof d.terms);
    d.total = msg[CORE_GUARD_TERMS];
    d.grad_norm = r->gs.w_grad_norm; /* from the reduced gradient: the same on every rank */
    d.clip = r->gs.w_clip;
    d.good = (long)r->gs.w_good;
    d.clipped = (long)r->gs.w_clipped;
    trainer_window_device(&r->win, &d);
    r->reset_window = 1;
}

/* The step into the log window; a metrics row and a progress line when due (rank 0). */
static void log_window(run_ctx *r, long step, const step_ctx *s, int log_due, const trainer_val_result *val)
{
    if (r->rank != 0) return;
    trainer_window_add(&r->win, &s->res);
    if (val) r->win.start += val->time_s; /* step times and throughput leave validation out */
    if (!log_due) return;
    trainer_window_info info = {r->cfg, (long)r->st.step, (long)r->st.skipped, trainer_lr(r->cfg, step),
                                (double)r->st.global_batch, &r->v, r->world, val};
    trainer_window_flush(&r->win, &info, r->metrics, now_s());
}

/* What the step just completed is due for; the same on every rank. The steps
 * with any of these are the sync points, where the device's numbers come to the host. */
typedef struct {
    int val;      /* train.val_every (or the last step), unless a stop request skips it */
    int log;      /* a metrics row: train.log_every, the last step, a stop, a validation */
    int ckpt;     /* train.checkpoint_every, the last step, a stop (a new best AP forces one too) */
    int checksum; /* train.checksum_every or the last step, with several ranks */
} step_due;

static step_due due_after(const run_ctx *r, int last, int stop)
{
    const long step = (long)r->st.step, ck = r->cfg->train.checkpoint_every, cs = r->cfg->train.checksum_every;
    step_due d;
    /* the grace time of a stop request is for the checkpoint, not for validation */
    d.val = trainer_val_due(r->val, step, last) && !(stop && !last);
    d.log = step % r->cfg->train.log_every == 0 || last || stop || d.val;
    d.ckpt = last || stop || (ck > 0 && step % ck == 0);
    d.checksum = r->world > 1 && cs > 0 && (step % cs == 0 || last);
    return d;
}

/* Replicas must stay bit-identical; a drifted one is a bug or a bad node. */
static void verify_replicas(run_ctx *r)
{
    float *host = core_malloc(r->nfloats * sizeof(float));
    model_params_to_host(r->net, host);
    int first = -1;
    int nbad = comm_compare_hash(comm_hash_bytes(host, r->nfloats * sizeof(float)), &first);
    free(host);
    CHECK(nbad == 0, "step %lld: the weights of %d rank(s) differ from rank 0's (first: rank %d); replicas "
          "drifted apart", (long long)r->st.step, nbad, first);
}

/* When due (step_due.ckpt) or for a new best validation; every rank reaches
 * this at the same step, rank 0 writes. */
static void checkpoint(run_ctx *r)
{
    r->st.elapsed_s += now_s() - r->start_wall;
    r->start_wall = now_s();
    r->last_ckpt = (long)r->st.step;
    if (r->rank != 0) return;
    trainer_algos_save(r->algos);
    char path[4200];
    trainer_ckpt_path(r->rundir, (long)r->st.step, path, sizeof path);
    trainer_batches_state(r->data, &r->st.loader);
    double t0 = now_s();
    trainer_checkpoint_write(path, r->net, r->optim, r->config_text, &r->st);
    trainer_ckpt_prune(r->rundir, r->cfg->train.keep);
    core_info("checkpoint %s (%.1f s)", path, now_s() - t0);
}

/* ---- setting up and tearing down ---------------------------------------------- */

/* Rank 0 refuses to mix a fresh run into a run directory that holds checkpoints. */
static void prepare_rundir(const char *rundir, int resume)
{
    if (comm_rank() == 0) {
        trainer_rundir_make(rundir);
        trainer_rundir_lock(rundir); /* one trainer per run directory, before anything in it is read */
        long *steps;
        int n = trainer_ckpt_list(rundir, &steps);
        free(steps);
        CHECK(resume || n == 0, "%s already holds %d checkpoint(s); pass --resume to continue that run or choose another --out",
              rundir, n);
    }
    comm_barrier();
}

/* The replica (backend, network, loss, optimizer, reducer), its starting
 * weights and state (fresh or resumed), the data and, on rank 0, the outputs.
 * Returns whether it resumed. */
/* Weights of a pretrained checkpoint for a fresh run; its input normalisation must be this run's. */
static void init_from(const core_config *cfg, model_net *net, const char *init)
{
    char *text = model_ckpt_read_config(init);
    core_config ic;
    core_config_defaults(&ic);
    core_config_parse_text(&ic, text, init);
    free(text);
    CHECK(ic.model.input_norm == cfg->model.input_norm,
          "train --init: %s was made for model.input_norm = %s, this run has %s", init,
          core_input_norm_names[ic.model.input_norm], core_input_norm_names[cfg->model.input_norm]);
    model_ckpt_load(init, net, NULL, NULL, NULL, NULL);
    core_info("fresh run initialised from %s (weights only)", init);
}

static int open_run(run_ctx *r, const core_config *cfg, const char *rundir, int resume, const char *init)
{
    r->be = comm_backend_create(cfg->comm.device);
    core_cuda_set_math(r->be, cfg->comm.tf32, 1); /* fp32 unless comm.tf32; deterministic algorithms */
    core_cuda_set_workspace(r->be, (size_t)cfg->comm.cudnn_workspace_mb);
    r->algos = trainer_algos_open(r->be, rundir); /* every rank and resume: the same cuDNN algorithms */
    r->net = model_create(cfg, r->be);
    r->loss = loss_create(cfg, r->be);
    r->nfloats = model_num_floats(r->net);
    r->optim = trainer_optim_create(cfg, r->net);
    r->red = comm_reducer_create(r->be, cfg->comm.bucket_mb);
    /* the ranks' batches are one global batch, for batch norm's statistics too */
    if (r->world > 1) model_set_sum_hook(r->net, bn_sum_over_ranks, r->red);
    r->st.global_batch = (int64_t)cfg->train.batch * r->world;
    r->st.ranks = r->world;
    r->st.batch = cfg->train.batch;
    r->st.seed = cfg->train.seed;

    /* Every rank initialises from the same seed, and rank 0's copy is
     * broadcast anyway so replicas start bit-identical whatever the device. */
    model_init_params(r->net, (uint64_t)cfg->train.seed);
    int resumed = resume ? trainer_resume(cfg, rundir, r->net, r->optim, r->red, &r->st) : 0;
    if (!resumed && init) init_from(cfg, r->net, init);
    if (!resumed) comm_reducer_bcast(r->red, model_params(r->net), r->nfloats, 0);

    /* The loader refuses a saved position from other shards or another seed. */
    r->data = trainer_batches_open(cfg, r->net, r->rank, r->world, resumed ? &r->st.loader : NULL);
    r->st.dataset_size = trainer_batches_dataset_size(r->data);
    if (r->rank == 0) {
        /* Written once the resume checks passed, so a refused resume leaves the old one. */
        char path[4200];
        snprintf(path, sizeof path, "%s/config.ini", rundir);
        trainer_write_text_atomic(path, r->config_text);
        r->metrics = trainer_metrics_open(rundir, resumed ? (long)r->st.step : -1);
        core_info("training %s: %d rank(s) x %d = %lld samples/step, %lld samples, %zu parameters, backend %s, steps %lld -> %d",
                  rundir, r->world, cfg->train.batch, (long long)r->st.global_batch, (long long)r->st.dataset_size,
                  r->nfloats, r->be->name, (long long)r->st.step, cfg->train.steps);
    }
    return resumed;
}

static void close_run(run_ctx *r)
{
    comm_barrier();
    trainer_metrics_close(r->metrics);
    trainer_val_close(r->val);
    trainer_batches_close(r->data);
    close_guard(r);
    comm_reducer_destroy(r->red);
    trainer_optim_destroy(r->optim);
    loss_destroy(r->loss);
    model_destroy(r->net);
    trainer_algos_close(r->algos);
    core_backend_destroy(r->be);
    free(r->config_text);
    comm_set_context(NULL);
}

/* ---- the loop ------------------------------------------------------------------ */
int trainer_run(const core_config *cfg, const char *rundir, int resume)
{
    return trainer_run_init(cfg, rundir, resume, NULL);
}

int trainer_run_init(const core_config *cfg, const char *rundir, int resume, const char *init)
{
    CHECK(comm_initialized(), "trainer_run before comm_init");
    CHECK(cfg->train.steps > 0, "train.steps must be positive to train");
    trainer_faults_init();
    run_ctx R;
    memset(&R, 0, sizeof R);
    run_ctx *r = &R;
    r->cfg = cfg;
    r->rundir = rundir;
    r->rank = comm_rank();
    r->world = comm_size();
    r->config_text = core_config_text(cfg);
    comm_set_timeout(cfg->comm.timeout_s);
    prepare_rundir(rundir, resume);
    int resumed = open_run(r, cfg, rundir, resume, init);
    if (r->st.step >= cfg->train.steps) {
        if (r->rank == 0) core_info("already at step %lld of %d: nothing to do", (long long)r->st.step, cfg->train.steps);
        close_run(r);
        return 0;
    }

    r->val = trainer_val_open(cfg, r->be, rundir, resumed);
    plan_allreduce(r->red, r->net, cfg->comm.overlap);
    open_guard(r);
    trainer_signals_install();
    r->start_wall = now_s();
    r->last_ckpt = (long)r->st.step;
    trainer_window_reset(&r->win, now_s());
    int stopped = 0;
    const long first_step = (long)r->st.step;
    while (r->st.step < cfg->train.steps) {
        long step = (long)r->st.step;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "step %ld", step + 1);
        comm_set_context(ctx);
        step_ctx s;
        memset(&s, 0, sizeof s);
        long waits0 = r->be->host_waits;
        forward_backward(r, step, &s);
        update(r, step, &s);
        if (step == first_step) {
            r->waits_first = r->be->host_waits - waits0;
        } else {
            r->waits_later += r->be->host_waits - waits0;
            r->steps_later++;
        }
        r->st.step = step + 1;
        if (step == first_step) trainer_algos_save(r->algos); /* every shape has been searched by now */
        int last = r->st.step == cfg->train.steps;

        /* Validation goes into this step's row. A new best AP is also a
         * checkpoint step, whose file ckpt-best.h5 copies. */
        step_due due = due_after(r, last, s.stop);
        if (due.val || due.log || due.ckpt || due.checksum) sync_point(r, due.log);
        trainer_algos_local(r->algos, 1); /* validation shapes differ between ranks */
        const trainer_val_result *val = due.val ? trainer_val_step(r->val, r->net, (long)r->st.step) : NULL;
        trainer_algos_local(r->algos, 0);
        log_window(r, step, &s, due.log, val);
        if (due.checksum) verify_replicas(r);
        if (due.ckpt || (val && val->improved)) checkpoint(r);
        trainer_val_keep_best(r->val, val);
        trainer_fault_ctx fault = {.net = r->net};
        trainer_fault(TRAINER_AT_STEP_END, (long)r->st.step, &fault);
        if (s.stop && !last) {
            if (r->rank == 0)
                core_info("stop requested (signal %d on some rank): stopped at step %lld after writing its checkpoint",
                          trainer_stop_signal() ? trainer_stop_signal() : 15, (long long)r->st.step);
            stopped = 1;
            break;
        }
    }
    trainer_signals_restore();
    if (r->rank == 0 && !stopped) core_info("training done: step %lld", (long long)r->st.step);
    const char *trace = getenv("SSPOSE_TRACE_WAITS");
    if (trace && *trace && strcmp(trace, "0"))
        core_info("host waits for the device inside steps: %ld in the first, %ld in the %ld after it",
                  r->waits_first, r->waits_later, r->steps_later);
    close_run(r);
    return 0;
}
