/* Test tool: drives the trainer's optimizer (trainer/optim.c) over given
 * gradients so tests/test_train_optim.py can replay the same updates with
 * torch.optim.
 *   tool_optim STEPS OUTDIR [section.key=value ...]
 * The network of configs/tiny.ini (with the overrides) starts from train.seed;
 * step k's gradient is a fixed pseudo-random tensor per parameter, its scale
 * varying over six decades between tensors; each step uses the schedule's lr.
 * Writes OUTDIR/init.h5 and OUTDIR/final.h5 (checkpoints: /params, /optim/...)
 * and OUTDIR/grads.h5: /step<k>/<param> and /lr[k], with attributes lr_mult and
 * weight_decay on /step0/<param> (the optimizer's view of each tensor). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/h5util.h"
#include "core/rng.h"
#include "model/checkpoint.h"
#include "trainer/optim.h"
#include "trainer/schedule.h"

static void write_grads(hid_t f, model_net *net, const core_config *cfg, int k, const float *host)
{
    for (int i = 0; i < model_param_count(net); i++) {
        const model_param *p = model_param_at(net, i);
        char path[200];
        int64_t d[4];
        for (int j = 0; j < p->ndim; j++) d[j] = p->shape[j];
        snprintf(path, sizeof path, "/step%d/%s", k, p->name);
        core_h5_write_f32(f, path, p->ndim, d, host + p->offset);
        if (k) continue;
        hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
        H5_CHECK(ds, "cannot open %s", path);
        trainer_param_role role = trainer_optim_role(cfg, p);
        core_h5_attr_f64(ds, "lr_mult", trainer_lr_mult(cfg, p->group));
        core_h5_attr_f64(ds, "weight_decay", role.trainable ? role.weight_decay : -1);
        H5_CHECK(H5Dclose(ds), "cannot close %s", path);
    }
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3, "usage: tool_optim STEPS OUTDIR [section.key=value ...]");
    int steps = atoi(argv[1]);
    CHECK(steps >= 1 && steps <= 1000, "STEPS must be in [1, 1000]");
    core_h5_quiet();
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_load(&cfg, "configs/tiny.ini");
    for (int i = 3; i < argc; i++) core_config_set(&cfg, argv[i]);
    core_backend *be = core_cpu_backend_create(0);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, (uint64_t)cfg.train.seed);
    trainer_optim *opt = trainer_optim_create(&cfg, net);
    char *text = core_config_text(&cfg);
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/init.h5", argv[2]);
    model_ckpt_save(path, net, trainer_optim_state(opt), 0, text, NULL, NULL);

    size_t n = model_num_floats(net);
    float *g = core_calloc(n, sizeof(float));
    double *lrs = core_calloc((size_t)steps, sizeof(double));
    snprintf(path, sizeof path, "%s/grads.h5", argv[2]);
    hid_t f = core_h5_create_tmp(path, tmp, sizeof tmp);
    core_rng rng;
    core_rng_seed(&rng, 12345);
    for (int k = 0; k < steps; k++) {
        memset(g, 0, n * sizeof(float));
        for (int i = 0; i < model_param_count(net); i++) {
            const model_param *p = model_param_at(net, i);
            double scale = 1e-3 * pow(10.0, (double)(i % 6)); /* 1e-3 ... 1e2 */
            for (size_t j = 0; j < p->numel; j++) g[p->offset + j] = (float)(scale * core_rng_normal(&rng));
        }
        core_h5_lock();
        write_grads(f, net, &cfg, k, g);
        core_h5_unlock();
        be->upload(be, model_grads(net), g, n);
        lrs[k] = trainer_lr(&cfg, k);
        trainer_optim_step(opt, lrs[k], NULL);
    }
    core_h5_lock();
    hsize_t dims[1] = {(hsize_t)steps};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, "lr", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(ds, "cannot create /lr");
    H5_CHECK(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, lrs), "cannot write /lr");
    H5Dclose(ds);
    H5Sclose(sp);
    core_h5_unlock();
    core_h5_commit(f, tmp, path);
    snprintf(path, sizeof path, "%s/final.h5", argv[2]);
    model_ckpt_save(path, net, trainer_optim_state(opt), steps, text, NULL, NULL);
    free(g);
    free(lrs);
    free(text);
    trainer_optim_destroy(opt);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
