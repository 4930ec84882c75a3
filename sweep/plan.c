/* `sweep plan`: the grid's cartesian product, resolved against the base config,
 * written as DIR/manifest.json and one run directory per point. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/config.h"
#include "sweep/sweep.h"
#include "trainer/rundir.h"

#define MAX_RUNS 100000

static int is_number(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end || errno || !isfinite(d)) return 0;
    if (out) *out = d;
    return 1;
}

/* Splits at commas outside brackets; "[a,b]" loses its brackets. */
static int split_values(const char *key, const char *list, char ***out)
{
    int n = 0, cap = 8;
    char **vals = core_malloc(cap * sizeof *vals);
    const char *p = list;
    for (;;) {
        const char *start = p;
        int depth = 0;
        while (*p && (depth > 0 || *p != ',')) {
            if (*p == '[') depth++;
            if (*p == ']') CHECK(--depth >= 0, "sweep plan: --grid %s: unbalanced ']' in '%s'", key, list);
            p++;
        }
        CHECK(depth == 0, "sweep plan: --grid %s: unbalanced '[' in '%s'", key, list);
        size_t len = (size_t)(p - start);
        while (len && (*start == ' ' || *start == '\t')) { start++; len--; }
        while (len && (start[len - 1] == ' ' || start[len - 1] == '\t')) len--;
        if (len >= 2 && start[0] == '[' && start[len - 1] == ']') { start++; len -= 2; }
        else CHECK(!memchr(start, '[', len), "sweep plan: --grid %s: a bracketed value must be the whole value, got '%.*s'",
                   key, (int)len, start);
        if (len) {
            if (n == cap) vals = core_realloc(vals, (cap *= 2) * sizeof *vals);
            vals[n++] = strndup(start, len);
        }
        if (!*p) break;
        p++;
    }
    *out = vals;
    return n;
}

static int cmp_numeric(const void *a, const void *b)
{
    double x = strtod(*(char *const *)a, NULL), y = strtod(*(char *const *)b, NULL);
    return (x > y) - (x < y);
}

void sweep_axis_parse(sweep_axis *a, const char *grid)
{
    memset(a, 0, sizeof *a);
    const char *eq = strchr(grid, '=');
    CHECK(eq && eq != grid, "sweep plan: --grid wants KEY=V1,V2,..., got '%s'", grid);
    a->key = strndup(grid, (size_t)(eq - grid));
    CHECK(core_config_has_key(a->key), "sweep plan: --grid: unknown config key '%s'", a->key);
    a->nvals = split_values(a->key, eq + 1, &a->vals);
    CHECK(a->nvals > 0, "sweep plan: --grid %s has no values (want %s=V1,V2,...)", a->key, a->key);
    a->numeric = 1;
    for (int i = 0; i < a->nvals; i++) a->numeric &= is_number(a->vals[i], NULL);
    /* runs in numeric order: alpha=10 after alpha=5, whatever order the values came in */
    if (a->numeric) qsort(a->vals, a->nvals, sizeof *a->vals, cmp_numeric);
    for (int i = 0; i < a->nvals; i++)
        for (int j = i + 1; j < a->nvals; j++) {
            double x, y;
            int same = a->numeric ? (is_number(a->vals[i], &x), is_number(a->vals[j], &y), x == y)
                                  : !strcmp(a->vals[i], a->vals[j]);
            CHECK(!same, "sweep plan: --grid %s lists the value '%s' twice", a->key, a->vals[j]);
        }
    const char *dot = strchr(a->key, '.');
    a->short_name = core_strdup(dot ? dot + 1 : a->key);
}

static unsigned long fnv1a(const char *s)
{
    unsigned long h = 2166136261u;
    for (; *s; s++) h = ((h ^ (unsigned char)*s) * 16777619u) & 0xffffffffu;
    return h;
}

void sweep_value_slug(const char *value, char *out, unsigned long len)
{
    size_t n = 0, vlen = strlen(value);
    /* long values (explicit beta lists) are cut, with a hash keeping them apart */
    size_t keep = vlen > 32 ? 24 : vlen;
    for (size_t i = 0; i < keep && n + 1 < len; i++) {
        char c = value[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '+' ||
                 c == '-';
        out[n++] = ok ? c : '_';
    }
    out[n] = 0;
    if (keep < vlen && n + 10 < len) snprintf(out + n, len - n, "_%06lx", fnv1a(value) & 0xffffff);
}

/* Axis short names must differ, or the run names would not tell them apart. */
static void name_axes(sweep_axis *axes, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if (i != j && !strcmp(strchr(axes[i].key, '.') ? strchr(axes[i].key, '.') + 1 : axes[i].key,
                                  strchr(axes[j].key, '.') ? strchr(axes[j].key, '.') + 1 : axes[j].key)) {
                free(axes[i].short_name);
                axes[i].short_name = core_strdup(axes[i].key);
            }
}

static char *run_name(const sweep_axis *axes, int naxes, const int *at, int index, int width)
{
    char buf[1024];
    size_t n = snprintf(buf, sizeof buf, "%0*d", width > 9 ? 9 : width, index);
    for (int a = 0; a < naxes && n < sizeof buf; a++) {
        char slug[64], key[64];
        sweep_value_slug(axes[a].vals[at[a]], slug, sizeof slug);
        sweep_value_slug(axes[a].short_name, key, sizeof key);
        n += snprintf(buf + n, sizeof buf - n, "-%s%s", key, slug);
    }
    return core_strdup(buf);
}

static void base_config(const sweep_plan_opts *o, core_config *cfg)
{
    core_config_defaults(cfg);
    core_config_load(cfg, o->config);
    for (int i = 0; i < o->nsets; i++) core_config_set(cfg, o->sets[i]);
    /* Runs start from other directories (a batch job, `sweep run` from elsewhere):
     * a relative shard glob would name other files there. */
    if (cfg->data.train[0] && cfg->data.train[0] != '/') {
        char cwd[4096];
        CHECK(getcwd(cwd, sizeof cwd), "sweep plan: cannot read the working directory");
        char abs[sizeof cfg->data.train];
        int n = snprintf(abs, sizeof abs, "%s/%s", cwd, cfg->data.train);
        CHECK(n < (int)sizeof abs, "sweep plan: data.train is too long once made absolute");
        snprintf(cfg->data.train, sizeof cfg->data.train, "%s", abs);
    }
}

static cJSON *kv_object(const core_config_kv *kv)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < kv->n; i++) cJSON_AddStringToObject(o, kv->keys[i], kv->vals[i]);
    return o;
}

/* Keys outside the grid whose resolved values still differ between runs (δ = γ+1). */
static cJSON *dependent_keys(core_config_kv *kvs, int nruns, const sweep_axis *axes, int naxes)
{
    cJSON *dep = cJSON_CreateArray();
    for (int k = 0; k < kvs[0].n; k++) {
        const char *key = kvs[0].keys[k];
        int swept = 0;
        for (int a = 0; a < naxes; a++) swept |= !strcmp(axes[a].key, key);
        int differs = 0;
        for (int r = 1; r < nruns && !swept && !differs; r++) {
            const char *v = core_config_kv_get(&kvs[r], key);
            differs = !v || strcmp(v, kvs[0].vals[k]);
        }
        if (differs) cJSON_AddItemToArray(dep, cJSON_CreateString(key));
    }
    return dep;
}

static void make_dir(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        CHECK(S_ISDIR(st.st_mode), "sweep plan: '%s' exists and is not a directory", path);
        return;
    }
    trainer_rundir_make(path);
}

static void print_plan(const sweep_plan_opts *o, const sweep_axis *axes, int naxes, char **names, core_config_kv *kvs,
                       int nruns, const cJSON *dep)
{
    printf("sweep %s: %d run%s over", o->out, nruns, nruns == 1 ? "" : "s");
    for (int a = 0; a < naxes; a++) printf("%s %s (%d)", a ? " x" : "", axes[a].key, axes[a].nvals);
    printf("\n");
    for (int r = 0; r < nruns; r++) {
        printf("  %s", names[r]);
        for (int d = 0; d < cJSON_GetArraySize(dep); d++) {
            const char *key = cJSON_GetArrayItem(dep, d)->valuestring;
            printf("  %s=%s", key, core_config_kv_get(&kvs[r], key));
        }
        printf("\n");
    }
    for (int d = 0; d < cJSON_GetArraySize(dep); d++) {
        const char *key = cJSON_GetArrayItem(dep, d)->valuestring;
        printf("note: %s is not swept but differs between runs (it follows a swept key%s); the manifest lists "
               "each run's value\n",
               key, !strcmp(key, "loss.delta") ? ": unset, delta = gamma + 1" : "");
    }
}

/* The --grid axes, then --seeds as one more; dies on conflicts between them and --set. */
static int plan_axes(const sweep_plan_opts *o, const core_config *base, sweep_axis *axes)
{
    int naxes = 0;
    for (int g = 0; g < o->ngrids; g++) {
        sweep_axis_parse(&axes[naxes], o->grids[g]);
        for (int a = 0; a < naxes; a++)
            CHECK(strcmp(axes[a].key, axes[naxes].key), "sweep plan: --grid %s is given twice", axes[a].key);
        for (int s = 0; s < o->nsets; s++) {
            size_t kl = strlen(axes[naxes].key);
            CHECK(strncmp(o->sets[s], axes[naxes].key, kl) || o->sets[s][kl] != '=',
                  "sweep plan: %s is both swept (--grid) and fixed (--set)", axes[naxes].key);
        }
        naxes++;
    }
    if (o->seeds > 0) {
        sweep_axis *a = &axes[naxes];
        memset(a, 0, sizeof *a);
        for (int i = 0; i < naxes; i++)
            CHECK(strcmp(axes[i].key, "train.seed"), "sweep plan: give --seeds or --grid train.seed, not both");
        a->key = core_strdup("train.seed");
        a->short_name = core_strdup("seed");
        a->numeric = 1;
        a->nvals = o->seeds;
        a->vals = core_malloc(o->seeds * sizeof *a->vals);
        for (int i = 0; i < o->seeds; i++) {
            char v[32];
            snprintf(v, sizeof v, "%ld", (long)base->train.seed + i);
            a->vals[i] = core_strdup(v);
        }
        naxes++;
    }
    return naxes;
}

void sweep_plan(const sweep_plan_opts *o)
{
    CHECK(o->config, "sweep plan: --config CFG is required");
    CHECK(o->out && *o->out, "sweep plan: --out DIR is required");
    CHECK(o->ngrids > 0 || o->seeds > 0, "sweep plan: no --grid KEY=V1,V2,... given (and no --seeds)");
    CHECK(o->ngrids + (o->seeds > 0) <= SWEEP_MAX_AXES, "sweep plan: at most %d axes", SWEEP_MAX_AXES);
    core_config base;
    base_config(o, &base);
    sweep_axis axes[SWEEP_MAX_AXES];
    int naxes = plan_axes(o, &base, axes);
    name_axes(axes, naxes);
    long total = 1;
    for (int a = 0; a < naxes; a++) {
        total *= axes[a].nvals;
        CHECK(total <= MAX_RUNS, "sweep plan: the grid has more than %d points", MAX_RUNS);
    }
    int nruns = (int)total, width = 2;
    for (long x = 100; x <= nruns - 1; x *= 10) width++;

    cJSON *man = cJSON_CreateObject(), *jruns = cJSON_CreateArray(), *jgrid = cJSON_CreateArray();
    cJSON_AddNumberToObject(man, "sspose_sweep", 1);
    cJSON_AddStringToObject(man, "base_config", o->config);
    cJSON *jsets = cJSON_AddArrayToObject(man, "sets");
    for (int s = 0; s < o->nsets; s++) cJSON_AddItemToArray(jsets, cJSON_CreateString(o->sets[s]));
    for (int a = 0; a < naxes; a++) {
        cJSON *ax = cJSON_CreateObject();
        cJSON_AddStringToObject(ax, "key", axes[a].key);
        cJSON_AddStringToObject(ax, "short", axes[a].short_name);
        cJSON_AddItemToObject(ax, "values", cJSON_CreateStringArray((const char *const *)axes[a].vals, axes[a].nvals));
        cJSON_AddBoolToObject(ax, "numeric", axes[a].numeric);
        cJSON_AddItemToArray(jgrid, ax);
    }
    cJSON_AddItemToObject(man, "grid", jgrid);
    core_config_kv *kvs = core_calloc(nruns, sizeof *kvs);
    char **names = core_calloc(nruns, sizeof *names), **texts = core_calloc(nruns, sizeof *texts);
    int at[SWEEP_MAX_AXES] = {0};
    for (int r = 0; r < nruns; r++) {
        /* the first axis varies slowest */
        for (int a = naxes - 1, rem = r; a >= 0; a--) { at[a] = rem % axes[a].nvals; rem /= axes[a].nvals; }
        core_config cfg = base;
        cJSON *jr = cJSON_CreateObject(), *ov = cJSON_CreateObject();
        for (int a = 0; a < naxes; a++) {
            size_t len = strlen(axes[a].key) + strlen(axes[a].vals[at[a]]) + 2;
            char *set = core_malloc(len);
            snprintf(set, len, "%s=%s", axes[a].key, axes[a].vals[at[a]]);
            core_config_set_origin(&cfg, set, "sweep plan: --grid");
            free(set);
            cJSON_AddStringToObject(ov, axes[a].key, axes[a].vals[at[a]]);
        }
        names[r] = run_name(axes, naxes, at, r, width);
        texts[r] = core_config_text(&cfg);
        core_config_kv_parse(&kvs[r], texts[r]);
        cJSON_AddStringToObject(jr, "name", names[r]);
        cJSON_AddItemToObject(jr, "overrides", ov);
        cJSON_AddItemToObject(jr, "config", kv_object(&kvs[r]));
        cJSON_AddItemToArray(jruns, jr);
    }
    cJSON *dep = dependent_keys(kvs, nruns, axes, naxes);
    cJSON_AddItemToObject(man, "dependent", dep);
    cJSON_AddItemToObject(man, "runs", jruns);
    char *json = cJSON_Print(man);
    CHECK(json, "sweep plan: out of memory writing the manifest");

    make_dir(o->out);
    size_t plen = strlen(o->out) + 32;
    char *path = core_malloc(plen);
    snprintf(path, plen, "%s/manifest.json", o->out);
    struct stat st;
    int unchanged = 0;
    if (stat(path, &st) == 0) {
        /* a second plan may only repeat the first: its runs may hold checkpoints */
        FILE *f = fopen(path, "rb");
        CHECK(f, "sweep plan: cannot read '%s': %s", path, strerror(errno));
        char *prev = core_calloc(st.st_size + 1, 1);
        size_t got = fread(prev, 1, st.st_size, f);
        fclose(f);
        prev[got] = 0;
        unchanged = !strcmp(prev, json);
        free(prev);
        CHECK(unchanged, "sweep plan: '%s' already holds a different sweep (manifest.json); choose another --out",
              o->out);
    }
    for (int r = 0; r < nruns; r++) {
        size_t len = strlen(o->out) + strlen(names[r]) + 16;
        char *d = core_malloc(len);
        snprintf(d, len, "%s/%s", o->out, names[r]);
        make_dir(d);
        snprintf(d, len, "%s/%s/config.ini", o->out, names[r]);
        /* training rewrites it with the same text; leave a started run's file alone */
        if (stat(d, &st) != 0) trainer_write_text_atomic(d, texts[r]);
        free(d);
    }
    if (!unchanged) trainer_write_text_atomic(path, json);
    print_plan(o, axes, naxes, names, kvs, nruns, dep);
    printf("%s %s\n", unchanged ? "unchanged:" : "wrote", path);
    free(path);
    free(json);
    cJSON_Delete(man);
    for (int r = 0; r < nruns; r++) {
        core_config_kv_free(&kvs[r]);
        free(names[r]);
        free(texts[r]);
    }
    free(kvs);
    free(names);
    free(texts);
    for (int a = 0; a < naxes; a++) {
        for (int v = 0; v < axes[a].nvals; v++) free(axes[a].vals[v]);
        free(axes[a].vals);
        free(axes[a].key);
        free(axes[a].short_name);
    }
}
