/* sspose: one binary, one sub-command per job (SPEC section 7). */
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/h5util.h"
#include "launch/cli.h"

#define SSPOSE_VERSION "0.1.0"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} COMMANDS[] = {
    {"synth", cmd_synth, "write a synthetic COCO-format keypoint dataset"},
    {"data", cmd_data, "COCO keypoints JSON + images -> training shards"},
    {"init", cmd_init, "write a fresh checkpoint from a config"},
    {"train", cmd_train, "train under mpirun/srun or alone (data-parallel, resumable)"},
    {"plot", cmd_plot, "training curves of run directories as PNG/SVG/PDF (sweeps overlaid)"},
    {"sweep", cmd_sweep, "plan, run (locally or as a SLURM job array), watch and tabulate a grid of runs"},
    {"forward", cmd_forward, "outputs, losses and gradients of a checkpoint on shard samples"},
    {"eval", cmd_eval, "COCO keypoint AP of a results file (pycocotools numbers)"},
    {"infer", cmd_infer, "images -> keypoints JSON and skeleton overlay PNG"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: sspose <command> [options]   (sspose <command> --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].what);
    fprintf(out, "\n  --version  print the version and the backends built\n");
}

int main(int argc, char **argv)
{
    core_h5_quiet(); /* sspose reports HDF5 failures itself, in one line */
    if (argc < 2) CORE_DIE("no command given; one of synth, data, init, train, plot, forward, eval, infer (see 'sspose --help')");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("sspose %s\nbackends: %s\n", SSPOSE_VERSION, core_backends_built());
        return 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].fn(argc - 1, argv + 1);
    CORE_DIE("unknown command '%s' (see 'sspose --help')", argv[1]);
}
