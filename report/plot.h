/* `sspose plot`: figures of training curves from run directories
 * (RUNDIR/metrics.jsonl, RUNDIR/config.ini; docs/plot.md). */
#ifndef SSPOSE_REPORT_PLOT_H
#define SSPOSE_REPORT_PLOT_H

enum { REPORT_PLOT_PNG = 1, REPORT_PLOT_SVG, REPORT_PLOT_PDF };

typedef struct report_plot_opts {
    const char *out;             /* .png, .svg or .pdf */
    const char *const *metrics;  /* comma-separated names each; none: the default panels */
    int nmetrics;
    int x_time;                  /* x = training time instead of step */
    int smooth;                  /* moving-average window in logged points (<= 1: none) */
    int log_mode;                /* -1 linear, 0 per panel, 1 log */
    long step_from, step_to;     /* inclusive step range, -1 = open */
    const char *title;           /* NULL: from the run names */
    int width, height;           /* figure size in pixels (PNG at scale 1); 0: from the panel count */
    int cols;                    /* panel columns; 0: automatic */
    double scale;                /* PNG pixels per unit (2 for high-DPI) */
    int label_keys;              /* differing config keys named per run in the legend */
    const char *dump_layout;     /* write panel boxes and axis ranges as JSON here ("-": stdout) */
} report_plot_opts;

void report_plot_opts_init(report_plot_opts *o);

/* REPORT_PLOT_PNG/SVG/PDF from the file name's extension; dies on another. */
int report_plot_format(const char *path);

/* Reads the runs, draws the figure and writes o->out (through a temporary name).
 * Bad input dies with one line; recoverable read problems are warnings.
 * Returns the number of panels drawn. */
int report_plot(const char *const *rundirs, int nruns, const report_plot_opts *o);
/* How many runs report_plot draws for these arguments (a sweep directory counts its started runs). */
int report_plot_count_runs(const char *const *rundirs, int nruns);

#endif
