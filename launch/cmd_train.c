/* sspose train: data-parallel training under mpirun/srun, or alone as one rank. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/check.h"
#include "launch/cli.h"
#include "trainer/train.h"

static const char USAGE[] =
    "usage: sspose train --config CFG --out RUNDIR [--set section.key=value ...] [--resume] [--init CK.h5]\n"
    "       mpirun -np N sspose train ...     (or srun; one rank per GPU, or per CPU socket)\n"
    "  Trains on the shards of data.train (a glob) for train.steps steps; train.batch is per rank.\n"
    "  RUNDIR receives config.ini (the resolved config), metrics.jsonl and checkpoints\n"
    "  ckpt-<step>.h5 every train.checkpoint_every steps and at the end (the newest train.keep kept).\n"
    "  --resume     continue from the newest readable checkpoint in RUNDIR (falling back past broken\n"
    "               ones); without --config it reads RUNDIR/config.ini. With no checkpoint yet it starts\n"
    "               from scratch, so requeued jobs can always pass it.\n"
    "  --init CK   a fresh run (nothing to resume) starts from CK's weights instead of the seed's init\n"
    "              (pretrained: sspose init --backbone, tools/convert.py openpose); docs/coco.md.\n"
    "  SIGTERM or SIGUSR1 on any rank: every rank finishes the step, a checkpoint is written, exit 0.\n"
    "  See docs/training.md.\n";

int cmd_train(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
                                         {"set", required_argument, 0, 's'},    {"resume", no_argument, 0, 'r'},
                                         {"init", required_argument, 0, 'i'},  {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    cli_config_args ca = {0};
    const char *out = NULL, *init = NULL;
    int resume = 0, c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ca.config_path = optarg; break;
        case 'o': out = optarg; break;
        case 's': cli_config_add_set(&ca, optarg); break;
        case 'r': resume = 1; break;
        case 'i': init = optarg; break;
        }
    }
    CHECK(optind == argc, "train: unexpected argument '%s'", argv[optind]);
    CHECK(out && *out, "train: --out RUNDIR is required (see 'sspose train --help')");
    char saved[4200];
    snprintf(saved, sizeof saved, "%s/config.ini", out);
    if (!ca.config_path && resume && access(saved, R_OK) == 0) ca.config_path = saved;
    CHECK(ca.config_path, "train: --config CFG is required%s (see 'sspose train --help')",
          resume ? " (RUNDIR/config.ini does not exist yet)" : "");

    /* Flags and config are checked before MPI starts, so a typo costs one line. */
    core_config cfg;
    cli_config_build(&ca, &cfg);
    core_config_resolve(&cfg);
    CHECK(cfg.data.train[0], "train: data.train (the shard glob) is not set; add it to the config or --set data.train=GLOB");
    if (init) CHECK(access(init, R_OK) == 0, "train: --init checkpoint '%s' does not exist or is not readable", init);

    comm_set_device(cfg.comm.device); /* the GPU is chosen before MPI starts */
    comm_init(&argc, &argv);
    if (comm_rank() != 0) core_set_quiet(1);
    int rc = trainer_run_init(&cfg, out, resume, init);
    comm_finalize();
    return rc;
}
