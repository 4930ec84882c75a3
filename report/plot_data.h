/* Data side of `sspose plot`: a run directory's metrics.jsonl read into
 * columns (one per numeric JSON leaf, named by its dotted path such as
 * "terms.stage2.heat"), its config.ini, and the panels and series a figure
 * draws from them. */
#ifndef SSPOSE_REPORT_PLOT_DATA_H
#define SSPOSE_REPORT_PLOT_DATA_H

#include "core/config.h"

enum { REPORT_PLOT_MISSING = 0, REPORT_PLOT_FINITE = 1, REPORT_PLOT_NONFINITE = 2 };

typedef struct report_plot_col {
    char *path;
    double *v;
    unsigned char *state; /* REPORT_PLOT_* per row */
} report_plot_col;

#define REPORT_PLOT_MAX_TERMS 16

typedef struct report_plot_run {
    char *dir;     /* as given, without trailing slashes */
    char *metrics; /* path of the metrics file */
    char *name;    /* shown in legends: the directory's name, or dir when names collide */
    char *label;   /* name plus the config values that differ between the runs */
    long nrows;
    long *step;
    int ncols, capcols;
    report_plot_col *cols;
    int nstages; /* highest N of terms.stageN */
    int nterms;
    char terms[REPORT_PLOT_MAX_TERMS][32]; /* term names, first seen first */
    /* read problems, reported by report_plot_run_warn */
    long malformed, first_malformed, duplicates;
    int partial_last;
    core_config_kv config; /* config.ini read leniently; config.n = 0 when absent */
    long config_steps; /* train.steps, -1 when unknown */
    int ndiff;
    char **diff; /* "key=value" of the differing keys, in config order */
} report_plot_run;

/* Reads RUNDIR/metrics.jsonl (or a .jsonl path) and RUNDIR/config.ini. A torn last
 * line (a run still being written) and malformed lines are counted, not fatal;
 * a missing, empty or wholly unusable file dies with one line. */
void report_plot_run_load(report_plot_run *r, const char *dir);
/* One warning line per kind of problem counted while reading. */
void report_plot_run_warn(const report_plot_run *r);
void report_plot_run_free(report_plot_run *r);
/* The column of a dotted path, NULL when the run never logged it. */
const report_plot_col *report_plot_run_col(const report_plot_run *r, const char *path);
/* Names the runs (directory names, disambiguated) and labels them with the
 * config values that differ between them (at most `max_keys` shown). */
void report_plot_runs_label(report_plot_run *runs, int n, int max_keys);

/* One curve: a quantity of one run. y is NAN where the logged value was
 * non-finite (null/NaN/Inf in the file); rows that lack the quantity are left out. */
typedef struct report_plot_series {
    int run, qty;
    long n;
    double *x, *y;
    double *raw; /* the unsmoothed y when smoothing, else NULL */
    long nonfinite;
} report_plot_series;

#define REPORT_PLOT_MAX_QTY 16
#define REPORT_PLOT_QTY_LEN 64

typedef struct report_plot_panel {
    char metric[256];
    char title[300];
    int log;
    int nqty;
    char qty[REPORT_PLOT_MAX_QTY][REPORT_PLOT_QTY_LEN];
    int nseries;
    report_plot_series *series;
    int log_dropped; /* asked for log, but no value was positive: drawn linear */
    long log_hidden; /* values <= 0 left out of the log scale */
} report_plot_panel;

typedef struct report_plot_select {
    int x_time;     /* 0: x = step, 1: x = training time (cumulative time.step) */
    double x_div;   /* seconds per x unit on a time axis (set by report_plot_panels) */
    char x_unit[8]; /* "step", "s", "min", "h" */
    int smooth;     /* moving-average window in logged points; <= 1: none */
    int log_mode;   /* -1: linear everywhere, 0: each panel's default, 1: log everywhere */
    long step_from, step_to; /* inclusive; -1: open */
} report_plot_select;

/* The metric names accepted besides metrics.jsonl keys, for --help and errors. */
extern const char report_plot_metric_help[];

/* Builds the panels of the comma-separated metric names in `metrics` (NULL or
 * empty list: the default set, leaving out panels no run has data for). Dies
 * with one line on an unknown name, or a named metric no run logged.
 * Returns the panel count; *out is malloc'd. */
int report_plot_panels(report_plot_run *runs, int nruns, const char *const *metrics, int nmetrics,
                        report_plot_select *sel, report_plot_panel **out);
void report_plot_panels_free(report_plot_panel *p, int n);

/* Centred moving average over a window of `w` points (made odd: w/2 on each
 * side), narrowed symmetrically near the ends and gaps, so it neither lags nor
 * bridges a gap. A gap is a non-finite value, or
 * on a log scale a value <= 0: it is copied as is. On a log scale the mean is
 * geometric, so straight lines of the plot stay straight. */
void report_plot_smooth(const double *y, double *out, long n, int w, int log);

#endif
