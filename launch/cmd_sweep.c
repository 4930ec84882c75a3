/* sspose sweep plan|run|submit|status|summary: flag parsing; the work is in sweep/. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/fileid.h"
#include "launch/cli.h"
#include "sweep/sweep.h"

static const char USAGE[] =
    "usage: sspose sweep plan --config CFG --out DIR --grid KEY=V1,V2,... [--grid ...] [--seeds N] [--set k=v ...]\n"
    "       sspose sweep run DIR [--np N] [--jobs J]\n"
    "       sspose sweep submit DIR [--max-running M] [--script FILE] [-- SBATCH-OPTIONS...]\n"
    "       sspose sweep status DIR\n"
    "       sspose sweep summary DIR [--json F] [--csv F] [--sort KEY]\n"
    "\n"
    "  plan     the cartesian product of the grids (seeds as one more axis): DIR/manifest.json with\n"
    "           each run's name, overrides and resolved config (dependent values such as loss.delta\n"
    "           included), and one run directory per point, named from its swept values\n"
    "           (NN-alpha5-gamma9: stable, file-name safe, numeric order). Values are comma-separated;\n"
    "           a value holding commas is bracketed: --grid 'loss.beta=uniform,[0,.05,.15,.31,.65,1]'\n"
    "  run      every unfinished run here, N ranks each (under $SSPOSE_MPIRUN, default mpirun, when\n"
    "           N > 1), J at a time; partial runs resume, finished ones are skipped\n"
    "  submit   the unfinished runs as one SLURM job array of cluster/sweep.sbatch (checkpoint and\n"
    "           requeue like train.sbatch); --max-running M: at most M tasks at once\n"
    "  status   per run: done, step k of n, failed (its last error line) or not started, and\n"
    "           squeue's pending/running state of a submitted array\n"
    "  summary  a Markdown table: swept values, steps, final and best loss, the unweighted last-stage\n"
    "           terms, best and final validation AP (when logged), status. --json F / --csv F also\n"
    "           write them ('-': stdout); --sort KEY by a swept key or step, final_loss, best_loss,\n"
    "           best_val_ap, final_val_ap, status ('-KEY': descending)\n"
    "See docs/sweeps.md.\n";

/* argv[0] becomes "sweep SUB" so that flag errors name the subcommand. */
static char **sub_argv(int argc, char **argv, const char *sub)
{
    char **a = core_calloc(argc + 1, sizeof *a);
    static char name[32];
    snprintf(name, sizeof name, "sweep %s", sub);
    a[0] = name;
    for (int i = 1; i < argc; i++) a[i] = argv[i];
    optind = 1;
    return a;
}

static int plan(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
                                         {"grid", required_argument, 0, 'g'},   {"seeds", required_argument, 0, 'n'},
                                         {"set", required_argument, 0, 's'},    {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    sweep_plan_opts o = {0};
    const char **grids = core_calloc(argc, sizeof *grids), **sets = core_calloc(argc, sizeof *sets);
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': o.config = optarg; break;
        case 'o': o.out = optarg; break;
        case 'g': grids[o.ngrids++] = optarg; break;
        case 'n': o.seeds = (int)cli_long("--seeds", optarg, 1, 10000); break;
        case 's': sets[o.nsets++] = optarg; break;
        }
    }
    CHECK(optind == argc, "sweep plan: unexpected argument '%s'", argv[optind]);
    o.grids = grids;
    o.sets = sets;
    sweep_plan(&o);
    free(grids);
    free(sets);
    return 0;
}

static const char *the_dir(int argc, char **argv, const char *sub)
{
    CHECK(optind < argc, "sweep %s: no sweep DIR given (see 'sspose sweep --help')", sub);
    return argv[optind];
}

static int run(int argc, char **argv)
{
    static const struct option opts[] = {{"np", required_argument, 0, 'n'}, {"jobs", required_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},     {0, 0, 0, 0}};
    int np = 1, jobs = 1, c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        if (c == 'n') np = (int)cli_long("--np", optarg, 1, 4096);
        if (c == 'j') jobs = (int)cli_long("--jobs", optarg, 1, 256);
    }
    const char *dir = the_dir(argc, argv, "run");
    CHECK(optind + 1 == argc, "sweep run: unexpected argument '%s'", argv[optind + 1]);
    sweep s;
    sweep_load(&s, dir, "run");
    int failed = sweep_run_local(&s, np, jobs);
    int n = s.nruns;
    sweep_free(&s);
    CHECK(failed == 0, "sweep run: %d of %d runs failed (see 'sspose sweep status %s')", failed, n, dir);
    return 0;
}

/* cluster/sweep.sbatch beside the binary's bin/ folder (the repository layout). */
static char *default_script(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0, "sweep submit: cannot find the sspose binary; give --script");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    char *path = core_malloc(strlen(exe) + 32);
    sprintf(path, "%s/../cluster/sweep.sbatch", exe);
    return path;
}

static int submit(int argc, char **argv)
{
    static const struct option opts[] = {{"max-running", required_argument, 0, 'm'},
                                         {"script", required_argument, 0, 'S'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    int max_running = 0, c;
    const char *script = NULL;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        if (c == 'm') max_running = (int)cli_long("--max-running", optarg, 1, 100000);
        if (c == 'S') script = optarg;
    }
    const char *dir = the_dir(argc, argv, "submit");
    for (int i = optind + 1; i < argc; i++)
        CHECK(argv[i][0] == '-', "sweep submit: unexpected argument '%s' (sbatch options go after '--')", argv[i]);
    char *owned = script ? NULL : default_script();
    sweep s;
    sweep_load(&s, dir, "submit");
    sweep_submit(&s, script ? script : owned, max_running, (const char *const *)argv + optind + 1, argc - optind - 1);
    sweep_free(&s);
    free(owned);
    return 0;
}

static int status(int argc, char **argv)
{
    static const struct option opts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    while (cli_getopt(argc, argv, opts, USAGE) != -1) {}
    const char *dir = the_dir(argc, argv, "status");
    CHECK(optind + 1 == argc, "sweep status: unexpected argument '%s'", argv[optind + 1]);
    sweep s;
    sweep_load(&s, dir, "status");
    sweep_status_print(&s);
    sweep_free(&s);
    return 0;
}

/* A summary file must not replace what the summary is read from: the
 * manifest or a run's metrics.jsonl/config.ini (same file by device and inode). */
static void refuse_overwriting_sweep(const sweep *s, const char *flag, const char *out)
{
    if (!out || !strcmp(out, "-")) return;
    char path[4200];
    snprintf(path, sizeof path, "%s/manifest.json", s->dir);
    core_refuse_input_output("sweep summary", flag, out, (const char *const[]){path}, (const char *const[]){"manifest"}, 1);
    for (int i = 0; i < s->nruns; i++) {
        char *dir = sweep_run_dir(s, i), m[4200], c[4200];
        snprintf(m, sizeof m, "%s/metrics.jsonl", dir);
        snprintf(c, sizeof c, "%s/config.ini", dir);
        core_refuse_input_output("sweep summary", flag, out, (const char *const[]){m, c},
                                 (const char *const[]){"run file", "run file"}, 2);
        free(dir);
    }
}

static int summary(int argc, char **argv)
{
    static const struct option opts[] = {{"json", required_argument, 0, 'j'}, {"csv", required_argument, 0, 'c'},
                                         {"sort", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    sweep_summary_opts o = {0};
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        if (c == 'j') o.json = optarg;
        if (c == 'c') o.csv = optarg;
        if (c == 's') o.sort = optarg;
    }
    const char *dir = the_dir(argc, argv, "summary");
    CHECK(optind + 1 == argc, "sweep summary: unexpected argument '%s'", argv[optind + 1]);
    CHECK(!(o.json && o.csv && !strcmp(o.json, "-") && !strcmp(o.csv, "-")),
          "sweep summary: --json - and --csv - cannot both go to stdout");
    sweep s;
    sweep_load(&s, dir, "summary");
    refuse_overwriting_sweep(&s, "--json", o.json);
    refuse_overwriting_sweep(&s, "--csv", o.csv);
    CHECK(!o.json || !o.csv || !strcmp(o.json, "-") || (strcmp(o.json, o.csv) && !core_same_file(o.json, o.csv)),
          "sweep summary: --json and --csv name the same file '%s'", o.json);
    sweep_summary(&s, &o);
    sweep_free(&s);
    return 0;
}

int cmd_sweep(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } SUBS[] = {{"plan", plan}, {"run", run}, {"submit", submit}, {"status", status}, {"summary", summary}};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof SUBS / sizeof SUBS[0]; i++)
        if (!strcmp(argv[1], SUBS[i].name)) {
            char **a = sub_argv(argc - 1, argv + 1, SUBS[i].name);
            int rc = SUBS[i].fn(argc - 1, a);
            free(a);
            return rc;
        }
    CORE_DIE("sweep: unknown subcommand '%s' (plan, run, submit, status or summary)", argv[1]);
}
