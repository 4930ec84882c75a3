#include "model/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/h5util.h"

static void param_dims(const model_param *p, int64_t *d)
{
    for (int i = 0; i < p->ndim; i++) d[i] = p->shape[i];
}

/* One chunk per tensor with HDF5's Fletcher-32 filter: every read of it
 * (ours, h5py's) verifies the checksum and fails on a flipped byte. */
static void write_f32_checksummed(hid_t f, const char *path, int ndim, const int64_t *dims, const float *data)
{
    hsize_t d[8];
    CHECK(ndim > 0 && ndim <= 8, "checkpoint: bad rank %d for '%s'", ndim, path);
    for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5_CHECK(lcpl, "HDF5: property list");
    H5_CHECK(dcpl, "HDF5: property list");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "HDF5: property list");
    H5_CHECK(H5Pset_chunk(dcpl, ndim, d), "HDF5: cannot chunk '%s'", path);
    H5_CHECK(H5Pset_fletcher32(dcpl), "HDF5: cannot add the Fletcher-32 filter to '%s'", path);
    hid_t sp = H5Screate_simple(ndim, d, NULL);
    H5_CHECK(sp, "HDF5: dataspace for '%s'", path);
    hid_t ds = H5Dcreate2(f, path, H5T_IEEE_F32LE, sp, lcpl, dcpl, H5P_DEFAULT);
    H5_CHECK(ds, "HDF5: cannot create dataset '%s'", path);
    H5_CHECK(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "HDF5: cannot write '%s' (disk full?)",
             path);
    H5_CHECK(H5Dclose(ds), "HDF5: cannot close '%s'", path);
    H5_CHECK(H5Sclose(sp), "HDF5: close");
    H5_CHECK(H5Pclose(dcpl), "HDF5: close");
    H5_CHECK(H5Pclose(lcpl), "HDF5: close");
}

/* Writes every tensor of a flat host buffer under `prefix`. */
static void write_tensors(hid_t f, model_net *net, const char *prefix, const float *host)
{
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        char path[160];
        int64_t d[4];
        snprintf(path, sizeof path, "%s/%s", prefix, p->name);
        param_dims(p, d);
        write_f32_checksummed(f, path, p->ndim, d, host + p->offset);
    }
}

/* The network's buffers (batch norm's running statistics) beside its parameters,
 * /params/<layer>/bn/running_{mean,var}, from the same host copy of the flat buffer. */
static void write_buffers(hid_t f, model_net *net, const float *host)
{
    for (int i = 0; i < model_buf_count(net); i++) {
        const model_param *p = model_buf_at(net, i);
        char path[160];
        int64_t d[1] = {(int64_t)p->numel};
        snprintf(path, sizeof path, "/params/%s", p->name);
        write_f32_checksummed(f, path, 1, d, host + p->offset);
    }
}

static int read_buffers(hid_t f, model_net *net, float *host, const char *path, char *err, size_t errlen)
{
    for (int i = 0; i < model_buf_count(net); i++) {
        const model_param *p = model_buf_at(net, i);
        char name[160], why[400];
        int64_t d[1] = {(int64_t)p->numel};
        snprintf(name, sizeof name, "/params/%s", p->name);
        if (core_h5_read_f32(f, name, 1, d, host + p->offset, why, sizeof why) != 0) {
            snprintf(err, errlen, "checkpoint '%s': %s", path, why);
            return -1;
        }
    }
    return 0;
}

/* The /optim group's attributes; its tensors are already written. */
static void write_optim_attrs(hid_t f, const char *kind, int64_t updates, const char *tmp)
{
    hid_t g = H5Gopen2(f, "/optim", H5P_DEFAULT);
    H5_CHECK(g, "cannot open /optim in '%s'", tmp);
    core_h5_attr_str(g, "optimizer", kind);
    core_h5_attr_i64(g, "updates", updates);
    H5_CHECK(H5Gclose(g), "cannot close /optim in '%s'", tmp);
}

void model_ckpt_save(const char *path, model_net *net, const model_ckpt_optim *optim, int64_t step,
                     const char *config_text, model_ckpt_state_fn write_state, void *ctx)
{
    core_backend *be = model_backend(net);
    size_t n = model_num_floats(net);
    float *host = core_malloc(n * sizeof(float));
    char tmp[4200];
    /* The trainer saves while loader threads read shards: HDF5 calls hold the
     * process-wide lock, device copies and the final fsync do not, so the
     * loader keeps decoding through most of a save. */
    model_params_to_host(net, host);
    hid_t f = core_h5_create_tmp(path, tmp, sizeof tmp);
    core_h5_lock();
    core_h5_attr_str(f, "format", MODEL_CKPT_FORMAT);
    core_h5_attr_i64(f, "version", MODEL_CKPT_VERSION);
    core_h5_attr_i64(f, "step", step);
    core_h5_attr_str(f, "config", config_text);
    core_h5_attr_str(f, "checksum", MODEL_CKPT_CHECKSUM);
    write_tensors(f, net, "/params", host);
    write_buffers(f, net, host);
    core_h5_unlock();
    int nstate = optim ? optim->nstate : 1;
    CHECK(nstate >= 1 && nstate <= MODEL_CKPT_MAX_OPTIM, "checkpoint: %d optimizer states", nstate);
    for (int i = 0; i < nstate; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "/optim/%s", optim ? optim->names[i] : "momentum");
        if (optim)
            be->download(be, host, optim->state[i], n);
        else
            memset(host, 0, n * sizeof(float));
        core_h5_lock();
        write_tensors(f, net, prefix, host);
        core_h5_unlock();
    }
    core_h5_lock();
    write_optim_attrs(f, optim ? optim->kind : "sgd", optim ? optim->updates : 0, tmp);
    if (write_state) {
        hid_t g = H5Gcreate2(f, "/state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5_CHECK(g, "cannot create /state in '%s'", tmp);
        write_state(g, ctx);
        H5_CHECK(H5Gclose(g), "cannot close /state in '%s'", tmp);
    }
    core_h5_unlock();
    free(host);
    core_h5_commit(f, tmp, path);
}

/* Opens and checks the header; -1 with a reason otherwise. The caller holds the HDF5 lock. */
static hid_t open_checked(const char *path, char *err, size_t errlen)
{
    core_h5_quiet();
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "checkpoint '%s' does not exist or is not readable", path);
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        snprintf(err, errlen, "checkpoint '%s' is not an HDF5 file (truncated or corrupt?)", path);
        return -1;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        snprintf(err, errlen, "cannot open checkpoint '%s' (corrupt?)", path);
        return -1;
    }
    char *fmt = core_h5_attr_read_str(f, "format");
    int64_t version = 0;
    int ok = fmt && !strcmp(fmt, MODEL_CKPT_FORMAT);
    free(fmt);
    if (!ok) {
        snprintf(err, errlen, "'%s' is not an sspose checkpoint (format attribute is not '%s')", path, MODEL_CKPT_FORMAT);
        H5Fclose(f);
        return -1;
    }
    if (core_h5_attr_read_i64(f, "version", &version) != 0 || version != MODEL_CKPT_VERSION) {
        snprintf(err, errlen, "checkpoint '%s' has version %lld, this build reads version %d", path, (long long)version,
                 MODEL_CKPT_VERSION);
        H5Fclose(f);
        return -1;
    }
    return f;
}

char *model_ckpt_read_config(const char *path)
{
    char err[512];
    core_h5_lock();
    hid_t f = open_checked(path, err, sizeof err);
    char *cfg = f >= 0 ? core_h5_attr_read_str(f, "config") : NULL;
    if (f >= 0) H5_CHECK(H5Fclose(f), "cannot close checkpoint '%s'", path);
    core_h5_unlock();
    CHECK(f >= 0, "%s", err);
    CHECK(cfg, "checkpoint '%s' has no config attribute", path);
    return cfg;
}

/* ---- verification: every dataset the file holds, read in full ---------------- */
typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    int require_sum; /* the writer put Fletcher-32 on every tensor: its absence means tampering */
    int rc;
} verify_ctx;

static int has_fletcher32(hid_t ds)
{
    hid_t pl = H5Dget_create_plist(ds);
    if (pl < 0) return 0;
    int n = H5Pget_nfilters(pl), found = 0;
    for (int i = 0; i < n; i++) {
        unsigned flags;
        size_t nc = 0;
        if (H5Pget_filter2(pl, (unsigned)i, &flags, &nc, NULL, 0, NULL, NULL) == H5Z_FILTER_FLETCHER32) found = 1;
    }
    H5Pclose(pl);
    return found;
}

/* Reads all of ds (which verifies its checksum when it has one); floats must be finite. */
static int verify_values(hid_t ds, hid_t ft, hssize_t n, const char *name, verify_ctx *v)
{
    H5T_class_t cls = H5Tget_class(ft);
    size_t sz = H5Tget_size(ft);
    if (n <= 0) return 0;
    if (cls == H5T_VLEN || (cls == H5T_STRING && H5Tis_variable_str(ft) > 0)) return 0; /* heap data: no filter covers it */
    hid_t mt = cls == H5T_FLOAT ? H5Tcopy(H5T_NATIVE_DOUBLE) : cls == H5T_INTEGER ? H5Tcopy(H5T_NATIVE_INT64) : H5Tcopy(ft);
    size_t msz = cls == H5T_FLOAT || cls == H5T_INTEGER ? 8 : sz;
    double *buf = malloc((size_t)n * msz);
    int rc = 0;
    if (!buf || mt < 0 || H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        snprintf(v->err, v->errlen, "checkpoint '%s': /%s cannot be read (checksum mismatch or corrupt file)", v->path,
                 name);
        rc = -1;
    }
    for (hssize_t i = 0; !rc && cls == H5T_FLOAT && i < n; i++)
        if (!isfinite(buf[i])) {
            snprintf(v->err, v->errlen, "checkpoint '%s': /%s holds non-finite values (element %lld = %g)", v->path, name,
                     (long long)i, buf[i]);
            rc = -1;
        }
    free(buf);
    if (mt >= 0) H5Tclose(mt);
    return rc;
}

static herr_t verify_one(hid_t root, const char *name, const H5O_info_t *info, void *op)
{
    verify_ctx *v = op;
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t ds = H5Dopen2(root, name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(v->err, v->errlen, "checkpoint '%s': cannot open /%s (corrupt?)", v->path, name);
        return v->rc = -1, 1;
    }
    hid_t ft = H5Dget_type(ds), sp = H5Dget_space(ds);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int tensor = !strncmp(name, "params/", 7) || !strncmp(name, "optim/", 6);
    int rc = 0;
    if (ft < 0 || n < 0) {
        snprintf(v->err, v->errlen, "checkpoint '%s': /%s has no readable type or shape (corrupt?)", v->path, name);
        rc = -1;
    } else if (tensor && (H5Tget_class(ft) != H5T_FLOAT || H5Tget_size(ft) != 4)) {
        /* HDF5 would convert int8 or float64 silently: a wrong writer, never a checkpoint of ours */
        snprintf(v->err, v->errlen, "checkpoint '%s': /%s is stored as %s of %zu bytes, expected float32", v->path, name,
                 H5Tget_class(ft) == H5T_FLOAT ? "float" : H5Tget_class(ft) == H5T_INTEGER ? "integer" : "non-numeric",
                 H5Tget_size(ft));
        rc = -1;
    } else if (tensor && v->require_sum && !has_fletcher32(ds)) {
        snprintf(v->err, v->errlen, "checkpoint '%s': /%s has no Fletcher-32 checksum though the file promises one",
                 v->path, name);
        rc = -1;
    } else {
        rc = verify_values(ds, ft, n, name, v);
    }
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    v->rc = rc;
    return rc ? 1 : 0;
}

/* Every dataset (parameters, optimizer state of any kind, BN statistics,
 * /state): checksums where written, float32 tensors, finite floats. The caller holds the HDF5 lock. */
static int verify_file(hid_t f, const char *path, char *err, size_t errlen)
{
    char *sum = core_h5_attr_read_str(f, "checksum");
    verify_ctx v = {path, err, errlen, sum && !strcmp(sum, MODEL_CKPT_CHECKSUM), 0};
    if (sum && !v.require_sum) {
        snprintf(err, errlen, "checkpoint '%s' has checksum kind '%s', this build knows '%s'", path, sum,
                 MODEL_CKPT_CHECKSUM);
        free(sum);
        return -1;
    }
    free(sum);
    if (H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_NATIVE, verify_one, &v, H5O_INFO_BASIC) < 0 && !v.rc) {
        snprintf(err, errlen, "checkpoint '%s': cannot walk its datasets (corrupt?)", path);
        return -1;
    }
    return v.rc;
}

int model_ckpt_verify(const char *path, char *err, size_t errlen)
{
    core_h5_lock();
    hid_t f = open_checked(path, err, errlen);
    int rc = f < 0 ? -1 : verify_file(f, path, err, errlen);
    if (f >= 0 && H5Fclose(f) < 0 && !rc) {
        snprintf(err, errlen, "cannot close checkpoint '%s' (corrupt?)", path);
        rc = -1;
    }
    core_h5_unlock();
    return rc;
}

static int read_tensors(hid_t f, model_net *net, const char *prefix, float *host, const char *path, char *err,
                        size_t errlen)
{
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        char name[160], why[400];
        int64_t d[4];
        snprintf(name, sizeof name, "%s/%s", prefix, p->name);
        param_dims(p, d);
        if (core_h5_read_f32(f, name, p->ndim, d, host + p->offset, why, sizeof why) != 0) {
            snprintf(err, errlen, "checkpoint '%s': %s", path, why);
            return -1;
        }
    }
    return 0;
}

/* Hands the /state group to the caller's reader; 0, or -1 with a reason. */
static int read_state_group(hid_t f, model_ckpt_state_fn read_state, void *ctx, const char *path, char *err,
                            size_t errlen)
{
    if (H5Lexists(f, "/state", H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "checkpoint '%s' has no /state group (not written by sspose train?)", path);
        return -1;
    }
    hid_t g = H5Gopen2(f, "/state", H5P_DEFAULT);
    if (g < 0) {
        snprintf(err, errlen, "checkpoint '%s': cannot open /state (corrupt?)", path);
        return -1;
    }
    read_state(g, ctx);
    if (H5Gclose(g) < 0) {
        snprintf(err, errlen, "checkpoint '%s': cannot close /state (corrupt?)", path);
        return -1;
    }
    return 0;
}

/* The optimizer's tensors and attributes into host buffers; 0, or -1 with a reason. */
static int read_optim(hid_t f, model_net *net, model_ckpt_optim *o, float **host, const char *path, char *err,
                      size_t errlen)
{
    if (H5Lexists(f, "/optim", H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "checkpoint '%s' has no /optim group", path);
        return -1;
    }
    hid_t g = H5Gopen2(f, "/optim", H5P_DEFAULT);
    if (g < 0) {
        snprintf(err, errlen, "checkpoint '%s': cannot open /optim (corrupt?)", path);
        return -1;
    }
    /* Files written before Adam existed carry neither attribute: they are SGD's. */
    char *kind = H5Aexists(g, "optimizer") > 0 ? core_h5_attr_read_str(g, "optimizer") : NULL;
    int rc = 0;
    if (kind && strcmp(kind, o->kind)) {
        snprintf(err, errlen, "checkpoint '%s' holds the state of optimizer %s, this run uses %s", path, kind, o->kind);
        rc = -1;
    }
    free(kind);
    if (!rc && core_h5_attr_read_i64(g, "updates", &o->updates) != 0) o->updates = -1;
    H5Gclose(g);
    for (int i = 0; i < o->nstate && !rc; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "/optim/%s", o->names[i]);
        rc = read_tensors(f, net, prefix, host[i], path, err, errlen);
    }
    return rc;
}

int model_ckpt_try_load(const char *path, model_net *net, model_ckpt_optim *optim, int64_t *step,
                        model_ckpt_state_fn read_state, void *ctx, char *err, size_t errlen)
{
    core_h5_lock();
    hid_t f = open_checked(path, err, errlen);
    if (f < 0) {
        core_h5_unlock();
        return -1;
    }
    size_t n = model_num_floats(net);
    int nstate = optim ? optim->nstate : 0;
    CHECK(nstate <= MODEL_CKPT_MAX_OPTIM, "checkpoint: %d optimizer states", nstate);
    /* calloc: the alignment padding between tensors must load as zeros */
    float *w = core_calloc(n, sizeof(float)), *host[MODEL_CKPT_MAX_OPTIM] = {0};
    for (int i = 0; i < nstate; i++) host[i] = core_calloc(n, sizeof(float));
    int64_t st = 0;
    int rc = core_h5_attr_read_i64(f, "step", &st) == 0 ? 0 : -1;
    if (rc) snprintf(err, errlen, "checkpoint '%s' has no step attribute", path);
    /* Checksums, dtypes and finiteness of everything stored, before any of it is used:
     * a corrupt or diverged file is never loaded, and resume falls back past it. */
    if (!rc) rc = verify_file(f, path, err, errlen);
    if (!rc) rc = read_tensors(f, net, "/params", w, path, err, errlen);
    if (!rc) rc = read_buffers(f, net, w, path, err, errlen);
    if (!rc && optim) rc = read_optim(f, net, optim, host, path, err, errlen);
    if (!rc && read_state) rc = read_state_group(f, read_state, ctx, path, err, errlen);
    if (H5Fclose(f) < 0 && !rc) {
        snprintf(err, errlen, "cannot close checkpoint '%s' (corrupt?)", path);
        rc = -1;
    }
    core_h5_unlock();
    if (!rc) {
        model_params_from_host(net, w);
        core_backend *be = model_backend(net);
        for (int i = 0; i < nstate; i++) be->upload(be, optim->state[i], host[i], n);
        be->sync(be);
        if (step) *step = st;
    }
    free(w);
    for (int i = 0; i < nstate; i++) free(host[i]);
    return rc;
}

void model_ckpt_load(const char *path, model_net *net, model_ckpt_optim *optim, int64_t *step,
                     model_ckpt_state_fn read_state, void *ctx)
{
    char err[600];
    CHECK(model_ckpt_try_load(path, net, optim, step, read_state, ctx, err, sizeof err) == 0, "%s", err);
}
