/* Sweeps in `sspose plot`: the runs of a sweep directory (DIR/manifest.json of
 * `sspose sweep plan`) in the sweep's order, coloured by one swept key and
 * drawn in one line style per value of another, with a legend of the swept
 * values only; and the note that total losses of runs with different loss
 * weights do not compare. */
#ifndef SSPOSE_REPORT_PLOT_SWEEP_H
#define SSPOSE_REPORT_PLOT_SWEEP_H

#include <stddef.h>

#include "report/plot_data.h"
#include "sweep/sweep.h"

typedef struct report_plot_item {
    char text[256];
    int colour; /* colour group shown as a swatch, -1: none */
    int dash;   /* line style shown as a sample, -1: none */
} report_plot_item;

typedef struct report_plot_style {
    int ncolours;
    int sequential; /* one numeric colour key: a sequential colour map in its order */
    int *colour;    /* per run: colour group */
    int *dash;      /* per run: line style, -1 when no key sets it */
    int nitems;
    report_plot_item *items; /* the legend: colour groups, then line styles */
} report_plot_style;

/* When the arguments are one sweep directory, or run directories inside one,
 * fills *sw, sets *dirs to the run directories to read in the sweep's order
 * (runs without metrics.jsonl left out, with a warning unless quiet) and returns 1; else 0. */
int report_plot_sweep_expand(const char *const *args, int nargs, sweep *sw, char ***dirs, int *ndirs, int quiet);
void report_plot_sweep_style(const sweep *sw, const report_plot_run *runs, int nruns, report_plot_style *st);
void report_plot_style_free(report_plot_style *st);
/* The colour of a group (0..1 RGB). */
void report_plot_style_colour(const report_plot_style *st, int group, double rgb[3]);

/* A note when runs logged different loss weights (or their configs differ in
 * one), since their total losses then weigh the same terms differently;
 * out[0] = 0 otherwise. */
void report_plot_weights_note(const report_plot_run *runs, int n, char *out, size_t len);

#endif
