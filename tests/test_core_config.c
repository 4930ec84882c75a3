/* Config: defaults, INI parsing, overrides, beta schedules and their resampling, text round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
#include "tests/test.h"

static void test_defaults_are_paper(void)
{
    core_config c;
    core_config_defaults(&c);
    T_CHECK(c.model.stages == 6 && c.model.stride == 8 && c.model.input == 368 && c.model.offsets == 1);
    T_CHECK(c.model.ss == CORE_SS_P2H);
    T_NEAR(c.loss.gamma, 9, 0, 0);
    T_NEAR(c.loss.alpha, 10, 0, 0);
    T_NEAR(c.loss.pdd_threshold, 0.1, 0, 0);
    const double qb[6] = {0, .05, .15, .31, .65, 1};
    for (int i = 0; i < 6; i++) T_NEAR(c.loss.beta_values[i], qb[i], 0, 1e-12);
    /* delta defaults to gamma + 1 and is written resolved */
    char *t = core_config_text(&c);
    T_CHECK(strstr(t, "loss.delta = 10\n") != NULL);
    free(t);
}

static void test_named_schedules_six_stages(void)
{
    double v[6];
    const struct { const char *n; double v[6]; } want[] = {
        {"uniform", {1, 1, 1, 1, 1, 1}},          {"linear", {0, .2, .4, .6, .8, 1}},
        {"quadratic_a", {0, .45, .69, .85, .95, 1}}, {"quadratic_b", {0, .05, .15, .31, .65, 1}}};
    for (int k = 0; k < 4; k++) {
        T_CHECK(core_beta_schedule(want[k].n, 6, v) == 0);
        for (int i = 0; i < 6; i++) T_NEAR(v[i], want[k].v[i], 0, 1e-12);
    }
    T_CHECK(core_beta_schedule("cubic", 6, v) == -1);
    T_CHECK(core_beta_schedule("0.1,x", 6, v) == -1);
    T_CHECK(core_beta_schedule("", 6, v) == -1);
    T_CHECK(core_beta_schedule("-1,1", 6, v) == -1);
}

static void test_schedule_resampling(void)
{
    double v[11];
    /* linear over 6 points resampled to 11 stays linear */
    T_CHECK(core_beta_schedule("linear", 11, v) == 0);
    for (int i = 0; i < 11; i++) T_NEAR(v[i], i / 10.0, 0, 1e-12);
    /* quadratic_b to 3 stages: positions 0, 2.5, 5 of the 6-point table */
    T_CHECK(core_beta_schedule("quadratic_b", 3, v) == 0);
    T_NEAR(v[0], 0, 0, 1e-12);
    T_NEAR(v[1], 0.5 * (.15 + .31), 0, 1e-12);
    T_NEAR(v[2], 1, 0, 1e-12);
    /* an explicit list of 3 to 5 stages */
    T_CHECK(core_beta_schedule("0, 0.5, 1", 5, v) == 0);
    const double e[5] = {0, .25, .5, .75, 1};
    for (int i = 0; i < 5; i++) T_NEAR(v[i], e[i], 0, 1e-12);
    /* one stage is also the last: it takes the schedule's end */
    T_CHECK(core_beta_schedule("quadratic_a", 1, v) == 0);
    T_NEAR(v[0], 1, 0, 0);
    /* an explicit list of the right length is taken as is */
    T_CHECK(core_beta_schedule("0.3,0.1,0.2", 3, v) == 0);
    T_NEAR(v[1], 0.1, 0, 1e-12);
}

static void test_ini_and_overrides(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/c.ini", t_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("# comment\n[model]\nwidth = 0.5 ; trailing\nstages=3\n\n[loss]\nbeta = 0,1\n[train]\nlr = 1e-3\n", f);
    fclose(f);
    core_config c;
    core_config_defaults(&c);
    core_config_load(&c, path);
    T_NEAR(c.model.width, 0.5, 0, 0);
    T_CHECK(c.model.stages == 3);
    T_NEAR(c.loss.beta_values[1], 0.5, 0, 1e-12);
    T_NEAR(c.train.lr, 1e-3, 0, 0);
    core_config_set(&c, "model.ss=both");
    core_config_set(&c, "loss.gamma = 2");
    T_CHECK(c.model.ss == CORE_SS_BOTH);
    char *text = core_config_text(&c);
    core_config d;
    core_config_defaults(&d);
    core_config_parse_text(&d, text, "roundtrip");
    char *text2 = core_config_text(&d);
    T_CHECK(strcmp(text, text2) == 0);
    T_NEAR(d.loss.delta, 3, 0, 0); /* gamma + 1, resolved when written */
    free(text);
    free(text2);
}

typedef struct { int n; char keys[8][64], then[8][64], now[8][64]; } diffs;
static void collect(const char *key, const char *then, const char *now, void *ctx)
{
    diffs *d = ctx;
    if (d->n < 8) {
        snprintf(d->keys[d->n], 64, "%s", key);
        snprintf(d->then[d->n], 64, "%s", then);
        snprintf(d->now[d->n], 64, "%s", now);
    }
    d->n++;
}

/* core_config_diff: key-table order, values as written, lenient about what the stored text lacks or adds. */
static void test_config_diff(void)
{
    core_config a, b;
    core_config_defaults(&a);
    char *text = core_config_text(&a);
    diffs d = {0};
    T_CHECK(core_config_diff(text, &a, collect, &d) == 0 && d.n == 0);
    b = a;
    core_config_set(&b, "train.optimizer=adamw");
    core_config_set(&b, "model.stages=2");
    core_config_set(&b, "loss.gamma=4"); /* delta follows as gamma + 1: two differences */
    T_CHECK(core_config_diff(text, &b, collect, &d) == 4 && d.n == 4);
    T_CHECKF(!strcmp(d.keys[0], "model.stages") && !strcmp(d.then[0], "6") && !strcmp(d.now[0], "2"), "%s %s %s",
             d.keys[0], d.then[0], d.now[0]);
    T_CHECK(!strcmp(d.keys[1], "loss.gamma") && !strcmp(d.keys[2], "loss.delta") && !strcmp(d.now[2], "5"));
    T_CHECK(!strcmp(d.keys[3], "train.optimizer") && !strcmp(d.then[3], "sgd") && !strcmp(d.now[3], "adamw"));
    /* an older writer's text: fewer keys, one this build does not know, a stray line */
    const char *old = "model.stages = 2\nloss.gamma = 9\ntrain.retired_key = 3\nnot a key line\n";
    d.n = 0;
    T_CHECK(core_config_diff(old, &b, collect, &d) == 1 && !strcmp(d.keys[0], "loss.gamma"));
    free(text);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(test_defaults_are_paper);
    T_RUN(test_named_schedules_six_stages);
    T_RUN(test_schedule_resampling);
    T_RUN(test_ini_and_overrides);
    T_RUN(test_config_diff);
    T_EXIT();
}
