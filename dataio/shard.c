#include "dataio/shard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/check.h"
#include "core/h5util.h"
#include "dataio/image.h"

const char *const dataio_ds_names[DATAIO_NDS] = {"mask", "heatmap", "paf", "offset", "attention"};
const int dataio_ds_channels[DATAIO_NDS] = {1, DATAIO_HEAT_CH, DATAIO_PAF_CH, DATAIO_OFF_CH, DATAIO_ATT_CH};
const float dataio_ds_scale[DATAIO_NDS] = {1.0f / 255, 1.0f / 255, 1.0f / 127, 1.0f / 254, 1.0f / 255};
static const int ds_signed[DATAIO_NDS] = {0, 0, 1, 1, 0};

static void grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (*cap >= need) return;
    *buf = core_realloc(*buf, need);
    *cap = need;
}

void dataio_packed_free(dataio_packed *p)
{
    free(p->jpeg);
    for (int d = 0; d < DATAIO_NDS; d++) free(p->chunk[d]);
    free(p->keypoints);
    memset(p, 0, sizeof *p);
}

static const float *sample_plane(const dataio_sample *s, int d)
{
    switch (d) {
    case DATAIO_DS_MASK: return s->mask;
    case DATAIO_DS_HEATMAP: return s->heatmap;
    case DATAIO_DS_PAF: return s->paf;
    case DATAIO_DS_OFFSET: return s->offset;
    default: return s->attention;
    }
}

static float *sample_plane_mut(dataio_sample *s, int d) { return (float *)sample_plane(s, d); }

/* Round to nearest (ties up) and clamp to the stored range: unsigned [0,255],
 * signed [-127,127] (shifted by 128 so truncation rounds). Written so the
 * compiler vectorises it; NaN becomes 0. */
static void quantise(const float *x, size_t n, float inv_scale, int is_signed, uint8_t *out)
{
    const float off = is_signed ? 128.5f : 0.5f, lo = is_signed ? 1.0f : 0.0f, hi = 255.49f;
    const int shift = is_signed ? 128 : 0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] * inv_scale + off;
        v = v == v ? v : off;
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        out[i] = (uint8_t)((int)v - shift);
    }
}

/* A zlib stream, which is what HDF5's deflate filter reads back. */
static size_t deflate_chunk(const uint8_t *in, size_t n, int level, uint8_t **out, size_t *cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    CHECK(deflateInit2(&z, level, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) == Z_OK, "zlib: deflateInit2 failed");
    size_t bound = deflateBound(&z, (uLong)n);
    grow(out, cap, bound);
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = *out;
    z.avail_out = (uInt)bound;
    int zr = deflate(&z, Z_FINISH);
    CHECK(zr == Z_STREAM_END, "zlib: deflate failed (%d)", zr);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

void dataio_pack_sample(const dataio_sample *s, int jpeg_quality, int level, dataio_packed *out)
{
    size_t hw = (size_t)s->grid_h * s->grid_w;
    uint8_t *q = core_malloc(DATAIO_PAF_CH * hw);
    for (int d = 0; d < DATAIO_NDS; d++) {
        size_t n = dataio_ds_channels[d] * hw;
        quantise(sample_plane(s, d), n, 1.0f / dataio_ds_scale[d], ds_signed[d], q);
        out->chunk_len[d] = deflate_chunk(q, n, level, &out->chunk[d], &out->chunk_cap[d]);
        out->raw[d] = 0;
    }
    free(q);
    char err[256];
    uint8_t *jpg;
    size_t len;
    CHECK(dataio_jpeg_encode(s->rgb, s->size, s->size, jpeg_quality, &jpg, &len, err, sizeof err) == 0, "%s", err);
    free(out->jpeg);
    out->jpeg = jpg;
    out->jpeg_len = out->jpeg_cap = len;
    int np = s->max_persons;
    while (np > 0) {
        int labelled = 0;
        for (int k = 0; k < SKEL_NUM_KP; k++) labelled |= s->keypoints[((np - 1) * SKEL_NUM_KP + k) * 3 + 2] > 0;
        if (labelled) break;
        np--;
    }
    if (np > out->kp_cap) {
        out->keypoints = core_realloc(out->keypoints, sizeof(float) * np * SKEL_NUM_KP * 3);
        out->kp_cap = np;
    }
    memcpy(out->keypoints, s->keypoints, sizeof(float) * np * SKEL_NUM_KP * 3);
    out->npersons = np;
    out->meta = s->meta;
}

/* ---------------------------------------------------------------- HDF5 helpers */

static hid_t meta_mem_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(dataio_meta));
    H5_CHECK(t, "H5Tcreate failed");
    H5_CHECK(H5Tinsert(t, "image_id", HOFFSET(dataio_meta, image_id), H5T_NATIVE_INT64), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "person", HOFFSET(dataio_meta, person), H5T_NATIVE_INT32), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "scale", HOFFSET(dataio_meta, scale), H5T_NATIVE_FLOAT), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "center_x", HOFFSET(dataio_meta, center_x), H5T_NATIVE_FLOAT), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "center_y", HOFFSET(dataio_meta, center_y), H5T_NATIVE_FLOAT), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "rotation", HOFFSET(dataio_meta, rotation), H5T_NATIVE_FLOAT), "H5Tinsert");
    H5_CHECK(H5Tinsert(t, "flipped", HOFFSET(dataio_meta, flipped), H5T_NATIVE_UINT8), "H5Tinsert");
    return t;
}

static void attr_write(hid_t obj, const char *name, hid_t type, int rank, const hsize_t *dims, const void *v)
{
    hid_t sp = rank ? H5Screate_simple(rank, dims, NULL) : H5Screate(H5S_SCALAR);
    H5_CHECK(sp, "H5Screate failed for attribute %s", name);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a, "cannot create attribute %s", name);
    H5_CHECK(H5Awrite(a, type, v), "cannot write attribute %s", name);
    H5Aclose(a);
    H5Sclose(sp);
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5_CHECK(t, "H5Tcopy failed");
    H5_CHECK(H5Tset_size(t, H5T_VARIABLE), "H5Tset_size failed");
    H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8), "H5Tset_cset failed");
    return t;
}

static void attr_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = vlen_str_type();
    attr_write(obj, name, t, 0, NULL, &s);
    H5Tclose(t);
}

static void attr_int(hid_t obj, const char *name, int v) { attr_write(obj, name, H5T_NATIVE_INT32, 0, NULL, &v); }

/* ---------------------------------------------------------------- writer */

struct dataio_shard_writer {
    char path[4096], tmp[4200];
    hid_t file;
    hid_t ds[DATAIO_NDS], jpeg, vlen;
    int grid_h, grid_w;
    long n;
    /* keypoints and meta are written at close, once P (max persons) is known */
    float *kps;     /* n x kp_stride floats, kp_stride = P_max so far... stored ragged */
    int *kp_n;
    size_t kps_len, kps_cap;
    dataio_meta *meta;
    uint32_t *crc; /* [cap][1 + DATAIO_NDS] */
    long cap;
    int max_persons;
};

static hid_t make_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *sample_dims, int deflate,
                          int fletcher32)
{
    hsize_t dims[5] = {0}, maxd[5] = {H5S_UNLIMITED}, chunk[5] = {1};
    for (int r = 1; r < rank; r++) dims[r] = maxd[r] = chunk[r] = sample_dims[r - 1];
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    H5_CHECK(sp, "H5Screate_simple failed for %s", name);
    hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
    H5_CHECK(pl, "H5Pcreate failed");
    H5_CHECK(H5Pset_chunk(pl, rank, chunk), "H5Pset_chunk failed for %s", name);
    /* no timestamps: the same input gives byte-identical shards */
    H5_CHECK(H5Pset_obj_track_times(pl, 0), "H5Pset_obj_track_times failed");
    if (deflate) H5_CHECK(H5Pset_deflate(pl, 1), "H5Pset_deflate failed for %s", name);
    if (fletcher32) H5_CHECK(H5Pset_fletcher32(pl), "H5Pset_fletcher32 failed for %s", name);
    hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    H5_CHECK(d, "cannot create dataset %s", name);
    H5Pclose(pl);
    H5Sclose(sp);
    return d;
}

dataio_shard_writer *dataio_shard_writer_open(const char *path, const dataio_shard_attrs *a)
{
    CHECK(a->stride > 0 && a->input_size > 0 && a->input_size % a->stride == 0,
          "shard: input size %d is not a multiple of the stride %d", a->input_size, a->stride);
    dataio_shard_writer *w = core_calloc(1, sizeof *w);
    CHECK(strlen(path) < sizeof w->path, "shard path too long");
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->grid_h = w->grid_w = a->input_size / a->stride;
    core_h5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        core_h5_unlock();
        CORE_DIE("cannot create shard '%s' (directory missing or not writable?)", w->tmp);
    }
    hid_t root = w->file;
    attr_str(root, "format", DATAIO_SHARD_FORMAT);
    attr_int(root, "version", DATAIO_SHARD_VERSION);
    attr_int(root, "input_size", a->input_size);
    attr_int(root, "stride", a->stride);
    attr_write(root, "sigma", H5T_NATIVE_DOUBLE, 0, NULL, &a->sigma);
    attr_write(root, "paf_width", H5T_NATIVE_DOUBLE, 0, NULL, &a->paf_width);
    attr_int(root, "num_keypoints", SKEL_NUM_KP);
    attr_int(root, "num_limbs", SKEL_NUM_LIMBS);
    hsize_t ld[2] = {SKEL_NUM_LIMBS, 2};
    attr_write(root, "limbs", H5T_NATIVE_INT32, 2, ld, skel_limbs);
    attr_str(root, "source", a->source);
    attr_write(root, "seed", H5T_NATIVE_INT64, 0, NULL, &a->seed);
    attr_str(root, "augment", a->augment);
    w->vlen = H5Tvlen_create(H5T_NATIVE_UINT8);
    H5_CHECK(w->vlen, "H5Tvlen_create failed");
    w->jpeg = make_dataset(w->file, "jpeg", w->vlen, 1, NULL, 0, 0);
    for (int d = 0; d < DATAIO_NDS; d++) {
        hsize_t sd[3] = {(hsize_t)dataio_ds_channels[d], (hsize_t)w->grid_h, (hsize_t)w->grid_w};
        int rank = d == DATAIO_DS_MASK ? 3 : 4;
        hid_t type = ds_signed[d] ? H5T_STD_I8LE : H5T_STD_U8LE;
        w->ds[d] = make_dataset(w->file, dataio_ds_names[d], type, rank, d == DATAIO_DS_MASK ? sd + 1 : sd, 1, 0);
        attr_write(w->ds[d], "scale", H5T_NATIVE_FLOAT, 0, NULL, &dataio_ds_scale[d]);
    }
    core_h5_unlock();
    return w;
}

void dataio_shard_writer_add(dataio_shard_writer *w, const dataio_packed *p)
{
    size_t hw = (size_t)w->grid_h * w->grid_w;
    core_h5_lock();
    hsize_t n = (hsize_t)w->n;
    hsize_t ext[4] = {n + 1, 1, (hsize_t)w->grid_h, (hsize_t)w->grid_w};
    for (int d = 0; d < DATAIO_NDS; d++) {
        int rank = d == DATAIO_DS_MASK ? 3 : 4;
        hsize_t e[4] = {n + 1, (hsize_t)dataio_ds_channels[d], ext[2], ext[3]};
        if (rank == 3) { e[1] = ext[2]; e[2] = ext[3]; }
        H5_CHECK(H5Dset_extent(w->ds[d], e), "cannot extend %s", dataio_ds_names[d]);
        hsize_t off[4] = {n, 0, 0, 0};
        if (p->raw[d]) CHECK(p->chunk_len[d] == dataio_ds_channels[d] * hw, "shard: raw chunk of wrong size");
        /* filter mask bit 0 set = deflate skipped for this chunk */
        H5_CHECK(H5Dwrite_chunk(w->ds[d], H5P_DEFAULT, p->raw[d] ? 1u : 0u, off, p->chunk_len[d], p->chunk[d]),
                 "cannot write %s chunk %ld to '%s'", dataio_ds_names[d], w->n, w->tmp);
    }
    hsize_t one = n + 1, start = n, cnt = 1;
    H5_CHECK(H5Dset_extent(w->jpeg, &one), "cannot extend jpeg");
    hid_t fs = H5Dget_space(w->jpeg);
    H5_CHECK(H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL), "hyperslab");
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    hvl_t v = {p->jpeg_len, p->jpeg};
    H5_CHECK(H5Dwrite(w->jpeg, w->vlen, ms, fs, H5P_DEFAULT, &v), "cannot write jpeg %ld to '%s'", w->n, w->tmp);
    H5Sclose(ms);
    H5Sclose(fs);
    core_h5_unlock();
    /* keypoints/meta kept in memory: ragged rows of p->npersons persons */
    if (w->n == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 64;
        w->meta = core_realloc(w->meta, sizeof(dataio_meta) * w->cap);
        w->kp_n = core_realloc(w->kp_n, sizeof(int) * w->cap);
        w->crc = core_realloc(w->crc, sizeof(uint32_t) * (1 + DATAIO_NDS) * w->cap);
    }
    uint32_t *c = w->crc + (size_t)w->n * (1 + DATAIO_NDS);
    c[0] = (uint32_t)crc32(0L, p->jpeg, (uInt)p->jpeg_len);
    for (int d = 0; d < DATAIO_NDS; d++) c[1 + d] = (uint32_t)crc32(0L, p->chunk[d], (uInt)p->chunk_len[d]);
    size_t need = w->kps_len + (size_t)p->npersons * SKEL_NUM_KP * 3;
    if (need > w->kps_cap) {
        w->kps_cap = need * 2 + 1024;
        w->kps = core_realloc(w->kps, sizeof(float) * w->kps_cap);
    }
    memcpy(w->kps + w->kps_len, p->keypoints, sizeof(float) * p->npersons * SKEL_NUM_KP * 3);
    w->kps_len = need;
    w->kp_n[w->n] = p->npersons;
    w->meta[w->n] = p->meta;
    if (p->npersons > w->max_persons) w->max_persons = p->npersons;
    w->n++;
}

static void close_handles(dataio_shard_writer *w)
{
    for (int d = 0; d < DATAIO_NDS; d++) H5Dclose(w->ds[d]);
    H5Dclose(w->jpeg);
    H5Tclose(w->vlen);
}

long long dataio_shard_writer_close(dataio_shard_writer *w)
{
    int P = w->max_persons > 0 ? w->max_persons : 1;
    size_t row = (size_t)P * SKEL_NUM_KP * 3;
    float *all = core_calloc((size_t)(w->n ? w->n : 1) * row, sizeof(float));
    size_t at = 0;
    for (long i = 0; i < w->n; i++) {
        size_t m = (size_t)w->kp_n[i] * SKEL_NUM_KP * 3;
        memcpy(all + i * row, w->kps + at, sizeof(float) * m);
        at += m;
    }
    core_h5_lock();
    hsize_t sd[3] = {(hsize_t)P, SKEL_NUM_KP, 3};
    hid_t kd = make_dataset(w->file, "keypoints", H5T_IEEE_F32LE, 4, sd, 0, 1);
    hsize_t e4[4] = {(hsize_t)w->n, (hsize_t)P, SKEL_NUM_KP, 3};
    H5_CHECK(H5Dset_extent(kd, e4), "cannot extend keypoints");
    if (w->n) H5_CHECK(H5Dwrite(kd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all), "cannot write keypoints");
    H5Dclose(kd);
    hid_t mt = meta_mem_type();
    hid_t ft = H5Tcopy(mt);
    H5_CHECK(H5Tpack(ft), "H5Tpack failed");
    hid_t md = make_dataset(w->file, "meta", ft, 1, NULL, 0, 1);
    hsize_t e1 = (hsize_t)w->n;
    H5_CHECK(H5Dset_extent(md, &e1), "cannot extend meta");
    if (w->n) H5_CHECK(H5Dwrite(md, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->meta), "cannot write meta");
    H5Dclose(md);
    H5Tclose(ft);
    H5Tclose(mt);
    hsize_t cw[1] = {1 + DATAIO_NDS}, e2[2] = {(hsize_t)w->n, 1 + DATAIO_NDS};
    hid_t cd = make_dataset(w->file, "checksums", H5T_STD_U32LE, 2, cw, 0, 1);
    H5_CHECK(H5Dset_extent(cd, e2), "cannot extend checksums");
    if (w->n) H5_CHECK(H5Dwrite(cd, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->crc), "cannot write checksums");
    H5Dclose(cd);
    close_handles(w);
    H5_CHECK(H5Fclose(w->file), "cannot close shard '%s' (disk full?)", w->tmp);
    core_h5_unlock();
    free(all);
    /* on disk before the rename: a crash leaves the old shard or the new one, never half of one */
    int fd = open(w->tmp, O_RDONLY);
    CHECK(fd >= 0 && fsync(fd) == 0 && close(fd) == 0, "cannot sync '%s' (disk full?)", w->tmp);
    CHECK(rename(w->tmp, w->path) == 0, "cannot rename '%s' to '%s'", w->tmp, w->path);
    struct stat st;
    long long size = stat(w->path, &st) == 0 ? (long long)st.st_size : -1;
    free(w->kps);
    free(w->kp_n);
    free(w->meta);
    free(w->crc);
    free(w);
    return size;
}

void dataio_shard_writer_abort(dataio_shard_writer *w)
{
    if (!w) return;
    core_h5_lock();
    close_handles(w);
    H5Fclose(w->file);
    core_h5_unlock();
    unlink(w->tmp);
    free(w->kps);
    free(w->kp_n);
    free(w->meta);
    free(w);
}

/* ---------------------------------------------------------------- reader */

/* Where one stored target chunk lies in the file; size 0 = read it through HDF5. */
typedef struct {
    uint64_t addr;
    uint32_t size;
    uint32_t filter_mask;
} chunk_loc;

#define SHARD_XFER_BUF 4096

struct dataio_shard {
    char path[4096];
    hid_t file, ds[DATAIO_NDS], jpeg, kps, meta, vlen, meta_t;
    int chunked[DATAIO_NDS];  /* one-sample chunks with deflate or nothing: raw chunk reads */
    int filtered[DATAIO_NDS]; /* the dataset has a filter (deflate): chunks are deflated unless their mask says not */
    dataio_shard_attrs a;
    /* Target chunks are read with pread on our own descriptor, outside the
     * HDF5 lock: HDF5 only tells where they are, once per sample, and the
     * loader's threads no longer queue for the lock to copy bytes. */
    int fd;           /* -1: every chunk goes through HDF5 */
    uint8_t *located; /* [N] loc of this sample filled in (written and read under the HDF5 lock) */
    chunk_loc *loc;   /* [N][DATAIO_NDS] */
    dataio_meta *metas; /* [N], read at open: 32 bytes a sample, and one H5Dread less per sample */
    uint32_t *crcs;     /* [N][1 + DATAIO_NDS] from `checksums`, or NULL for shards written before it */
    /* One transfer list with our own conversion buffers and a vlen allocator
     * that reads the JPEG straight into the caller's buffer: HDF5 otherwise
     * callocs a 1 MiB conversion buffer on every vlen read, and mallocs,
     * copies and frees the JPEG bytes. */
    hid_t dxpl, jpeg_fs, one_ms;
    uint8_t *tconv, *bkg;
    dataio_packed *vl_out; /* target of the vlen allocator during one read (under the lock) */
};

/* Dies still holding the HDF5 lock: no loader thread may enter HDF5 while
 * exit() runs the library's clean-up. */
#define RCHECK(r, cond, ...) do { if (!(cond)) { \
    char m_[600]; snprintf(m_, sizeof m_, __VA_ARGS__); CORE_DIE("shard '%s': %s", (r)->path, m_); } } while (0)

static int attr_read_num(hid_t obj, const char *name, hid_t memtype, void *out)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    hid_t t = H5Aget_type(a);
    ok = ok && (H5Tget_class(t) == H5T_INTEGER || H5Tget_class(t) == H5T_FLOAT);
    ok = ok && H5Aread(a, memtype, out) >= 0;
    H5Tclose(t);
    H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static int attr_read_str(hid_t obj, const char *name, char *out, size_t cap)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t mt = vlen_str_type();
            char *s = NULL;
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(out, cap, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            char *s = calloc(n + 1, 1);
            hid_t mt = H5Tcopy(t);
            if (s && H5Aread(a, mt, s) >= 0) {
                snprintf(out, cap, "%s", s);
                rc = 0;
            }
            H5Tclose(mt);
            free(s);
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

/* Checks an integer dataset's type and shape; returns its first dimension. */
static hsize_t check_dataset(dataio_shard *r, hid_t d, const char *name, H5T_class_t cls, size_t size, int sign,
                             int rank, const hsize_t *want)
{
    RCHECK(r, d >= 0, "dataset '%s' is missing", name);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    RCHECK(r, H5Tget_class(t) == cls && (size == 0 || H5Tget_size(t) == size), "dataset '%s' has the wrong type", name);
    if (cls == H5T_INTEGER)
        RCHECK(r, (H5Tget_sign(t) == H5T_SGN_2) == sign, "dataset '%s' has the wrong signedness", name);
    hsize_t dims[8];
    RCHECK(r, H5Sget_simple_extent_ndims(sp) == rank, "dataset '%s' has rank %d, expected %d", name,
           H5Sget_simple_extent_ndims(sp), rank);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int k = 1; k < rank; k++)
        if (want[k - 1])
            RCHECK(r, dims[k] == want[k - 1], "dataset '%s' dimension %d is %llu, expected %llu", name, k,
                   (unsigned long long)dims[k], (unsigned long long)want[k - 1]);
    H5Tclose(t);
    H5Sclose(sp);
    return dims[0];
}

static int one_sample_chunks(hid_t d)
{
    hid_t pl = H5Dget_create_plist(d);
    int ok = H5Pget_layout(pl) == H5D_CHUNKED;
    if (ok) {
        hsize_t c[8];
        int rank = H5Pget_chunk(pl, 8, c);
        hid_t sp = H5Dget_space(d);
        hsize_t dims[8];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        ok = rank >= 1 && c[0] == 1;
        for (int k = 1; k < rank; k++) ok = ok && c[k] == dims[k];
        int nf = H5Pget_nfilters(pl);
        for (int f = 0; f < nf && ok; f++) {
            unsigned flags, cd[8];
            size_t ncd = 8;
            ok = H5Pget_filter2(pl, (unsigned)f, &flags, &ncd, cd, 0, NULL, NULL) == H5Z_FILTER_DEFLATE;
        }
    }
    H5Pclose(pl);
    return ok;
}

static void *vl_alloc(size_t size, void *info)
{
    dataio_packed *p = ((dataio_shard *)info)->vl_out;
    grow(&p->jpeg, &p->jpeg_cap, size ? size : 1);
    return p->jpeg;
}

static void vl_free(void *ptr, void *info)
{
    (void)ptr; /* the buffer is the caller's dataio_packed.jpeg */
    (void)info;
}

/* Transfer list, cached spaces and meta, chunk locations (HDF5 lock held). */
static void open_fast_path(dataio_shard *r)
{
    long n = r->a.count;
    r->tconv = core_malloc(SHARD_XFER_BUF);
    r->bkg = core_malloc(SHARD_XFER_BUF);
    r->dxpl = H5Pcreate(H5P_DATASET_XFER);
    RCHECK(r, r->dxpl >= 0, "H5Pcreate failed");
    RCHECK(r, H5Pset_buffer(r->dxpl, SHARD_XFER_BUF, r->tconv, r->bkg) >= 0, "H5Pset_buffer failed");
    RCHECK(r, H5Pset_vlen_mem_manager(r->dxpl, vl_alloc, r, vl_free, r) >= 0, "H5Pset_vlen_mem_manager failed");
    r->jpeg_fs = H5Dget_space(r->jpeg);
    hsize_t one = 1;
    r->one_ms = H5Screate_simple(1, &one, NULL);
    RCHECK(r, r->jpeg_fs >= 0 && r->one_ms >= 0, "cannot create dataspaces");
    r->metas = core_calloc(n ? (size_t)n : 1, sizeof *r->metas);
    if (n) RCHECK(r, H5Dread(r->meta, r->meta_t, H5S_ALL, H5S_ALL, r->dxpl, r->metas) >= 0, "cannot read dataset 'meta'");
    r->located = core_calloc(n ? (size_t)n : 1, 1);
    r->loc = core_calloc((n ? (size_t)n : 1) * DATAIO_NDS, sizeof *r->loc);
    r->fd = -1;
    for (int d = 0; d < DATAIO_NDS; d++) {
        hid_t pl = H5Dget_create_plist(r->ds[d]);
        RCHECK(r, pl >= 0, "cannot get the creation properties of '%s'", dataio_ds_names[d]);
        int nf = H5Pget_nfilters(pl);
        RCHECK(r, nf >= 0 && H5Pclose(pl) >= 0, "cannot get the filters of '%s'", dataio_ds_names[d]);
        r->filtered[d] = nf > 0;
    }
    /* Chunk addresses are relative to the userblock; neither our writer nor
     * h5py writes one, and a file that has one simply reads through HDF5. */
    hid_t fcpl = H5Fget_create_plist(r->file);
    hsize_t ub = 1;
    RCHECK(r, fcpl >= 0 && H5Pget_userblock(fcpl, &ub) >= 0 && H5Pclose(fcpl) >= 0, "cannot get the file creation properties");
    if (ub == 0) {
        r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
        RCHECK(r, r->fd >= 0, "cannot open the file for reading: %s", strerror(errno));
    }
}

/* Sample i's chunk addresses (HDF5 lock held). */
static void locate(dataio_shard *r, long i)
{
    for (int d = 0; d < DATAIO_NDS; d++) {
        chunk_loc *c = &r->loc[(size_t)i * DATAIO_NDS + d];
        c->size = 0;
        if (!r->chunked[d] || r->fd < 0) continue;
        hsize_t off[4] = {(hsize_t)i, 0, 0, 0}, size = 0;
        haddr_t addr = HADDR_UNDEF;
        unsigned fm = 0;
        RCHECK(r, H5Dget_chunk_info_by_coord(r->ds[d], off, &fm, &addr, &size) >= 0, "cannot locate the %s chunk of sample %ld",
               dataio_ds_names[d], i);
        /* an unwritten chunk (fill value) and absurd sizes take the HDF5 path */
        if (addr == HADDR_UNDEF || size == 0 || size > UINT32_MAX) continue;
        c->addr = addr;
        c->size = (uint32_t)size;
        c->filter_mask = fm;
    }
    r->located[i] = 1;
}

/* `checksums` is optional (shards from before it load as they did); when
 * present it must be uint32 [N, 6] and readable (its own Fletcher-32 holds). */
static void read_checksums(dataio_shard *r)
{
    if (H5Lexists(r->file, "checksums", H5P_DEFAULT) <= 0) return;
    hid_t d = H5Dopen2(r->file, "checksums", H5P_DEFAULT);
    hsize_t w[1] = {1 + DATAIO_NDS};
    RCHECK(r, (long)check_dataset(r, d, "checksums", H5T_INTEGER, 4, 0, 2, w) == r->a.count,
           "dataset 'checksums' length differs");
    r->crcs = core_malloc(sizeof(uint32_t) * (1 + DATAIO_NDS) * (r->a.count ? r->a.count : 1));
    if (r->a.count)
        RCHECK(r, H5Dread(d, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->crcs) >= 0,
               "cannot read dataset 'checksums' (Fletcher-32 mismatch: corrupt file)");
    RCHECK(r, H5Dclose(d) >= 0, "cannot close dataset 'checksums'");
}

dataio_shard *dataio_shard_open(const char *path)
{
    dataio_shard *r = core_calloc(1, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    core_h5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    RCHECK(r, access(path, R_OK) == 0, "cannot read the file");
    RCHECK(r, H5Fis_hdf5(path) > 0, "not an HDF5 file");
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    RCHECK(r, r->file >= 0, "cannot open as HDF5");
    dataio_shard_attrs *a = &r->a;
    char fmt[64] = "";
    int version = 0, nk = 0, nl = 0;
    RCHECK(r, attr_read_str(r->file, "format", fmt, sizeof fmt) == 0, "root attribute 'format' is missing");
    RCHECK(r, !strcmp(fmt, DATAIO_SHARD_FORMAT), "format is '%s', expected '%s'", fmt, DATAIO_SHARD_FORMAT);
    RCHECK(r, attr_read_num(r->file, "version", H5T_NATIVE_INT, &version) == 0, "attribute 'version' is missing");
    RCHECK(r, version == DATAIO_SHARD_VERSION, "version %d is not supported (this build reads version %d)", version,
           DATAIO_SHARD_VERSION);
    RCHECK(r, attr_read_num(r->file, "input_size", H5T_NATIVE_INT, &a->input_size) == 0, "attribute 'input_size' is missing");
    RCHECK(r, attr_read_num(r->file, "stride", H5T_NATIVE_INT, &a->stride) == 0, "attribute 'stride' is missing");
    RCHECK(r, attr_read_num(r->file, "sigma", H5T_NATIVE_DOUBLE, &a->sigma) == 0, "attribute 'sigma' is missing");
    RCHECK(r, attr_read_num(r->file, "paf_width", H5T_NATIVE_DOUBLE, &a->paf_width) == 0, "attribute 'paf_width' is missing");
    RCHECK(r, attr_read_num(r->file, "num_keypoints", H5T_NATIVE_INT, &nk) == 0 && nk == SKEL_NUM_KP,
           "attribute 'num_keypoints' must be %d", SKEL_NUM_KP);
    RCHECK(r, attr_read_num(r->file, "num_limbs", H5T_NATIVE_INT, &nl) == 0 && nl == SKEL_NUM_LIMBS,
           "attribute 'num_limbs' must be %d", SKEL_NUM_LIMBS);
    RCHECK(r, attr_read_num(r->file, "seed", H5T_NATIVE_INT64, &a->seed) == 0, "attribute 'seed' is missing");
    RCHECK(r, attr_read_str(r->file, "source", a->source, sizeof a->source) == 0, "attribute 'source' is missing");
    RCHECK(r, attr_read_str(r->file, "augment", a->augment, sizeof a->augment) == 0, "attribute 'augment' is missing");
    {
        int limbs[SKEL_NUM_LIMBS][2];
        hid_t at = H5Aexists(r->file, "limbs") > 0 ? H5Aopen(r->file, "limbs", H5P_DEFAULT) : -1;
        RCHECK(r, at >= 0, "attribute 'limbs' is missing");
        hid_t sp = H5Aget_space(at);
        int ok = H5Sget_simple_extent_npoints(sp) == SKEL_NUM_LIMBS * 2 && H5Aread(at, H5T_NATIVE_INT, limbs) >= 0;
        H5Sclose(sp);
        H5Aclose(at);
        RCHECK(r, ok && !memcmp(limbs, skel_limbs, sizeof limbs), "attribute 'limbs' differs from the OpenPose-18 limbs");
    }
    RCHECK(r, a->stride > 0 && a->input_size > 0 && a->input_size % a->stride == 0 && a->input_size <= 8192,
           "input_size %d / stride %d is not a valid grid", a->input_size, a->stride);
    RCHECK(r, a->sigma > 0 && a->paf_width > 0, "sigma and paf_width must be positive");
    a->grid_h = a->grid_w = a->input_size / a->stride;
    hsize_t g[3] = {0, (hsize_t)a->grid_h, (hsize_t)a->grid_w};
    long n = -1;
    for (int d = 0; d < DATAIO_NDS; d++) {
        const char *nm = dataio_ds_names[d];
        r->ds[d] = H5Lexists(r->file, nm, H5P_DEFAULT) > 0 ? H5Dopen2(r->file, nm, H5P_DEFAULT) : -1;
        g[0] = (hsize_t)dataio_ds_channels[d];
        hsize_t nd = d == DATAIO_DS_MASK ? check_dataset(r, r->ds[d], nm, H5T_INTEGER, 1, 0, 3, g + 1)
                                         : check_dataset(r, r->ds[d], nm, H5T_INTEGER, 1, ds_signed[d], 4, g);
        RCHECK(r, n < 0 || (long)nd == n, "dataset '%s' has %llu samples, others %ld", nm, (unsigned long long)nd, n);
        n = (long)nd;
        float sc = 0;
        RCHECK(r, attr_read_num(r->ds[d], "scale", H5T_NATIVE_FLOAT, &sc) == 0, "dataset '%s' has no 'scale' attribute", nm);
        /* dequantised with the file's own scale (SPEC: value = stored * scale) */
        RCHECK(r, isfinite(sc) && sc > 0, "dataset '%s' has a bad scale %g", nm, sc);
        a->scale[d] = sc;
        r->chunked[d] = one_sample_chunks(r->ds[d]);
    }
    r->jpeg = H5Lexists(r->file, "jpeg", H5P_DEFAULT) > 0 ? H5Dopen2(r->file, "jpeg", H5P_DEFAULT) : -1;
    RCHECK(r, (long)check_dataset(r, r->jpeg, "jpeg", H5T_VLEN, 0, 0, 1, NULL) == n, "dataset 'jpeg' length differs");
    r->kps = H5Lexists(r->file, "keypoints", H5P_DEFAULT) > 0 ? H5Dopen2(r->file, "keypoints", H5P_DEFAULT) : -1;
    hsize_t kw[3] = {0, SKEL_NUM_KP, 3};
    RCHECK(r, (long)check_dataset(r, r->kps, "keypoints", H5T_FLOAT, 4, 0, 4, kw) == n, "dataset 'keypoints' length differs");
    {
        hid_t sp = H5Dget_space(r->kps);
        hsize_t dims[4];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        H5Sclose(sp);
        RCHECK(r, dims[1] >= 1 && dims[1] <= 100000, "dataset 'keypoints' has %llu person rows", (unsigned long long)dims[1]);
        a->max_persons = (int)dims[1];
    }
    r->meta = H5Lexists(r->file, "meta", H5P_DEFAULT) > 0 ? H5Dopen2(r->file, "meta", H5P_DEFAULT) : -1;
    RCHECK(r, (long)check_dataset(r, r->meta, "meta", H5T_COMPOUND, 0, 0, 1, NULL) == n, "dataset 'meta' length differs");
    r->meta_t = meta_mem_type();
    {
        hid_t ft = H5Dget_type(r->meta);
        static const char *fields[] = {"image_id", "person", "scale", "center_x", "center_y", "rotation", "flipped"};
        for (int f = 0; f < 7; f++) RCHECK(r, H5Tget_member_index(ft, fields[f]) >= 0, "dataset 'meta' lacks field '%s'", fields[f]);
        H5Tclose(ft);
    }
    r->vlen = H5Tvlen_create(H5T_NATIVE_UINT8);
    RCHECK(r, r->vlen >= 0, "H5Tvlen_create failed");
    a->count = n;
    open_fast_path(r);
    read_checksums(r);
    core_h5_unlock();
    return r;
}

void dataio_shard_close(dataio_shard *r)
{
    if (!r) return;
    core_h5_lock();
    int ok = 1;
    for (int d = 0; d < DATAIO_NDS; d++) ok &= H5Dclose(r->ds[d]) >= 0;
    ok &= H5Dclose(r->jpeg) >= 0 && H5Dclose(r->kps) >= 0 && H5Dclose(r->meta) >= 0;
    ok &= H5Tclose(r->vlen) >= 0 && H5Tclose(r->meta_t) >= 0;
    ok &= H5Pclose(r->dxpl) >= 0 && H5Sclose(r->jpeg_fs) >= 0 && H5Sclose(r->one_ms) >= 0;
    ok &= H5Fclose(r->file) >= 0;
    RCHECK(r, ok, "cannot close the file");
    core_h5_unlock();
    if (r->fd >= 0) close(r->fd);
    free(r->metas);
    free(r->crcs);
    free(r->located);
    free(r->loc);
    free(r->tconv);
    free(r->bkg);
    free(r);
}

long dataio_shard_count(const dataio_shard *r) { return r->a.count; }
const dataio_shard_attrs *dataio_shard_info(const dataio_shard *r) { return &r->a; }

void dataio_shard_sample_init(const dataio_shard *r, dataio_sample *s)
{
    dataio_sample_init(s, r->a.input_size, r->a.grid_h, r->a.grid_w, r->a.max_persons);
}

/* Selects row i of a dataset (all trailing dimensions). */
static hid_t select_row(dataio_shard *r, hid_t d, long i, hid_t *mem)
{
    hid_t fs = H5Dget_space(d);
    hsize_t dims[8], start[8] = {0}, cnt[8];
    int rank = H5Sget_simple_extent_dims(fs, dims, NULL);
    for (int k = 0; k < rank; k++) cnt[k] = dims[k];
    start[0] = (hsize_t)i;
    cnt[0] = 1;
    RCHECK(r, H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL) >= 0, "cannot select sample %ld", i);
    *mem = H5Screate_simple(rank, cnt, NULL);
    return fs;
}

static void pread_full(dataio_shard *r, const chunk_loc *c, uint8_t *dst, int d, long i)
{
    size_t got = 0;
    while (got < c->size) {
        ssize_t k = pread(r->fd, dst + got, c->size - got, (off_t)(c->addr + got));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            /* as RCHECK: no other thread enters HDF5 while exit() cleans it up */
            core_h5_lock();
            CORE_DIE("shard '%s': cannot read the %s chunk of sample %ld (%s)", r->path, dataio_ds_names[d], i,
                     k < 0 ? strerror(errno) : "file truncated?");
        }
        got += (size_t)k;
    }
}

void dataio_shard_read_packed_parts(dataio_shard *r, long i, unsigned parts, dataio_packed *out)
{
    const dataio_shard_attrs *a = &r->a;
    CHECK(i >= 0 && i < a->count, "shard '%s': sample %ld out of range [0, %ld)", r->path, i, a->count);
    size_t hw = (size_t)a->grid_h * a->grid_w;
    const chunk_loc *loc = &r->loc[(size_t)i * DATAIO_NDS];
    out->crc_have = 0;
    if (r->crcs) memcpy(out->crc, r->crcs + (size_t)i * (1 + DATAIO_NDS), sizeof out->crc);
    core_h5_lock();
    if (parts & DATAIO_PART_TARGETS) {
        if (!r->located[i]) locate(r, i);
        for (int d = 0; d < DATAIO_NDS; d++) {
            if (loc[d].size) continue; /* read below, outside the lock */
            size_t raw_len = dataio_ds_channels[d] * hw;
            grow(&out->chunk[d], &out->chunk_cap[d], raw_len);
            hid_t ms, fs = select_row(r, r->ds[d], i, &ms);
            /* the memory type must keep the sign, or HDF5 clips negatives to 0 */
            hid_t mt = ds_signed[d] ? H5T_NATIVE_INT8 : H5T_NATIVE_UINT8;
            RCHECK(r, H5Dread(r->ds[d], mt, ms, fs, r->dxpl, out->chunk[d]) >= 0, "cannot read %s of sample %ld",
                   dataio_ds_names[d], i);
            RCHECK(r, H5Sclose(ms) >= 0 && H5Sclose(fs) >= 0, "H5Sclose failed");
            out->chunk_len[d] = raw_len;
            out->raw[d] = 1;
        }
    }
    if (parts & DATAIO_PART_JPEG) {
        hsize_t start = (hsize_t)i, cnt = 1;
        RCHECK(r, H5Sselect_hyperslab(r->jpeg_fs, H5S_SELECT_SET, &start, NULL, &cnt, NULL) >= 0, "cannot select sample %ld", i);
        hvl_t v = {0, NULL};
        r->vl_out = out;
        RCHECK(r, H5Dread(r->jpeg, r->vlen, r->one_ms, r->jpeg_fs, r->dxpl, &v) >= 0, "cannot read jpeg of sample %ld", i);
        r->vl_out = NULL;
        out->jpeg_len = v.len;
        if (r->crcs) out->crc_have |= 1u;
    }
    if (parts & DATAIO_PART_KEYPOINTS) {
        int P = a->max_persons;
        if (P > out->kp_cap) {
            out->keypoints = core_realloc(out->keypoints, sizeof(float) * P * SKEL_NUM_KP * 3);
            out->kp_cap = P;
        }
        hid_t ms, fs = select_row(r, r->kps, i, &ms);
        RCHECK(r, H5Dread(r->kps, H5T_NATIVE_FLOAT, ms, fs, r->dxpl, out->keypoints) >= 0,
               "cannot read keypoints of sample %ld", i);
        RCHECK(r, H5Sclose(ms) >= 0 && H5Sclose(fs) >= 0, "H5Sclose failed");
        out->npersons = P;
    }
    core_h5_unlock();
    if (parts & DATAIO_PART_META) out->meta = r->metas[i];
    if (parts & DATAIO_PART_TARGETS)
        for (int d = 0; d < DATAIO_NDS; d++) {
            if (!loc[d].size) continue;
            grow(&out->chunk[d], &out->chunk_cap[d], loc[d].size);
            pread_full(r, &loc[d], out->chunk[d], d, i);
            out->chunk_len[d] = loc[d].size;
            /* filter mask bit 0: deflate was skipped for this chunk */
            out->raw[d] = !r->filtered[d] || (loc[d].filter_mask & 1u);
            /* the bytes as stored: what the CRC covers (chunks read through HDF5 arrive inflated) */
            if (r->crcs) out->crc_have |= 2u << d;
        }
}

void dataio_shard_read_packed(dataio_shard *r, long i, dataio_packed *out)
{
    dataio_shard_read_packed_parts(r, i, DATAIO_PART_ALL, out);
}

int dataio_packed_check(const dataio_packed *p, char *err, size_t errlen)
{
    for (int k = 0; k <= DATAIO_NDS; k++) {
        if (!(p->crc_have & (1u << k))) continue;
        const uint8_t *b = k ? p->chunk[k - 1] : p->jpeg;
        size_t n = k ? p->chunk_len[k - 1] : p->jpeg_len;
        uint32_t got = (uint32_t)crc32(0L, b, (uInt)n);
        if (got != p->crc[k]) {
            snprintf(err, errlen, "%s bytes fail their CRC-32 (stored %08x, computed %08x): corrupt shard",
                     k ? dataio_ds_names[k - 1] : "JPEG", p->crc[k], got);
            return -1;
        }
    }
    return 0;
}

int dataio_decode_crop(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen)
{
    img->rgb = NULL;
    if (len < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        snprintf(err, errlen, "crop is not a JPEG%s (shards hold JPEG crops only)",
                 len >= 4 && !memcmp(data, "\x89PNG", 4) ? " but a PNG" : "");
        return -1;
    }
    return dataio_image_decode_strict(data, len, img, err, errlen);
}

void dataio_unpack_sample(const dataio_packed *p, const dataio_shard_attrs *a, dataio_sample *s, const char *what)
{
    CHECK(s->size == a->input_size && s->grid_h == a->grid_h && s->grid_w == a->grid_w && s->max_persons >= p->npersons,
          "%s: sample buffer does not match the shard (use dataio_shard_sample_init)", what);
    size_t hw = (size_t)a->grid_h * a->grid_w;
    char cerr[300];
    CHECK(dataio_packed_check(p, cerr, sizeof cerr) == 0, "%s: %s", what, cerr);
    uint8_t *q = core_malloc(DATAIO_PAF_CH * hw);
    for (int d = 0; d < DATAIO_NDS; d++) {
        size_t n = dataio_ds_channels[d] * hw;
        const uint8_t *src = p->chunk[d];
        if (!p->raw[d]) {
            uLongf got = (uLongf)n;
            int zr = uncompress(q, &got, p->chunk[d], (uLong)p->chunk_len[d]);
            CHECK(zr == Z_OK && got == n, "%s: corrupt %s chunk (zlib %d, %lu of %zu bytes)", what, dataio_ds_names[d],
                  zr, (unsigned long)got, n);
            src = q;
        } else {
            CHECK(p->chunk_len[d] == n, "%s: %s has %zu bytes, expected %zu", what, dataio_ds_names[d], p->chunk_len[d], n);
        }
        float *dst = sample_plane_mut(s, d), sc = a->scale[d] > 0 ? a->scale[d] : dataio_ds_scale[d];
        if (ds_signed[d])
            for (size_t k = 0; k < n; k++) dst[k] = (float)(int8_t)src[k] * sc;
        else
            for (size_t k = 0; k < n; k++) dst[k] = (float)src[k] * sc;
    }
    free(q);
    dataio_image img;
    char err[300];
    CHECK(dataio_decode_crop(p->jpeg, p->jpeg_len, &img, err, sizeof err) == 0, "%s: %s", what, err);
    CHECK(img.width == s->size && img.height == s->size, "%s: crop is %dx%d, expected %dx%d", what, img.width,
          img.height, s->size, s->size);
    memcpy(s->rgb, img.rgb, (size_t)s->size * s->size * 3);
    dataio_image_free(&img);
    memset(s->keypoints, 0, sizeof(float) * s->max_persons * SKEL_NUM_KP * 3);
    memcpy(s->keypoints, p->keypoints, sizeof(float) * p->npersons * SKEL_NUM_KP * 3);
    s->meta = p->meta;
}

void dataio_shard_read(dataio_shard *r, long i, dataio_sample *s)
{
    dataio_packed p = {0};
    dataio_shard_read_packed(r, i, &p);
    char what[4200];
    snprintf(what, sizeof what, "shard '%s' sample %ld", r->path, i);
    dataio_unpack_sample(&p, &r->a, s, what);
    dataio_packed_free(&p);
}
