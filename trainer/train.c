/* The training loop: batch -> forward -> loss -> backward -> all-reduce ->
 * guards -> SGD, with checkpoints, resume, metrics and preemption. */
#include "trainer/train.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm.h"
#include "core/check.h"
#include "core/cuda_backend.h"
#include "core/h5util.h"
#include "core/progress.h"
#include "dataio/shard.h"
#include "loss/loss.h"
#include "model/checkpoint.h"
#include "model/net.h"
#include "trainer/batch.h"
#include "trainer/metrics.h"
#include "trainer/rundir.h"
#include "trainer/schedule.h"
#include "trainer/signals.h"

#define NTERMS (CORE_MAX_STAGES * LOSS_NUM_TERMS)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- what exact resume needs beyond weights and momentum (/state group) ---- */
typedef struct {
    int64_t step;          /* steps completed */
    int64_t global_batch;  /* samples per step over all ranks */
    int64_t ranks, batch;  /* how the global batch was split when written */
    int64_t seed;          /* train.seed: keys the data order and flips (the loader has no other RNG state) */
    int64_t dataset_size;  /* samples in data.train when written */
    int64_t skipped;       /* steps skipped as non-finite so far */
    double elapsed_s;      /* training wall time so far */
    dataio_loader_state loader; /* data order position (epoch, entries consumed), /state/loader */
} train_state;

typedef struct {
    train_state st;
    char *config; /* the checkpoint's config attribute */
    char err[256];
} state_io;

static void write_state(hid_t g, void *ctx)
{
    const train_state *s = ctx;
    core_h5_attr_i64(g, "step", s->step);
    core_h5_attr_i64(g, "global_batch", s->global_batch);
    core_h5_attr_i64(g, "ranks", s->ranks);
    core_h5_attr_i64(g, "batch_per_rank", s->batch);
    core_h5_attr_i64(g, "seed", s->seed);
    core_h5_attr_i64(g, "dataset_size", s->dataset_size);
    core_h5_attr_i64(g, "skipped_steps", s->skipped);
    core_h5_attr_f64(g, "elapsed_s", s->elapsed_s);
    int64_t packed[DATAIO_LOADER_STATE_LEN];
    dataio_loader_state_pack(&s->loader, packed);
    hsize_t dims[1] = {DATAIO_LOADER_STATE_LEN};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    H5_CHECK(sp, "checkpoint: cannot create the /state/loader dataspace");
    hid_t d = H5Dcreate2(g, "loader", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(d, "checkpoint: cannot create /state/loader");
    H5_CHECK(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed), "checkpoint: cannot write /state/loader");
    H5_CHECK(H5Dclose(d), "checkpoint: cannot close /state/loader");
    H5_CHECK(H5Sclose(sp), "checkpoint: cannot close a dataspace");
}

/* 0, or -1 when /state/loader is missing or has the wrong shape. */
static int read_loader(hid_t g, dataio_loader_state *st)
{
    if (H5Lexists(g, "loader", H5P_DEFAULT) <= 0) return -1;
    hid_t d = H5Dopen2(g, "loader", H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t sp = H5Dget_space(d);
    hsize_t dims[1] = {0};
    int ok = sp >= 0 && H5Sget_simple_extent_ndims(sp) == 1 && H5Sget_simple_extent_dims(sp, dims, NULL) == 1 &&
             dims[0] == DATAIO_LOADER_STATE_LEN;
    int64_t packed[DATAIO_LOADER_STATE_LEN];
    if (ok) ok = H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(d);
    if (!ok) return -1;
    dataio_loader_state_unpack(packed, st);
    return 0;
}

static void read_state(hid_t g, void *ctx)
{
    state_io *io = ctx;
    train_state *s = &io->st;
    const char *names[] = {"step", "global_batch", "ranks", "batch_per_rank", "seed", "dataset_size",
                           "skipped_steps"};
    int64_t *dst[] = {&s->step, &s->global_batch, &s->ranks, &s->batch, &s->seed, &s->dataset_size, &s->skipped};
    for (int i = 0; i < 7; i++)
        if (core_h5_attr_read_i64(g, names[i], dst[i]) != 0 && !io->err[0])
            snprintf(io->err, sizeof io->err, "/state has no '%s' attribute", names[i]);
    if (core_h5_attr_read_f64(g, "elapsed_s", &s->elapsed_s) != 0) s->elapsed_s = 0;
    if (read_loader(g, &s->loader) != 0 && !io->err[0]) snprintf(io->err, sizeof io->err, "/state/loader is missing or malformed");
    hid_t f = H5Iget_file_id(g);
    if (f >= 0) {
        io->config = core_h5_attr_read_str(f, "config");
        H5Fclose(f);
    }
    if (!io->config && !io->err[0]) snprintf(io->err, sizeof io->err, "no config attribute");
}

/* ---- test-only fault injection: SSPOSE_TEST_FAULT=kind:step[:rank] ---------
 * nan_loss / nan_grad poison this rank's loss or one gradient at that step,
 * drift nudges one weight of that rank after the update. Documented in
 * docs/training.md; unset in normal use. */
typedef enum { FAULT_NONE, FAULT_NAN_LOSS, FAULT_NAN_GRAD, FAULT_DRIFT } fault_kind;
static fault_kind g_fault;
static long g_fault_step;
static int g_fault_rank;

static void fault_parse(void)
{
    const char *e = getenv("SSPOSE_TEST_FAULT");
    if (!e || !*e) return;
    char kind[32] = "";
    long step = -1;
    int rank = 0;
    int n = sscanf(e, "%31[a-z_]:%ld:%d", kind, &step, &rank);
    CHECK(n >= 2, "SSPOSE_TEST_FAULT='%s': expected kind:step[:rank]", e);
    if (!strcmp(kind, "nan_loss")) g_fault = FAULT_NAN_LOSS;
    else if (!strcmp(kind, "nan_grad")) g_fault = FAULT_NAN_GRAD;
    else if (!strcmp(kind, "drift")) g_fault = FAULT_DRIFT;
    else CORE_DIE("SSPOSE_TEST_FAULT='%s': kind must be nan_loss, nan_grad or drift", e);
    g_fault_step = step;
    g_fault_rank = rank;
}

static int fault_now(fault_kind k, long step) { return g_fault == k && g_fault_step == step && g_fault_rank == comm_rank(); }

/* ---- config comparison on resume ------------------------------------------ */
/* Value of `key` in a "key = value" text, copied to out; 0 when found. */
static int config_value(const char *text, const char *key, char *out, size_t len)
{
    size_t kl = strlen(key);
    for (const char *p = text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        if (ll > kl + 3 && !strncmp(p, key, kl) && !strncmp(p + kl, " = ", 3)) {
            size_t vl = ll - kl - 3;
            if (vl >= len) vl = len - 1;
            memcpy(out, p + kl + 3, vl);
            out[vl] = 0;
            return 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    return -1;
}

/* The config attribute of a checkpoint, or NULL when the file cannot be read
 * (the caller's load then fails and falls back). */
static char *peek_config(const char *path)
{
    core_h5_quiet();
    if (H5Fis_hdf5(path) <= 0) return NULL;
    core_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *text = f >= 0 ? core_h5_attr_read_str(f, "config") : NULL;
    if (f >= 0) H5Fclose(f);
    core_h5_unlock();
    return text;
}

static void check_model_keys(const char *ckpt_text, const char *now_text, const char *path)
{
    for (const char *p = now_text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        const char *eq = memchr(p, '=', ll);
        if (!strncmp(p, "model.", 6) && eq && eq > p + 1 && (size_t)(eq - 1 - p) < 128) {
            char key[128], now[512], then[512];
            size_t kl = (size_t)(eq - 1 - p);
            memcpy(key, p, kl);
            key[kl] = 0;
            config_value(now_text, key, now, sizeof now);
            CHECK(config_value(ckpt_text, key, then, sizeof then) != 0 || !strcmp(now, then),
                  "cannot resume from '%s': it was trained with %s = %s, this run has %s", path, key, then, now);
        }
        p = eol ? eol + 1 : NULL;
    }
}

/* model.* must match (the weights would not fit otherwise); other changes are listed. */
static void compare_configs(const char *ckpt_text, const char *now_text, const char *path)
{
    char changed[1024] = "";
    for (const char *p = now_text; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);
        const char *eq = memchr(p, '=', ll);
        if (eq && eq > p + 1) {
            char key[128], now[512], then[512];
            size_t kl = (size_t)(eq - 1 - p);
            if (kl < sizeof key) {
                memcpy(key, p, kl);
                key[kl] = 0;
                config_value(now_text, key, now, sizeof now);
                if (config_value(ckpt_text, key, then, sizeof then) == 0 && strcmp(now, then)) {
                    CHECK(strncmp(key, "model.", 6), "cannot resume from '%s': it was trained with %s = %s, this run has %s",
                          path, key, then, now);
                    size_t cl = strlen(changed);
                    char item[1200];
                    snprintf(item, sizeof item, "%s%s %s -> %s", cl ? ", " : "", key, then, now);
                    if (cl + strlen(item) < sizeof changed) memcpy(changed + cl, item, strlen(item) + 1);
                }
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    if (changed[0]) core_warn("resuming with changed settings: %s", changed);
}

/* ---- the optimizer's view of the parameters --------------------------------
 * Runs of consecutive tensors sharing (lr multiplier, weight decay), so one
 * sgd_step call covers each. Biases get no weight decay (as in CMU's Caffe
 * OpenPose, decay_mult 0). */
typedef struct { size_t offset, n; double mult, wd; } sgd_run;

static int build_runs(model_net *net, const core_config *cfg, sgd_run **out)
{
    int np = model_param_count(net), nr = 0;
    sgd_run *r = core_calloc((size_t)np, sizeof *r);
    for (int i = 0; i < np; i++) {
        const model_param *p = model_param_at(net, i);
        double mult = trainer_lr_mult(cfg, p->group), wd = p->is_bias ? 0 : cfg->train.weight_decay;
        if (nr && r[nr - 1].mult == mult && r[nr - 1].wd == wd && r[nr - 1].offset + r[nr - 1].n == p->offset) {
            r[nr - 1].n += p->numel;
        } else {
            r[nr++] = (sgd_run){p->offset, p->numel, mult, wd};
        }
    }
    *out = r;
    return nr;
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

/* The backward position after which the float at `offset` of the gradient is final (0: padding). */
static int grad_final_at(model_net *net, size_t offset)
{
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        if (offset >= p->offset && offset < p->offset + p->numel) return model_param_grad_final(net, i);
    }
    return 0;
}

typedef struct {
    comm_reducer *red;
    core_backend *be;
    float *poison; /* FAULT_NAN_GRAD: this gradient float becomes NaN ... */
    int poison_at; /* ... at this backward position, before its bucket can be launched (-1: never) */
} backward_hook;

static void poison_grad(backward_hook *h)
{
    float nan = NAN;
    h->be->upload(h->be, h->poison, &nan, 1);
}

static void on_backward(void *ctx, int done)
{
    backward_hook *h = ctx;
    if (done == h->poison_at) poison_grad(h);
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
    float *momentum; /* device, laid out like the parameters */
    size_t nfloats;
    char *config_text;
    train_state st;
    double start_wall; /* now_s() when this process started training */
} run_ctx;

static void save_checkpoint(run_ctx *r)
{
    /* Every rank reaches this point at the same step; only rank 0 writes. */
    r->st.elapsed_s += now_s() - r->start_wall;
    r->start_wall = now_s();
    if (r->rank == 0) {
        char path[4200];
        trainer_ckpt_path(r->rundir, (long)r->st.step, path, sizeof path);
        trainer_batches_state(r->data, &r->st.loader);
        double t0 = now_s();
        model_ckpt_save(path, r->net, r->momentum, r->st.step, r->config_text, write_state, &r->st);
        trainer_ckpt_prune(r->rundir, r->cfg->train.keep);
        core_info("checkpoint %s (%.1f s)", path, now_s() - t0);
    }
}

/* Rank 0 finds the newest checkpoint that loads, falling back past broken
 * ones with a warning; every rank then receives its weights, momentum and state. */
static int resume_from_rundir(run_ctx *r)
{
    int found = 0;
    if (r->rank == 0) {
        int cleaned = trainer_rundir_clean_tmp(r->rundir);
        if (cleaned) core_info("removed %d unfinished checkpoint file(s) from %s", cleaned, r->rundir);
        long *steps;
        int n = trainer_ckpt_list(r->rundir, &steps);
        char err[700] = "", path[4200] = "";
        for (int i = 0; i < n && !found; i++) {
            trainer_ckpt_path(r->rundir, steps[i], path, sizeof path);
            state_io io;
            memset(&io, 0, sizeof io);
            int64_t step = 0;
            /* A different model is the user's mistake, not a broken file: say so
             * before trying to load tensors that cannot fit. */
            char *then = peek_config(path);
            if (then) {
                check_model_keys(then, r->config_text, path);
                free(then);
            }
            int rc = model_ckpt_try_load(path, r->net, r->momentum, &step, read_state, &io, err, sizeof err);
            if (rc == 0 && io.err[0]) {
                snprintf(err, sizeof err, "checkpoint '%s': %s", path, io.err);
                rc = -1;
            }
            if (rc == 0 && io.st.step != step) {
                snprintf(err, sizeof err, "checkpoint '%s': /state step %lld differs from step %lld", path,
                         (long long)io.st.step, (long long)step);
                rc = -1;
            }
            if (rc != 0) {
                if (i + 1 < n)
                    core_warn("%s; falling back to the previous checkpoint (step %ld)", err, steps[i + 1]);
                free(io.config);
                continue;
            }
            int64_t gb = (int64_t)r->cfg->train.batch * r->world;
            CHECK(io.st.global_batch == gb,
                  "cannot resume from '%s': it was trained with a global batch of %lld (%lld ranks x %lld), this run "
                  "has %d ranks x %d = %lld; keep ranks x train.batch equal to resume",
                  path, (long long)io.st.global_batch, (long long)io.st.ranks, (long long)io.st.batch, r->world,
                  r->cfg->train.batch, (long long)gb);
            CHECK(io.st.seed == r->cfg->train.seed, "cannot resume from '%s': it was trained with train.seed = %lld, this run has %d",
                  path, (long long)io.st.seed, r->cfg->train.seed);
            compare_configs(io.config, r->config_text, path);
            free(io.config);
            r->st = io.st;
            found = 1;
            core_info("resuming from %s (step %lld%s)", path, (long long)io.st.step,
                      io.st.ranks != r->world ? ", with a different number of ranks" : "");
        }
        CHECK(found || n == 0, "no usable checkpoint in %s: %s", r->rundir, err);
        if (!found) core_info("--resume: no checkpoint in %s yet; starting from scratch", r->rundir);
        free(steps);
    }
    found = (int)comm_allreduce_ll(found, COMM_MAX);
    if (!found) return 0;
    comm_bcast_bytes(&r->st, sizeof r->st, 0);
    comm_reducer_bcast(r->red, model_params(r->net), r->nfloats, 0);
    comm_reducer_bcast(r->red, r->momentum, r->nfloats, 0);
    return 1;
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

int trainer_run(const core_config *cfg, const char *rundir, int resume)
{
    CHECK(comm_initialized(), "trainer_run before comm_init");
    CHECK(cfg->train.steps > 0, "train.steps must be positive to train");
    fault_parse();
    run_ctx R;
    memset(&R, 0, sizeof R);
    run_ctx *r = &R;
    r->cfg = cfg;
    r->rundir = rundir;
    r->rank = comm_rank();
    r->world = comm_size();
    r->config_text = core_config_text(cfg);
    comm_set_timeout(cfg->comm.timeout_s);

    /* The run directory: refuse to mix a fresh run into an old one. */
    if (r->rank == 0) {
        trainer_rundir_make(rundir);
        trainer_rundir_lock(rundir); /* one trainer per run directory, before anything in it is read */
        long *steps;
        int n = trainer_ckpt_list(rundir, &steps);
        free(steps);
        CHECK(resume || n == 0, "%s already holds %d checkpoint(s); pass --resume to continue that run or choose another --out",
              rundir, n);
    }
    comm_barrier();

    r->be = comm_backend_create(cfg->comm.device);
    core_cuda_set_math(r->be, cfg->comm.tf32, 1); /* fp32 unless comm.tf32; deterministic algorithms */
    r->net = model_create(cfg, r->be);
    r->loss = loss_create(cfg, r->be);
    r->nfloats = model_num_floats(r->net);
    r->momentum = r->be->alloc(r->be, r->nfloats);
    r->red = comm_reducer_create(r->be, cfg->comm.bucket_mb);

    r->st.global_batch = (int64_t)cfg->train.batch * r->world;
    r->st.ranks = r->world;
    r->st.batch = cfg->train.batch;
    r->st.seed = cfg->train.seed;

    /* Every rank initialises from the same seed, and rank 0's copy is
     * broadcast anyway so replicas start bit-identical whatever the device. */
    model_init_params(r->net, (uint64_t)cfg->train.seed);
    int resumed = resume ? resume_from_rundir(r) : 0;
    if (!resumed) comm_reducer_bcast(r->red, model_params(r->net), r->nfloats, 0);

    /* The loader refuses a saved position from other shards or another seed. */
    r->data = trainer_batches_open(cfg, r->net, r->rank, r->world, resumed ? &r->st.loader : NULL);
    long dataset = trainer_batches_dataset_size(r->data);
    r->st.dataset_size = dataset;

    if (r->rank == 0) {
        /* Written once the resume checks passed, so a refused resume leaves the old one. */
        char path[4200];
        snprintf(path, sizeof path, "%s/config.ini", rundir);
        trainer_write_text_atomic(path, r->config_text);
        r->metrics = trainer_metrics_open(rundir, resumed ? (long)r->st.step : -1);
        core_info("training %s: %d rank(s) x %d = %lld samples/step, %ld samples, %zu parameters, backend %s, steps %lld -> %d",
                  rundir, r->world, cfg->train.batch, (long long)r->st.global_batch, dataset, r->nfloats, r->be->name,
                  (long long)r->st.step, cfg->train.steps);
    }
    if (r->st.step >= cfg->train.steps) {
        if (r->rank == 0) core_info("already at step %lld of %d: nothing to do", (long long)r->st.step, cfg->train.steps);
        goto done;
    }

    sgd_run *runs;
    int nruns = build_runs(r->net, cfg, &runs);
    plan_allreduce(r->red, r->net, cfg->comm.overlap);
    /* The injected NaN must be in place before its bucket is reduced, as it
     * was when it went in after the whole backward pass. */
    int poison_at = grad_final_at(r->net, r->nfloats / 2);
    trainer_signals_install();

    /* Per-step all-reduce of metrics and flags in one message:
     * [total, terms[S*T], stop, loss_nonfinite, t_data, t_compute, gradient fraction hidden under backward] */
    enum { M_TOTAL = 0, M_TERMS = 1, M_STOP = M_TERMS + NTERMS, M_NONFINITE, M_TDATA, M_TCOMPUTE, M_HIDDEN, M_LEN };
    double msg[M_LEN];
    /* log window accumulators (rank 0) */
    double win_terms[NTERMS], win_total = 0, win_tdata = 0, win_tcomp = 0, win_tcomm = 0, win_gnorm = 0;
    double win_hidden = 0;
    long win_steps = 0, win_good = 0;
    double win_start = now_s();
    memset(win_terms, 0, sizeof win_terms);
    loss_values v;
    memset(&v, 0, sizeof v);
    const double inv_world = 1.0 / r->world;
    float *params = model_params(r->net), *grads = model_grads(r->net);
    r->start_wall = now_s();
    int stopped = 0;
    long last_ckpt = (long)r->st.step;

    while (r->st.step < cfg->train.steps) {
        long step = (long)r->st.step;
        char ctx[48];
        snprintf(ctx, sizeof ctx, "step %ld", step + 1);
        comm_set_context(ctx);
        double t0 = now_s();
        loss_targets tg;
        long epoch = trainer_batches_next(r->data, &tg);
        double t1 = now_s();

        model_zero_grads(r->net);
        model_forward(r->net, 1);
        loss_compute_net(r->loss, r->net, &tg, 1, &v);
        if (fault_now(FAULT_NAN_LOSS, step + 1)) v.term[0][LOSS_HEAT] = v.total = NAN;
        backward_hook hook = {r->red, r->be, grads + r->nfloats / 2,
                              fault_now(FAULT_NAN_GRAD, step + 1) ? poison_at : -1};
        if (hook.poison_at == 0) poison_grad(&hook);
        /* Each rank's loss is the mean over its samples; the global loss is the
         * mean over all ranks' samples, so gradients are summed with weight 1/world
         * (each bucket is scaled as it is launched). */
        comm_reducer_begin(r->red, grads, r->world > 1 ? (float)inv_world : 1.0f);
        model_backward_hooked(r->net, on_backward, &hook);
        r->be->sync(r->be);
        double t2 = now_s();

        /* t_comm from here: the communication that backward did not hide */
        comm_reducer_stats cs;
        comm_reducer_finish(r->red, &cs);
        memset(msg, 0, sizeof msg);
        msg[M_TOTAL] = v.total * inv_world;
        for (int s = 0; s < v.stages; s++)
            for (int t = 0; t < LOSS_NUM_TERMS; t++) msg[M_TERMS + s * LOSS_NUM_TERMS + t] = v.term[s][t] * inv_world;
        msg[M_STOP] = trainer_stop_signal() != 0;
        msg[M_NONFINITE] = !isfinite(v.total);
        msg[M_TDATA] = (t1 - t0) * inv_world;
        msg[M_TCOMPUTE] = (t2 - t1) * inv_world;
        msg[M_HIDDEN] = cs.floats ? (double)cs.floats_hidden / (double)cs.floats * inv_world : 0;
        comm_allreduce_doubles(msg, M_LEN, COMM_SUM);
        double t3 = now_s();
        double gsq = r->be->sumsq(r->be, grads, r->nfloats);

        /* Guards: the loss (any rank) and the averaged gradients (identical on every rank). */
        char what[160] = "";
        int bad = 0;
        if (msg[M_NONFINITE] > 0 || !isfinite(msg[M_TOTAL])) {
            bad = 1;
            char term[96];
            if (!nonfinite_term(msg + M_TERMS, &v, term, sizeof term)) snprintf(term, sizeof term, "total = %g", msg[M_TOTAL]);
            snprintf(what, sizeof what, "loss term %s", term);
        } else if (!isfinite(gsq)) {
            bad = 1;
            snprintf(what, sizeof what, "gradient of %s is not finite", nonfinite_param(r));
        }
        if (bad) {
            CHECK(cfg->train.skip_nonfinite, "step %ld: %s; stopping (last checkpoint: step %ld; set train.skip_nonfinite=1 "
                  "to skip such steps)", step + 1, what, last_ckpt);
            r->st.skipped++;
            if (r->rank == 0) core_warn("step %ld: %s; step skipped (%lld so far)", step + 1, what, (long long)r->st.skipped);
        } else {
            double lr = trainer_lr(cfg, step);
            for (int i = 0; i < nruns; i++)
                r->be->sgd_step(r->be, runs[i].n, params + runs[i].offset, grads + runs[i].offset,
                                r->momentum + runs[i].offset, (float)(lr * runs[i].mult), (float)cfg->train.momentum,
                                (float)runs[i].wd);
        }
        if (fault_now(FAULT_DRIFT, step + 1)) {
            float w;
            r->be->download(r->be, &w, params + r->nfloats / 3, 1);
            w += 1e-3f;
            r->be->upload(r->be, params + r->nfloats / 3, &w, 1);
        }
        r->be->sync(r->be);
        double t4 = now_s();
        r->st.step = step + 1;

        /* metrics window */
        if (!bad) {
            win_total += msg[M_TOTAL];
            for (int k = 0; k < NTERMS; k++) win_terms[k] += msg[M_TERMS + k];
            win_gnorm += sqrt(gsq);
            win_good++;
        }
        win_tdata += msg[M_TDATA];
        win_tcomp += msg[M_TCOMPUTE] + (t4 - t3);
        win_tcomm += t3 - t2;
        win_hidden += msg[M_HIDDEN];
        win_steps++;
        int last = r->st.step == cfg->train.steps;
        int stop = msg[M_STOP] > 0;
        if (r->rank == 0 && (r->st.step % cfg->train.log_every == 0 || last || stop)) {
            double wall = now_s() - win_start;
            double good = win_good > 0 ? (double)win_good : NAN;
            loss_values avg = v;
            for (int s = 0; s < v.stages; s++)
                for (int t = 0; t < LOSS_NUM_TERMS; t++) avg.term[s][t] = win_terms[s * LOSS_NUM_TERMS + t] / good;
            avg.total = win_total / good;
            trainer_log_row row = {
                .step = (long)r->st.step, .epoch = epoch, .skipped = (long)r->st.skipped,
                .lr = trainer_lr(cfg, step), .loss = avg.total, .grad_norm = win_gnorm / good,
                .samples_per_s = (double)r->st.global_batch * win_steps / wall, .values = &avg,
                .t_data = win_tdata / win_steps, .t_compute = win_tcomp / win_steps, .t_comm = win_tcomm / win_steps,
                .t_step = wall / win_steps, .comm_hidden = win_hidden / win_steps,
            };
            trainer_metrics_write(r->metrics, &row);
            char eta[32];
            core_format_duration(row.t_step * (cfg->train.steps - r->st.step), eta, sizeof eta);
            char hidden[48] = "";
            if (r->world > 1 && cfg->comm.overlap)
                snprintf(hidden, sizeof hidden, " (%.0f%% of the gradient hidden)", 100 * win_hidden / win_steps);
            core_info("step %lld/%d epoch %ld  loss %.4g  lr %.3g  %.1f samples/s  data %.0f%% comm %.0f%%%s  ETA %s",
                      (long long)r->st.step, cfg->train.steps, epoch, row.loss, row.lr, row.samples_per_s,
                      100 * row.t_data / row.t_step, 100 * row.t_comm / row.t_step, hidden, eta);
            win_total = win_tdata = win_tcomp = win_tcomm = win_gnorm = win_hidden = 0;
            memset(win_terms, 0, sizeof win_terms);
            win_steps = win_good = 0;
            win_start = now_s();
        }

        /* Replicas must stay bit-identical; a drifted one is a bug or a bad node. */
        if (cfg->train.checksum_every > 0 && r->world > 1 && (r->st.step % cfg->train.checksum_every == 0 || last)) {
            float *host = core_malloc(r->nfloats * sizeof(float));
            model_params_to_host(r->net, host);
            int first = -1;
            int nbad = comm_compare_hash(comm_hash_bytes(host, r->nfloats * sizeof(float)), &first);
            free(host);
            CHECK(nbad == 0, "step %lld: the weights of %d rank(s) differ from rank 0's (first: rank %d); replicas "
                  "drifted apart", (long long)r->st.step, nbad, first);
        }

        if (stop || last || (cfg->train.checkpoint_every > 0 && r->st.step % cfg->train.checkpoint_every == 0)) {
            save_checkpoint(r);
            last_ckpt = (long)r->st.step;
        }
        if (stop && !last) {
            if (r->rank == 0)
                core_info("stop requested (signal %d on some rank): stopped at step %lld after writing its checkpoint",
                          trainer_stop_signal() ? trainer_stop_signal() : 15, (long long)r->st.step);
            stopped = 1;
            break;
        }
    }
    trainer_signals_restore();
    free(runs);
    if (r->rank == 0 && !stopped) core_info("training done: step %lld", (long long)r->st.step);

done:
    comm_barrier();
    trainer_metrics_close(r->metrics);
    trainer_batches_close(r->data);
    comm_reducer_destroy(r->red);
    r->be->free(r->be, r->momentum);
    loss_destroy(r->loss);
    model_destroy(r->net);
    core_backend_destroy(r->be);
    free(r->config_text);
    comm_set_context(NULL);
    return 0;
}
