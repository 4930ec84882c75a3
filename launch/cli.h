/* Shared command-line plumbing for the `sspose <command>` entry points.
 * Each command lives in launch/cmd_<name>.c as `int cmd_<name>(int argc, char **argv)`
 * (argv[0] is the command name) and is listed in launch/main.c. */
#ifndef SSPOSE_LAUNCH_CLI_H
#define SSPOSE_LAUNCH_CLI_H

#include <getopt.h>

#include "core/config.h"

int cmd_synth(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);

/* getopt_long with errors turned into one fatal line naming the flag.
 * Returns the option's val, or -1 at the end. Prints `usage` and exits 0 on --help/-h
 * when the long options include "help" mapped to 'h'. */
int cli_getopt(int argc, char **argv, const struct option *opts, const char *usage);

/* Strict numeric flag parsing: fatal "bad value for --flag" otherwise. */
long cli_long(const char *flag, const char *value, long lo, long hi);
double cli_double(const char *flag, const char *value, double lo, double hi);

/* Collects --config / --set: applies the config file first, then the overrides in order. */
typedef struct {
    const char *config_path;
    const char *sets[64];
    int nsets;
} cli_config_args;
void cli_config_add_set(cli_config_args *a, const char *assignment);
void cli_config_build(const cli_config_args *a, core_config *cfg);

#endif
