#include "report/plot_data.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"

/* ---------------------------------------------------------------- reading */

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) *--e = 0;
    return s;
}

static int add_col(report_plot_run *r, const char *path, long cap)
{
    if (r->ncols == r->capcols) {
        r->capcols = r->capcols ? 2 * r->capcols : 32;
        r->cols = core_realloc(r->cols, r->capcols * sizeof *r->cols);
    }
    report_plot_col *c = &r->cols[r->ncols];
    c->path = core_strdup(path);
    c->v = core_calloc(cap, sizeof *c->v);
    c->state = core_calloc(cap, 1); /* rows before this column appeared lack it */
    return r->ncols++;
}

static int find_col(const report_plot_run *r, const char *path, int hint)
{
    /* Lines list their keys in the same order, so the column after the last one found
     * is nearly always the next: this keeps reading linear in the file size. */
    if (hint >= 0 && hint < r->ncols && !strcmp(r->cols[hint].path, path)) return hint;
    for (int i = 0; i < r->ncols; i++)
        if (!strcmp(r->cols[i].path, path)) return i;
    return -1;
}

typedef struct {
    report_plot_run *r;
    long row, cap;
    int hint;
} flat_ctx;

static void flatten(flat_ctx *f, const cJSON *node, char *path, size_t len)
{
    for (const cJSON *it = node->child; it; it = it->next) {
        if (!it->string) continue;
        size_t n = strlen(it->string);
        if (len + n + 2 > 256) continue; /* absurdly deep keys are not metrics */
        if (len) path[len] = '.';
        memcpy(path + len + (len ? 1 : 0), it->string, n + 1);
        size_t plen = len + (len ? 1 : 0) + n;
        if (cJSON_IsObject(it)) {
            flatten(f, it, path, plen);
        } else if (cJSON_IsNumber(it) || cJSON_IsNull(it)) {
            int c = find_col(f->r, path, f->hint);
            if (c < 0) c = add_col(f->r, path, f->cap);
            f->hint = c + 1;
            /* cJSON writes NaN and Inf as null: a null number is a non-finite value */
            double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
            f->r->cols[c].v[f->row] = v;
            f->r->cols[c].state[f->row] = isfinite(v) ? REPORT_PLOT_FINITE : REPORT_PLOT_NONFINITE;
        }
        path[len] = 0;
    }
}

/* Python's json module and some loggers write bare NaN / Infinity / -Infinity,
 * which are not JSON; they mean what cJSON's null means here. */
static char *nan_tokens_to_null(const char *s)
{
    size_t n = strlen(s);
    char *out = core_malloc(2 * n + 1); /* "nan" -> "null" grows: at most 4 bytes for 3 */
    size_t o = 0;
    int in_str = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (in_str) {
            out[o++] = c;
            if (c == '\\' && i + 1 < n) out[o++] = s[++i];
            else if (c == '"') in_str = 0;
            i++;
            continue;
        }
        if (c == '"') { in_str = 1; out[o++] = c; i++; continue; }
        static const char *tok[] = {"-Infinity", "Infinity", "-NaN", "NaN", "-nan", "nan", "-inf", "inf"};
        int hit = 0;
        for (size_t t = 0; t < sizeof tok / sizeof tok[0] && !hit; t++) {
            size_t k = strlen(tok[t]);
            if (!strncmp(s + i, tok[t], k)) {
                memcpy(out + o, "null", 4);
                o += 4;
                i += k;
                hit = 1;
            }
        }
        if (!hit) out[o++] = s[i++];
    }
    out[o] = 0;
    return out;
}

static void grow_rows(report_plot_run *r, long *cap)
{
    long nc = *cap * 2;
    r->step = core_realloc(r->step, nc * sizeof *r->step);
    for (int i = 0; i < r->ncols; i++) {
        r->cols[i].v = core_realloc(r->cols[i].v, nc * sizeof(double));
        r->cols[i].state = core_realloc(r->cols[i].state, nc);
    }
    *cap = nc;
}

/* Returns 1 when the line became a row. */
static int add_line(report_plot_run *r, const char *line, long *cap)
{
    cJSON *j = cJSON_Parse(line);
    if (!j) {
        char *fixed = nan_tokens_to_null(line);
        j = cJSON_Parse(fixed);
        free(fixed);
    }
    const cJSON *s = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
    if (!cJSON_IsNumber(s) || !isfinite(s->valuedouble) || fabs(s->valuedouble) > 1e15) {
        cJSON_Delete(j);
        return 0;
    }
    if (r->nrows == *cap) grow_rows(r, cap);
    long row = r->nrows++;
    r->step[row] = (long)s->valuedouble;
    for (int i = 0; i < r->ncols; i++) r->cols[i].state[row] = REPORT_PLOT_MISSING;
    char path[260] = "";
    flat_ctx f = {r, row, *cap, 0};
    flatten(&f, j, path, 0);
    cJSON_Delete(j);
    return 1;
}

/* A concatenated or hand-edited file may repeat or reorder steps: sort them,
 * and of a repeated step keep the line written last (the retrained one). */
static void order_rows(report_plot_run *r)
{
    long n = r->nrows, sorted = 1;
    for (long i = 1; i < n && sorted; i++) sorted = r->step[i] > r->step[i - 1];
    if (sorted) return;
    long *idx = core_malloc(n * sizeof *idx);
    for (long i = 0; i < n; i++) idx[i] = i;
    /* insertion sort by (step, file order): stable, and files are nearly sorted */
    for (long i = 1; i < n; i++) {
        long k = idx[i], j = i;
        while (j > 0 && r->step[idx[j - 1]] > r->step[k]) { idx[j] = idx[j - 1]; j--; }
        idx[j] = k;
    }
    long m = 0;
    for (long i = 0; i < n; i++) {
        if (i + 1 < n && r->step[idx[i + 1]] == r->step[idx[i]]) { r->duplicates++; continue; }
        idx[m++] = idx[i];
    }
    long *step = core_malloc(m * sizeof *step);
    for (long i = 0; i < m; i++) step[i] = r->step[idx[i]];
    free(r->step);
    r->step = step;
    for (int c = 0; c < r->ncols; c++) {
        double *v = core_malloc(m * sizeof *v);
        unsigned char *st = core_malloc(m ? m : 1);
        for (long i = 0; i < m; i++) { v[i] = r->cols[c].v[idx[i]]; st[i] = r->cols[c].state[idx[i]]; }
        free(r->cols[c].v);
        free(r->cols[c].state);
        r->cols[c].v = v;
        r->cols[c].state = st;
    }
    r->nrows = m;
    free(idx);
}

static void find_terms(report_plot_run *r)
{
    for (int i = 0; i < r->ncols; i++) {
        int s, k = 0;
        const char *p = r->cols[i].path;
        if (sscanf(p, "terms.stage%d.%n", &s, &k) != 1 || k == 0 || s < 1) continue;
        const char *t = p + k;
        if (strchr(t, '.') || strlen(t) >= sizeof r->terms[0]) continue;
        if (s > r->nstages) r->nstages = s;
        int have = 0;
        for (int j = 0; j < r->nterms && !have; j++) have = !strcmp(r->terms[j], t);
        if (!have && r->nterms < REPORT_PLOT_MAX_TERMS) snprintf(r->terms[r->nterms++], sizeof r->terms[0], "%s", t);
    }
}

static void read_config(report_plot_run *r)
{
    size_t len = strlen(r->dir) + 16;
    char *path = core_malloc(len);
    snprintf(path, len, "%s/config.ini", r->dir);
    /* a run of another version may carry keys this build lacks: read, don't judge */
    core_config_kv_read(&r->config, path);
    free(path);
    r->config_steps = -1;
    const char *v = core_config_kv_get(&r->config, "train.steps");
    if (v) {
        char *end;
        long n = strtol(v, &end, 10);
        if (end != v && !*end && n > 0) r->config_steps = n;
    }
}

/* Sweep folders hold runs one level down; counting them makes the error say so. */
static int runs_below(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 20;
        char *p = core_malloc(len);
        snprintf(p, len, "%s/%s/metrics.jsonl", dir, e->d_name);
        struct stat st;
        n += stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
    }
    closedir(d);
    return n;
}

void report_plot_run_load(report_plot_run *r, const char *arg)
{
    memset(r, 0, sizeof *r);
    CHECK(*arg, "plot: empty RUNDIR argument");
    struct stat st;
    CHECK(stat(arg, &st) == 0, "plot: run directory '%s' does not exist: %s", arg, strerror(errno));
    char *dir = core_strdup(arg);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = 0;
    if (S_ISDIR(st.st_mode)) {
        r->dir = dir;
        size_t len = strlen(dir) + 16;
        r->metrics = core_malloc(len);
        snprintf(r->metrics, len, "%s/metrics.jsonl", dir);
        if (stat(r->metrics, &st) != 0) {
            int nsub = runs_below(dir);
            if (nsub)
                CORE_DIE("plot: no metrics.jsonl in '%s', but %d of its folders have one: give them (e.g. %s/*)", arg,
                         nsub, dir);
            CORE_DIE("plot: no metrics.jsonl in '%s' (not a run directory of 'sspose train'?)", arg);
        }
    } else {
        /* a metrics file named directly: its folder is the run directory */
        r->metrics = dir;
        char *slash = strrchr(dir, '/');
        r->dir = slash ? strndup(dir, slash == dir ? 1 : (size_t)(slash - dir)) : core_strdup(".");
        CHECK(r->dir, "out of memory");
    }
    CHECK(!S_ISDIR(st.st_mode), "plot: %s is a directory, not a metrics file", r->metrics);
    FILE *f = fopen(r->metrics, "r");
    CHECK(f, "plot: cannot read %s: %s", r->metrics, strerror(errno));

    long cap = 256, lineno = 0, nonblank = 0;
    r->step = core_malloc(cap * sizeof *r->step);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    errno = 0;
    while ((n = getline(&line, &lcap, f)) > 0) {
        lineno++;
        int complete = line[n - 1] == '\n';
        if (!*trim(line)) continue;
        nonblank++;
        if (add_line(r, line, &cap)) continue;
        /* The writer appends whole lines, so only an unterminated last line can be
         * one still being written (or cut by a kill); anything else is damage. */
        if (!complete) r->partial_last = 1;
        else if (!r->malformed++) r->first_malformed = lineno;
    }
    int rerr = ferror(f);
    free(line);
    fclose(f);
    CHECK(!rerr, "plot: cannot read %s: read error", r->metrics);
    CHECK(nonblank > 0, "plot: %s is empty (no step logged yet?)", r->metrics);
    if (r->nrows == 0) {
        if (r->malformed)
            CORE_DIE("plot: %s has no usable line (%ld malformed, the first at line %ld; each line must be a JSON "
                     "object with a numeric \"step\")", r->metrics, r->malformed, r->first_malformed);
        CORE_DIE("plot: %s has no complete line yet (its only line is partly written)", r->metrics);
    }
    order_rows(r);
    find_terms(r);
    read_config(r);
}

void report_plot_run_warn(const report_plot_run *r)
{
    if (r->partial_last)
        core_warn("%s: ignored a partly written last line (run in progress?)", r->metrics);
    if (r->malformed)
        core_warn("%s: skipped %ld malformed line%s (the first at line %ld)", r->metrics, r->malformed,
                  r->malformed == 1 ? "" : "s", r->first_malformed);
    if (r->duplicates)
        core_warn("%s: %ld logged step%s appeared twice; kept the later line", r->metrics, r->duplicates,
                  r->duplicates == 1 ? "" : "s");
}

void report_plot_run_free(report_plot_run *r)
{
    for (int i = 0; i < r->ncols; i++) {
        free(r->cols[i].path);
        free(r->cols[i].v);
        free(r->cols[i].state);
    }
    core_config_kv_free(&r->config);
    for (int i = 0; i < r->ndiff; i++) free(r->diff[i]);
    free(r->cols);
    free(r->diff);
    free(r->step);
    free(r->dir);
    free(r->metrics);
    free(r->name);
    free(r->label);
    memset(r, 0, sizeof *r);
}

const report_plot_col *report_plot_run_col(const report_plot_run *r, const char *path)
{
    int i = find_col(r, path, -1);
    return i < 0 ? NULL : &r->cols[i];
}

/* ---------------------------------------------------------------- labels */

static const char *config_get(const report_plot_run *r, const char *key)
{
    return core_config_kv_get(&r->config, key);
}

/* Equal as numbers when both are numbers: "1e-5" and "1.0000000000000001e-05" are one lr. */
static int same_value(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    char *ea, *eb;
    double x = strtod(a, &ea), y = strtod(b, &eb);
    if (ea != a && !*ea && eb != b && !*eb) return x == y;
    return !strcmp(a, b);
}

static void short_value(const char *v, char *out, size_t len)
{
    char *end;
    double x = v ? strtod(v, &end) : 0;
    if (v && end != v && !*end) snprintf(out, len, "%.6g", x);
    else snprintf(out, len, "%s", v ? v : "-");
}

static int key_rank(const char *key)
{
    static const char *order[] = {"loss.", "train.", "model.", "data.", "eval.", "comm."};
    for (int i = 0; i < 6; i++)
        if (!strncmp(key, order[i], strlen(order[i]))) return i;
    return 6;
}

void report_plot_runs_label(report_plot_run *runs, int n, int max_keys)
{
    for (int i = 0; i < n; i++) {
        const char *d = runs[i].dir, *slash = strrchr(d, '/');
        const char *base = slash && slash[1] ? slash + 1 : d;
        char real[PATH_MAX];
        if ((!strcmp(base, ".") || !strcmp(base, "..")) && realpath(d, real)) {
            slash = strrchr(real, '/');
            base = slash && slash[1] ? slash + 1 : real;
        }
        free(runs[i].name);
        runs[i].name = core_strdup(base);
    }
    /* Sweeps often nest as sweep/lr1/run, sweep/lr2/run: same names need the path. */
    char *clash = core_calloc(n, 1);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            clash[i] |= i != j && !strcmp(runs[i].name, runs[j].name) && strcmp(runs[i].dir, runs[j].dir);
    for (int i = 0; i < n; i++)
        if (clash[i]) {
            free(runs[i].name);
            runs[i].name = core_strdup(runs[i].dir);
        }
    free(clash);

    /* Keys whose values differ, in the order of the first run that has a config. */
    int nkeys = 0, capk = 0;
    const char **keys = NULL;
    int with_config = 0;
    for (int i = 0; i < n; i++) with_config += runs[i].config.n > 0;
    for (int i = 0; i < n && with_config > 1; i++)
        for (int k = 0; k < runs[i].config.n; k++) {
            const char *key = runs[i].config.keys[k];
            int seen = 0;
            for (int j = 0; j < nkeys && !seen; j++) seen = !strcmp(keys[j], key);
            if (seen) continue;
            int differs = 0;
            for (int j = 0; j < n && !differs; j++)
                if (runs[j].config.n) differs = !same_value(config_get(&runs[j], key), runs[i].config.vals[k]);
            if (!differs) continue;
            if (nkeys == capk) keys = core_realloc(keys, (capk = capk ? 2 * capk : 16) * sizeof *keys);
            keys[nkeys++] = key;
        }
    /* Sweeps vary the loss and the schedule; paths and devices differ too, but say less:
     * name the telling keys first (a stable sort, config order within a section). */
    for (int i = 1; i < nkeys; i++) {
        const char *k = keys[i];
        int j = i;
        while (j > 0 && key_rank(keys[j - 1]) > key_rank(k)) { keys[j] = keys[j - 1]; j--; }
        keys[j] = k;
    }
    for (int i = 0; i < n; i++) {
        report_plot_run *r = &runs[i];
        size_t cap = strlen(r->name) + 64, len = 0;
        r->label = core_malloc(cap);
        len = snprintf(r->label, cap, "%s", r->name);
        if (!r->config.n || !nkeys) continue;
        r->diff = core_calloc(nkeys, sizeof *r->diff);
        for (int k = 0; k < nkeys; k++) {
            char v[96], item[360];
            short_value(config_get(r, keys[k]), v, sizeof v);
            /* The section only helps when two differing keys share a name ("train.lr" is "lr"). */
            const char *shown = keys[k], *dot = strchr(keys[k], '.');
            if (dot) {
                int unique = 1;
                for (int j = 0; j < nkeys && unique; j++) {
                    const char *dj = strchr(keys[j], '.');
                    unique = j == k || strcmp(dj ? dj + 1 : keys[j], dot + 1);
                }
                if (unique) shown = dot + 1;
            }
            snprintf(item, sizeof item, "%s=%s", shown, v);
            r->diff[r->ndiff++] = core_strdup(item);
            if (k < max_keys || nkeys == max_keys + 1) {
                if (len + strlen(item) + 8 > cap) r->label = core_realloc(r->label, cap = 2 * cap + strlen(item) + 8);
                len += snprintf(r->label + len, cap - len, "%s%s", k ? ", " : "  ", item);
            } else if (k == max_keys) {
                if (len + 32 > cap) r->label = core_realloc(r->label, cap = 2 * cap + 32);
                len += snprintf(r->label + len, cap - len, ", +%d more", nkeys - max_keys);
            }
        }
    }
    free(keys);
}

/* ---------------------------------------------------------------- panels */

enum { Q_PATH, Q_TERM_SUM, Q_TERM_STAGE, Q_WEIGHTED };

typedef struct {
    int kind;
    char name[256]; /* the path, or the term */
    int stage;     /* Q_TERM_STAGE: 1-based, 0 = the run's last */
} qspec;

#define MAX_STAGES 64

/* A quantity resolved against one run's columns. */
typedef struct {
    int kind, n;
    const report_plot_col *c[MAX_STAGES];
    const report_plot_col *w;
} qcols;

static void resolve(const report_plot_run *r, const qspec *q, qcols *o)
{
    memset(o, 0, sizeof *o);
    o->kind = q->kind;
    char p[160];
    if (q->kind == Q_PATH) {
        o->c[0] = report_plot_run_col(r, q->name);
        o->n = o->c[0] != NULL;
        return;
    }
    int s0 = 1, s1 = r->nstages < MAX_STAGES ? r->nstages : MAX_STAGES;
    if (q->kind == Q_TERM_STAGE) s0 = s1 = q->stage ? q->stage : r->nstages;
    for (int s = s0; s >= 1 && s <= s1; s++) {
        snprintf(p, sizeof p, "terms.stage%d.%s", s, q->name);
        const report_plot_col *c = report_plot_run_col(r, p);
        if (c) o->c[o->n++] = c;
    }
    if (q->kind == Q_WEIGHTED) {
        snprintf(p, sizeof p, "weights.%s", q->name);
        o->w = report_plot_run_col(r, p);
        if (!o->w) o->n = 0;
    }
}

static int qvalue(const qcols *q, long row, double *v)
{
    if (!q->n) return REPORT_PLOT_MISSING;
    double sum = 0;
    int any = 0, bad = 0;
    for (int i = 0; i < q->n; i++) {
        int st = q->c[i]->state[row];
        if (st == REPORT_PLOT_MISSING) continue;
        any = 1;
        if (st == REPORT_PLOT_NONFINITE) bad = 1;
        else sum += q->c[i]->v[row];
    }
    if (q->w) {
        int st = q->w->state[row];
        if (st == REPORT_PLOT_MISSING) return REPORT_PLOT_MISSING;
        if (st == REPORT_PLOT_NONFINITE) bad = 1;
        else sum *= q->w->v[row];
    }
    if (!any) return REPORT_PLOT_MISSING;
    *v = bad ? NAN : sum;
    return bad || !isfinite(sum) ? REPORT_PLOT_NONFINITE : REPORT_PLOT_FINITE;
}

const char report_plot_metric_help[] =
    "loss, val, weighted, terms, last-stage, stageN, lr, grad_norm, samples_per_s, time, "
    "a loss term (heat, paf, offset, ps, kl, hp, consistency), or a metrics.jsonl key such as time.step";

typedef struct {
    char metric[256], title[300];
    int log;
    int nq;
    qspec q[REPORT_PLOT_MAX_QTY];
    char qname[REPORT_PLOT_MAX_QTY][REPORT_PLOT_QTY_LEN];
} pspec;

static void add_q(pspec *p, int kind, const char *name, int stage, const char *shown)
{
    if (p->nq == REPORT_PLOT_MAX_QTY) return;
    qspec *q = &p->q[p->nq];
    q->kind = kind;
    q->stage = stage;
    snprintf(q->name, sizeof q->name, "%.*s", (int)sizeof q->name - 1, name);
    snprintf(p->qname[p->nq++], sizeof p->qname[0], "%.*s", (int)sizeof p->qname[0] - 1, shown);
}

/* Builds a panel spec for one name; returns 0 when the name means nothing. */
static int spec_of(const char *m, const report_plot_run *runs, int nruns, pspec *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->metric, sizeof p->metric, "%s", m);
    /* The union of the runs' terms, so that runs of different loss stacks share panels. */
    char terms[REPORT_PLOT_MAX_TERMS][32];
    int nt = 0, maxstages = 0;
    for (int i = 0; i < nruns; i++) {
        if (runs[i].nstages > maxstages) maxstages = runs[i].nstages;
        for (int t = 0; t < runs[i].nterms; t++) {
            int have = 0;
            for (int k = 0; k < nt && !have; k++) have = !strcmp(terms[k], runs[i].terms[t]);
            if (!have && nt < REPORT_PLOT_MAX_TERMS) snprintf(terms[nt++], sizeof terms[0], "%s", runs[i].terms[t]);
        }
    }
    int stage = 0, k = 0;
    if (!strcmp(m, "loss")) {
        snprintf(p->title, sizeof p->title, "total loss");
        p->log = 1;
        add_q(p, Q_PATH, "loss", 0, "loss");
    } else if (!strcmp(m, "weighted")) {
        snprintf(p->title, sizeof p->title, "weighted terms (weight \xc3\x97 sum over stages)");
        p->log = 1;
        for (int t = 0; t < nt; t++) add_q(p, Q_WEIGHTED, terms[t], 0, terms[t]);
    } else if (!strcmp(m, "terms")) {
        snprintf(p->title, sizeof p->title, "terms, sum over stages (unweighted)");
        p->log = 1;
        for (int t = 0; t < nt; t++) add_q(p, Q_TERM_SUM, terms[t], 0, terms[t]);
    } else if (!strcmp(m, "last-stage")) {
        if (nruns == 1 || maxstages == 0) snprintf(p->title, sizeof p->title, "terms, last stage (stage%d)", maxstages);
        else snprintf(p->title, sizeof p->title, "terms, last stage of each run");
        p->log = 1;
        for (int t = 0; t < nt; t++) add_q(p, Q_TERM_STAGE, terms[t], 0, terms[t]);
    } else if (sscanf(m, "stage%d%n", &stage, &k) == 1 && !m[k] && stage >= 1 && stage <= MAX_STAGES) {
        snprintf(p->title, sizeof p->title, "terms, stage %d", stage);
        p->log = 1;
        for (int t = 0; t < nt; t++) add_q(p, Q_TERM_STAGE, terms[t], stage, terms[t]);
    } else if (!strcmp(m, "val")) {
        snprintf(p->title, sizeof p->title, "validation (COCO keypoints)");
        add_q(p, Q_PATH, "val.ap", 0, "AP");
        add_q(p, Q_PATH, "val.ap50", 0, "AP50");
        add_q(p, Q_PATH, "val.ar", 0, "AR");
    } else if (!strcmp(m, "lr")) {
        snprintf(p->title, sizeof p->title, "learning rate");
        add_q(p, Q_PATH, "lr", 0, "lr");
    } else if (!strcmp(m, "grad_norm")) {
        snprintf(p->title, sizeof p->title, "gradient norm");
        p->log = 1;
        add_q(p, Q_PATH, "grad_norm", 0, "grad_norm");
    } else if (!strcmp(m, "samples_per_s") || !strcmp(m, "throughput")) {
        snprintf(p->title, sizeof p->title, "throughput (samples/s)");
        add_q(p, Q_PATH, "samples_per_s", 0, "samples/s");
    } else if (!strcmp(m, "time")) {
        snprintf(p->title, sizeof p->title, "time per step (s)");
        add_q(p, Q_PATH, "time.data", 0, "data");
        add_q(p, Q_PATH, "time.compute", 0, "compute");
        add_q(p, Q_PATH, "time.comm", 0, "comm");
    } else {
        for (int t = 0; t < nt; t++)
            if (!strcmp(m, terms[t])) {
                snprintf(p->title, sizeof p->title, "%s, sum over stages (unweighted)", m);
                p->log = 1;
                add_q(p, Q_TERM_SUM, m, 0, m);
                return 1;
            }
        for (int i = 0; i < nruns; i++)
            if (report_plot_run_col(&runs[i], m)) {
                snprintf(p->title, sizeof p->title, "%s", m);
                p->log = !strncmp(m, "terms.", 6) || !strcmp(m, "grad_norm");
                add_q(p, Q_PATH, m, 0, m);
                return 1;
            }
        return 0;
    }
    return p->nq > 0;
}

/* Training time at each row: the logged steps times the mean step time of their window. */
static double *run_time(const report_plot_run *r)
{
    const report_plot_col *c = report_plot_run_col(r, "time.step");
    CHECK(c, "plot: --x time needs time.step, which %s lacks", r->metrics);
    double *t = core_malloc((r->nrows ? r->nrows : 1) * sizeof *t), acc = 0, last = 0;
    long prev = 0;
    for (long i = 0; i < r->nrows; i++) {
        if (c->state[i] == REPORT_PLOT_FINITE && c->v[i] >= 0) last = c->v[i];
        long d = r->step[i] - prev;
        if (d > 0) acc += d * last;
        prev = r->step[i];
        t[i] = acc;
    }
    return t;
}

void report_plot_smooth(const double *y, double *out, long n, int w, int log)
{
    const long half = w / 2;
    long double *pre = core_malloc((n + 1) * sizeof *pre);
    for (long a = 0; a < n;) {
        if (!isfinite(y[a]) || (log && y[a] <= 0)) { out[a] = y[a]; a++; continue; }
        long b = a; /* [a, b): a stretch without gaps */
        /* sums of differences from the stretch's first value: a constant (an lr) stays
         * exactly constant instead of picking up the rounding of a long running sum */
        const double base = log ? log10(y[a]) : y[a];
        pre[0] = 0;
        while (b < n && isfinite(y[b]) && (!log || y[b] > 0)) {
            pre[b - a + 1] = pre[b - a] + ((log ? log10(y[b]) : y[b]) - base);
            b++;
        }
        for (long i = a; i < b; i++) {
            /* symmetric even at the ends: a one-sided window would bend the curve there */
            long h = half;
            if (i - a < h) h = i - a;
            if (b - 1 - i < h) h = b - 1 - i;
            long lo = i - h, hi = i + h;
            double m = (double)((pre[hi - a + 1] - pre[lo - a]) / (hi - lo + 1));
            out[i] = log ? pow(10, base + m) : base + m;
        }
        a = b;
    }
    free(pre);
}

static void build_series(const report_plot_run *r, int ri, const pspec *ps, int qi, const double *xt, double xdiv,
                         const report_plot_select *sel, report_plot_series *s)
{
    memset(s, 0, sizeof *s);
    s->run = ri;
    s->qty = qi;
    qcols q;
    resolve(r, &ps->q[qi], &q);
    if (!q.n) return;
    s->x = core_malloc((r->nrows ? r->nrows : 1) * sizeof *s->x);
    s->y = core_malloc((r->nrows ? r->nrows : 1) * sizeof *s->y);
    for (long i = 0; i < r->nrows; i++) {
        if (sel->step_from >= 0 && r->step[i] < sel->step_from) continue;
        if (sel->step_to >= 0 && r->step[i] > sel->step_to) continue;
        double v;
        int st = qvalue(&q, i, &v);
        if (st == REPORT_PLOT_MISSING) continue;
        s->x[s->n] = xt ? xt[i] / xdiv : (double)r->step[i];
        s->y[s->n] = st == REPORT_PLOT_FINITE ? v : NAN;
        s->nonfinite += st != REPORT_PLOT_FINITE;
        s->n++;
    }
}

/* Log panels need positive values; a panel with none is drawn linear instead. */
static void check_log(report_plot_panel *p)
{
    if (!p->log) return;
    long pos = 0, nonpos = 0;
    for (int s = 0; s < p->nseries; s++)
        for (long i = 0; i < p->series[s].n; i++) {
            double y = p->series[s].y[i];
            if (isfinite(y)) *(y > 0 ? &pos : &nonpos) += 1;
        }
    if (pos == 0 && nonpos > 0) {
        p->log = 0;
        p->log_dropped = 1;
    } else {
        p->log_hidden = nonpos;
    }
}

static void build_panel(report_plot_run *runs, int nruns, const pspec *ps, double **xt, const report_plot_select *sel,
                        report_plot_panel *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->metric, sizeof p->metric, "%s", ps->metric);
    snprintf(p->title, sizeof p->title, "%s", ps->title);
    p->log = sel->log_mode > 0 || (sel->log_mode == 0 && ps->log);
    p->nqty = ps->nq;
    memcpy(p->qty, ps->qname, sizeof p->qty);
    p->series = core_calloc((size_t)nruns * ps->nq, sizeof *p->series);
    for (int r = 0; r < nruns; r++)
        for (int q = 0; q < ps->nq; q++) {
            report_plot_series *s = &p->series[p->nseries];
            build_series(&runs[r], r, ps, q, xt ? xt[r] : NULL, sel->x_div, sel, s);
            if (s->n) p->nseries++;
            else { free(s->x); free(s->y); }
        }
    check_log(p);
    /* after the scale is settled: log panels average logs */
    for (int i = 0; i < p->nseries && sel->smooth > 1; i++) {
        report_plot_series *s = &p->series[i];
        s->raw = s->y;
        s->y = core_malloc(s->n * sizeof *s->y);
        report_plot_smooth(s->raw, s->y, s->n, sel->smooth, p->log);
    }
}

int report_plot_panels(report_plot_run *runs, int nruns, const char *const *metrics, int nmetrics,
                        report_plot_select *sel, report_plot_panel **out)
{
    static const char *defaults[] = {"loss", "val", "weighted", "terms", "last-stage", "lr", "grad_norm", "samples_per_s",
                                     "time"};
    int explicit = nmetrics > 0, cap = 16, np = 0;
    char **names = core_malloc(cap * sizeof *names);
    int nn = 0;
    if (!explicit) {
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) names[nn++] = core_strdup(defaults[i]);
    } else {
        for (int i = 0; i < nmetrics; i++) {
            char *copy = core_strdup(metrics[i]);
            for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                t = trim(t);
                if (!*t) continue;
                if (nn == cap) names = core_realloc(names, (cap *= 2) * sizeof *names);
                names[nn++] = core_strdup(t);
            }
            free(copy);
        }
        CHECK(nn > 0, "plot: --metric needs a name (one of: %s)", report_plot_metric_help);
    }
    pspec *specs = core_calloc(nn, sizeof *specs);
    int maxstages = 0;
    for (int r = 0; r < nruns; r++) maxstages = runs[r].nstages > maxstages ? runs[r].nstages : maxstages;
    for (int i = 0; i < nn; i++) {
        int ok = strlen(names[i]) < 200 && spec_of(names[i], runs, nruns, &specs[i]);
        if (explicit) CHECK(ok, "plot: unknown --metric '%s' (known: %s)", names[i], report_plot_metric_help);
        /* one stage: its last stage is the sum, a second panel would repeat it */
        if (!explicit && !strcmp(names[i], "last-stage") && maxstages <= 1) specs[i].nq = 0;
    }

    double **xt = NULL;
    snprintf(sel->x_unit, sizeof sel->x_unit, "step");
    sel->x_div = 1;
    if (sel->x_time) {
        xt = core_calloc(nruns, sizeof *xt);
        double tmax = 0;
        for (int r = 0; r < nruns; r++) {
            xt[r] = run_time(&runs[r]);
            if (runs[r].nrows) tmax = fmax(tmax, xt[r][runs[r].nrows - 1]);
        }
        /* the unit that keeps tick labels short */
        if (tmax <= 180) { sel->x_div = 1; snprintf(sel->x_unit, sizeof sel->x_unit, "s"); }
        else if (tmax <= 3 * 3600) { sel->x_div = 60; snprintf(sel->x_unit, sizeof sel->x_unit, "min"); }
        else { sel->x_div = 3600; snprintf(sel->x_unit, sizeof sel->x_unit, "h"); }
    }

    report_plot_panel *panels = core_calloc(nn, sizeof *panels);
    for (int i = 0; i < nn; i++) {
        if (!specs[i].nq) continue;
        build_panel(runs, nruns, &specs[i], xt, sel, &panels[np]);
        if (panels[np].nseries) { np++; continue; }
        if (explicit) {
            if (sel->step_from >= 0 || sel->step_to >= 0)
                CORE_DIE("plot: no run has data for --metric '%s' within --steps", names[i]);
            CORE_DIE("plot: no run has data for --metric '%s'", names[i]);
        }
        report_plot_panels_free(&panels[np], 1);
    }
    if (xt)
        for (int r = 0; r < nruns; r++) free(xt[r]);
    free(xt);
    free(specs);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names);
    CHECK(np > 0, "plot: nothing to plot (no run has %s)",
          sel->step_from >= 0 || sel->step_to >= 0 ? "data within --steps" : "any known metric");
    *out = panels;
    return np;
}

void report_plot_panels_free(report_plot_panel *p, int n)
{
    for (int i = 0; i < n; i++) {
        for (int s = 0; s < p[i].nseries; s++) {
            free(p[i].series[s].x);
            free(p[i].series[s].y);
            free(p[i].series[s].raw);
        }
        free(p[i].series);
        p[i].series = NULL;
        p[i].nseries = 0;
    }
}
