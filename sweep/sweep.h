/* `sspose sweep`: a grid of config overrides over one base config, planned
 * into a sweep directory and run locally or as one SLURM job array
 * (docs/sweeps.md).
 *
 *   DIR/manifest.json        the grid, and per run its name, overrides and resolved config
 *   DIR/<run>/config.ini     the run's resolved config (what `sspose train --resume` reads)
 *   DIR/<run>/train.log      output of every attempt, appended
 *   DIR/<run>/exit           exit status of the last finished attempt (absent while running)
 *   DIR/slurm.json           the last `sweep submit`: job id and the run of each array task
 *
 * Run names are "<index>-<key><value>-...": the index (zero-padded) follows the
 * plan's order, in which numeric axes ascend, so listings sort numerically. */
#ifndef SSPOSE_SWEEP_SWEEP_H
#define SSPOSE_SWEEP_SWEEP_H

#define SWEEP_MAX_AXES 16

typedef struct sweep_axis {
    char *key;   /* full name, "loss.alpha" */
    char *short_name; /* shown in run names and tables: "alpha" (the full name when two axes share one) */
    int nvals;
    char **vals; /* as given, brackets removed; numeric axes ascending */
    int numeric;
} sweep_axis;

typedef struct sweep_run {
    char *name;
    int *at; /* index into each axis' values */
} sweep_run;

typedef struct sweep {
    char *dir;
    int naxes;
    sweep_axis axes[SWEEP_MAX_AXES];
    int nruns;
    sweep_run *runs;
    int ndependent;
    char **dependent; /* keys not swept whose resolved values differ between runs (loss.delta) */
} sweep;

typedef struct sweep_plan_opts {
    const char *config; /* base config file */
    const char *out;    /* sweep directory */
    const char *const *grids; /* "KEY=V1,V2,..." each */
    int ngrids;
    int seeds;          /* > 0: train.seed = base seed + 0..seeds-1, one more axis */
    const char *const *sets; /* "section.key=value" applied to every run */
    int nsets;
} sweep_plan_opts;

/* Parses a --grid value into an axis (values split at top-level commas; a
 * bracketed value keeps its commas). Dies with one line on an unknown key, an
 * empty list, a repeated value or unbalanced brackets. */
void sweep_axis_parse(sweep_axis *a, const char *grid);
/* The file-name-safe form of a value: [A-Za-z0-9.+-] kept, others become '_'. */
void sweep_value_slug(const char *value, char *out, unsigned long len);

/* Resolves every point, writes DIR/manifest.json and the run directories'
 * config.ini, prints the plan. Dies with one line on bad input. */
void sweep_plan(const sweep_plan_opts *o);

/* Reads DIR/manifest.json; `cmd` names the subcommand in the error when DIR is no sweep. */
void sweep_load(sweep *s, const char *dir, const char *cmd);
void sweep_free(sweep *s);
/* DIR/<run> of run i, malloc'd. */
char *sweep_run_dir(const sweep *s, int i);
/* The axis of a key given by full or short name, -1 when none. */
int sweep_axis_find(const sweep *s, const char *key);

enum { SWEEP_NOT_STARTED, SWEEP_PARTIAL, SWEEP_DONE, SWEEP_FAILED };

#define SWEEP_MAX_TERMS 16

typedef struct sweep_state {
    int status;
    long step;       /* last logged step (or newest checkpoint), 0 when none */
    long steps;      /* train.steps of the run's config */
    int exit_code;   /* of the last finished attempt; -1 when unknown */
    char error[512]; /* SWEEP_FAILED: the last error line of train.log */
    /* from metrics.jsonl (NAN when absent) */
    double final_loss, best_loss, best_val_ap, final_val_ap;
    int nterms;
    char term_names[SWEEP_MAX_TERMS][32];
    double terms[SWEEP_MAX_TERMS]; /* unweighted, last stage, last logged line */
} sweep_state;

/* Reads a run directory's state; with_metrics also scans metrics.jsonl for the summary. */
void sweep_state_read(const char *rundir, sweep_state *st, int with_metrics);
const char *sweep_status_name(int status);

/* `sweep run`: every unfinished run, `np` ranks each (under mpirun when np > 1,
 * the command taken from $SSPOSE_MPIRUN, default "mpirun"), `jobs` at a time.
 * Returns the number of runs that failed. */
int sweep_run_local(const sweep *s, int np, int jobs);
/* Whether prog (a path, or a name looked up in PATH) is an executable (mpirun, sbatch, squeue). */
int sweep_on_path(const char *prog);

/* `sweep submit`: the unfinished runs as one job array of `script`
 * (cluster/sweep.sbatch), at most max_running at once (0: no limit), with
 * extra sbatch options. Returns the job id (0 when nothing was left to run). */
long sweep_submit(const sweep *s, const char *script, int max_running, const char *const *sbatch_args, int nargs);

/* `sweep status`: one line per run, with squeue's state when a submitted array is known. */
void sweep_status_print(const sweep *s);

typedef struct sweep_summary_opts {
    const char *json, *csv; /* also write these files ("-": stdout) */
    const char *sort;       /* a column: a swept key, step, final_loss, best_loss, best_val_ap,
                               final_val_ap, status, run; "-" prefix: descending */
} sweep_summary_opts;
/* The Markdown table on stdout (unless a file goes to stdout), and the JSON/CSV files. */
void sweep_summary(const sweep *s, const sweep_summary_opts *o);

#endif
