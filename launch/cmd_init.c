/* sspose init: a fresh checkpoint (He init from train.seed, zero momentum, step 0),
 * optionally with an ImageNet VGG-19 front end (model/pretrained.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/fileid.h"
#include "launch/cli.h"
#include "model/checkpoint.h"
#include "model/pretrained.h"

static const char USAGE[] =
    "usage: sspose init --config CFG --out CK.h5 [--backbone VGG.h5] [--set section.key=value ...] [--seed N]\n"
    "  Writes a fresh checkpoint: parameters He-initialised from train.seed (or --seed),\n"
    "  zero momentum, step 0, and the resolved config in the `config` attribute.\n"
    "  --backbone  ImageNet VGG-19 weights for conv1_1 ... conv4_2 (model.width = 1): the file of\n"
    "              tools/convert.py vgg19 (torchvision) or Keras' vgg19_weights_tf_dim_ordering_tf_\n"
    "              kernels_notop.h5. model.input_norm must be what the weights expect (imagenet for\n"
    "              torchvision, caffe for Keras); see docs/coco.md.\n";

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
                                         {"set", required_argument, 0, 's'},    {"seed", required_argument, 0, 'S'},
                                         {"backbone", required_argument, 0, 'b'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_config_args ca = {0};
    const char *out = NULL, *seed = NULL, *backbone = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ca.config_path = optarg; break;
        case 'o': out = optarg; break;
        case 's': cli_config_add_set(&ca, optarg); break;
        case 'S': seed = optarg; break;
        case 'b': backbone = optarg; break;
        }
    }
    CHECK(optind == argc, "init: unexpected argument '%s'", argv[optind]);
    CHECK(out, "init: --out CK.h5 is required (see 'sspose init --help')");
    core_config cfg;
    cli_config_build(&ca, &cfg);
    /* after the build, so a bad --set is named first; the defaults alone are never meant */
    CHECK(ca.config_path, "init: --config CFG is required (e.g. configs/baseline.ini; see 'sspose init --help')");
    core_refuse_input_output("init", "--out", out, (const char *const[]){ca.config_path, backbone},
                             (const char *const[]){"--config", "--backbone"}, 2);
    if (seed) cfg.train.seed = (int)cli_long("--seed", seed, 0, 2147483647L);
    core_backend *be = core_cpu_backend_create(0);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, (uint64_t)cfg.train.seed);
    if (backbone) {
        core_input_norm want = model_load_vgg19(net, backbone);
        CHECK(want == cfg.model.input_norm,
              "init: the weights of %s expect model.input_norm = %s, the config has %s (add --set model.input_norm=%s)",
              backbone, core_input_norm_names[want], core_input_norm_names[cfg.model.input_norm],
              core_input_norm_names[want]);
    }
    char *text = core_config_text(&cfg);
    model_ckpt_save(out, net, NULL, 0, text, NULL, NULL);
    core_info("wrote %s: %d tensors, %zu parameters%s%s", out, model_param_count(net), model_num_weights(net),
              backbone ? ", conv1_1 ... conv4_2 from " : "", backbone ? backbone : "");
    free(text);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
