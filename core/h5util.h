/* Small HDF5 helpers shared by checkpoints, shards and forward dumps.
 * Strings are written as variable-length UTF-8 so h5py reads them as str.
 *
 * The HDF5 library is built without thread safety, and the training loader
 * reads shards from worker threads while the trainer writes checkpoints: every
 * HDF5 call in the process is made while holding the process-wide lock
 * core_h5_lock(). It is recursive, so a module that takes it for its own calls
 * (shards, checkpoints) may also be called by code that already holds it.
 * The helpers below that take an hid_t expect the caller to hold it;
 * core_h5_quiet, core_h5_create_tmp and core_h5_commit take it themselves. */
#ifndef SSPOSE_CORE_H5UTIL_H
#define SSPOSE_CORE_H5UTIL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* The process-wide HDF5 lock (recursive). */
void core_h5_lock(void);
void core_h5_unlock(void);

/* Turns off HDF5's own error-stack printing: sspose reports one line itself. */
void core_h5_quiet(void);

void core_h5_attr_str(hid_t obj, const char *name, const char *value);
void core_h5_attr_i64(hid_t obj, const char *name, int64_t value);
void core_h5_attr_f64(hid_t obj, const char *name, double value);
/* Reads a string attribute (variable or fixed length); NULL when absent or not a string. Caller frees. */
char *core_h5_attr_read_str(hid_t obj, const char *name);
/* 0 on success, -1 when absent or unreadable. */
int core_h5_attr_read_i64(hid_t obj, const char *name, int64_t *out);
int core_h5_attr_read_f64(hid_t obj, const char *name, double *out);

/* Writes a float32 dataset at `path` (intermediate groups created). */
void core_h5_write_f32(hid_t file, const char *path, int ndim, const int64_t *dims, const float *data);
/* Reads a float32 dataset whose shape must equal dims; returns 0, or -1 with a reason in err. */
int core_h5_read_f32(hid_t file, const char *path, int ndim, const int64_t *dims, float *data, char *err,
                     size_t errlen);

/* Atomic file writing: create `<path>.tmp.<pid>`, then core_h5_commit renames it over `path`.
 * commit holds the lock only for flushing and closing, not for fsync and rename. */
hid_t core_h5_create_tmp(const char *path, char *tmp_path, size_t tmp_len);
void core_h5_commit(hid_t file, const char *tmp_path, const char *path);

#endif
