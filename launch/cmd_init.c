/* sspose init: a fresh checkpoint (He init from train.seed, zero momentum, step 0). */
#include <stdio.h>
#include <stdlib.h>

#include "core/check.h"
#include "core/fileid.h"
#include "launch/cli.h"
#include "model/checkpoint.h"

static const char USAGE[] =
    "usage: sspose init --config CFG --out CK.h5 [--set section.key=value ...] [--seed N]\n"
    "  Writes a fresh checkpoint: parameters He-initialised from train.seed (or --seed),\n"
    "  zero momentum, step 0, and the resolved config in the `config` attribute.\n";

int cmd_init(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
                                         {"set", required_argument, 0, 's'},    {"seed", required_argument, 0, 'S'},
                                         {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    cli_config_args ca = {0};
    const char *out = NULL, *seed = NULL;
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ca.config_path = optarg; break;
        case 'o': out = optarg; break;
        case 's': cli_config_add_set(&ca, optarg); break;
        case 'S': seed = optarg; break;
        }
    }
    CHECK(optind == argc, "init: unexpected argument '%s'", argv[optind]);
    CHECK(out, "init: --out CK.h5 is required (see 'sspose init --help')");
    core_config cfg;
    cli_config_build(&ca, &cfg);
    /* after the build, so a bad --set is named first; the defaults alone are never meant */
    CHECK(ca.config_path, "init: --config CFG is required (e.g. configs/baseline.ini; see 'sspose init --help')");
    core_refuse_input_output("init", "--out", out, (const char *const[]){ca.config_path}, (const char *const[]){"--config"}, 1);
    if (seed) cfg.train.seed = (int)cli_long("--seed", seed, 0, 2147483647L);
    core_backend *be = core_cpu_backend_create(0);
    model_net *net = model_create(&cfg, be);
    model_init_params(net, (uint64_t)cfg.train.seed);
    char *text = core_config_text(&cfg);
    model_ckpt_save(out, net, NULL, 0, text, NULL, NULL);
    core_info("wrote %s: %d tensors, %zu parameters", out, model_param_count(net), model_num_weights(net));
    free(text);
    model_destroy(net);
    core_backend_destroy(be);
    return 0;
}
