/* sspose forward: outputs, every loss term and (with --grads) all parameter
 * gradients of a checkpoint on shard samples taken as stored (no flip), in
 * HDF5 with the SPEC section 3/4 names, for checking against other
 * implementations (tests/test_loss_forward.py does so against PyTorch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda_backend.h"
#include "core/check.h"
#include "core/fileid.h"
#include "core/h5util.h"
#include "dataio/shard.h"
#include "launch/cli.h"
#include "loss/loss.h"
#include "loss/loss_h5.h"
#include "model/checkpoint.h"
#include "trainer/samples.h"

static const char USAGE[] =
    "usage: sspose forward --checkpoint CK.h5 --shard FILE.h5 --out OUT.h5\n"
    "                      [--index I] [--count N] [--grads] [--set section.key=value ...]\n"
    "  Runs samples I..I+N-1 of the shard (default I = 0, N = 1) as stored, without flip,\n"
    "  through the checkpoint's network and loss (config: the checkpoint's, then --set), and\n"
    "  writes /input, /outputs/stage{t}/{paf,heat,offset,p2h,h2p}, /loss/total,\n"
    "  /loss/stage{t}/{heat,paf,offset,ps,kl,hp,consistency} (the terms the config has) and,\n"
    "  with --grads, /grads/<param>/{weight,bias} and /output_grads/stage{t}/... .\n"
    "  Stages t are 1-based; the root attribute `indices` lists the samples. See docs/loss.md.\n";

static void attr_i64_array(hid_t obj, const char *name, const int64_t *v, int n)
{
    hsize_t d = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &d, NULL);
    H5_CHECK(sp, "HDF5: dataspace for attribute %s", name);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(a, "HDF5: cannot create attribute %s", name);
    H5_CHECK(H5Awrite(a, H5T_NATIVE_INT64, v), "HDF5: cannot write attribute %s", name);
    H5_CHECK(H5Aclose(a), "HDF5: close");
    H5_CHECK(H5Sclose(sp), "HDF5: close");
}

static void write_device_tensor(core_backend *be, hid_t f, const char *path, const core_tensor *t, float *host)
{
    size_t n = core_tensor_numel(t);
    be->download(be, host, t->data, n);
    int64_t dims[4] = {t->n, t->c, t->h, t->w};
    core_h5_write_f32(f, path, 4, dims, host);
}

int cmd_forward(int argc, char **argv)
{
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'k'}, {"shard", required_argument, 0, 'd'},
        {"index", required_argument, 0, 'i'},      {"count", required_argument, 0, 'n'},
        {"out", required_argument, 0, 'o'},        {"grads", no_argument, 0, 'g'},
        {"set", required_argument, 0, 's'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *ck = NULL, *shard_path = NULL, *out = NULL;
    const char *sets[64];
    int nsets = 0, grads = 0;
    long index = 0, count = 1;
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'k': ck = optarg; break;
        case 'd': shard_path = optarg; break;
        case 'i': index = cli_long("--index", optarg, 0, 1L << 40); break;
        case 'n': count = cli_long("--count", optarg, 1, 4096); break;
        case 'o': out = optarg; break;
        case 'g': grads = 1; break;
        case 's':
            CHECK(nsets < 64, "forward: too many --set options");
            sets[nsets++] = optarg;
            break;
        }
    }
    CHECK(optind == argc, "forward: unexpected argument '%s'", argv[optind]);
    CHECK(ck, "forward: --checkpoint CK.h5 is required (see 'sspose forward --help')");
    CHECK(shard_path, "forward: --shard FILE.h5 is required (see 'sspose forward --help')");
    CHECK(out, "forward: --out OUT.h5 is required (see 'sspose forward --help')");
    core_refuse_input_output("forward", "--out", out, (const char *const[]){ck, shard_path},
                             (const char *const[]){"--checkpoint", "--shard"}, 2);

    /* the checkpoint's own config, so the network matches its parameters; --set may change the loss */
    core_config cfg;
    core_config_defaults(&cfg);
    char *ck_text = model_ckpt_read_config(ck);
    core_config_parse_text(&cfg, ck_text, ck);
    free(ck_text);
    for (int i = 0; i < nsets; i++) core_config_set(&cfg, sets[i]);
    core_config_resolve(&cfg);

    dataio_shard *sh = dataio_shard_open(shard_path);
    const dataio_shard_attrs *sa = dataio_shard_info(sh);
    CHECK(index + count <= sa->count, "forward: samples %ld..%ld requested, shard '%s' has %ld", index,
          index + count - 1, shard_path, sa->count);
    CHECK(sa->stride == cfg.model.stride, "forward: shard '%s' has stride %d, the checkpoint's model.stride is %d",
          shard_path, sa->stride, cfg.model.stride);

    core_backend *be = core_backend_create(cfg.comm.device, 0, 0);
    core_cuda_set_math(be, cfg.comm.tf32, 1);
    core_cuda_set_workspace(be, (size_t)cfg.comm.cudnn_workspace_mb);
    model_net *net = model_create(&cfg, be);
    model_ckpt_load(ck, net, NULL, NULL, NULL, NULL);
    const int S = sa->input_size, N = (int)count;
    model_set_input_shape(net, N, S, S);
    int gh, gw;
    model_output_hw(net, &gh, &gw);
    CHECK(gh == sa->grid_h && gw == sa->grid_w, "forward: shard grid %dx%d differs from the network's %dx%d",
          sa->grid_h, sa->grid_w, gh, gw);

    trainer_samples ft;
    trainer_samples_load(sh, index, N, be, gh, gw, cfg.model.input_norm, model_input(net), &ft);
    dataio_shard_close(sh);

    loss_ctx *lc = loss_create(&cfg, be);
    loss_values v;
    model_forward(net, grads);
    loss_compute_net(lc, net, &ft.t, grads, &v);

    char tmp[4096];
    hid_t f = core_h5_create_tmp(out, tmp, sizeof tmp);
    core_h5_attr_str(f, "format", "sspose-forward");
    core_h5_attr_i64(f, "version", 1);
    core_h5_attr_str(f, "checkpoint", ck);
    core_h5_attr_str(f, "shard", shard_path);
    char *text = core_config_text(&cfg);
    core_h5_attr_str(f, "config", text);
    free(text);
    int64_t *idx = core_malloc((size_t)N * sizeof(int64_t));
    for (int i = 0; i < N; i++) idx[i] = index + i;
    attr_i64_array(f, "indices", idx, N);
    free(idx);

    /* one host buffer for every download: the input, any output (<= 64 channels), all gradients */
    size_t maxn = (size_t)N * 3 * S * S;
    if ((size_t)N * LOSS_MAX_CHANNELS * gh * gw > maxn) maxn = (size_t)N * LOSS_MAX_CHANNELS * gh * gw;
    if (model_num_floats(net) > maxn) maxn = model_num_floats(net);
    float *host = core_malloc(maxn * sizeof(float));
    core_tensor in = core_tensor_view(model_input(net), N, 3, S, S, be->dev);
    write_device_tensor(be, f, "/input", &in, host);
    char path[256];
    for (int s = 0; s < cfg.model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output(net, s, (model_out)o);
            if (!t.data) continue;
            snprintf(path, sizeof path, "/outputs/stage%d/%s", s + 1, model_out_names[o]);
            write_device_tensor(be, f, path, &t, host);
            if (grads) { /* the loss's own gradient d(total)/d(output) */
                core_tensor g = model_output_grad(net, s, (model_out)o);
                snprintf(path, sizeof path, "/output_grads/stage%d/%s", s + 1, model_out_names[o]);
                write_device_tensor(be, f, path, &g, host);
            }
        }
    loss_h5_write_values(f, &v);
    if (grads) {
        /* after the output gradients are recorded: backward adds what later stages send back */
        model_zero_grads(net);
        model_backward(net);
        be->download(be, host, model_grads(net), model_num_floats(net));
        for (int i = 0; i < model_param_count(net); i++) {
            const model_param *p = model_param_at(net, i);
            int64_t dims[4];
            for (int k = 0; k < p->ndim; k++) dims[k] = p->shape[k];
            snprintf(path, sizeof path, "/grads/%s", p->name);
            core_h5_write_f32(f, path, p->ndim, dims, host + p->offset);
        }
    }
    free(host);
    core_h5_commit(f, tmp, out);
    core_info("forward: %d sample(s) from %s, total loss %.9g -> %s", N, shard_path, v.total, out);

    trainer_samples_free(&ft);
    loss_destroy(lc);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
