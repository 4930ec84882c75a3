#include "trainer/metrics.h"

#include <cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "trainer/rundir.h"

struct trainer_metrics {
    FILE *f;
    char path[4200];
};

/* Reads the file and keeps the lines whose "step" is <= keep_upto. */
static char *kept_lines(const char *path, long keep_upto)
{
    FILE *f = fopen(path, "r");
    if (!f) return core_strdup("");
    size_t cap = 4096, len = 0;
    char *out = core_malloc(cap);
    out[0] = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *s = j ? cJSON_GetObjectItemCaseSensitive(j, "step") : NULL;
        int keep = cJSON_IsNumber(s) && s->valuedouble <= (double)keep_upto;
        cJSON_Delete(j);
        if (!keep) continue; /* a torn last line from a killed run goes too */
        if (len + (size_t)n + 2 > cap) { cap = 2 * (len + (size_t)n + 2); out = core_realloc(out, cap); }
        memcpy(out + len, line, (size_t)n);
        len += (size_t)n;
        if (out[len - 1] != '\n') out[len++] = '\n';
        out[len] = 0;
    }
    free(line);
    fclose(f);
    return out;
}

trainer_metrics *trainer_metrics_open(const char *rundir, long keep_upto)
{
    trainer_metrics *m = core_calloc(1, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s/metrics.jsonl", rundir);
    char *text = keep_upto >= 0 ? kept_lines(m->path, keep_upto) : core_strdup("");
    trainer_write_text_atomic(m->path, text);
    free(text);
    m->f = fopen(m->path, "a");
    CHECK(m->f, "cannot open '%s' for appending: %s", m->path, strerror(errno));
    return m;
}

void trainer_metrics_write(trainer_metrics *m, const trainer_log_row *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)r->step);
    cJSON_AddNumberToObject(j, "epoch", (double)r->epoch);
    cJSON_AddNumberToObject(j, "lr", r->lr);
    cJSON_AddNumberToObject(j, "loss", r->loss);
    const loss_values *v = r->values;
    cJSON *terms = cJSON_AddObjectToObject(j, "terms");
    cJSON *weights = cJSON_AddObjectToObject(j, "weights");
    for (int t = 0; t < LOSS_NUM_TERMS; t++)
        if (v->active & (1u << t)) cJSON_AddNumberToObject(weights, loss_term_names[t], v->weight[t]);
    for (int s = 0; s < v->stages; s++) {
        char name[16];
        snprintf(name, sizeof name, "stage%d", s + 1);
        cJSON *st = cJSON_AddObjectToObject(terms, name);
        for (int t = 0; t < LOSS_NUM_TERMS; t++)
            if (v->active & (1u << t)) cJSON_AddNumberToObject(st, loss_term_names[t], v->term[s][t]);
    }
    cJSON_AddNumberToObject(j, "grad_norm", r->grad_norm);
    if (r->clip) {
        cJSON_AddNumberToObject(j, "clipped", (double)r->clipped);
        cJSON_AddNumberToObject(j, "clip_scale", r->clip_scale);
    }
    cJSON_AddNumberToObject(j, "samples_per_s", r->samples_per_s);
    cJSON_AddNumberToObject(j, "skipped", (double)r->skipped);
    if (r->corrupt >= 0) cJSON_AddNumberToObject(j, "corrupt_samples", (double)r->corrupt);
    cJSON *t = cJSON_AddObjectToObject(j, "time");
    cJSON_AddNumberToObject(t, "data", r->t_data);
    cJSON_AddNumberToObject(t, "compute", r->t_compute);
    cJSON_AddNumberToObject(t, "comm", r->t_comm);
    cJSON_AddNumberToObject(t, "step", r->t_step);
    cJSON_AddNumberToObject(j, "comm_hidden", r->comm_hidden);
    if (r->val) {
        cJSON *val = cJSON_AddObjectToObject(j, "val");
        cJSON_AddNumberToObject(val, "ap", r->val->ap);
        cJSON_AddNumberToObject(val, "ap50", r->val->ap50);
        cJSON_AddNumberToObject(val, "ap75", r->val->ap75);
        cJSON_AddNumberToObject(val, "ar", r->val->ar);
        cJSON_AddNumberToObject(val, "images", r->val->images);
        cJSON_AddNumberToObject(val, "time_s", r->val->time_s);
    }
    char *s = cJSON_PrintUnformatted(j);
    CHECK(s, "metrics: cannot format JSON");
    /* One write per line, flushed: a kill leaves at most one torn line, which resume drops. */
    int ok = fprintf(m->f, "%s\n", s) > 0 && fflush(m->f) == 0;
    free(s);
    cJSON_Delete(j);
    CHECK(ok, "cannot write '%s': %s", m->path, strerror(errno));
}

void trainer_metrics_close(trainer_metrics *m)
{
    if (!m) return;
    CHECK(fclose(m->f) == 0, "cannot close '%s': %s", m->path, strerror(errno));
    free(m);
}
