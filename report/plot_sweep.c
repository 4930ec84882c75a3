#include "report/plot_sweep.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "report/plot_draw.h"

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int has_file(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = core_malloc(len);
    snprintf(p, len, "%s/%s", dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0 && S_ISREG(st.st_mode);
    free(p);
    return ok;
}

static int run_index(const sweep *sw, const char *name)
{
    for (int i = 0; i < sw->nruns; i++)
        if (!strcmp(sw->runs[i].name, name)) return i;
    return -1;
}

/* The sweep that holds every argument as one of its runs: their common parent's manifest. */
static int runs_of_one_sweep(const char *const *args, int nargs, sweep *sw, int *which)
{
    char *first = core_strdup(args[0]);
    for (size_t n = strlen(first); n > 1 && first[n - 1] == '/'; n--) first[n - 1] = 0;
    char *parent = core_strdup(dirname(first));
    free(first);
    int ok = is_dir(parent) && has_file(parent, "manifest.json");
    if (ok) sweep_load(sw, parent, "plot");
    for (int i = 0; i < nargs && ok; i++) {
        char *a = core_strdup(args[i]), *b = core_strdup(args[i]);
        for (size_t n = strlen(a); n > 1 && a[n - 1] == '/'; n--) a[n - 1] = b[n - 1] = 0;
        ok = !strcmp(dirname(a), parent) && (which[i] = run_index(sw, basename(b))) >= 0;
        free(a);
        free(b);
    }
    if (!ok && sw->dir) sweep_free(sw);
    free(parent);
    return ok;
}

int report_plot_sweep_expand(const char *const *args, int nargs, sweep *sw, char ***dirs, int *ndirs, int quiet)
{
    memset(sw, 0, sizeof *sw);
    int *which = core_calloc(nargs > 0 ? nargs : 1, sizeof *which), n = 0;
    char **out = NULL;
    if (nargs == 1 && is_dir(args[0]) && has_file(args[0], "manifest.json")) {
        sweep_load(sw, args[0], "plot");
        out = core_calloc(sw->nruns, sizeof *out);
        for (int i = 0; i < sw->nruns; i++) {
            char *d = sweep_run_dir(sw, i);
            if (has_file(d, "metrics.jsonl")) out[n++] = d;
            else free(d);
        }
        CHECK(n > 0, "plot: no run of the sweep '%s' has metrics yet (see 'sspose sweep status %s')", args[0], args[0]);
        if (n < sw->nruns && !quiet) core_warn("plot: %d of %d runs of the sweep have no metrics yet; left out", sw->nruns - n, sw->nruns);
    } else if (nargs > 1 && runs_of_one_sweep(args, nargs, sw, which)) {
        /* in the sweep's order (numeric), whatever order the shell gave */
        out = core_calloc(nargs, sizeof *out);
        for (int r = 0; r < sw->nruns; r++)
            for (int i = 0; i < nargs; i++)
                if (which[i] == r) {
                    out[n++] = core_strdup(args[i]);
                    break;
                }
    } else {
        free(which);
        return 0;
    }
    free(which);
    *dirs = out;
    *ndirs = n;
    return 1;
}

/* The sweep run of a loaded run directory, -1 when it is none of them. */
static int sweep_run_of(const sweep *sw, const report_plot_run *r)
{
    const char *slash = strrchr(r->dir, '/');
    return run_index(sw, slash ? slash + 1 : r->dir);
}

/* Values of an axis that the loaded runs actually take. */
static int values_present(const sweep *sw, const int *ri, int nruns, int a, int *present)
{
    memset(present, 0, sw->axes[a].nvals * sizeof *present);
    int n = 0;
    for (int i = 0; i < nruns; i++)
        if (ri[i] >= 0 && !present[sw->runs[ri[i]].at[a]]++) n++;
    return n;
}

static void short_value(const char *v, char *out, size_t len)
{
    if (strchr(v, ',')) snprintf(out, len, "[%s]", v);
    else snprintf(out, len, "%s", v);
}

static void add_item(report_plot_style *st, const char *text, int colour, int dash)
{
    st->items = core_realloc(st->items, (st->nitems + 1) * sizeof *st->items);
    report_plot_item *it = &st->items[st->nitems++];
    snprintf(it->text, sizeof it->text, "%s", text);
    it->colour = colour;
    it->dash = dash;
}

void report_plot_sweep_style(const sweep *sw, const report_plot_run *runs, int nruns, report_plot_style *st)
{
    memset(st, 0, sizeof *st);
    int *ri = core_malloc(nruns * sizeof *ri);
    for (int i = 0; i < nruns; i++) ri[i] = sweep_run_of(sw, &runs[i]);
    int varying[SWEEP_MAX_AXES] = {0}, nvary = 0;
    int *present = core_calloc(1, sizeof *present);
    for (int a = 0; a < sw->naxes; a++) {
        present = core_realloc(present, sw->axes[a].nvals * sizeof *present);
        varying[a] = values_present(sw, ri, nruns, a, present) > 1;
        nvary += varying[a];
    }
    /* line style: the second varying key, when it has few enough values to tell apart */
    int style = -1, seen = 0;
    for (int a = 0; a < sw->naxes && style < 0; a++)
        if (varying[a] && seen++ == 1 && sw->axes[a].nvals <= REPORT_PLOT_NDASH) style = a;
    /* colour: every other varying key; a group is one combination of their values, in the sweep's order */
    long *key = core_malloc(nruns * sizeof *key);
    for (int i = 0; i < nruns; i++) {
        key[i] = 0;
        for (int a = 0; a < sw->naxes; a++)
            if (varying[a] && a != style) key[i] = key[i] * sw->axes[a].nvals + (ri[i] >= 0 ? sw->runs[ri[i]].at[a] : 0);
    }
    st->colour = core_malloc(nruns * sizeof *st->colour);
    st->dash = core_malloc(nruns * sizeof *st->dash);
    int ncolour_axes = nvary - (style >= 0), single = -1;
    for (int a = 0; a < sw->naxes; a++)
        if (varying[a] && a != style) single = a;
    st->sequential = ncolour_axes == 1 && sw->axes[single].numeric;
    for (long k = 0, done = 0; done < nruns; k++) {
        int first = -1;
        for (int i = 0; i < nruns; i++)
            if (key[i] == k) {
                if (first < 0) first = i;
                st->colour[i] = st->ncolours;
                done++;
            }
        if (first < 0) continue;
        /* the legend text: the colour keys' values of this group */
        char text[256] = "";
        size_t len = 0;
        for (int a = 0; a < sw->naxes && ri[first] >= 0; a++) {
            if (!varying[a] || a == style) continue;
            char v[200];
            short_value(sw->axes[a].vals[sw->runs[ri[first]].at[a]], v, sizeof v);
            len += snprintf(text + len, sizeof text - len, ncolour_axes == 1 ? "%s%s = %s" : "%s%s=%s", len ? ", " : "",
                            sw->axes[a].short_name, v);
            if (len >= sizeof text) len = sizeof text - 1;
        }
        if (ri[first] < 0) snprintf(text, sizeof text, "%s", runs[first].name);
        if (!ncolour_axes) snprintf(text, sizeof text, "%s", "all runs");
        add_item(st, text, st->ncolours, -1);
        st->ncolours++;
    }
    for (int i = 0; i < nruns; i++) st->dash[i] = style >= 0 && ri[i] >= 0 ? sw->runs[ri[i]].at[style] : -1;
    if (style >= 0) {
        values_present(sw, ri, nruns, style, present);
        for (int v = 0; v < sw->axes[style].nvals; v++) {
            if (!present[v]) continue;
            char text[256], sv[200];
            short_value(sw->axes[style].vals[v], sv, sizeof sv);
            snprintf(text, sizeof text, "%s = %s", sw->axes[style].short_name, sv);
            add_item(st, text, -1, v);
        }
    }
    free(present);
    free(key);
    free(ri);
}

void report_plot_style_free(report_plot_style *st)
{
    free(st->colour);
    free(st->dash);
    free(st->items);
    memset(st, 0, sizeof *st);
}

void report_plot_style_colour(const report_plot_style *st, int group, double rgb[3])
{
    if (!st->sequential) {
        report_plot_run_colour(group, st->ncolours, rgb);
        return;
    }
    /* viridis, stopped short of its pale yellow end, which vanishes on white */
    static const double V[5][3] = {{0.267, 0.005, 0.329}, {0.229, 0.322, 0.546}, {0.128, 0.567, 0.551},
                                   {0.369, 0.789, 0.383}, {0.741, 0.873, 0.149}};
    double t = st->ncolours > 1 ? (double)group / (st->ncolours - 1) * 4 : 0;
    int i = (int)floor(t);
    if (i >= 4) i = 3;
    double f = t - i;
    for (int c = 0; c < 3; c++) rgb[c] = V[i][c] * (1 - f) + V[i + 1][c] * f;
}

/* The last logged value of a column. */
static int last_value(const report_plot_run *r, const char *path, double *v)
{
    const report_plot_col *c = report_plot_run_col(r, path);
    for (long i = r->nrows - 1; c && i >= 0; i--)
        if (c->state[i] == REPORT_PLOT_FINITE) {
            *v = c->v[i];
            return 1;
        }
    return 0;
}

void report_plot_weights_note(const report_plot_run *runs, int n, char *out, size_t len)
{
    out[0] = 0;
    if (n < 2) return;
    char differ[256] = "";
    size_t dl = 0;
    /* the logged weights.* first: what the totals were actually summed with */
    for (int c = 0; c < runs[0].ncols; c++) {
        const char *p = runs[0].cols[c].path;
        double w0, w;
        if (strncmp(p, "weights.", 8) || !last_value(&runs[0], p, &w0)) continue;
        int diff = 0;
        for (int i = 1; i < n && !diff; i++) diff = last_value(&runs[i], p, &w) && w != w0;
        if (diff && dl + strlen(p) + 3 < sizeof differ) dl += snprintf(differ + dl, sizeof differ - dl, "%s%s", dl ? ", " : "", p + 8);
    }
    if (!dl) {
        /* else the config's loss weights */
        static const char *keys[] = {"loss.alpha", "loss.gamma", "loss.delta", "loss.beta", "loss.offset_weight"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const char *v0 = core_config_kv_get(&runs[0].config, keys[k]);
            int diff = 0;
            for (int i = 1; i < n && v0 && !diff; i++) {
                const char *v = core_config_kv_get(&runs[i].config, keys[k]);
                diff = v && strcmp(v, v0);
            }
            if (diff) dl += snprintf(differ + dl, sizeof differ - dl, "%s%s", dl ? ", " : "", keys[k] + 5);
        }
    }
    if (dl)
        snprintf(out, len, "Note: the runs weigh the loss terms differently (%s), so their total losses do not compare; "
                           "compare the unweighted term panels.", differ);
}
