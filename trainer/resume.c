#include "trainer/resume.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/h5util.h"
#include "model/checkpoint.h"
#include "trainer/rundir.h"

/* ---- the /state group ------------------------------------------------------- */

static void write_state(hid_t g, void *ctx)
{
    const trainer_state *s = ctx;
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
    /* Fletcher-32 like every tensor: a flipped position must fail the load, not
     * send the run to another point of the data order */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5_CHECK(dcpl, "checkpoint: property list");
    H5_CHECK(H5Pset_chunk(dcpl, 1, dims), "checkpoint: cannot chunk /state/loader");
    H5_CHECK(H5Pset_fletcher32(dcpl), "checkpoint: cannot checksum /state/loader");
    hid_t d = H5Dcreate2(g, "loader", H5T_STD_I64LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5_CHECK(d, "checkpoint: cannot create /state/loader");
    H5_CHECK(H5Pclose(dcpl), "checkpoint: cannot close a property list");
    H5_CHECK(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, packed), "checkpoint: cannot write /state/loader");
    H5_CHECK(H5Dclose(d), "checkpoint: cannot close /state/loader");
    H5_CHECK(H5Sclose(sp), "checkpoint: cannot close a dataspace");
}

/* 0, or -1 with the reason in why when /state/loader is missing, has the wrong
 * shape or does not hold a loader position: resume then falls back to an older
 * checkpoint instead of stopping (docs/training.md). */
static int read_loader(hid_t g, dataio_loader_state *st, char *why, size_t whylen)
{
    snprintf(why, whylen, "missing or malformed");
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
    if (dataio_loader_state_check(packed, why, whylen) != 0) return -1;
    dataio_loader_state_unpack(packed, st);
    return 0;
}

typedef struct {
    trainer_state st;
    char *config; /* the checkpoint's config attribute */
    char err[256];
} state_io;

static void read_state(hid_t g, void *ctx)
{
    state_io *io = ctx;
    trainer_state *s = &io->st;
    const char *names[] = {"step", "global_batch", "ranks", "batch_per_rank", "seed", "dataset_size",
                           "skipped_steps"};
    int64_t *dst[] = {&s->step, &s->global_batch, &s->ranks, &s->batch, &s->seed, &s->dataset_size, &s->skipped};
    for (int i = 0; i < 7; i++)
        if (core_h5_attr_read_i64(g, names[i], dst[i]) != 0 && !io->err[0])
            snprintf(io->err, sizeof io->err, "/state has no '%s' attribute", names[i]);
    if (core_h5_attr_read_f64(g, "elapsed_s", &s->elapsed_s) != 0) s->elapsed_s = 0;
    char why[200];
    if (read_loader(g, &s->loader, why, sizeof why) != 0 && !io->err[0])
        snprintf(io->err, sizeof io->err, "/state/loader: %s", why);
    hid_t f = H5Iget_file_id(g);
    if (f >= 0) {
        io->config = core_h5_attr_read_str(f, "config");
        H5Fclose(f);
    }
    if (!io->config && !io->err[0]) snprintf(io->err, sizeof io->err, "no config attribute");
}

void trainer_checkpoint_write(const char *path, model_net *net, trainer_optim *optim, const char *config_text,
                              const trainer_state *st)
{
    model_ckpt_save(path, net, trainer_optim_state(optim), st->step, config_text, write_state, (void *)st);
}

/* ---- resume ------------------------------------------------------------------ */

typedef struct {
    const core_config *cfg;
    const char *rundir;
    model_net *net;
    trainer_optim *optim;
    int world;
} resume_ctx;

/* The config attribute of a checkpoint, or NULL when the file cannot be read
 * (the load then fails and falls back). */
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

/* Keys a run cannot change on resume: the weights (model.*) or the optimizer's
 * state (train.optimizer) would not fit. */
static int fixed_on_resume(const char *key) { return !strncmp(key, "model.", 6) || !strcmp(key, "train.optimizer"); }

typedef struct {
    const char *path;
    char changed[1024];
} diff_ctx;

static void refuse_fixed(const char *key, const char *then, const char *now, void *ctx)
{
    const diff_ctx *d = ctx;
    CHECK(!fixed_on_resume(key), "cannot resume from '%s': it was trained with %s = %s, this run has %s", d->path, key,
          then, now);
}

static void list_change(const char *key, const char *then, const char *now, void *ctx)
{
    diff_ctx *d = ctx;
    refuse_fixed(key, then, now, ctx);
    size_t cl = strlen(d->changed);
    char item[1200];
    snprintf(item, sizeof item, "%s%s %s -> %s", cl ? ", " : "", key, then, now);
    if (cl + strlen(item) < sizeof d->changed) memcpy(d->changed + cl, item, strlen(item) + 1);
}

/* One candidate, fully loaded into the replica and io, or -1 with the reason
 * in err: a broken file, which the caller falls back past. */
static int try_load(const resume_ctx *c, const char *path, state_io *io, char *err, size_t errlen)
{
    int64_t step = 0;
    int rc = model_ckpt_try_load(path, c->net, trainer_optim_state(c->optim), &step, read_state, io, err, errlen);
    if (rc == 0 && !io->err[0]) trainer_optim_loaded(c->optim, io->err, sizeof io->err);
    if (rc == 0 && io->err[0]) {
        snprintf(err, errlen, "checkpoint '%s': %s", path, io->err);
        rc = -1;
    }
    if (rc == 0 && io->st.step != step) {
        snprintf(err, errlen, "checkpoint '%s': /state step %lld differs from step %lld", path, (long long)io->st.step,
                 (long long)step);
        rc = -1;
    }
    return rc;
}

/* A checkpoint that loaded but belongs to another setup is the user's mistake: fatal. */
static void check_compatible(const resume_ctx *c, const char *path, const state_io *io)
{
    const core_config *cfg = c->cfg;
    int64_t gb = (int64_t)cfg->train.batch * c->world;
    CHECK(io->st.global_batch == gb,
          "cannot resume from '%s': it was trained with a global batch of %lld (%lld ranks x %lld), this run "
          "has %d ranks x %d = %lld; keep ranks x train.batch equal to resume",
          path, (long long)io->st.global_batch, (long long)io->st.ranks, (long long)io->st.batch, c->world,
          cfg->train.batch, (long long)gb);
    CHECK(io->st.seed == cfg->train.seed, "cannot resume from '%s': it was trained with train.seed = %lld, this run has %d",
          path, (long long)io->st.seed, cfg->train.seed);
    diff_ctx d = {path, ""};
    core_config_diff(io->config, cfg, list_change, &d);
    if (d.changed[0]) core_warn("resuming with changed settings: %s", d.changed);
}

/* Rank 0: newest first; each candidate that does not load is passed with one
 * warning naming it and the one tried next. 1 when one was taken into st. */
static int find_checkpoint(const resume_ctx *c, trainer_state *st)
{
    int cleaned = trainer_rundir_clean_tmp(c->rundir);
    if (cleaned) core_info("removed %d unfinished checkpoint file(s) from %s", cleaned, c->rundir);
    long *steps;
    int n = trainer_ckpt_list(c->rundir, &steps), found = 0;
    char err[700] = "", path[4200] = "";
    for (int i = 0; i < n && !found; i++) {
        trainer_ckpt_path(c->rundir, steps[i], path, sizeof path);
        /* A different model is the user's mistake, not a broken file: say so
         * before trying to load tensors that cannot fit. */
        char *then = peek_config(path);
        if (then) {
            diff_ctx d = {path, ""};
            core_config_diff(then, c->cfg, refuse_fixed, &d);
            free(then);
        }
        state_io io;
        memset(&io, 0, sizeof io);
        if (try_load(c, path, &io, err, sizeof err) != 0) {
            if (i + 1 < n) core_warn("%s; falling back to the previous checkpoint (step %ld)", err, steps[i + 1]);
            free(io.config);
            continue;
        }
        check_compatible(c, path, &io);
        free(io.config);
        found = 1;
        core_info("resuming from %s (step %lld%s)", path, (long long)io.st.step,
                  io.st.ranks != c->world ? ", with a different number of ranks" : "");
        int64_t ranks = st->ranks, batch = st->batch;
        *st = io.st;
        st->ranks = ranks; /* how this run splits the global batch, for the next checkpoints */
        st->batch = batch;
    }
    CHECK(found || n == 0, "no usable checkpoint in %s: %s", c->rundir, err);
    if (!found) core_info("--resume: no checkpoint in %s yet; starting from scratch", c->rundir);
    free(steps);
    return found;
}

int trainer_resume(const core_config *cfg, const char *rundir, model_net *net, trainer_optim *optim,
                   comm_reducer *red, trainer_state *st)
{
    resume_ctx c = {cfg, rundir, net, optim, comm_size()};
    int found = comm_rank() == 0 ? find_checkpoint(&c, st) : 0;
    found = (int)comm_allreduce_ll(found, COMM_MAX);
    if (!found) return 0;
    size_t n = model_num_floats(net);
    comm_bcast_bytes(st, sizeof *st, 0);
    comm_reducer_bcast(red, model_params(net), n, 0);
    model_ckpt_optim *os = trainer_optim_state(optim);
    for (int i = 0; i < os->nstate; i++) comm_reducer_bcast(red, os->state[i], n, 0);
    comm_bcast_bytes(&os->updates, sizeof os->updates, 0);
    return 1;
}
