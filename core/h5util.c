#include "core/h5util.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"

static pthread_mutex_t h5_mutex;
static pthread_once_t h5_mutex_once = PTHREAD_ONCE_INIT;

static void h5_mutex_make(void)
{
    pthread_mutexattr_t at;
    /* recursive: a checkpoint written by a caller that already holds the lock must not deadlock */
    CHECK(pthread_mutexattr_init(&at) == 0 && pthread_mutexattr_settype(&at, PTHREAD_MUTEX_RECURSIVE) == 0 &&
          pthread_mutex_init(&h5_mutex, &at) == 0, "cannot create the HDF5 lock");
    pthread_mutexattr_destroy(&at);
}

void core_h5_lock(void)
{
    pthread_once(&h5_mutex_once, h5_mutex_make);
    pthread_mutex_lock(&h5_mutex);
}

void core_h5_unlock(void) { pthread_mutex_unlock(&h5_mutex); }

void core_h5_quiet(void)
{
    core_h5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    core_h5_unlock();
}

void core_h5_attr_str(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5_CHECK(t, "HDF5: cannot create string type");
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE), "HDF5: string type");
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8), "HDF5: string type");
    hid_t sp = H5Screate(H5S_SCALAR);
    H5_CHECK(sp, "HDF5: dataspace");
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a, "HDF5: cannot create attribute '%s'", name);
    H5_CHECK(H5Awrite(a, t, &value), "HDF5: cannot write attribute '%s'", name);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void attr_scalar(hid_t obj, const char *name, hid_t type, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    H5_CHECK(sp, "HDF5: dataspace");
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a, "HDF5: cannot create attribute '%s'", name);
    H5_CHECK(H5Awrite(a, type, v), "HDF5: cannot write attribute '%s'", name);
    H5Aclose(a);
    H5Sclose(sp);
}

void core_h5_attr_i64(hid_t obj, const char *name, int64_t value) { attr_scalar(obj, name, H5T_NATIVE_INT64, &value); }
void core_h5_attr_f64(hid_t obj, const char *name, double value) { attr_scalar(obj, name, H5T_NATIVE_DOUBLE, &value); }

char *core_h5_attr_read_str(hid_t obj, const char *name)
{
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return NULL;
    hid_t ft = H5Aget_type(a);
    char *out = NULL;
    if (ft >= 0 && H5Tget_class(ft) == H5T_STRING) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            char *s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) {
                out = core_strdup(s);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(ft);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, n + 1);
            out = core_calloc(n + 2, 1);
            if (H5Aread(a, mt, out) < 0) { free(out); out = NULL; }
            H5Tclose(mt);
        }
    }
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return out;
}

static int attr_read(hid_t obj, const char *name, hid_t mtype, void *out)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, mtype, out) >= 0;
    if (sp >= 0) H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

int core_h5_attr_read_i64(hid_t obj, const char *name, int64_t *out) { return attr_read(obj, name, H5T_NATIVE_INT64, out); }
int core_h5_attr_read_f64(hid_t obj, const char *name, double *out) { return attr_read(obj, name, H5T_NATIVE_DOUBLE, out); }

void core_h5_write_f32(hid_t file, const char *path, int ndim, const int64_t *dims, const float *data)
{
    hsize_t d[8];
    CHECK(ndim > 0 && ndim <= 8, "HDF5: bad rank %d for '%s'", ndim, path);
    for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5_CHECK(lcpl, "HDF5: property list");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "HDF5: property list");
    hid_t sp = H5Screate_simple(ndim, d, NULL);
    H5_CHECK(sp, "HDF5: dataspace for '%s'", path);
    hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(ds, "HDF5: cannot create dataset '%s'", path);
    H5_CHECK(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "HDF5: cannot write '%s' (disk full?)",
             path);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Pclose(lcpl);
}

int core_h5_read_f32(hid_t file, const char *path, int ndim, const int64_t *dims, float *data, char *err, size_t errlen)
{
    if (H5Lexists(file, path, H5P_DEFAULT) <= 0) {
        snprintf(err, errlen, "tensor '%s' is missing", path);
        return -1;
    }
    hid_t ds = H5Dopen2(file, path, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(err, errlen, "'%s' is not a dataset", path);
        return -1;
    }
    hid_t sp = H5Dget_space(ds);
    hsize_t d[8];
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    int ok = nd == ndim && nd <= 8 && H5Sget_simple_extent_dims(sp, d, NULL) == nd;
    for (int i = 0; ok && i < nd; i++) ok = d[i] == (hsize_t)dims[i];
    if (!ok) {
        char want[128] = "", got[128] = "";
        size_t a = 0, b = 0;
        for (int i = 0; i < ndim; i++) a += snprintf(want + a, sizeof want - a, "%s%lld", i ? "," : "", (long long)dims[i]);
        if (nd > 0 && nd <= 8 && H5Sget_simple_extent_dims(sp, d, NULL) == nd)
            for (int i = 0; i < nd; i++) b += snprintf(got + b, sizeof got - b, "%s%llu", i ? "," : "", (unsigned long long)d[i]);
        snprintf(err, errlen, "tensor '%s' has shape [%s], expected [%s]", path, got, want);
        if (sp >= 0) H5Sclose(sp);
        H5Dclose(ds);
        return -1;
    }
    int rc = H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0 ? -1 : 0;
    if (rc) snprintf(err, errlen, "tensor '%s' cannot be read (corrupt file?)", path);
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

hid_t core_h5_create_tmp(const char *path, char *tmp_path, size_t tmp_len)
{
    snprintf(tmp_path, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    core_h5_lock();
    hid_t f = H5Fcreate(tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    core_h5_unlock();
    CHECK(f >= 0, "cannot create '%s' (directory missing or not writable?)", tmp_path);
    return f;
}

void core_h5_commit(hid_t file, const char *tmp_path, const char *path)
{
    /* flush to disk before the rename so a crash leaves either the old or the new file whole */
    core_h5_lock();
    H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL), "cannot flush '%s' (disk full?)", tmp_path);
    H5_CHECK(H5Fclose(file), "cannot close '%s' (disk full?)", tmp_path);
    /* fsync can take seconds on a big checkpoint; loader threads need not wait for it */
    core_h5_unlock();
    FILE *f = fopen(tmp_path, "rb");
    if (f) {
        fsync(fileno(f));
        fclose(f);
    }
    if (rename(tmp_path, path) != 0) {
        int e = errno;
        unlink(tmp_path);
        CORE_DIE("cannot rename '%s' to '%s': %s", tmp_path, path, strerror(e));
    }
}
