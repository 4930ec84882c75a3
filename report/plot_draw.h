/* Layout and cairo drawing of a `sspose plot` figure: a title, a legend of
 * the runs, and a grid of panels sharing the x range. Units are PNG pixels
 * at scale 1 (points in SVG/PDF). */
#ifndef SSPOSE_REPORT_PLOT_DRAW_H
#define SSPOSE_REPORT_PLOT_DRAW_H

#include <cairo.h>

#include "report/plot_axis.h"
#include "report/plot_data.h"
#include "report/plot_sweep.h"

/* Line styles told apart: solid, dashed, dotted, ... */
#define REPORT_PLOT_NDASH 7

typedef struct report_plot_box {
    double x0, y0, x1, y1;
} report_plot_box;

typedef struct report_plot_figure {
    double width, height;
    int auto_height; /* layout sets height: the title and run legend plus the default panel height */
    char title[512];
    char x_label[32];
    int x_integer; /* x is the step: ticks at whole numbers */
    int cols, rows;
    const report_plot_run *runs;
    int nruns;
    report_plot_panel *panels;
    int npanels;
    report_plot_axis *x, *y; /* per panel; the x ranges are all the same */
    report_plot_box *cell, *plot, *legend; /* per panel; legend x1 == x0: none */
    int has_run_legend;
    report_plot_box run_legend;
    report_plot_box *entry; /* per run: its legend entry (a sweep: its colour's) */
    const report_plot_style *style; /* a sweep: colour and line style by swept key; NULL: a colour per run */
    report_plot_box *item;          /* per style item: its legend entry */
    char note[512];                 /* a line under the title, e.g. on totals across loss weights */
} report_plot_figure;

/* Default figure size for n panels in `cols` columns (0: automatic); sets *cols.
 * The height leaves out the run legend (auto_height adds it). */
void report_plot_default_size(int npanels, int *cols, double *w, double *h);

/* Lays the figure out on `cr` (for text sizes); fig->width/height/cols/title/x_label/
 * x_integer, runs and panels must be set. */
void report_plot_layout(report_plot_figure *fig, cairo_t *cr);
void report_plot_render(const report_plot_figure *fig, cairo_t *cr);
void report_plot_figure_free(report_plot_figure *fig);

/* The colour (0..1 RGB) and dash pattern index of a series. */
void report_plot_series_style(const report_plot_figure *fig, const report_plot_panel *p,
                               const report_plot_series *s, double rgb[3], int *dash);
void report_plot_run_colour(int run, int nruns, double rgb[3]);
/* The colour of a run in this figure (its sweep colour group's, or its own). */
void report_plot_fig_run_colour(const report_plot_figure *fig, int run, double rgb[3]);

#endif
