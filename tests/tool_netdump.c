/* Test tool: runs the network of a checkpoint on an input and writes its outputs
 * and the parameter gradients of the objective L = sum_s sum_o sum(r_s,o * output_s,o).
 *   tool_netdump CK.h5 IN.h5 OUT.h5 [train|eval]
 * IN.h5 holds /input [N,3,H,W] and /r/stage{t}/{paf,heat,offset,p2h,h2p} shaped like the outputs.
 * OUT.h5 gets /outputs/stage{t}/<out>, /grads/<param name> and /buffers/<buffer name> (batch
 * norm's running statistics after the forward pass). The mode is the model's (default train).
 * Used by test_torch_crosscheck.py and test_bn_torch.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/h5util.h"
#include "model/checkpoint.h"

int main(int argc, char **argv)
{
    CHECK(argc == 4 || (argc == 5 && (!strcmp(argv[4], "train") || !strcmp(argv[4], "eval"))),
          "usage: tool_netdump CK.h5 IN.h5 OUT.h5 [train|eval]");
    core_h5_quiet();
    char *text = model_ckpt_read_config(argv[1]);
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_parse_text(&cfg, text, argv[1]);
    core_backend *be = core_cpu_backend_create(0);
    model_net *net = model_create(&cfg, be);
    model_ckpt_load(argv[1], net, NULL, NULL, NULL, NULL);
    model_set_train(net, argc == 4 || !strcmp(argv[4], "train"));

    hid_t in = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(in >= 0, "cannot open %s", argv[2]);
    hid_t ds = H5Dopen2(in, "/input", H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hsize_t d[4];
    CHECK(H5Sget_simple_extent_ndims(sp) == 4, "/input must be [N,3,H,W]");
    H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    H5Dclose(ds);
    model_set_input_shape(net, (int)d[0], (int)d[2], (int)d[3]);
    char err[512];
    int64_t id[4] = {(int64_t)d[0], 3, (int64_t)d[2], (int64_t)d[3]};
    CHECK(core_h5_read_f32(in, "/input", 4, id, model_input(net), err, sizeof err) == 0, "%s", err);
    model_forward(net, 1);

    char tmp[600];
    hid_t out = core_h5_create_tmp(argv[3], tmp, sizeof tmp);
    for (int s = 0; s < cfg.model.stages; s++)
        for (int o = 0; o < MODEL_NUM_OUT; o++) {
            core_tensor t = model_output(net, s, o);
            if (!t.data) continue;
            char path[128];
            int64_t od[4] = {t.n, t.c, t.h, t.w};
            snprintf(path, sizeof path, "/outputs/stage%d/%s", s + 1, model_out_names[o]);
            core_h5_write_f32(out, path, 4, od, t.data);
            snprintf(path, sizeof path, "/r/stage%d/%s", s + 1, model_out_names[o]);
            core_tensor g = model_output_grad(net, s, o);
            CHECK(core_h5_read_f32(in, path, 4, od, g.data, err, sizeof err) == 0, "%s", err);
        }
    for (int i = 0; i < model_buf_count(net); i++) {
        const model_param *p = model_buf_at(net, i);
        char path[128];
        int64_t pd[1] = {(int64_t)p->numel};
        snprintf(path, sizeof path, "/buffers/%s", p->name);
        core_h5_write_f32(out, path, 1, pd, model_params(net) + p->offset);
    }
    model_zero_grads(net);
    model_backward(net);
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        char path[128];
        int64_t pd[4] = {p->shape[0], p->shape[1], p->shape[2], p->shape[3]};
        snprintf(path, sizeof path, "/grads/%s", p->name);
        core_h5_write_f32(out, path, p->ndim, pd, model_grads(net) + p->offset);
    }
    core_h5_commit(out, tmp, argv[3]);
    H5Fclose(in);
    free(text);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
