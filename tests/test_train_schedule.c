/* trainer/: the learning-rate schedule and the run-directory helpers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/config.h"
#include "tests/test.h"
#include "trainer/rundir.h"
#include "trainer/schedule.h"

static void test_step_policy(void)
{
    core_config c;
    core_config_defaults(&c);
    c.train.lr = 1e-3;
    c.train.lr_step = 100;
    c.train.lr_gamma = 3;
    c.train.warmup = 0;
    T_NEAR(trainer_lr(&c, 0), 1e-3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 99), 1e-3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 100), 1e-3 / 3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 250), 1e-3 / 9, 1e-12, 0);
    c.train.lr_step = 0; /* constant */
    T_NEAR(trainer_lr(&c, 123456), 1e-3, 1e-12, 0);
}

static void test_warmup(void)
{
    core_config c;
    core_config_defaults(&c);
    c.train.lr = 2e-3;
    c.train.lr_step = 10;
    c.train.lr_gamma = 2;
    c.train.warmup = 4;
    T_NEAR(trainer_lr(&c, 0), 2e-3 * 1 / 4, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 3), 2e-3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 4), 2e-3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 10), 1e-3, 1e-12, 0);
}

/* One-cycle as in ../shared/notes/learning.md: warm-up from lr/25 over 10% of
 * the steps, then cosine down to lr/1000 at the last step. */
static void test_cosine_one_cycle(void)
{
    core_config c;
    core_config_defaults(&c);
    core_config_set(&c, "train.schedule=cosine");
    c.train.lr = 3e-3;
    c.train.steps = 101;
    c.train.warmup = 10;
    c.train.warmup_start = 1.0 / 25;
    c.train.lr_final = 1e-3;
    c.train.lr_step = 7; /* ignored by cosine */
    T_NEAR(trainer_lr(&c, 0), 3e-3 * (0.04 + 0.96 * 0.1), 1e-12, 0);
    T_NEAR(trainer_lr(&c, 4), 3e-3 * (0.04 + 0.96 * 0.5), 1e-12, 0);
    T_NEAR(trainer_lr(&c, 9), 3e-3, 1e-12, 0);
    T_NEAR(trainer_lr(&c, 10), 3e-3, 1e-12, 0);             /* cosine starts at the peak */
    T_NEAR(trainer_lr(&c, 55), 3e-3 * (1e-3 + 0.999 * 0.5), 1e-12, 0); /* half way */
    T_NEAR(trainer_lr(&c, 100), 3e-6, 1e-12, 0);            /* the last step: lr * lr_final */
    T_NEAR(trainer_lr(&c, 500), 3e-6, 1e-12, 0);            /* past the end it stays there */
    for (long t = 11; t <= 100; t++) T_CHECKF(trainer_lr(&c, t) < trainer_lr(&c, t - 1), "not decreasing at %ld", t);
    /* the step policy ignores the cosine keys */
    core_config_set(&c, "train.schedule=step");
    c.train.warmup = 0;
    T_NEAR(trainer_lr(&c, 100), 3e-3 / pow(3, 14), 1e-12, 0);
}

static void test_group_multipliers(void)
{
    core_config c;
    core_config_defaults(&c);
    c.train.lr_mult_backbone = 0.5;
    c.train.lr_mult_stages = 4;
    T_NEAR(trainer_lr_mult(&c, MODEL_GROUP_BACKBONE), 0.5, 0, 0);
    T_NEAR(trainer_lr_mult(&c, MODEL_GROUP_STAGES), 4, 0, 0);
}

static void touch(const char *dir, const char *name)
{
    char p[2200];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) fclose(f);
}

static void test_checkpoint_listing_and_pruning(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/rundir/a/b", t_tmpdir());
    trainer_rundir_make(dir); /* creates parents */
    touch(dir, "ckpt-000000010.h5");
    touch(dir, "ckpt-000000200.h5");
    touch(dir, "ckpt-000000030.h5");
    touch(dir, "ckpt-000000040.h5.tmp.999999999"); /* a killed writer's temporary (no such pid) */
    char live[64];
    snprintf(live, sizeof live, "ckpt-000000050.h5.tmp.%ld", (long)getppid());
    touch(dir, live); /* a live writer's: kept */
    touch(dir, "ckpt-12.h5");               /* not our name */
    touch(dir, "metrics.jsonl");
    long *steps;
    int n = trainer_ckpt_list(dir, &steps);
    T_CHECKF(n == 3 && steps[0] == 200 && steps[1] == 30 && steps[2] == 10, "listed %d", n);
    free(steps);
    T_CHECK(trainer_rundir_clean_tmp(dir) == 1);
    char lp[2200];
    snprintf(lp, sizeof lp, "%s/%s", dir, live);
    T_CHECKF(access(lp, F_OK) == 0, "a live writer's temporary file was removed");
    unlink(lp); /* a rerun in the same scratch folder starts clean */
    trainer_ckpt_prune(dir, 2);
    n = trainer_ckpt_list(dir, &steps);
    T_CHECKF(n == 2 && steps[0] == 200 && steps[1] == 30, "after pruning to 2: %d left", n);
    free(steps);
    char p[1200];
    trainer_ckpt_path(dir, 7, p, sizeof p);
    T_CHECK(strstr(p, "/ckpt-000000007.h5") != NULL);
    snprintf(p, sizeof p, "%s/config.ini", dir);
    trainer_write_text_atomic(p, "train.steps = 5\n");
    FILE *f = fopen(p, "r");
    char line[64] = "";
    T_CHECK(f && fgets(line, sizeof line, f) && !strcmp(line, "train.steps = 5\n"));
    if (f) fclose(f);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(test_step_policy);
    T_RUN(test_warmup);
    T_RUN(test_cosine_one_cycle);
    T_RUN(test_group_multipliers);
    T_RUN(test_checkpoint_listing_and_pruning);
    T_EXIT();
}
