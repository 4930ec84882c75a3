/* The training loop: batch -> forward -> loss -> backward -> all-reduce ->
 * guards -> clipping -> optimizer update, with checkpoints, resume, metrics
 * and preemption. trainer_run is the loop; each part of a step is a named
 * function below it. */
#include "trainer/train.h"

#include <math.h>
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

#define NTERMS TRAINER_NTERMS

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
    comm_reducer_plan(red, model_num_floats(net), g, np);
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
    loss_values v;       /* this rank's values of the latest step */
    trainer_window win;  /* rank 0 */
    long last_ckpt;      /* step of the newest checkpoint */
    trainer_algos *algos; /* RUNDIR/cudnn_algos.txt (CUDA backend) */
} run_ctx;

/* One step as the ranks agreed on it, plus what the guards and the update need. */
typedef struct {
    trainer_step_result res;
    double gsq;        /* squared global gradient norm (identical on every rank) */
    int loss_nonfinite; /* some rank's loss is NaN/Inf */
    int stop;          /* some rank got a stop signal */
    double t_reduced;  /* now_s() after the metrics all-reduce */
} step_ctx;

/* Per-step all-reduce of metrics and flags in one message:
 * [total, terms[S*T], stop, loss_nonfinite, t_data, t_compute, gradient fraction hidden under backward] */
enum { M_TOTAL = 0, M_TERMS = 1, M_STOP = M_TERMS + NTERMS, M_NONFINITE, M_TDATA, M_TCOMPUTE, M_HIDDEN, M_CORRUPT, M_LEN };

/* Batch, forward, loss, backward with the overlapped gradient all-reduce, and
 * the all-reduce of losses, flags and timings. */
static void forward_backward(run_ctx *r, long step, step_ctx *s)
{
    const double inv_world = 1.0 / r->world;
    double t0 = now_s();
    loss_targets tg;
    s->res.epoch = trainer_batches_next(r->data, &tg);
    double t1 = now_s();

    model_zero_grads(r->net);
    model_forward(r->net, 1);
    /* The loss values come back after backward is queued: the one download
     * of the loss sums then waits while the device works, never in between. */
    loss_queue_net(r->loss, r->net, &tg, 1);
    trainer_fault_ctx fault = {.net = r->net, .loss = &r->v, .poison_at = -1};
    trainer_fault(TRAINER_AT_BACKWARD, step + 1, &fault);
    backward_hook hook = {r->red, &fault};
    /* Each rank's loss is the mean over its samples; the global loss is the
     * mean over all ranks' samples, so gradients are summed with weight 1/world
     * (each bucket is scaled as it is launched). */
    comm_reducer_begin(r->red, model_grads(r->net), r->world > 1 ? (float)inv_world : 1.0f);
    model_backward_hooked(r->net, on_backward, &hook);
    loss_fetch(r->loss, &r->v);
    trainer_fault(TRAINER_AT_LOSS, step + 1, &fault);
    r->be->sync(r->be);
    double t2 = now_s();

    /* t_comm from here: the communication that backward did not hide */
    comm_reducer_stats cs;
    comm_reducer_finish(r->red, &cs);
    double msg[M_LEN];
    memset(msg, 0, sizeof msg);
    const loss_values *v = &r->v;
    msg[M_TOTAL] = v->total * inv_world;
    for (int st = 0; st < v->stages; st++)
        for (int t = 0; t < LOSS_NUM_TERMS; t++) msg[M_TERMS + st * LOSS_NUM_TERMS + t] = v->term[st][t] * inv_world;
    msg[M_STOP] = trainer_stop_signal() != 0;
    msg[M_NONFINITE] = !isfinite(v->total);
    msg[M_TDATA] = (t1 - t0) * inv_world;
    msg[M_TCOMPUTE] = (t2 - t1) * inv_world;
    msg[M_HIDDEN] = cs.floats ? (double)cs.floats_hidden / (double)cs.floats * inv_world : 0;
    msg[M_CORRUPT] = r->cfg->data.skip_corrupt ? (double)trainer_batches_corrupt(r->data) : 0;
    comm_allreduce_doubles(msg, M_LEN, COMM_SUM);
    s->t_reduced = now_s();
    s->gsq = r->be->sumsq(r->be, model_grads(r->net), r->nfloats);

    s->res.total = msg[M_TOTAL];
    memcpy(s->res.terms, msg + M_TERMS, sizeof s->res.terms);
    s->res.t_data = msg[M_TDATA];
    s->res.t_compute = msg[M_TCOMPUTE];
    s->res.t_comm = s->t_reduced - t2;
    s->res.hidden = msg[M_HIDDEN];
    s->res.corrupt = (long)msg[M_CORRUPT];
    s->res.grad_norm = sqrt(s->gsq);
    s->res.clip = 1;
    s->loss_nonfinite = msg[M_NONFINITE] > 0;
    s->stop = msg[M_STOP] > 0;
}

/* First non-finite (stage, term) of a loss_values-shaped array, as "stage3/paf". */
static int nonfinite_term(const double *terms, const loss_values *v, char *out, size_t len)
{
    for (int s = 0; s < v->stages; s++)
        for (int t = 0; t < LOSS_NUM_TERMS; t++)
            if ((v->active & (1u << t)) && !isfinite(terms[s * LOSS_NUM_TERMS + t])) {
                snprintf(out, len, "stage%d/%s = %g", s + 1, loss_term_names[t], terms[s * LOSS_NUM_TERMS + t]);
                return 1;
            }
    return 0;
}

static const char *nonfinite_param(run_ctx *r)
{
    float *g = model_grads(r->net);
    for (int i = 0; i < model_param_count(r->net); i++) {
        const model_param *p = model_param_at(r->net, i);
        if (!isfinite(r->be->sumsq(r->be, g + p->offset, p->numel))) return p->name;
    }
    return "(the sum of squares overflows)";
}

/* The loss (any rank) and the averaged gradients (identical on every rank):
 * non-finite stops the run, or with train.skip_nonfinite marks the step bad. */
static void guards(run_ctx *r, long step, step_ctx *s)
{
    char what[160] = "";
    if (s->loss_nonfinite || !isfinite(s->res.total)) {
        char term[96];
        if (!nonfinite_term(s->res.terms, &r->v, term, sizeof term)) snprintf(term, sizeof term, "total = %g", s->res.total);
        snprintf(what, sizeof what, "loss term %s", term);
    } else if (!isfinite(s->gsq)) {
        snprintf(what, sizeof what, "gradient of %s is not finite", nonfinite_param(r));
    }
    s->res.bad = what[0] != 0;
    if (!s->res.bad) return;
    CHECK(r->cfg->train.skip_nonfinite, "step %ld: %s; stopping (last checkpoint: step %ld; set train.skip_nonfinite=1 "
          "to skip such steps)", step + 1, what, r->last_ckpt);
    r->st.skipped++;
    if (r->rank == 0) core_warn("step %ld: %s; step skipped (%lld so far)", step + 1, what, (long long)r->st.skipped);
}

/* Global gradient-norm clipping (train.clip_norm): the factor the all-reduced
 * gradients are scaled by, 1 when off or within the bound. gsq is the same on
 * every rank (it is computed from identical reduced gradients), so is this. */
static double clip_scale(const core_config *cfg, double gsq)
{
    double norm = sqrt(gsq), max = cfg->train.clip_norm;
    /* torch.nn.utils.clip_grad_norm_'s factor, max/(norm + 1e-6) */
    return max > 0 && norm > max ? max / (norm + 1e-6) : 1;
}

/* Clipping and the optimizer's update, unless the guards marked the step bad. */
static void update(run_ctx *r, long step, step_ctx *s)
{
    if (!s->res.bad) {
        s->res.clip = clip_scale(r->cfg, s->gsq);
        if (s->res.clip < 1) r->be->scale(r->be, model_grads(r->net), (float)s->res.clip, r->nfloats);
        trainer_optim_step(r->optim, trainer_lr(r->cfg, step));
    }
    trainer_fault_ctx fault = {.net = r->net};
    trainer_fault(TRAINER_AT_UPDATE, step + 1, &fault);
    r->be->sync(r->be);
    s->res.t_compute += now_s() - s->t_reduced;
}

/* The step into the log window; a metrics row and a progress line when due (rank 0). */
static void log_window(run_ctx *r, long step, const step_ctx *s, int last, const trainer_val_result *val)
{
    if (r->rank != 0) return;
    trainer_window_add(&r->win, &s->res);
    if (val) r->win.start += val->time_s; /* step times and throughput leave validation out */
    if (r->st.step % r->cfg->train.log_every != 0 && !last && !s->stop && !val) return;
    trainer_window_info info = {r->cfg, (long)r->st.step, (long)r->st.skipped, trainer_lr(r->cfg, step),
                                (double)r->st.global_batch, &r->v, r->world, val};
    trainer_window_flush(&r->win, &info, r->metrics, now_s());
}

/* Replicas must stay bit-identical; a drifted one is a bug or a bad node. */
static void verify_replicas(run_ctx *r, int last)
{
    long every = r->cfg->train.checksum_every;
    if (every <= 0 || r->world == 1 || (r->st.step % every != 0 && !last)) return;
    float *host = core_malloc(r->nfloats * sizeof(float));
    model_params_to_host(r->net, host);
    int first = -1;
    int nbad = comm_compare_hash(comm_hash_bytes(host, r->nfloats * sizeof(float)), &first);
    free(host);
    CHECK(nbad == 0, "step %lld: the weights of %d rank(s) differ from rank 0's (first: rank %d); replicas "
          "drifted apart", (long long)r->st.step, nbad, first);
}

/* At train.checkpoint_every, at the end, and when forced (a stop request, a new
 * best validation); every rank reaches this at the same step, rank 0 writes. */
static void checkpoint(run_ctx *r, int last, int force)
{
    long every = r->cfg->train.checkpoint_every;
    if (!force && !last && !(every > 0 && r->st.step % every == 0)) return;
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
        forward_backward(r, step, &s);
        guards(r, step, &s);
        update(r, step, &s);
        r->st.step = step + 1;
        if (step == first_step) trainer_algos_save(r->algos); /* every shape has been searched by now */
        int last = r->st.step == cfg->train.steps;

        /* Validation goes into this step's row; a stop request skips it (the
         * grace time is for the checkpoint). A new best AP is also a checkpoint
         * step, whose file ckpt-best.h5 copies. */
        trainer_algos_local(r->algos, 1); /* validation shapes differ between ranks */
        const trainer_val_result *val = s.stop && !last ? NULL : trainer_val_step(r->val, r->net, (long)r->st.step, last);
        trainer_algos_local(r->algos, 0);
        log_window(r, step, &s, last, val);
        verify_replicas(r, last);
        checkpoint(r, last, s.stop || (val && val->improved));
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
    close_run(r);
    return 0;
}
