/* Reading DIR/manifest.json back (written by sweep/plan.c). */
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "sweep/sweep.h"

static char *read_file(const char *path, const char *cmd)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "sweep %s: cannot open '%s': %s", cmd, path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len + 65536 + 1 > cap) buf = core_realloc(buf, cap = 2 * cap + 65537);
        got = fread(buf + len, 1, 65536, f);
        len += got;
    } while (got == 65536);
    CHECK(!ferror(f), "sweep %s: cannot read '%s'", cmd, path);
    fclose(f);
    buf[len] = 0;
    return buf;
}

static const char *str_item(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

/* A run's name becomes a path under DIR: it must stay there. */
static int safe_name(const char *n)
{
    if (!n || !*n || n[0] == '.' || strlen(n) > 200) return 0;
    for (; *n; n++)
        if (*n == '/' || *n == '\\') return 0;
    return 1;
}

void sweep_load(sweep *s, const char *dir, const char *cmd)
{
    memset(s, 0, sizeof *s);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode), "sweep %s: '%s' is not a directory", cmd, dir);
    size_t len = strlen(dir) + 32;
    char *path = core_malloc(len);
    snprintf(path, len, "%s/manifest.json", dir);
    CHECK(stat(path, &st) == 0, "sweep %s: '%s' is not a sweep (no manifest.json; make one with 'sspose sweep plan')",
          cmd, dir);
    char *text = read_file(path, cmd);
    cJSON *m = cJSON_Parse(text);
    free(text);
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(m, "grid");
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(m, "runs");
    CHECK(cJSON_IsObject(m) && cJSON_IsArray(grid) && cJSON_IsArray(runs) &&
              cJSON_GetArraySize(grid) <= SWEEP_MAX_AXES && cJSON_GetArraySize(runs) > 0,
          "sweep %s: '%s' is not a sweep manifest (unreadable JSON or no grid and runs)", cmd, path);
    s->dir = core_strdup(dir);
    for (size_t n = strlen(s->dir); n > 1 && s->dir[n - 1] == '/'; n--) s->dir[n - 1] = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, grid) {
        sweep_axis *a = &s->axes[s->naxes++];
        const char *key = str_item(it, "key"), *sh = str_item(it, "short");
        const cJSON *vals = cJSON_GetObjectItemCaseSensitive(it, "values");
        CHECK(key && cJSON_IsArray(vals), "sweep %s: '%s': a grid entry lacks key or values", cmd, path);
        a->key = core_strdup(key);
        a->short_name = core_strdup(sh ? sh : key);
        a->numeric = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "numeric"));
        a->nvals = cJSON_GetArraySize(vals);
        a->vals = core_calloc(a->nvals ? a->nvals : 1, sizeof *a->vals);
        for (int v = 0; v < a->nvals; v++) {
            const cJSON *x = cJSON_GetArrayItem(vals, v);
            CHECK(cJSON_IsString(x), "sweep %s: '%s': grid values must be strings", cmd, path);
            a->vals[v] = core_strdup(x->valuestring);
        }
    }
    s->nruns = cJSON_GetArraySize(runs);
    s->runs = core_calloc(s->nruns, sizeof *s->runs);
    int r = 0;
    cJSON_ArrayForEach(it, runs) {
        sweep_run *run = &s->runs[r++];
        const char *name = str_item(it, "name");
        CHECK(safe_name(name), "sweep %s: '%s': run %d has no usable name", cmd, path, r);
        run->name = core_strdup(name);
        run->at = core_calloc(s->naxes ? s->naxes : 1, sizeof *run->at);
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(it, "overrides");
        for (int a = 0; a < s->naxes; a++) {
            const char *v = str_item(ov, s->axes[a].key);
            int found = -1;
            for (int k = 0; v && k < s->axes[a].nvals && found < 0; k++)
                if (!strcmp(s->axes[a].vals[k], v)) found = k;
            CHECK(found >= 0, "sweep %s: '%s': run %s lacks a grid value of %s", cmd, path, name, s->axes[a].key);
            run->at[a] = found;
        }
    }
    const cJSON *dep = cJSON_GetObjectItemCaseSensitive(m, "dependent");
    s->ndependent = cJSON_IsArray(dep) ? cJSON_GetArraySize(dep) : 0;
    s->dependent = core_calloc(s->ndependent + 1, sizeof *s->dependent);
    for (int d = 0; d < s->ndependent; d++) {
        const cJSON *x = cJSON_GetArrayItem(dep, d);
        s->dependent[d] = core_strdup(cJSON_IsString(x) ? x->valuestring : "?");
    }
    cJSON_Delete(m);
    free(path);
}

void sweep_free(sweep *s)
{
    for (int a = 0; a < s->naxes; a++) {
        for (int v = 0; v < s->axes[a].nvals; v++) free(s->axes[a].vals[v]);
        free(s->axes[a].vals);
        free(s->axes[a].key);
        free(s->axes[a].short_name);
    }
    for (int r = 0; r < s->nruns; r++) {
        free(s->runs[r].name);
        free(s->runs[r].at);
    }
    for (int d = 0; d < s->ndependent; d++) free(s->dependent[d]);
    free(s->dependent);
    free(s->runs);
    free(s->dir);
    memset(s, 0, sizeof *s);
}

char *sweep_run_dir(const sweep *s, int i)
{
    size_t len = strlen(s->dir) + strlen(s->runs[i].name) + 2;
    char *p = core_malloc(len);
    snprintf(p, len, "%s/%s", s->dir, s->runs[i].name);
    return p;
}

int sweep_axis_find(const sweep *s, const char *key)
{
    for (int a = 0; a < s->naxes; a++)
        if (!strcmp(s->axes[a].key, key) || !strcmp(s->axes[a].short_name, key)) return a;
    return -1;
}
