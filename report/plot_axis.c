#include "report/plot_axis.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

double report_plot_nice_step(double raw)
{
    if (!(raw > 0) || !isfinite(raw)) return 1;
    double e = floor(log10(raw)), p = pow(10, e), f = raw / p;
    static const double m[] = {1, 2, 2.5, 5, 10};
    for (int i = 0; i < 5; i++)
        if (f <= m[i] * (1 + 1e-9)) return m[i] * p;
    return 10 * p;
}

/* "2.50e-06" -> "2.50e-6", "1e+06" -> "1e6": the exponent's sign and zeros only cost width. */
static void compact_exponent(char *s)
{
    char *e = strchr(s, 'e');
    if (!e) return;
    char *src = e + 1, *dst = e + 1;
    if (*src == '+') src++;
    else if (*src == '-') *dst++ = *src++;
    while (*src == '0' && src[1]) src++;
    memmove(dst, src, strlen(src) + 1);
}

void report_plot_format_ticks(const double *v, int n, double step, char (*out)[REPORT_PLOT_LABEL])
{
    double maxabs = 0;
    for (int i = 0; i < n; i++) maxabs = fmax(maxabs, fabs(v[i]));
    if (!(step > 0) || !isfinite(step)) step = maxabs > 0 ? maxabs : 1;
    /* A label is good enough when reading it back lands within a sliver of the tick spacing. */
    const double tol = step * 1e-3;
    const int plain = maxabs == 0 || (maxabs >= 1e-3 && maxabs < 1e6);
    int prec = 12;
    for (int p = 0; p <= 12; p++) {
        int good = 1;
        for (int i = 0; i < n && good; i++) {
            char buf[64];
            snprintf(buf, sizeof buf, plain ? "%.*f" : "%.*e", p, v[i]);
            good = fabs(strtod(buf, NULL) - v[i]) <= tol;
        }
        if (good) { prec = p; break; }
    }
    for (int i = 0; i < n; i++) {
        if (v[i] == 0) { snprintf(out[i], REPORT_PLOT_LABEL, "0"); continue; }
        snprintf(out[i], REPORT_PLOT_LABEL, plain ? "%.*f" : "%.*e", prec, v[i]);
        compact_exponent(out[i]);
    }
}

/* A lone value labelled with just the digits it needs (log ticks are labelled one by one). */
static void format_one(double v, char *out)
{
    char tmp[1][REPORT_PLOT_LABEL];
    report_plot_format_ticks(&v, 1, fabs(v) * 0.01, tmp);
    memcpy(out, tmp[0], REPORT_PLOT_LABEL);
}

void report_plot_axis_range(report_plot_axis *a, double vmin, double vmax, int log, double margin)
{
    memset(a, 0, sizeof *a);
    a->log = log;
    if (!isfinite(vmin) || !isfinite(vmax) || (log && !(vmin > 0 && vmax > 0)) || vmin > vmax) {
        a->lo = log ? 1 : 0;
        a->hi = log ? 10 : 1;
        return;
    }
    if (log) {
        double l0 = log10(vmin), l1 = log10(vmax), span = l1 - l0;
        if (span < 1e-9) { l0 = (l0 + l1) / 2 - 0.25; l1 = l0 + 0.5; span = 0.5; }
        a->lo = pow(10, l0 - margin * span);
        a->hi = pow(10, l1 + margin * span);
    } else {
        double span = vmax - vmin;
        /* relative wiggles below 1e-9 are rounding, not signal: show such data as constant */
        if (span <= 1e-9 * fmax(fabs(vmin), fabs(vmax))) {
            double w = vmin != 0 ? 0.1 * fabs(vmin) : 1;
            vmin -= w;
            vmax += w;
            span = vmax - vmin;
        }
        a->lo = vmin - margin * span;
        a->hi = vmax + margin * span;
    }
}

static void linear_ticks(report_plot_axis *a, int target)
{
    double step = report_plot_nice_step((a->hi - a->lo) / target);
    while ((a->hi - a->lo) / step > REPORT_PLOT_MAX_TICKS - 1) step = report_plot_nice_step(step * 1.01);
    if (a->integer && step < 1) step = 1;
    if (a->integer && step == 2.5) step = 2; /* 2.5 steps would land between whole numbers */
    /* Multiples of an integer index, not repeated additions, so 0.1 steps stay round. */
    double i0 = ceil(a->lo / step - 1e-9);
    a->nticks = 0;
    for (double i = i0; a->nticks < REPORT_PLOT_MAX_TICKS; i++) {
        double v = i * step;
        if (v > a->hi + 1e-9 * step) break;
        if (fabs(v) < 1e-9 * step) v = 0;
        a->ticks[a->nticks++] = v;
    }
    report_plot_format_ticks(a->ticks, a->nticks, step, a->labels);
}

/* Ticks at d * 10^k for the mantissas given, inside the range; returns the count. */
static int mantissa_ticks(const report_plot_axis *a, const int *d, int nd, double *out, int cap)
{
    int n = 0;
    for (int k = (int)floor(log10(a->lo)) - 1; k <= (int)ceil(log10(a->hi)); k++)
        for (int j = 0; j < nd; j++) {
            double v = d[j] * pow(10, k);
            if (v >= a->lo * (1 - 1e-9) && v <= a->hi * (1 + 1e-9)) {
                if (n == cap) return cap + 1;
                out[n++] = v;
            }
        }
    return n;
}

static int contains(const double *v, int n, double x)
{
    for (int i = 0; i < n; i++)
        if (fabs(v[i] - x) <= 1e-9 * fabs(x)) return 1;
    return 0;
}

static void log_ticks(report_plot_axis *a, int target)
{
    double llo = log10(a->lo), lhi = log10(a->hi);
    int k0 = (int)ceil(llo - 1e-9), k1 = (int)floor(lhi + 1e-9);
    int ndec = k1 - k0 + 1;
    a->nticks = a->nminor = 0;
    double all[REPORT_PLOT_MAX_MINOR];
    static const int d19[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, d125[] = {1, 2, 5};
    if (ndec >= 2) {
        /* Label every m-th decade so that many decades still fit; the rest become grid lines. */
        int m = (ndec + target - 1) / target;
        if (m < 1) m = 1;
        for (int k = k0; k <= k1; k++) {
            double v = pow(10, k);
            if (((k % m) + m) % m == 0 && a->nticks < REPORT_PLOT_MAX_TICKS) {
                a->ticks[a->nticks] = v;
                format_one(v, a->labels[a->nticks++]);
            } else if (a->nminor < REPORT_PLOT_MAX_MINOR) {
                a->minor[a->nminor++] = v;
            }
        }
        if (m == 1) {
            int n = mantissa_ticks(a, d19, 9, all, REPORT_PLOT_MAX_MINOR);
            if (n <= REPORT_PLOT_MAX_MINOR)
                for (int i = 0; i < n; i++)
                    if (!contains(a->ticks, a->nticks, all[i])) a->minor[a->nminor++] = all[i];
        }
        return;
    }
    /* Under a decade, linear round ticks cover the axis best (6000, 8000, .. 14000 where
     * mantissas would stop at 10000); up to two decades, round mantissas, then every digit. */
    if (lhi - llo < 1) {
        linear_ticks(a, target);
        return;
    }
    int n = mantissa_ticks(a, d125, 3, all, REPORT_PLOT_MAX_TICKS);
    if (n < 3 || n > target + 2) {
        n = mantissa_ticks(a, d19, 9, all, REPORT_PLOT_MAX_TICKS);
        if (n < 3 || n > target + 3) {
            linear_ticks(a, target);
            return;
        }
    }
    for (int i = 0; i < n; i++) {
        a->ticks[a->nticks] = all[i];
        format_one(all[i], a->labels[a->nticks++]);
    }
    double minor[REPORT_PLOT_MAX_MINOR];
    int nm = mantissa_ticks(a, d19, 9, minor, REPORT_PLOT_MAX_MINOR);
    if (nm <= REPORT_PLOT_MAX_MINOR)
        for (int i = 0; i < nm; i++)
            if (!contains(a->ticks, a->nticks, minor[i])) a->minor[a->nminor++] = minor[i];
}

void report_plot_axis_ticks(report_plot_axis *a, int target)
{
    if (target < 2) target = 2;
    if (a->log) log_ticks(a, target);
    else linear_ticks(a, target);
}

double report_plot_axis_frac(const report_plot_axis *a, double v)
{
    if (a->log) return (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo));
    return (v - a->lo) / (a->hi - a->lo);
}
