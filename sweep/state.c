/* Where a run of a sweep stands, read from its directory alone, so that
 * `status` and `summary` work the same for local and SLURM runs. */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/config.h"
#include "sweep/sweep.h"
#include "trainer/rundir.h"

const char *sweep_status_name(int status)
{
    switch (status) {
    case SWEEP_DONE: return "done";
    case SWEEP_PARTIAL: return "partial";
    case SWEEP_FAILED: return "failed";
    default: return "not started";
    }
}

static char *join(const char *dir, const char *file)
{
    size_t len = strlen(dir) + strlen(file) + 2;
    char *p = core_malloc(len);
    snprintf(p, len, "%s/%s", dir, file);
    return p;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(it) && isfinite(it->valuedouble) ? it->valuedouble : NAN;
}

/* The last stage's unweighted terms and their weights, from one metrics line. */
static void last_terms(const cJSON *j, sweep_state *st)
{
    const cJSON *terms = cJSON_GetObjectItemCaseSensitive(j, "terms"), *w = cJSON_GetObjectItemCaseSensitive(j, "weights");
    const cJSON *last = NULL, *it;
    int best = 0;
    cJSON_ArrayForEach(it, terms) {
        int s = 0;
        if (it->string && sscanf(it->string, "stage%d", &s) == 1 && s > best && cJSON_IsObject(it)) {
            best = s;
            last = it;
        }
    }
    if (!last) return;
    st->nterms = 0;
    cJSON_ArrayForEach(it, last) {
        if (st->nterms == SWEEP_MAX_TERMS || !it->string || strlen(it->string) >= sizeof st->term_names[0]) continue;
        snprintf(st->term_names[st->nterms], sizeof st->term_names[0], "%s", it->string);
        st->terms[st->nterms] = cJSON_IsNumber(it) ? it->valuedouble : NAN;
        st->weights[st->nterms] = num(w, it->string);
        st->nterms++;
    }
}

static void scan_metrics(const char *rundir, sweep_state *st, int with_metrics)
{
    char *path = join(rundir, "metrics.jsonl");
    FILE *f = fopen(path, "r");
    free(path);
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    cJSON *last = NULL;
    while (getline(&line, &cap, f) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (!cJSON_IsNumber(step)) { cJSON_Delete(j); continue; } /* torn or foreign line */
        st->step = (long)step->valuedouble;
        if (!with_metrics) { cJSON_Delete(j); continue; }
        double loss = num(j, "loss");
        if (!isnan(loss)) {
            st->final_loss = loss;
            if (isnan(st->best_loss) || loss < st->best_loss) st->best_loss = loss;
        }
        /* validation lines carry "val": {"ap": .., "ap50": .., "ap75": .., "ar": ..} */
        double ap = num(cJSON_GetObjectItemCaseSensitive(j, "val"), "ap");
        if (!isnan(ap)) {
            st->final_val_ap = ap;
            if (isnan(st->best_val_ap) || ap > st->best_val_ap) st->best_val_ap = ap;
        }
        if (cJSON_GetObjectItemCaseSensitive(j, "terms")) {
            cJSON_Delete(last);
            last = j;
        } else {
            cJSON_Delete(j);
        }
    }
    free(line);
    fclose(f);
    if (last) last_terms(last, st);
    cJSON_Delete(last);
}

/* The line that says why the last attempt failed: its last "sspose: error:" line (MPI
 * and srun add their own error lines after it), else its last "error" line, else its last line. */
static void last_error(const char *rundir, char *out, size_t len)
{
    char *path = join(rundir, "train.log");
    FILE *f = fopen(path, "r");
    free(path);
    out[0] = 0;
    if (!f) return;
    char *line = NULL, last[512] = "", any[512] = "";
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        line[strcspn(line, "\r\n")] = 0;
        if (!*line) continue;
        /* an attempt starts afresh: errors of earlier attempts are history */
        if (!strncmp(line, "=== ", 4)) out[0] = any[0] = 0;
        if (strstr(line, "sspose: error:")) snprintf(out, len, "%s", line);
        else if (strstr(line, "error") || strstr(line, "Error") || strstr(line, "ERROR")) snprintf(any, sizeof any, "%s", line);
        snprintf(last, sizeof last, "%s", line);
    }
    if (!out[0]) snprintf(out, len, "%s", any[0] ? any : last);
    free(line);
    fclose(f);
}

void sweep_state_read(const char *rundir, sweep_state *st, int with_metrics)
{
    memset(st, 0, sizeof *st);
    st->final_loss = st->best_loss = st->best_val_ap = st->final_val_ap = NAN;
    st->exit_code = -1;
    st->steps = -1;
    char *path = join(rundir, "config.ini");
    core_config_kv kv;
    core_config_kv_read(&kv, path); /* a run of another version may carry keys this build lacks */
    free(path);
    const char *v = core_config_kv_get(&kv, "train.steps");
    if (v) st->steps = strtol(v, NULL, 10);
    core_config_kv_free(&kv);

    char ck[4200];
    struct stat sb;
    trainer_ckpt_path(rundir, st->steps, ck, sizeof ck);
    int done = st->steps >= 0 && stat(ck, &sb) == 0;
    if (done && !with_metrics) {
        st->status = SWEEP_DONE;
        st->step = st->steps;
        return; /* finished runs cost one stat: `sweep run` on a done sweep returns at once */
    }
    scan_metrics(rundir, st, with_metrics);
    long *steps = NULL;
    int n = stat(rundir, &sb) == 0 ? trainer_ckpt_list(rundir, &steps) : 0;
    if (n > 0 && steps[0] > st->step) st->step = steps[0];
    free(steps);
    if (done) {
        st->status = SWEEP_DONE;
        st->step = st->steps;
        return;
    }
    path = join(rundir, "exit");
    FILE *f = fopen(path, "r");
    free(path);
    if (f) {
        if (fscanf(f, "%d", &st->exit_code) != 1) st->exit_code = -1;
        fclose(f);
    }
    if (st->exit_code > 0) {
        st->status = SWEEP_FAILED;
        last_error(rundir, st->error, sizeof st->error);
        if (!st->error[0]) snprintf(st->error, sizeof st->error, "exit %d", st->exit_code);
    } else {
        st->status = st->step > 0 ? SWEEP_PARTIAL : SWEEP_NOT_STARTED;
    }
}
