/* report/plot_axis and the smoothing of report/plot_data: ticks at round
 * values, labels, log scales, and the moving average, without drawing. */
#include <math.h>
#include <string.h>

#include "tests/test.h"
#include "report/plot_axis.h"
#include "report/plot_data.h"

static void test_nice_step(void)
{
    T_NEAR(report_plot_nice_step(0.7), 1, 1e-12, 0);
    T_NEAR(report_plot_nice_step(1.5), 2, 1e-12, 0);
    T_NEAR(report_plot_nice_step(2.2), 2.5, 1e-12, 0);
    T_NEAR(report_plot_nice_step(3), 5, 1e-12, 0);
    T_NEAR(report_plot_nice_step(7), 10, 1e-12, 0);
    T_NEAR(report_plot_nice_step(0.013), 0.02, 1e-12, 0);
    T_NEAR(report_plot_nice_step(40000), 50000, 1e-12, 0);
    T_NEAR(report_plot_nice_step(2), 2, 1e-12, 0); /* exact round values stay */
}

static void check_labels(const double *v, int n, double step, const char *const *want)
{
    char out[16][REPORT_PLOT_LABEL];
    report_plot_format_ticks(v, n, step, out);
    for (int i = 0; i < n; i++) T_CHECKF(!strcmp(out[i], want[i]), "label of %g is '%s', want '%s'", v[i], out[i], want[i]);
}

static void test_labels(void)
{
    check_labels((double[]){0, 0.5, 1, 1.5}, 4, 0.5, (const char *[]){"0", "0.5", "1.0", "1.5"});
    check_labels((double[]){0, 2.5, 5, 7.5}, 4, 2.5, (const char *[]){"0", "2.5", "5.0", "7.5"});
    check_labels((double[]){100, 200, 300}, 3, 100, (const char *[]){"100", "200", "300"});
    check_labels((double[]){-0.2, 0, 0.2}, 3, 0.2, (const char *[]){"-0.2", "0", "0.2"});
    check_labels((double[]){1e-5, 2e-5, 3e-5}, 3, 1e-5, (const char *[]){"1e-5", "2e-5", "3e-5"});
    check_labels((double[]){2.5e-6, 5e-6}, 2, 2.5e-6, (const char *[]){"2.5e-6", "5.0e-6"});
    check_labels((double[]){1e6, 2e6}, 2, 1e6, (const char *[]){"1e6", "2e6"});
    check_labels((double[]){250000, 500000}, 2, 250000, (const char *[]){"250000", "500000"});
}

/* ticks inside the range, evenly spaced, with distinct labels */
static void check_linear(double lo, double hi, int target)
{
    report_plot_axis a;
    report_plot_axis_range(&a, lo, hi, 0, 0);
    report_plot_axis_ticks(&a, target);
    T_CHECKF(a.nticks >= 2 && a.nticks <= target + 2, "[%g, %g]: %d ticks for a target of %d", lo, hi, a.nticks, target);
    double step = a.nticks > 1 ? a.ticks[1] - a.ticks[0] : 0;
    T_CHECKF(fabs(report_plot_nice_step(step) - step) <= 1e-9 * step, "[%g, %g]: step %g is not round", lo, hi, step);
    for (int i = 0; i < a.nticks; i++) {
        T_CHECKF(a.ticks[i] >= a.lo - 1e-9 * step && a.ticks[i] <= a.hi + 1e-9 * step, "tick %g outside [%g, %g]",
                 a.ticks[i], a.lo, a.hi);
        T_CHECKF(fabs(a.ticks[i] / step - round(a.ticks[i] / step)) < 1e-6, "tick %g not a multiple of %g", a.ticks[i],
                 step);
        if (i) T_CHECKF(fabs(a.ticks[i] - a.ticks[i - 1] - step) <= 1e-9 * step, "uneven ticks at %g", a.ticks[i]);
        for (int j = 0; j < i; j++) T_CHECKF(strcmp(a.labels[i], a.labels[j]), "two ticks labelled '%s'", a.labels[i]);
    }
}

static void test_linear_ticks(void)
{
    report_plot_axis a;
    report_plot_axis_range(&a, 0, 1, 0, 0);
    report_plot_axis_ticks(&a, 5);
    T_CHECKF(a.nticks == 6, "%d ticks on [0, 1]", a.nticks);
    T_NEAR(a.ticks[3], 0.6, 0, 1e-15);
    T_CHECK(!strcmp(a.labels[0], "0") && !strcmp(a.labels[3], "0.6"));
    check_linear(0, 1, 5);
    check_linear(-3.7e-5, 1.2e-4, 6);
    check_linear(17.02, 17.99, 6);
    check_linear(10, 300, 7);
    check_linear(1e9, 3e9, 4);
    check_linear(-1, 1e-12, 5);
    /* steps: whole numbers only, never 2.5 */
    report_plot_axis_range(&a, 2, 10, 0, 0);
    a.integer = 1;
    report_plot_axis_ticks(&a, 4);
    for (int i = 0; i < a.nticks; i++) T_CHECKF(a.ticks[i] == round(a.ticks[i]), "step tick %g", a.ticks[i]);
    report_plot_axis_range(&a, 1, 3, 0, 0);
    a.integer = 1;
    report_plot_axis_ticks(&a, 8);
    T_CHECKF(a.nticks == 3, "%d whole-number ticks on [1, 3]", a.nticks);
}

static void test_log_ticks(void)
{
    report_plot_axis a;
    /* several decades: every decade labelled, 2..9 as grid lines */
    report_plot_axis_range(&a, 0.5, 2e4, 1, 0);
    report_plot_axis_ticks(&a, 6);
    const char *want[] = {"1", "10", "100", "1000", "10000"};
    T_CHECKF(a.nticks == 5, "%d decade ticks on [0.5, 2e4]", a.nticks);
    for (int i = 0; i < a.nticks && i < 5; i++) {
        T_NEAR(a.ticks[i], pow(10, i), 1e-12, 0);
        T_CHECKF(!strcmp(a.labels[i], want[i]), "decade label '%s', want '%s'", a.labels[i], want[i]);
    }
    int has3 = 0;
    for (int i = 0; i < a.nminor; i++) has3 |= fabs(a.minor[i] - 300) < 1e-9;
    T_CHECK(has3);
    /* many decades: every m-th decade, the count stays near the target */
    report_plot_axis_range(&a, 1e-12, 1e3, 1, 0);
    report_plot_axis_ticks(&a, 5);
    T_CHECKF(a.nticks >= 3 && a.nticks <= 6, "%d ticks over 15 decades", a.nticks);
    for (int i = 0; i < a.nticks; i++) {
        double k = log10(a.ticks[i]);
        T_CHECKF(fabs(k - round(k)) < 1e-9, "tick %g is not a power of ten", a.ticks[i]);
    }
    T_CHECK(!strcmp(a.labels[0], "1e-12"));
    /* within a decade: round linear values, all positive */
    report_plot_axis_range(&a, 6000, 16000, 1, 0);
    report_plot_axis_ticks(&a, 5);
    T_CHECKF(a.nticks >= 3, "%d ticks on [6000, 16000]", a.nticks);
    for (int i = 0; i < a.nticks; i++) T_CHECKF(a.ticks[i] >= 6000 && a.ticks[i] <= 16000, "tick %g", a.ticks[i]);
    /* about a decade: 1-2-5 */
    report_plot_axis_range(&a, 0.15, 1.8, 1, 0);
    report_plot_axis_ticks(&a, 5);
    T_CHECKF(a.nticks == 3 && fabs(a.ticks[0] - 0.2) < 1e-12 && fabs(a.ticks[1] - 0.5) < 1e-12 && a.ticks[2] == 1,
             "ticks on [0.15, 1.8]: %d", a.nticks);
    T_CHECK(!strcmp(a.labels[0], "0.2") && !strcmp(a.labels[2], "1"));
}

static void test_range_and_frac(void)
{
    report_plot_axis a;
    report_plot_axis_range(&a, 1e-5, 1e-5, 1, 0.05); /* constant on a log axis */
    T_CHECK(a.lo < 1e-5 && a.hi > 1e-5 && a.lo > 0);
    T_NEAR(report_plot_axis_frac(&a, 1e-5), 0.5, 1e-9, 0);
    report_plot_axis_range(&a, 0, 0, 0, 0);
    T_CHECK(a.lo < 0 && a.hi > 0);
    report_plot_axis_range(&a, 1e-5, 1e-5 * (1 + 1e-13), 0, 0); /* rounding noise: shown as a constant */
    T_CHECK(a.lo < 0.95e-5 && a.hi > 1.05e-5);
    report_plot_axis_range(&a, NAN, NAN, 0, 0); /* no data */
    T_CHECK(a.lo == 0 && a.hi == 1);
    report_plot_axis_range(&a, 0, 5, 1, 0); /* zero on a log axis: the caller filters, the axis stays sane */
    T_CHECK(a.lo > 0 && a.hi > a.lo);
    report_plot_axis_range(&a, 10, 1000, 1, 0.1);
    T_NEAR(a.lo, pow(10, 1 - 0.2), 1e-12, 0);
    T_NEAR(report_plot_axis_frac(&a, 100), 0.5, 1e-12, 0);
    report_plot_axis_range(&a, -2, 6, 0, 0);
    T_NEAR(report_plot_axis_frac(&a, 0), 0.25, 1e-12, 0);
}

static void test_smooth(void)
{
    double line[9], out[9];
    for (int i = 0; i < 9; i++) line[i] = 3 + 2 * i;
    report_plot_smooth(line, out, 9, 5, 0);
    for (int i = 0; i < 9; i++) T_NEAR(out[i], line[i], 1e-12, 0); /* centred: a straight line stays, no lag */
    for (int i = 0; i < 9; i++) line[i] = 100 * pow(0.5, i);
    report_plot_smooth(line, out, 9, 4, 1);
    for (int i = 0; i < 9; i++) T_NEAR(out[i], line[i], 1e-12, 0); /* geometric on a log axis */
    double gap[7] = {1, 1, 1, NAN, 5, 5, 5};
    report_plot_smooth(gap, out, 7, 3, 0);
    T_CHECK(isnan(out[3]));
    T_NEAR(out[2], 1, 0, 1e-12); /* never averaged across the gap */
    T_NEAR(out[4], 5, 0, 1e-12);
    double zig[5] = {0, 3, 0, 3, 0};
    report_plot_smooth(zig, out, 5, 3, 0);
    T_NEAR(out[0], 0, 0, 1e-12); /* ends: the window narrows symmetrically to the point itself */
    T_NEAR(out[1], 1, 0, 1e-12);
    T_NEAR(out[2], 2, 0, 1e-12);
    T_NEAR(out[4], 0, 0, 1e-12);
    enum { LONG = 100000 };
    double *c = malloc(LONG * sizeof *c), *co = malloc(LONG * sizeof *co);
    for (int i = 0; i < LONG; i++) c[i] = 1e-5 * (i < LONG / 2 ? 1 : 1.0 / 3);
    report_plot_smooth(c, co, LONG, 50, 0);
    double worst = 0; /* a constant lr stays constant over a long run, not rounding noise */
    for (int i = 0; i < LONG; i++)
        if (i < LONG / 2 - 25 || i > LONG / 2 + 25) worst = fmax(worst, fabs(co[i] / c[i] - 1));
    T_CHECKF(worst < 1e-13, "relative drift %g", worst);
    for (int i = 0; i < LONG / 2 - 25; i++) T_CHECKF(co[i] == c[i], "first stretch not exact at %d", i);
    free(c);
    free(co);
    double neg[4] = {4, -1, 4, 4};
    report_plot_smooth(neg, out, 4, 3, 1); /* <= 0 is a gap on a log axis */
    T_NEAR(out[1], -1, 0, 0);
    T_NEAR(out[2], 4, 1e-12, 0);
}

int main(void)
{
    T_RUN(test_nice_step);
    T_RUN(test_labels);
    T_RUN(test_linear_ticks);
    T_RUN(test_log_ticks);
    T_RUN(test_range_and_frac);
    T_RUN(test_smooth);
    T_EXIT();
}
