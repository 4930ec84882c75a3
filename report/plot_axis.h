/* Axes of `sspose plot`: the shown range of a panel, its ticks at round
 * values and their labels, on a linear or a log10 scale. Pure arithmetic,
 * no drawing, so that tests can check it without looking at pixels. */
#ifndef SSPOSE_REPORT_PLOT_AXIS_H
#define SSPOSE_REPORT_PLOT_AXIS_H

#define REPORT_PLOT_MAX_TICKS 40
#define REPORT_PLOT_MAX_MINOR 200
#define REPORT_PLOT_LABEL 24

typedef struct report_plot_axis {
    double lo, hi; /* shown range, in data units (not logs); lo < hi, both > 0 on a log axis */
    int log;
    int integer; /* ticks only at whole numbers (steps): set before report_plot_axis_ticks */
    int nticks;
    double ticks[REPORT_PLOT_MAX_TICKS]; /* labelled, inside [lo, hi] */
    char labels[REPORT_PLOT_MAX_TICKS][REPORT_PLOT_LABEL];
    int nminor;
    double minor[REPORT_PLOT_MAX_MINOR]; /* unlabelled grid lines (log axes: 2..9 x 10^k) */
} report_plot_axis;

/* Sets lo/hi from the data extremes [vmin, vmax] (finite; > 0 when log), widened by
 * `margin` of the span on each side (in log10 units on a log axis). A zero span is
 * widened to a visible one. Clears the ticks. */
void report_plot_axis_range(report_plot_axis *a, double vmin, double vmax, int log, double margin);

/* Fills ticks, labels and minor lines, about `target` labelled ticks. */
void report_plot_axis_ticks(report_plot_axis *a, int target);

/* Position of v along the axis: 0 at lo, 1 at hi (outside [0,1] when v is outside). */
double report_plot_axis_frac(const report_plot_axis *a, double v);

/* The round step (1, 2, 2.5 or 5 times a power of ten) nearest above `raw` > 0. */
double report_plot_nice_step(double raw);

/* Labels for the n values, all with the same number of decimals, the fewest that
 * tell values `step` apart: plain decimals for moderate magnitudes, compact
 * scientific ("2.5e-6", "1e6") otherwise. */
void report_plot_format_ticks(const double *v, int n, double step, char (*out)[REPORT_PLOT_LABEL]);

#endif
