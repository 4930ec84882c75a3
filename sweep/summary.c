/* `sweep summary`: one row per run (swept values, progress, losses, the
 * unweighted last-stage terms, validation AP, status) as Markdown, JSON or CSV. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "sweep/sweep.h"
#include "trainer/rundir.h"

typedef struct {
    int run;
    sweep_state st;
} row;

typedef struct {
    const sweep *s;
    int axis;   /* >= 0: a swept key */
    int field;  /* else one of F_* */
    int desc;
} sort_key;

enum { F_STEP, F_FINAL, F_BEST, F_BEST_AP, F_FINAL_AP, F_STATUS, F_RUN };
static const char *FIELDS[] = {"step", "final_loss", "best_loss", "best_val_ap", "final_val_ap", "status", "run"};

static sort_key g_sort; /* qsort has no context argument in C11 */

static double field_value(const row *r, int f)
{
    switch (f) {
    case F_STEP: return (double)r->st.step;
    case F_FINAL: return r->st.final_loss;
    case F_BEST: return r->st.best_loss;
    case F_BEST_AP: return r->st.best_val_ap;
    case F_FINAL_AP: return r->st.final_val_ap;
    case F_STATUS: return r->st.status;
    default: return r->run;
    }
}

static int cmp_rows(const void *pa, const void *pb)
{
    const row *a = pa, *b = pb;
    int c = 0;
    if (g_sort.axis >= 0) {
        const sweep_axis *ax = &g_sort.s->axes[g_sort.axis];
        const char *va = ax->vals[g_sort.s->runs[a->run].at[g_sort.axis]];
        const char *vb = ax->vals[g_sort.s->runs[b->run].at[g_sort.axis]];
        if (ax->numeric) {
            double x = strtod(va, NULL), y = strtod(vb, NULL);
            c = (x > y) - (x < y);
        } else {
            /* a non-numeric axis keeps the grid's order */
            c = g_sort.s->runs[a->run].at[g_sort.axis] - g_sort.s->runs[b->run].at[g_sort.axis];
        }
    } else {
        double x = field_value(a, g_sort.field), y = field_value(b, g_sort.field);
        /* runs without the value go last either way */
        if (isnan(x) || isnan(y)) return isnan(x) - isnan(y) ? isnan(x) - isnan(y) : a->run - b->run;
        c = (x > y) - (x < y);
    }
    if (g_sort.desc) c = -c;
    return c ? c : a->run - b->run;
}

static void parse_sort(const sweep *s, const char *spec, sort_key *k)
{
    memset(k, 0, sizeof *k);
    k->s = s;
    k->axis = -1;
    k->field = F_RUN;
    if (!spec) return;
    if (*spec == '-') { k->desc = 1; spec++; }
    k->axis = sweep_axis_find(s, spec);
    if (k->axis >= 0) return;
    for (int f = 0; f < (int)(sizeof FIELDS / sizeof FIELDS[0]); f++)
        if (!strcmp(spec, FIELDS[f])) { k->field = f; return; }
    CORE_DIE("sweep summary: unknown --sort column '%s' (a swept key, or step, final_loss, best_loss, best_val_ap, "
             "final_val_ap, status, run; '-' in front: descending)", spec);
}

/* The union of the runs' last-stage term names, first seen first. */
static int term_union(const row *rows, int n, char names[][32])
{
    int nt = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < rows[i].st.nterms; t++) {
            int have = 0;
            for (int k = 0; k < nt && !have; k++) have = !strcmp(names[k], rows[i].st.term_names[t]);
            if (!have && nt < SWEEP_MAX_TERMS) snprintf(names[nt++], 32, "%s", rows[i].st.term_names[t]);
        }
    return nt;
}

static double term_of(const sweep_state *st, const char *name)
{
    for (int t = 0; t < st->nterms; t++)
        if (!strcmp(st->term_names[t], name)) return st->terms[t];
    return NAN;
}

static void fmt(char *out, size_t len, double v)
{
    if (isnan(v)) snprintf(out, len, "-");
    else snprintf(out, len, "%.6g", v);
}

/* Total losses weigh the terms; when the weights differ between runs they do not compare. */
static int weights_differ(const row *rows, int n)
{
    for (int i = 1; i < n; i++)
        for (int t = 0; t < rows[i].st.nterms; t++)
            for (int u = 0; u < rows[0].st.nterms; u++)
                if (!strcmp(rows[0].st.term_names[u], rows[i].st.term_names[t]) &&
                    !isnan(rows[0].st.weights[u]) && !isnan(rows[i].st.weights[t]) &&
                    rows[0].st.weights[u] != rows[i].st.weights[t])
                    return 1;
    return 0;
}

static void markdown(FILE *out, const sweep *s, const row *rows, int n, char terms[][32], int nt, int with_ap)
{
    fprintf(out, "|");
    for (int a = 0; a < s->naxes; a++) fprintf(out, " %s |", s->axes[a].short_name);
    fprintf(out, " step | final loss | best loss |");
    for (int t = 0; t < nt; t++) fprintf(out, " %s |", terms[t]);
    if (with_ap) fprintf(out, " best val AP | final val AP |");
    fprintf(out, " status |\n|");
    for (int c = 0; c < s->naxes + 3 + nt + 2 * with_ap + 1; c++) fprintf(out, "---|");
    fprintf(out, "\n");
    for (int i = 0; i < n; i++) {
        const sweep_state *st = &rows[i].st;
        char b[64];
        fprintf(out, "|");
        for (int a = 0; a < s->naxes; a++) fprintf(out, " %s |", s->axes[a].vals[s->runs[rows[i].run].at[a]]);
        fprintf(out, " %ld/%ld |", st->step, st->steps);
        fmt(b, sizeof b, st->final_loss);
        fprintf(out, " %s |", b);
        fmt(b, sizeof b, st->best_loss);
        fprintf(out, " %s |", b);
        for (int t = 0; t < nt; t++) {
            fmt(b, sizeof b, term_of(st, terms[t]));
            fprintf(out, " %s |", b);
        }
        if (with_ap) {
            fmt(b, sizeof b, st->best_val_ap);
            fprintf(out, " %s |", b);
            fmt(b, sizeof b, st->final_val_ap);
            fprintf(out, " %s |", b);
        }
        fprintf(out, " %s |\n", sweep_status_name(st->status));
    }
    if (nt) fprintf(out, "\nTerms: unweighted, last stage, last logged step.\n");
    if (weights_differ(rows, n))
        fprintf(out, "Note: the runs' loss weights differ, so their total losses do not compare; compare the "
                     "unweighted terms%s.\n", with_ap ? " or validation AP" : "");
}

static cJSON *num_or_null(double v) { return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v); }

static cJSON *to_json(const sweep *s, const row *rows, int n)
{
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        const sweep_state *st = &rows[i].st;
        cJSON *o = cJSON_CreateObject();
        for (int a = 0; a < s->naxes; a++) {
            const char *v = s->axes[a].vals[s->runs[rows[i].run].at[a]];
            cJSON_AddItemToObject(o, s->axes[a].key, s->axes[a].numeric ? cJSON_CreateNumber(strtod(v, NULL))
                                                                         : cJSON_CreateString(v));
        }
        cJSON_AddNumberToObject(o, "step", (double)st->step);
        cJSON_AddNumberToObject(o, "steps", (double)st->steps);
        cJSON_AddItemToObject(o, "final_loss", num_or_null(st->final_loss));
        cJSON_AddItemToObject(o, "best_loss", num_or_null(st->best_loss));
        cJSON_AddItemToObject(o, "best_val_ap", num_or_null(st->best_val_ap));
        cJSON_AddItemToObject(o, "final_val_ap", num_or_null(st->final_val_ap));
        cJSON *terms = cJSON_AddObjectToObject(o, "last_stage_terms");
        for (int t = 0; t < st->nterms; t++) cJSON_AddItemToObject(terms, st->term_names[t], num_or_null(st->terms[t]));
        cJSON_AddStringToObject(o, "status", sweep_status_name(st->status));
        if (st->status == SWEEP_FAILED) cJSON_AddStringToObject(o, "error", st->error);
        char *d = sweep_run_dir(s, rows[i].run);
        cJSON_AddStringToObject(o, "run_dir", d);
        free(d);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* CSV fields: quoted when they hold a comma, quote or newline. */
static void csv_field(FILE *f, const char *v, int last)
{
    if (strpbrk(v, ",\"\n")) {
        fputc('"', f);
        for (; *v; v++) {
            if (*v == '"') fputc('"', f);
            fputc(*v, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
    fputc(last ? '\n' : ',', f);
}

static void csv(FILE *f, const sweep *s, const row *rows, int n, char terms[][32], int nt)
{
    for (int a = 0; a < s->naxes; a++) csv_field(f, s->axes[a].key, 0);
    const char *fixed[] = {"step", "steps", "final_loss", "best_loss"};
    for (int k = 0; k < 4; k++) csv_field(f, fixed[k], 0);
    for (int t = 0; t < nt; t++) {
        char h[64];
        snprintf(h, sizeof h, "last_stage_%.31s", terms[t]);
        csv_field(f, h, 0);
    }
    csv_field(f, "best_val_ap", 0);
    csv_field(f, "final_val_ap", 0);
    csv_field(f, "status", 0);
    csv_field(f, "run_dir", 1);
    for (int i = 0; i < n; i++) {
        const sweep_state *st = &rows[i].st;
        char b[64];
        for (int a = 0; a < s->naxes; a++) csv_field(f, s->axes[a].vals[s->runs[rows[i].run].at[a]], 0);
        snprintf(b, sizeof b, "%ld", st->step);
        csv_field(f, b, 0);
        snprintf(b, sizeof b, "%ld", st->steps);
        csv_field(f, b, 0);
        double v[] = {st->final_loss, st->best_loss};
        for (int k = 0; k < 2; k++) {
            if (isnan(v[k])) b[0] = 0;
            else snprintf(b, sizeof b, "%.9g", v[k]);
            csv_field(f, b, 0);
        }
        for (int t = 0; t < nt; t++) {
            double x = term_of(st, terms[t]);
            if (isnan(x)) b[0] = 0;
            else snprintf(b, sizeof b, "%.9g", x);
            csv_field(f, b, 0);
        }
        double ap[] = {st->best_val_ap, st->final_val_ap};
        for (int k = 0; k < 2; k++) {
            if (isnan(ap[k])) b[0] = 0;
            else snprintf(b, sizeof b, "%.9g", ap[k]);
            csv_field(f, b, 0);
        }
        csv_field(f, sweep_status_name(st->status), 0);
        char *d = sweep_run_dir(s, rows[i].run);
        csv_field(f, d, 1);
        free(d);
    }
}

static void write_out(const char *path, const char *text, const char *what)
{
    if (!strcmp(path, "-")) {
        fputs(text, stdout);
        return;
    }
    trainer_write_text_atomic(path, text);
    fprintf(stderr, "wrote %s (%s)\n", path, what);
}

static char *csv_text(const sweep *s, const row *rows, int n, char terms[][32], int nt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f, "sweep summary: out of memory");
    csv(f, s, rows, n, terms, nt);
    fclose(f);
    return buf;
}

void sweep_summary(const sweep *s, const sweep_summary_opts *o)
{
    parse_sort(s, o->sort, &g_sort);
    row *rows = core_calloc(s->nruns, sizeof *rows);
    int with_ap = 0;
    for (int i = 0; i < s->nruns; i++) {
        char *d = sweep_run_dir(s, i);
        rows[i].run = i;
        sweep_state_read(d, &rows[i].st, 1);
        with_ap |= !isnan(rows[i].st.best_val_ap);
        free(d);
    }
    qsort(rows, s->nruns, sizeof *rows, cmp_rows);
    char terms[SWEEP_MAX_TERMS][32];
    int nt = term_union(rows, s->nruns, terms);
    int table_to_stdout = !(o->json && !strcmp(o->json, "-")) && !(o->csv && !strcmp(o->csv, "-"));
    if (table_to_stdout) markdown(stdout, s, rows, s->nruns, terms, nt, with_ap);
    if (o->json) {
        cJSON *j = to_json(s, rows, s->nruns);
        char *text = cJSON_Print(j);
        size_t len = strlen(text);
        text = core_realloc(text, len + 2);
        strcpy(text + len, "\n");
        write_out(o->json, text, "JSON");
        free(text);
        cJSON_Delete(j);
    }
    if (o->csv) {
        char *text = csv_text(s, rows, s->nruns, terms, nt);
        write_out(o->csv, text, "CSV");
        free(text);
    }
    fflush(stdout);
    free(rows);
}
