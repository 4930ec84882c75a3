#include "report/plot_draw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

/* Sizes in figure units (PNG pixels at scale 1). */
#define PAD 14.0
#define TITLE_FONT 17.0
#define TITLE_H 30.0
#define LEGEND_FONT 12.0
#define LEGEND_ROW 18.0
#define SWATCH 24.0
#define PANEL_FONT 13.0
#define PANEL_TITLE_H 24.0
#define TICK_FONT 11.0
#define TICK_LEN 4.0
#define XTICK_H 17.0
#define XLABEL_H 16.0
#define CELL_W 560.0
#define CELL_H 330.0

/* matplotlib's "tab10": distinct, colour-blind-tolerable, familiar from every PyTorch notebook */
static const double TAB10[10][3] = {
    {0x1f / 255., 0x77 / 255., 0xb4 / 255.}, {0xff / 255., 0x7f / 255., 0x0e / 255.},
    {0x2c / 255., 0xa0 / 255., 0x2c / 255.}, {0xd6 / 255., 0x27 / 255., 0x28 / 255.},
    {0x94 / 255., 0x67 / 255., 0xbd / 255.}, {0x8c / 255., 0x56 / 255., 0x4b / 255.},
    {0xe3 / 255., 0x77 / 255., 0xc2 / 255.}, {0x7f / 255., 0x7f / 255., 0x7f / 255.},
    {0xbc / 255., 0xbd / 255., 0x22 / 255.}, {0x17 / 255., 0xbe / 255., 0xcf / 255.},
};

/* solid, dashed, dotted, dash-dot, long dash, dash-dot-dot, dense dots: one per loss term */
static const double DASHES[][6] = {{0}, {6, 3}, {1.5, 2.5}, {7, 2.5, 1.5, 2.5}, {12, 4}, {7, 2, 1.5, 2, 1.5, 2}, {1, 1}};
static const int NDASH_VALUES[] = {0, 2, 2, 4, 2, 6, 2};
#define NDASH REPORT_PLOT_NDASH
#define NOTE_FONT 12.0
#define NOTE_H 18.0

void report_plot_run_colour(int run, int nruns, double rgb[3])
{
    if (nruns <= 10) {
        memcpy(rgb, TAB10[run % 10], 3 * sizeof(double));
        return;
    }
    /* more runs than tab10 holds: evenly spaced hues, so no two runs share a colour */
    double h = 6.0 * run / nruns, f = h - floor(h), v = 0.85, lo = 0.2;
    double up = lo + (v - lo) * f, down = v - (v - lo) * f;
    double t[6][3] = {{v, up, lo}, {down, v, lo}, {lo, v, up}, {lo, down, v}, {up, lo, v}, {v, lo, down}};
    memcpy(rgb, t[(int)h % 6], 3 * sizeof(double));
}

void report_plot_series_style(const report_plot_figure *fig, const report_plot_panel *p,
                               const report_plot_series *s, double rgb[3], int *dash)
{
    if (fig->nruns == 1) {
        /* one run: colour tells the quantities apart */
        memcpy(rgb, TAB10[s->qty % 10], 3 * sizeof(double));
        *dash = (s->qty / 10) % NDASH;
    } else {
        /* several runs: colour is the run (the figure legend), dashes the quantity (the panel's);
         * in a sweep, single-quantity panels show a second swept key as the dash */
        report_plot_fig_run_colour(fig, s->run, rgb);
        *dash = p->nqty > 1 ? s->qty % NDASH : fig->style && fig->style->dash[s->run] >= 0 ? fig->style->dash[s->run] % NDASH : 0;
    }
}

void report_plot_fig_run_colour(const report_plot_figure *fig, int run, double rgb[3])
{
    if (fig->style) report_plot_style_colour(fig->style, fig->style->colour[run], rgb);
    else report_plot_run_colour(run, fig->nruns, rgb);
}

void report_plot_default_size(int npanels, int *cols, double *w, double *h)
{
    if (*cols <= 0) *cols = npanels == 1 ? 1 : npanels <= 8 ? 2 : 3;
    if (*cols > npanels) *cols = npanels;
    int rows = (npanels + *cols - 1) / *cols;
    *w = *cols * CELL_W + 2 * PAD;
    *h = rows * CELL_H + 2 * PAD + TITLE_H;
}

/* ---------------------------------------------------------------- text */

static void set_font(cairo_t *cr, double size, int bold)
{
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static double text_w(cairo_t *cr, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

/* ha: 0 left, 0.5 centre, 1 right of x; va: 0 top, 0.5 middle, 1 bottom at y. */
static void text_at(cairo_t *cr, double x, double y, const char *s, double ha, double va)
{
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    cairo_move_to(cr, x - ha * text_w(cr, s), y + fe.ascent - va * (fe.ascent + fe.descent));
    cairo_show_text(cr, s);
}

/* s cut (at a UTF-8 character boundary) and ended with an ellipsis to fit maxw. */
static void fit_text(cairo_t *cr, const char *s, double maxw, char *out, size_t len)
{
    snprintf(out, len, "%s", s);
    if (text_w(cr, out) <= maxw) return;
    size_t n = strlen(out);
    while (n > 0) {
        do n--; while (n > 0 && ((unsigned char)out[n] & 0xC0) == 0x80);
        if (n + 4 > len) continue;
        memcpy(out + n, "\xe2\x80\xa6", 4); /* … */
        if (text_w(cr, out) <= maxw) return;
    }
    out[0] = 0;
}

/* ---------------------------------------------------------------- layout */

static int valid_y(double y, int log) { return isfinite(y) && (!log || y > 0); }

static double map_x(const report_plot_axis *a, const report_plot_box *b, double v)
{
    double f = report_plot_axis_frac(a, v);
    /* far-off points still give a line in the right direction; cairo dislikes huge coordinates */
    f = fmax(-10, fmin(11, f));
    return b->x0 + f * (b->x1 - b->x0);
}

static double map_y(const report_plot_axis *a, const report_plot_box *b, double v)
{
    double f = report_plot_axis_frac(a, v);
    f = fmax(-10, fmin(11, f));
    return b->y1 - f * (b->y1 - b->y0);
}

/* Which quantities of the panel have a series (its legend lists those). */
static int present_qty(const report_plot_panel *p, int *which)
{
    int n = 0;
    for (int q = 0; q < p->nqty; q++) {
        int have = 0;
        for (int s = 0; s < p->nseries && !have; s++) have = p->series[s].qty == q;
        if (have) which[n++] = q;
    }
    return n;
}

/* How much of a series' line lies in box c: samples every few pixels along each segment. */
static long covered(const report_plot_figure *fig, int pi, const report_plot_series *s, const report_plot_box *c)
{
    const report_plot_box *b = &fig->plot[pi];
    const int log = fig->panels[pi].log;
    long hits = 0;
    int have = 0;
    double lx = 0, ly = 0;
    for (long i = 0; i < s->n; i++) {
        if (!valid_y(s->y[i], log)) { have = 0; continue; }
        double px = map_x(&fig->x[pi], b, s->x[i]), py = map_y(&fig->y[pi], b, s->y[i]);
        int k = have ? (int)fmin(200, ceil(hypot(px - lx, py - ly) / 4)) : 1;
        for (int j = 1; j <= k; j++) {
            double t = (double)j / k, x = have ? lx + t * (px - lx) : px, y = have ? ly + t * (py - ly) : py;
            hits += x >= c->x0 && x <= c->x1 && y >= c->y0 && y <= c->y1;
        }
        lx = px;
        ly = py;
        have = 1;
    }
    return hits;
}

static void panel_legend(report_plot_figure *fig, int pi, cairo_t *cr)
{
    const report_plot_panel *p = &fig->panels[pi];
    const report_plot_box *b = &fig->plot[pi];
    report_plot_box *lg = &fig->legend[pi];
    *lg = (report_plot_box){b->x0, b->y0, b->x0, b->y0};
    int which[REPORT_PLOT_MAX_QTY], n = present_qty(p, which);
    if (n < 2 && !(n == 1 && p->nqty > 1)) return; /* a lone quantity of a group is still named */
    set_font(cr, TICK_FONT, 0);
    double tw = 0;
    for (int i = 0; i < n; i++) tw = fmax(tw, text_w(cr, p->qty[which[i]]));
    double w = 5 + 22 + 5 + tw + 6, h = 4 + n * 15.0 + 3;
    if (w > b->x1 - b->x0 - 8 || h > b->y1 - b->y0 - 8) return;
    /* matplotlib's loc="best": of its candidate places, in its order, the one covering the least line */
    const double l = b->x0 + 4, r = b->x1 - 4 - w, cx = (b->x0 + b->x1 - w) / 2;
    const double t = b->y0 + 4, bo = b->y1 - 4 - h, cy = (b->y0 + b->y1 - h) / 2;
    const double pos[9][2] = {{r, t}, {l, t}, {l, bo}, {r, bo}, {r, cy}, {l, cy}, {cx, bo}, {cx, t}, {cx, cy}};
    report_plot_box c[9];
    for (int k = 0; k < 9; k++) c[k] = (report_plot_box){pos[k][0], pos[k][1], pos[k][0] + w, pos[k][1] + h};
    long best = -1;
    for (int k = 0; k < 9; k++) {
        long hits = 0;
        for (int si = 0; si < p->nseries; si++) hits += covered(fig, pi, &p->series[si], &c[k]);
        if (best < 0 || hits < best) { best = hits; *lg = c[k]; }
    }
}

static void y_range(const report_plot_panel *p, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int s = 0; s < p->nseries; s++) {
        const report_plot_series *se = &p->series[s];
        for (int pass = 0; pass < 2; pass++) {
            const double *y = pass ? se->raw : se->y;
            if (!y) continue;
            for (long i = 0; i < se->n; i++)
                if (valid_y(y[i], p->log)) { *lo = fmin(*lo, y[i]); *hi = fmax(*hi, y[i]); }
        }
    }
}

static void x_ticks(report_plot_axis *a, double width, cairo_t *cr)
{
    int target = (int)fmax(2, fmin(8, width / 90));
    for (;;) {
        report_plot_axis_ticks(a, target);
        double lw = 0;
        for (int i = 0; i < a->nticks; i++) lw = fmax(lw, text_w(cr, a->labels[i]));
        if (target <= 2 || (lw + 12) * a->nticks <= width) return;
        target--;
    }
}

/* A sweep's legend: one entry per colour group, then one per line style; a run's
 * entry is its colour group's. 18 runs over two keys need 3 + 6 entries, not 18. */
static double sweep_legend_layout(report_plot_figure *fig, cairo_t *cr, double top)
{
    const report_plot_style *st = fig->style;
    const double W = fig->width;
    fig->item = core_calloc(st->nitems ? st->nitems : 1, sizeof *fig->item);
    set_font(cr, LEGEND_FONT, 0);
    double x = PAD, y = top;
    for (int i = 0; i < st->nitems; i++) {
        char s[1024];
        fit_text(cr, st->items[i].text, W - 2 * PAD - SWATCH - 6, s, sizeof s);
        double ew = SWATCH + 6 + text_w(cr, s);
        /* the line styles start a row of their own */
        int first_dash = st->items[i].dash >= 0 && (i == 0 || st->items[i - 1].dash < 0);
        if (x > PAD && (x + ew > W - PAD || first_dash)) { x = PAD; y += LEGEND_ROW; }
        fig->item[i] = (report_plot_box){x, y, x + ew, y + LEGEND_ROW};
        x += ew + 22;
    }
    for (int r = 0; r < fig->nruns; r++)
        for (int i = 0; i < st->nitems; i++)
            if (st->items[i].colour == st->colour[r]) fig->entry[r] = fig->item[i];
    fig->run_legend = (report_plot_box){PAD, top, W - PAD, y + LEGEND_ROW};
    return y + LEGEND_ROW + 8;
}

void report_plot_layout(report_plot_figure *fig, cairo_t *cr)
{
    int np = fig->npanels;
    fig->x = core_calloc(np, sizeof *fig->x);
    fig->y = core_calloc(np, sizeof *fig->y);
    fig->cell = core_calloc(np, sizeof *fig->cell);
    fig->plot = core_calloc(np, sizeof *fig->plot);
    fig->legend = core_calloc(np, sizeof *fig->legend);
    fig->entry = core_calloc(fig->nruns, sizeof *fig->entry);
    if (fig->cols < 1) fig->cols = 1;
    if (fig->cols > np) fig->cols = np;
    fig->rows = (np + fig->cols - 1) / fig->cols;
    const double W = fig->width;

    double top = PAD + (fig->title[0] ? TITLE_H : 0) + (fig->note[0] ? NOTE_H : 0);
    fig->has_run_legend = fig->nruns > 1;
    if (fig->has_run_legend && fig->style) {
        top = sweep_legend_layout(fig, cr, top);
    } else if (fig->has_run_legend) {
        set_font(cr, LEGEND_FONT, 0);
        double x = PAD, y = top;
        for (int r = 0; r < fig->nruns; r++) {
            char s[1024];
            fit_text(cr, fig->runs[r].label, W - 2 * PAD - SWATCH - 6, s, sizeof s);
            double ew = SWATCH + 6 + text_w(cr, s);
            if (x > PAD && x + ew > W - PAD) { x = PAD; y += LEGEND_ROW; }
            fig->entry[r] = (report_plot_box){x, y, x + ew, y + LEGEND_ROW};
            x += ew + 22;
        }
        fig->run_legend = (report_plot_box){PAD, top, W - PAD, y + LEGEND_ROW};
        top = y + LEGEND_ROW + 8;
    }

    /* One x range for every panel: a step lines up across the whole figure. */
    double xlo = INFINITY, xhi = -INFINITY;
    for (int i = 0; i < np; i++)
        for (int s = 0; s < fig->panels[i].nseries; s++) {
            const report_plot_series *se = &fig->panels[i].series[s];
            for (long k = 0; k < se->n; k++) { xlo = fmin(xlo, se->x[k]); xhi = fmax(xhi, se->x[k]); }
        }
    report_plot_axis xa;
    report_plot_axis_range(&xa, xlo, xhi, 0, 0.02);
    xa.integer = fig->x_integer;

    if (fig->auto_height) fig->height = top + fig->rows * CELL_H + PAD;
    const double cw = (W - 2 * PAD) / fig->cols, ch = (fig->height - top - PAD) / fig->rows;
    for (int i = 0; i < np; i++) {
        const report_plot_panel *p = &fig->panels[i];
        int col = i % fig->cols, row = i / fig->cols;
        report_plot_box *c = &fig->cell[i], *b = &fig->plot[i];
        *c = (report_plot_box){PAD + col * cw, top + row * ch, PAD + (col + 1) * cw, top + (row + 1) * ch};
        b->y0 = c->y0 + PANEL_TITLE_H;
        b->y1 = c->y1 - XTICK_H - XLABEL_H - 6;

        double lo, hi;
        y_range(p, &lo, &hi);
        report_plot_axis_range(&fig->y[i], lo, hi, p->log, 0.05);
        report_plot_axis_ticks(&fig->y[i], (int)fmax(3, fmin(8, (b->y1 - b->y0) / 40)));
        set_font(cr, TICK_FONT, 0);
        double lw = 0;
        for (int k = 0; k < fig->y[i].nticks; k++) lw = fmax(lw, text_w(cr, fig->y[i].labels[k]));
        b->x0 = c->x0 + 6 + lw + TICK_LEN + 4;
        b->x1 = c->x1 - 16;

        fig->x[i] = xa;
        x_ticks(&fig->x[i], b->x1 - b->x0, cr);
        panel_legend(fig, i, cr);
    }
}

void report_plot_figure_free(report_plot_figure *fig)
{
    free(fig->x);
    free(fig->y);
    free(fig->cell);
    free(fig->plot);
    free(fig->legend);
    free(fig->entry);
    free(fig->item);
    fig->x = fig->y = NULL;
    fig->cell = fig->plot = fig->legend = fig->entry = fig->item = NULL;
}

/* ---------------------------------------------------------------- drawing */

static void set_dash(cairo_t *cr, int dash)
{
    cairo_set_dash(cr, DASHES[dash % NDASH], NDASH_VALUES[dash % NDASH], 0);
}

/* Polyline output that keeps, of all points falling in one half-pixel column, only
 * the first, the lowest, the highest and the last (M4 aggregation): the same
 * picture as every point, at a size that does not grow with the run's length. */
typedef struct {
    cairo_t *cr;
    int open;      /* a bucket holds points */
    int started;   /* the current polyline has its first point */
    double key;
    double fx, fy, lx, ly, nx, ny, xx, xy; /* first, last, min-y, max-y points */
    long ni, xi;   /* order of min and max within the bucket */
    long count;
} m4_path;

static void m4_emit(m4_path *m, double x, double y)
{
    if (!m->started) {
        cairo_move_to(m->cr, x, y);
        m->started = 1;
    } else {
        cairo_line_to(m->cr, x, y);
    }
}

static void m4_flush(m4_path *m)
{
    if (!m->open) return;
    m4_emit(m, m->fx, m->fy);
    if (m->count > 1) {
        int min_first = m->ni <= m->xi;
        double ax = min_first ? m->nx : m->xx, ay = min_first ? m->ny : m->xy;
        double bx = min_first ? m->xx : m->nx, by = min_first ? m->xy : m->ny;
        m4_emit(m, ax, ay);
        m4_emit(m, bx, by);
        m4_emit(m, m->lx, m->ly);
    }
    m->open = 0;
}

static void m4_add(m4_path *m, double x, double y)
{
    double key = floor(x * 2);
    if (m->open && key != m->key) m4_flush(m);
    if (!m->open) {
        m->open = 1;
        m->key = key;
        m->count = 0;
        m->fx = m->nx = m->xx = x;
        m->fy = m->ny = m->xy = y;
        m->ni = m->xi = 0;
    }
    if (y < m->ny) { m->nx = x; m->ny = y; m->ni = m->count; }
    if (y > m->xy) { m->xx = x; m->xy = y; m->xi = m->count; }
    m->lx = x;
    m->ly = y;
    m->count++;
}

/* One series as polylines through its drawable points; a lone point between gaps becomes a dot. */
static void draw_line(cairo_t *cr, const report_plot_axis *xa, const report_plot_axis *ya, const report_plot_box *b,
                      const report_plot_series *s, const double *y, int log, double width)
{
    m4_path m = {.cr = cr};
    long seg = 0, ndots = 0;
    double lx = 0, ly = 0;
    double *dots = NULL; /* lone points, filled after the lines are stroked */
    cairo_set_line_width(cr, width);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_new_path(cr);
    for (long i = 0; i <= s->n; i++) {
        if (i < s->n && valid_y(y[i], log)) {
            lx = map_x(xa, b, s->x[i]);
            ly = map_y(ya, b, y[i]);
            m4_add(&m, lx, ly);
            seg++;
            continue;
        }
        m4_flush(&m);
        if (seg == 1) {
            dots = core_realloc(dots, (ndots + 1) * 2 * sizeof *dots);
            dots[2 * ndots] = lx;
            dots[2 * ndots++ + 1] = ly;
        }
        seg = 0;
        m.started = 0;
    }
    cairo_stroke(cr);
    for (long i = 0; i < ndots; i++) {
        cairo_new_sub_path(cr);
        cairo_arc(cr, dots[2 * i], dots[2 * i + 1], 1.4 * width, 0, 2 * M_PI);
    }
    cairo_fill(cr);
    free(dots);
}

static void draw_panel(const report_plot_figure *fig, int pi, cairo_t *cr)
{
    const report_plot_panel *p = &fig->panels[pi];
    const report_plot_box *b = &fig->plot[pi], *c = &fig->cell[pi];
    const report_plot_axis *xa = &fig->x[pi], *ya = &fig->y[pi];
    const double bw = b->x1 - b->x0, bh = b->y1 - b->y0;

    /* grid: minor lines of log axes faint, ticks darker */
    cairo_set_line_width(cr, 1);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_source_rgb(cr, 0.94, 0.94, 0.94);
    for (int k = 0; k < ya->nminor; k++) {
        double py = map_y(ya, b, ya->minor[k]);
        if (py < b->y0 || py > b->y1) continue;
        cairo_move_to(cr, b->x0, py);
        cairo_line_to(cr, b->x1, py);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.86, 0.86, 0.86);
    for (int k = 0; k < ya->nticks; k++) {
        double py = map_y(ya, b, ya->ticks[k]);
        cairo_move_to(cr, b->x0, py);
        cairo_line_to(cr, b->x1, py);
    }
    for (int k = 0; k < xa->nticks; k++) {
        double px = map_x(xa, b, xa->ticks[k]);
        cairo_move_to(cr, px, b->y0);
        cairo_line_to(cr, px, b->y1);
    }
    cairo_stroke(cr);

    /* curves, clipped to the plot box */
    cairo_save(cr);
    cairo_rectangle(cr, b->x0, b->y0, bw, bh);
    cairo_clip(cr);
    int any_finite = 0;
    for (int si = 0; si < p->nseries; si++) {
        const report_plot_series *s = &p->series[si];
        double rgb[3];
        int dash;
        report_plot_series_style(fig, p, s, rgb, &dash);
        set_dash(cr, dash);
        if (s->raw) {
            cairo_set_source_rgba(cr, rgb[0], rgb[1], rgb[2], 0.25);
            draw_line(cr, xa, ya, b, s, s->raw, p->log, 1.0);
        }
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        draw_line(cr, xa, ya, b, s, s->y, p->log, 1.6);
        cairo_set_dash(cr, NULL, 0, 0);

        /* non-finite values: a cross on the top edge where they were logged */
        const double *vals = s->raw ? s->raw : s->y;
        cairo_set_line_width(cr, 1.5);
        for (long i = 0; i < s->n; i++) {
            if (valid_y(vals[i], p->log)) any_finite = 1;
            if (isfinite(vals[i])) continue;
            double px = map_x(xa, b, s->x[i]), py = b->y0 + 6;
            cairo_move_to(cr, px - 3.5, py - 3.5);
            cairo_line_to(cr, px + 3.5, py + 3.5);
            cairo_move_to(cr, px + 3.5, py - 3.5);
            cairo_line_to(cr, px - 3.5, py + 3.5);
        }
        cairo_stroke(cr);

        /* a run that ended before train.steps (stopped, diverged, or still running): a dot at its end */
        const report_plot_run *r = &fig->runs[s->run];
        if (r->config_steps > 0 && r->nrows && r->step[r->nrows - 1] < r->config_steps) {
            for (long i = s->n - 1; i >= 0; i--) {
                if (!valid_y(s->y[i], p->log)) continue;
                cairo_arc(cr, map_x(xa, b, s->x[i]), map_y(ya, b, s->y[i]), 3.2, 0, 2 * M_PI);
                cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
                cairo_fill_preserve(cr);
                cairo_set_source_rgb(cr, 1, 1, 1);
                cairo_set_line_width(cr, 1);
                cairo_stroke(cr);
                break;
            }
        }
    }
    cairo_restore(cr);

    set_font(cr, TICK_FONT, 0);
    if (!any_finite) {
        cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
        text_at(cr, (b->x0 + b->x1) / 2, (b->y0 + b->y1) / 2,
                p->log ? "no finite positive values" : "no finite values", 0.5, 0.5);
    }

    /* frame, tick marks and labels */
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, b->x0, b->y0, bw, bh);
    for (int k = 0; k < ya->nticks; k++) {
        double py = map_y(ya, b, ya->ticks[k]);
        cairo_move_to(cr, b->x0 - TICK_LEN, py);
        cairo_line_to(cr, b->x0, py);
    }
    for (int k = 0; k < xa->nticks; k++) {
        double px = map_x(xa, b, xa->ticks[k]);
        cairo_move_to(cr, px, b->y1);
        cairo_line_to(cr, px, b->y1 + TICK_LEN);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    for (int k = 0; k < ya->nticks; k++)
        text_at(cr, b->x0 - TICK_LEN - 3, map_y(ya, b, ya->ticks[k]), ya->labels[k], 1, 0.5);
    for (int k = 0; k < xa->nticks; k++)
        text_at(cr, map_x(xa, b, xa->ticks[k]), b->y1 + TICK_LEN + 2, xa->labels[k], 0.5, 0);
    text_at(cr, (b->x0 + b->x1) / 2, b->y1 + TICK_LEN + 2 + XTICK_H, fig->x_label, 0.5, 0);

    char title[400];
    set_font(cr, PANEL_FONT, 1);
    char shown[320];
    snprintf(shown, sizeof shown, "%s%s", p->title, p->log ? "  (log)" : "");
    fit_text(cr, shown, c->x1 - c->x0 - 12, title, sizeof title);
    text_at(cr, (b->x0 + b->x1) / 2, c->y0 + 4, title, 0.5, 0);

    /* the panel's own legend: which line is which quantity */
    const report_plot_box *lg = &fig->legend[pi];
    if (lg->x1 > lg->x0) {
        cairo_rectangle(cr, lg->x0, lg->y0, lg->x1 - lg->x0, lg->y1 - lg->y0);
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.8, 0.8, 0.8);
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);
        int which[REPORT_PLOT_MAX_QTY], n = present_qty(p, which);
        set_font(cr, TICK_FONT, 0);
        for (int i = 0; i < n; i++) {
            double y = lg->y0 + 4 + i * 15.0 + 7.5;
            report_plot_series probe = {.run = 0, .qty = which[i]};
            double rgb[3] = {0.3, 0.3, 0.3};
            int dash = 0;
            if (fig->nruns == 1) report_plot_series_style(fig, p, &probe, rgb, &dash);
            else dash = which[i] % NDASH;
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            set_dash(cr, dash);
            cairo_set_line_width(cr, 1.8);
            cairo_move_to(cr, lg->x0 + 5, y);
            cairo_line_to(cr, lg->x0 + 27, y);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
            text_at(cr, lg->x0 + 32, y, p->qty[which[i]], 0, 0.5);
        }
    }
}

static void sweep_legend_render(const report_plot_figure *fig, cairo_t *cr)
{
    set_font(cr, LEGEND_FONT, 0);
    for (int i = 0; i < fig->style->nitems; i++) {
        const report_plot_item *it = &fig->style->items[i];
        const report_plot_box *e = &fig->item[i];
        double rgb[3] = {0.25, 0.25, 0.25}, y = (e->y0 + e->y1) / 2;
        if (it->colour >= 0) report_plot_style_colour(fig->style, it->colour, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_set_line_width(cr, it->colour >= 0 ? 3 : 1.8);
        if (it->dash >= 0) set_dash(cr, it->dash);
        cairo_move_to(cr, e->x0, y);
        cairo_line_to(cr, e->x0 + SWATCH, y);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        char s[1024];
        fit_text(cr, it->text, fig->width - 2 * PAD - SWATCH - 6, s, sizeof s);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, e->x0 + SWATCH + 6, y, s, 0, 0.5);
    }
}

void report_plot_render(const report_plot_figure *fig, cairo_t *cr)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    if (fig->title[0]) {
        char t[1024];
        set_font(cr, TITLE_FONT, 1);
        fit_text(cr, fig->title, fig->width - 2 * PAD, t, sizeof t);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, fig->width / 2, PAD, t, 0.5, 0);
    }
    if (fig->note[0]) {
        char t[1024];
        set_font(cr, NOTE_FONT, 0);
        fit_text(cr, fig->note, fig->width - 2 * PAD, t, sizeof t);
        cairo_set_source_rgb(cr, 0.55, 0.2, 0.1);
        text_at(cr, fig->width / 2, PAD + (fig->title[0] ? TITLE_H : 0), t, 0.5, 0);
    }
    if (fig->has_run_legend && fig->style) {
        sweep_legend_render(fig, cr);
    } else if (fig->has_run_legend) {
        set_font(cr, LEGEND_FONT, 0);
        for (int r = 0; r < fig->nruns; r++) {
            const report_plot_box *e = &fig->entry[r];
            double rgb[3], y = (e->y0 + e->y1) / 2;
            report_plot_fig_run_colour(fig, r, rgb);
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            cairo_set_line_width(cr, 3);
            cairo_move_to(cr, e->x0, y);
            cairo_line_to(cr, e->x0 + SWATCH, y);
            cairo_stroke(cr);
            char s[1024];
            fit_text(cr, fig->runs[r].label, fig->width - 2 * PAD - SWATCH - 6, s, sizeof s);
            cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
            text_at(cr, e->x0 + SWATCH + 6, y, s, 0, 0.5);
        }
    }
    for (int i = 0; i < fig->npanels; i++) draw_panel(fig, i, cr);
}
