#include "model/pretrained.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/h5util.h"

const char *const model_vgg19_names[MODEL_VGG19_LAYERS] = {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1",
                                                           "conv3_2", "conv3_3", "conv3_4", "conv4_1", "conv4_2"};
const char *const model_vgg19_keras_names[MODEL_VGG19_LAYERS] = {
    "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
    "block3_conv2", "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2"};

/* Dies unless `name` (relative to loc) is a float32 dataset of exactly `dims`; then reads it. */
static void read_exact(hid_t loc, const char *name, const char *what, int ndim, const int64_t *dims, float *out,
                       const char *path)
{
    CHECK(H5Lexists(loc, name, H5P_DEFAULT) > 0, "backbone '%s': %s ('%s') is missing", path, what, name);
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    CHECK(ds >= 0, "backbone '%s': %s ('%s') is not a dataset", path, what, name);
    hid_t t = H5Dget_type(ds);
    H5_CHECK(t, "backbone '%s': cannot read the type of %s", path, what);
    int is_f32 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    int is_int = H5Tget_class(t) == H5T_INTEGER;
    size_t bytes = H5Tget_size(t);
    H5Tclose(t);
    H5Dclose(ds);
    CHECK(is_f32, "backbone '%s': %s ('%s') is %s of %zu bytes, expected float32", path, what, name,
          is_int ? "an integer" : "a non-float32 type", bytes);
    char err[400];
    CHECK(core_h5_read_f32(loc, name, ndim, dims, out, err, sizeof err) == 0, "backbone '%s': %s: %s", path, what, err);
}

/* A string-list attribute (fixed or variable length, as h5py and Keras write them). *n = 0 when absent. */
static char **read_str_list(hid_t obj, const char *attr, int *n, const char *path)
{
    *n = 0;
    if (H5Aexists(obj, attr) <= 0) return NULL;
    hid_t a = H5Aopen(obj, attr, H5P_DEFAULT);
    H5_CHECK(a, "backbone '%s': cannot open attribute %s", path, attr);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    CHECK(ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING, "backbone '%s': attribute %s is not a string list",
          path, attr);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    CHECK(cnt >= 0 && cnt < 100000, "backbone '%s': attribute %s has a bad size", path, attr);
    char **out = core_calloc((size_t)cnt + 1, sizeof *out);
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5_CHECK(H5Aread(a, mt, out), "backbone '%s': cannot read attribute %s", path, attr);
        for (hssize_t i = 0; i < cnt; i++) {
            char *s = core_strdup(out[i] ? out[i] : "");
            H5free_memory(out[i]);
            out[i] = s;
        }
        H5Tclose(mt);
    } else {
        /* the file's own string type, so that no pad conversion eats the last character */
        size_t len = H5Tget_size(ft);
        hid_t mt = H5Tcopy(ft);
        char *buf = core_calloc((size_t)cnt * len + 1, 1);
        H5_CHECK(H5Aread(a, mt, buf), "backbone '%s': cannot read attribute %s", path, attr);
        for (hssize_t i = 0; i < cnt; i++) {
            out[i] = core_calloc(len + 1, 1);
            memcpy(out[i], buf + (size_t)i * len, len);
        }
        free(buf);
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Sclose(sp);
    H5Aclose(a);
    *n = (int)cnt;
    return out;
}

static void free_list(char **l, int n)
{
    for (int i = 0; i < n; i++) free(l[i]);
    free(l);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Names of one Keras layer's kernel and bias datasets, relative to its group. */
static void keras_weight_names(hid_t g, const char *layer, char *kname, char *bname, size_t len, const char *path)
{
    int n;
    char **names = read_str_list(g, "weight_names", &n, path);
    kname[0] = bname[0] = 0;
    for (int i = 0; i < n; i++) {
        if (ends_with(names[i], "kernel:0") || strstr(names[i], "_W_") || strstr(names[i], "_W:")) {
            CHECK(!kname[0], "backbone '%s': layer %s lists two kernels ('%s', '%s')", path, layer, kname, names[i]);
            snprintf(kname, len, "%s", names[i]);
        } else if (ends_with(names[i], "bias:0") || strstr(names[i], "_b_") || strstr(names[i], "_b:")) {
            CHECK(!bname[0], "backbone '%s': layer %s lists two biases ('%s', '%s')", path, layer, bname, names[i]);
            snprintf(bname, len, "%s", names[i]);
        }
    }
    CHECK(!n || (kname[0] && bname[0]), "backbone '%s': layer %s's weight_names lack a kernel or a bias", path, layer);
    free_list(names, n);
    if (n) return;
    /* no weight_names: try both spellings Keras has used */
    char a[200], b[200];
    snprintf(a, sizeof a, "%s/kernel:0", layer);
    snprintf(b, sizeof b, "%s_W_1:0", layer);
    snprintf(kname, len, "%s", H5Lexists(g, b, H5P_DEFAULT) > 0 ? b : a);
    snprintf(a, sizeof a, "%s/bias:0", layer);
    snprintf(b, sizeof b, "%s_b_1:0", layer);
    snprintf(bname, len, "%s", H5Lexists(g, b, H5P_DEFAULT) > 0 ? b : a);
}

/* Keras: HWIO kernels, transposed to [O,I,kh,kw]. */
static void load_keras(hid_t f, model_net *net, float *host, const char *path)
{
    hid_t root = f;
    if (H5Lexists(f, "model_weights", H5P_DEFAULT) > 0) root = H5Gopen2(f, "model_weights", H5P_DEFAULT);
    H5_CHECK(root, "backbone '%s': cannot open /model_weights", path);
    for (int l = 0; l < MODEL_VGG19_LAYERS; l++) {
        const char *layer = model_vgg19_keras_names[l];
        CHECK(H5Lexists(root, layer, H5P_DEFAULT) > 0,
              "backbone '%s': Keras layer %s is missing (not a VGG-19 weights file?)", path, layer);
        hid_t g = H5Gopen2(root, layer, H5P_DEFAULT);
        CHECK(g >= 0, "backbone '%s': %s is not a group", path, layer);
        char kname[256], bname[256], what[300];
        keras_weight_names(g, layer, kname, bname, sizeof kname, path);
        char wn[64], bn[64];
        snprintf(wn, sizeof wn, "%s/weight", model_vgg19_names[l]);
        snprintf(bn, sizeof bn, "%s/bias", model_vgg19_names[l]);
        const model_param *pw = model_param_find(net, wn), *pb = model_param_find(net, bn);
        CHECK(pw && pb, "the network has no %s", model_vgg19_names[l]);
        const int O = pw->shape[0], I = pw->shape[1], K = pw->shape[2];
        int64_t kd[4] = {K, K, I, O}, bd[1] = {O};
        float *hwio = core_malloc((size_t)K * K * I * O * sizeof(float));
        snprintf(what, sizeof what, "the kernel of %s", layer);
        read_exact(g, kname, what, 4, kd, hwio, path);
        for (int o = 0; o < O; o++)
            for (int i = 0; i < I; i++)
                for (int y = 0; y < K; y++)
                    for (int x = 0; x < K; x++)
                        host[pw->offset + (((size_t)o * I + i) * K + y) * K + x] = hwio[(((size_t)y * K + x) * I + i) * O + o];
        free(hwio);
        snprintf(what, sizeof what, "the bias of %s", layer);
        read_exact(g, bname, what, 1, bd, host + pb->offset, path);
        H5Gclose(g);
    }
    if (root != f) H5Gclose(root);
}

static void load_sspose(hid_t f, model_net *net, float *host, const char *path)
{
    int64_t version = 0;
    CHECK(core_h5_attr_read_i64(f, "version", &version) == 0 && version == MODEL_BACKBONE_VERSION,
          "backbone '%s' has version %lld, this build reads version %d", path, (long long)version,
          MODEL_BACKBONE_VERSION);
    for (int l = 0; l < MODEL_VGG19_LAYERS; l++)
        for (int b = 0; b < 2; b++) {
            char name[64], ds[80];
            snprintf(name, sizeof name, "%s/%s", model_vgg19_names[l], b ? "bias" : "weight");
            snprintf(ds, sizeof ds, "/params/%s", name);
            const model_param *p = model_param_find(net, name);
            CHECK(p, "the network has no %s", name);
            int64_t d[4];
            for (int i = 0; i < p->ndim; i++) d[i] = p->shape[i];
            read_exact(f, ds, name, p->ndim, d, host + p->offset, path);
        }
}

core_input_norm model_load_vgg19(model_net *net, const char *path)
{
    const core_config *cfg = model_config(net);
    CHECK(cfg->model.width == 1.0, "VGG-19 weights need model.width = 1, the config has %g", cfg->model.width);
    core_h5_quiet();
    CHECK(access(path, R_OK) == 0, "backbone '%s' does not exist or is not readable", path);
    core_h5_lock();
    CHECK(H5Fis_hdf5(path) > 0, "backbone '%s' is not an HDF5 file (convert a .pth with tools/convert.py vgg19)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open backbone '%s' (corrupt?)", path);
    float *host = core_calloc(model_num_floats(net), sizeof(float));
    model_params_to_host(net, host);
    core_input_norm norm = CORE_NORM_CAFFE;
    char *fmt = core_h5_attr_read_str(f, "format");
    if (fmt && !strcmp(fmt, MODEL_BACKBONE_FORMAT)) {
        char *n = core_h5_attr_read_str(f, "input_norm");
        int found = -1;
        for (int i = 0; n && i < CORE_NUM_INPUT_NORMS; i++)
            if (!strcmp(n, core_input_norm_names[i])) found = i;
        CHECK(found >= 0, "backbone '%s': input_norm attribute '%s' is not one of centered, imagenet, caffe, cmu", path,
              n ? n : "(missing)");
        free(n);
        norm = (core_input_norm)found;
        load_sspose(f, net, host, path);
    } else {
        CHECK(!fmt, "backbone '%s' has format '%s', expected '%s' or a Keras weights file", path, fmt, MODEL_BACKBONE_FORMAT);
        CHECK(H5Aexists(f, "layer_names") > 0 || H5Lexists(f, "model_weights", H5P_DEFAULT) > 0,
              "backbone '%s' is neither a tools/convert.py vgg19 file (format attribute) nor Keras weights "
              "(layer_names attribute)", path);
        load_keras(f, net, host, path);
    }
    free(fmt);
    H5_CHECK(H5Fclose(f), "cannot close backbone '%s'", path);
    core_h5_unlock();
    for (size_t i = 0; i < model_num_floats(net); i++)
        CHECK(host[i] - host[i] == 0, "backbone '%s' holds non-finite weights", path);
    model_params_from_host(net, host);
    free(host);
    return norm;
}
