#include "report/plot.h"

#include <cJSON.h>
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/fileid.h"
#include "report/plot_data.h"
#include "report/plot_draw.h"
#include "report/plot_sweep.h"

/* Below this a panel's tick labels crowd out its plot. */
#define MIN_CELL_W 220
#define MIN_CELL_H 160

void report_plot_opts_init(report_plot_opts *o)
{
    memset(o, 0, sizeof *o);
    o->step_from = o->step_to = -1;
    o->scale = 1;
    o->label_keys = 4;
}

int report_plot_format(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    CHECK(dot && dot != base && dot[1], "plot: --out %s has no file extension (use .png, .svg or .pdf)", path);
    if (!strcasecmp(dot, ".png")) return REPORT_PLOT_PNG;
    if (!strcasecmp(dot, ".svg")) return REPORT_PLOT_SVG;
    if (!strcasecmp(dot, ".pdf")) return REPORT_PLOT_PDF;
    CORE_DIE("plot: unsupported output format '%s' in --out %s (use .png, .svg or .pdf)", dot, path);
}

static cairo_status_t write_stream(void *closure, const unsigned char *data, unsigned int len)
{
    return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

static void hex_colour(const double rgb[3], char *out)
{
    snprintf(out, 8, "#%02x%02x%02x", (int)lround(rgb[0] * 255), (int)lround(rgb[1] * 255), (int)lround(rgb[2] * 255));
}

static cJSON *box_json(const report_plot_box *b, double k)
{
    double v[4] = {b->x0 * k, b->y0 * k, b->x1 * k, b->y1 * k};
    return cJSON_CreateDoubleArray(v, 4);
}

static cJSON *axis_json(const report_plot_axis *a)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "lo", a->lo);
    cJSON_AddNumberToObject(j, "hi", a->hi);
    cJSON_AddBoolToObject(j, "log", a->log);
    cJSON_AddItemToObject(j, "ticks", cJSON_CreateDoubleArray(a->ticks, a->nticks));
    cJSON *labels = cJSON_AddArrayToObject(j, "labels");
    for (int i = 0; i < a->nticks; i++) cJSON_AddItemToArray(labels, cJSON_CreateString(a->labels[i]));
    return j;
}

/* The layout as JSON, in output pixels (points for SVG/PDF), so that tests and
 * scripts can map values to positions: docs/plot.md. */
static void dump_layout(FILE *f, const char *path, const char *tmp, const report_plot_figure *fig, int fmt,
                        double k, const report_plot_select *sel)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", fmt == REPORT_PLOT_PNG ? "png" : fmt == REPORT_PLOT_SVG ? "svg" : "pdf");
    cJSON_AddNumberToObject(j, "width", ceil(fig->width * k));
    cJSON_AddNumberToObject(j, "height", ceil(fig->height * k));
    cJSON_AddNumberToObject(j, "scale", k);
    cJSON_AddStringToObject(j, "title", fig->title);
    cJSON *x = cJSON_AddObjectToObject(j, "x");
    cJSON_AddStringToObject(x, "unit", sel->x_unit);
    cJSON_AddNumberToObject(x, "seconds_per_unit", sel->x_time ? sel->x_div : 0);
    cJSON_AddNumberToObject(j, "smooth", sel->smooth > 1 ? sel->smooth : 0);
    cJSON *runs = cJSON_AddArrayToObject(j, "runs");
    for (int r = 0; r < fig->nruns; r++) {
        const report_plot_run *run = &fig->runs[r];
        cJSON *o = cJSON_CreateObject();
        double rgb[3];
        char hex[8];
        report_plot_fig_run_colour(fig, r, rgb);
        hex_colour(rgb, hex);
        cJSON_AddStringToObject(o, "name", run->name);
        cJSON_AddStringToObject(o, "label", run->label);
        cJSON_AddStringToObject(o, "dir", run->dir);
        cJSON_AddStringToObject(o, "colour", hex);
        cJSON_AddNumberToObject(o, "rows", (double)run->nrows);
        cJSON_AddNumberToObject(o, "first_step", (double)run->step[0]);
        cJSON_AddNumberToObject(o, "last_step", (double)run->step[run->nrows - 1]);
        cJSON_AddNumberToObject(o, "config_steps", (double)run->config_steps);
        cJSON_AddBoolToObject(o, "ended_early", run->config_steps > 0 && run->step[run->nrows - 1] < run->config_steps);
        cJSON_AddNumberToObject(o, "malformed", (double)run->malformed);
        cJSON_AddBoolToObject(o, "partial_last", run->partial_last);
        cJSON_AddNumberToObject(o, "duplicates", (double)run->duplicates);
        cJSON *d = cJSON_AddArrayToObject(o, "config_diff");
        for (int i = 0; i < run->ndiff; i++) cJSON_AddItemToArray(d, cJSON_CreateString(run->diff[i]));
        if (fig->has_run_legend) cJSON_AddItemToObject(o, "legend_box", box_json(&fig->entry[r], k));
        cJSON_AddItemToArray(runs, o);
    }
    if (fig->has_run_legend) cJSON_AddItemToObject(j, "legend", box_json(&fig->run_legend, k));
    else cJSON_AddNullToObject(j, "legend");
    cJSON_AddStringToObject(j, "note", fig->note);
    cJSON *items = cJSON_AddArrayToObject(j, "legend_items");
    for (int i = 0; fig->style && fig->has_run_legend && i < fig->style->nitems; i++) {
        const report_plot_item *it = &fig->style->items[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "text", it->text);
        if (it->colour >= 0) {
            double rgb[3];
            char hex[8];
            report_plot_style_colour(fig->style, it->colour, rgb);
            hex_colour(rgb, hex);
            cJSON_AddStringToObject(o, "colour", hex);
        } else {
            cJSON_AddNullToObject(o, "colour");
        }
        cJSON_AddNumberToObject(o, "dash", it->dash);
        cJSON_AddItemToObject(o, "box", box_json(&fig->item[i], k));
        cJSON_AddItemToArray(items, o);
    }
    cJSON *panels = cJSON_AddArrayToObject(j, "panels");
    for (int i = 0; i < fig->npanels; i++) {
        const report_plot_panel *p = &fig->panels[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "metric", p->metric);
        cJSON_AddStringToObject(o, "title", p->title);
        cJSON_AddItemToObject(o, "box", box_json(&fig->plot[i], k));
        cJSON_AddItemToObject(o, "cell", box_json(&fig->cell[i], k));
        if (fig->legend[i].x1 > fig->legend[i].x0) cJSON_AddItemToObject(o, "legend", box_json(&fig->legend[i], k));
        else cJSON_AddNullToObject(o, "legend");
        cJSON_AddItemToObject(o, "x", axis_json(&fig->x[i]));
        cJSON_AddItemToObject(o, "y", axis_json(&fig->y[i]));
        cJSON *ss = cJSON_AddArrayToObject(o, "series");
        for (int s = 0; s < p->nseries; s++) {
            const report_plot_series *se = &p->series[s];
            cJSON *so = cJSON_CreateObject();
            double rgb[3];
            int dash;
            char hex[8];
            report_plot_series_style(fig, p, se, rgb, &dash);
            hex_colour(rgb, hex);
            cJSON_AddNumberToObject(so, "run", se->run);
            cJSON_AddStringToObject(so, "quantity", p->qty[se->qty]);
            cJSON_AddStringToObject(so, "colour", hex);
            cJSON_AddNumberToObject(so, "dash", dash);
            cJSON_AddNumberToObject(so, "points", (double)se->n);
            cJSON_AddNumberToObject(so, "nonfinite", (double)se->nonfinite);
            cJSON_AddItemToArray(ss, so);
        }
        cJSON_AddItemToArray(panels, o);
    }
    char *text = cJSON_Print(j);
    CHECK(text, "plot: cannot format the layout JSON");
    cJSON_Delete(j);
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    free(text);
    if (f != stdout) {
        if (!ok) unlink(tmp);
        CHECK(ok, "plot: cannot write %s: %s", path, strerror(errno));
        core_atomic_commit(f, tmp, path); /* the layout appears whole or not at all */
        return;
    }
    CHECK(ok && fflush(f) == 0, "plot: cannot write the layout to stdout: %s", strerror(errno));
}

/* A failed plot leaves no half-written layout behind. */
static void drop_layout(FILE *lf, const char *ltmp)
{
    if (!lf || lf == stdout) return;
    fclose(lf);
    unlink(ltmp);
}

static void default_title(const report_plot_run *runs, int n, char *out, size_t len)
{
    size_t o = 0;
    if (n > 1) o += snprintf(out, len, "%d runs: ", n);
    for (int i = 0; i < n && o < len; i++) o += snprintf(out + o, len - o, "%s%s", i ? ", " : "", runs[i].name);
}

/* A sweep's figure: its runs in order; by default the total loss, each term
 * unweighted (comparable across loss weights) and the gradient norm, one panel
 * each, so that the line style can show a second swept key. */
typedef struct {
    int on;
    sweep sw;
    char **dirs;
    int ndirs;
    const char **metrics;
    int nmetrics;
    report_plot_style style;
} sweep_fig;

static void sweep_metrics(sweep_fig *sf, const report_plot_run *runs, int nruns)
{
    sf->metrics = core_calloc(REPORT_PLOT_MAX_TERMS * (size_t)nruns + 3, sizeof *sf->metrics);
    sf->metrics[sf->nmetrics++] = "loss";
    for (int r = 0; r < nruns; r++)
        for (int t = 0; t < runs[r].nterms; t++) {
            int have = 0;
            for (int k = 1; k < sf->nmetrics && !have; k++) have = !strcmp(sf->metrics[k], runs[r].terms[t]);
            if (!have) sf->metrics[sf->nmetrics++] = runs[r].terms[t];
        }
    sf->metrics[sf->nmetrics++] = "grad_norm";
}

static void sweep_title(const sweep_fig *sf, int nruns, char *out, size_t len)
{
    size_t n = snprintf(out, len, "sweep %s: %d run%s over ", sf->sw.dir, nruns, nruns == 1 ? "" : "s");
    for (int a = 0; a < sf->sw.naxes && n < len; a++)
        n += snprintf(out + n, len - n, "%s%s", a ? " \xc3\x97 " : "", sf->sw.axes[a].short_name);
}

static void sweep_fig_free(sweep_fig *sf)
{
    if (!sf->on) return;
    for (int i = 0; i < sf->ndirs; i++) free(sf->dirs[i]);
    free(sf->dirs);
    free(sf->metrics);
    report_plot_style_free(&sf->style);
    sweep_free(&sf->sw);
}

/* Totals compared across different loss weights get a note under the title. */
static void weights_note(const report_plot_run *runs, int nruns, const report_plot_panel *p, int np, char *out, size_t len)
{
    int totals = 0;
    for (int i = 0; i < np; i++) totals |= !strcmp(p[i].metric, "loss") || !strcmp(p[i].metric, "weighted");
    out[0] = 0;
    if (totals) report_plot_weights_note(runs, nruns, out, len);
}

int report_plot_count_runs(const char *const *rundirs, int nruns)
{
    sweep_fig sf = {0};
    sf.on = report_plot_sweep_expand(rundirs, nruns, &sf.sw, &sf.dirs, &sf.ndirs, 1);
    int n = sf.on ? sf.ndirs : nruns;
    sweep_fig_free(&sf);
    return n;
}

int report_plot(const char *const *rundirs, int nruns, const report_plot_opts *o)
{
    CHECK(nruns > 0, "plot: no RUNDIR given (see 'sspose plot --help')");
    CHECK(o->out, "plot: --out FILE.png|svg|pdf is required (see 'sspose plot --help')");
    const int fmt = report_plot_format(o->out);
    struct stat ost;
    /* the rename at the end would fail only after all the drawing */
    CHECK(stat(o->out, &ost) != 0 || !S_ISDIR(ost.st_mode), "plot: cannot write %s: Is a directory", o->out);

    sweep_fig sf = {0};
    sf.on = report_plot_sweep_expand(rundirs, nruns, &sf.sw, &sf.dirs, &sf.ndirs, 0);
    if (sf.on) {
        rundirs = (const char *const *)sf.dirs;
        nruns = sf.ndirs;
    }
    report_plot_run *runs = core_calloc(nruns, sizeof *runs);
    for (int i = 0; i < nruns; i++) report_plot_run_load(&runs[i], rundirs[i]);
    report_plot_runs_label(runs, nruns, o->label_keys);
    if (sf.on) {
        report_plot_sweep_style(&sf.sw, runs, nruns, &sf.style);
        if (!o->nmetrics) sweep_metrics(&sf, runs, nruns);
    }

    report_plot_select sel = {.x_time = o->x_time, .smooth = o->smooth, .log_mode = o->log_mode,
                               .step_from = o->step_from, .step_to = o->step_to};
    report_plot_panel *panels;
    int np = sf.nmetrics ? report_plot_panels(runs, nruns, sf.metrics, sf.nmetrics, &sel, &panels)
                         : report_plot_panels(runs, nruns, o->metrics, o->nmetrics, &sel, &panels);

    report_plot_figure fig = {.runs = runs, .nruns = nruns, .panels = panels, .npanels = np, .cols = o->cols,
                              .style = sf.on ? &sf.style : NULL};
    weights_note(runs, nruns, panels, np, fig.note, sizeof fig.note);
    report_plot_default_size(np, &fig.cols, &fig.width, &fig.height);
    if (o->width > 0) fig.width = o->width;
    if (o->height > 0) fig.height = o->height;
    if (o->title) snprintf(fig.title, sizeof fig.title, "%s", o->title);
    else if (sf.on) sweep_title(&sf, nruns, fig.title, sizeof fig.title);
    else default_title(runs, nruns, fig.title, sizeof fig.title);
    if (!o->title && sel.smooth > 1) {
        size_t n = strlen(fig.title);
        snprintf(fig.title + n, sizeof fig.title - n, "  (moving average over %d points)", sel.smooth);
    }
    if (sel.x_time) snprintf(fig.x_label, sizeof fig.x_label, "training time (%s)", sel.x_unit);
    else snprintf(fig.x_label, sizeof fig.x_label, "step");
    fig.x_integer = !sel.x_time;

    /* A first layout on a scratch surface measures the title and the run legend: the
     * default height grows with the legend, and a given size must leave room for the panels. */
    {
        cairo_surface_t *scratch = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
        cairo_t *cr = cairo_create(scratch);
        fig.auto_height = o->height <= 0;
        report_plot_layout(&fig, cr);
        double cw = fig.cell[0].x1 - fig.cell[0].x0, ch = fig.cell[0].y1 - fig.cell[0].y0;
        report_plot_figure_free(&fig);
        cairo_destroy(cr);
        cairo_surface_destroy(scratch);
        fig.auto_height = 0;
        CHECK(cw >= MIN_CELL_W && ch >= MIN_CELL_H,
              "plot: a %gx%g figure is too small for %d panel%s in %d column%s%s (each needs %dx%d; see --size, --cols)",
              fig.width, fig.height, np, np == 1 ? "" : "s", fig.cols, fig.cols == 1 ? "" : "s",
              nruns > 1 ? " under the legend" : "", MIN_CELL_W, MIN_CELL_H);
    }

    const double k = fmt == REPORT_PLOT_PNG ? o->scale : 1;
    CHECK(fig.width * k <= 32767 && fig.height * k <= 32767,
          "plot: a %.0fx%.0f image is beyond cairo's 32767-pixel limit (lower --size, --scale or the panel count)",
          ceil(fig.width * k), ceil(fig.height * k));

    /* Open the output before any warning, so that bad input still ends in exactly one line. */
    size_t len = strlen(o->out) + 32;
    char *tmp = core_malloc(len);
    snprintf(tmp, len, "%s.tmp%d", o->out, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    CHECK(f, "plot: cannot write %s: %s", o->out, strerror(errno));
    FILE *lf = NULL;
    char ltmp[4200] = "";
    if (o->dump_layout && strcmp(o->dump_layout, "-")) {
        size_t n = strlen(o->dump_layout);
        if (n + 24 > sizeof ltmp) {
            fclose(f);
            unlink(tmp);
            CORE_DIE("plot: --dump-layout path too long: '%s'", o->dump_layout);
        }
        snprintf(ltmp, sizeof ltmp, "%s.tmp.%d", o->dump_layout, (int)getpid());
        lf = fopen(ltmp, "w");
        if (!lf) {
            int e = errno;
            fclose(f);
            unlink(tmp);
            CORE_DIE("plot: cannot write %s: %s", o->dump_layout, strerror(e));
        }
    } else if (o->dump_layout) {
        lf = stdout;
    }

    for (int i = 0; i < nruns; i++) report_plot_run_warn(&runs[i]);
    for (int i = 0; i < np; i++) {
        if (panels[i].log_dropped)
            core_warn("panel '%s': no positive values for a log scale; drawn linear", panels[i].metric);
        else if (panels[i].log_hidden)
            core_warn("panel '%s': %ld value%s <= 0 left out of the log scale (--linear shows them)", panels[i].metric,
                      panels[i].log_hidden, panels[i].log_hidden == 1 ? "" : "s");
    }

    cairo_surface_t *s;
    if (fmt == REPORT_PLOT_PNG)
        s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)ceil(fig.width * k), (int)ceil(fig.height * k));
    else if (fmt == REPORT_PLOT_SVG)
        s = cairo_svg_surface_create_for_stream(write_stream, f, fig.width, fig.height);
    else
        s = cairo_pdf_surface_create_for_stream(write_stream, f, fig.width, fig.height);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
        fclose(f);
        unlink(tmp);
        drop_layout(lf, ltmp);
        CORE_DIE("plot: cannot create a %gx%g drawing surface: %s", fig.width * k, fig.height * k,
                 cairo_status_to_string(cairo_surface_status(s)));
    }
    cairo_t *cr = cairo_create(s);
    cairo_scale(cr, k, k);
    report_plot_layout(&fig, cr);
    report_plot_render(&fig, cr);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    if (st == CAIRO_STATUS_SUCCESS && fmt == REPORT_PLOT_PNG) st = cairo_surface_write_to_png_stream(s, write_stream, f);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    int closed = fclose(f) == 0;
    if (st != CAIRO_STATUS_SUCCESS || !closed) {
        int e = errno;
        unlink(tmp);
        drop_layout(lf, ltmp);
        CORE_DIE("plot: cannot write %s: %s", o->out, st != CAIRO_STATUS_SUCCESS ? cairo_status_to_string(st) : strerror(e));
    }
    if (rename(tmp, o->out) != 0) {
        int e = errno;
        unlink(tmp);
        drop_layout(lf, ltmp);
        CORE_DIE("plot: cannot write %s: %s", o->out, strerror(e));
    }
    free(tmp);

    if (lf) dump_layout(lf, o->dump_layout, ltmp, &fig, fmt, k, &sel);

    report_plot_figure_free(&fig);
    report_plot_panels_free(panels, np);
    free(panels);
    for (int i = 0; i < nruns; i++) report_plot_run_free(&runs[i]);
    free(runs);
    sweep_fig_free(&sf);
    return np;
}
