#include "trainer/faults.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/check.h"

void trainer_fault_poison(model_net *net, float *p)
{
    core_backend *be = model_backend(net);
    float nan = NAN;
    be->upload(be, p, &nan, 1);
}

/* Stage 1's heatmap sum of the first sample: the term, and so the total, becomes NaN on the device. */
static void nan_loss(trainer_fault_ctx *c)
{
    core_backend *be = model_backend(c->net);
    double nan = NAN;
    be->upload(be, (float *)c->loss_sums, (const float *)&nan, sizeof nan / sizeof(float));
}

/* The back-half float's gradient: its NaN must be in place before its bucket
 * is reduced, as it was when it went in after the whole backward pass. */
static void nan_grad(trainer_fault_ctx *c)
{
    size_t at = model_num_floats(c->net) / 2;
    c->poison = model_grads(c->net) + at;
    c->poison_at = 0; /* padding: final at once */
    for (int i = 0; i < model_param_count(c->net); i++) {
        const model_param *p = model_param_at(c->net, i);
        if (at >= p->offset && at < p->offset + p->numel) c->poison_at = model_param_grad_final(c->net, i);
    }
    if (c->poison_at == 0) trainer_fault_poison(c->net, c->poison);
}

static void drift(trainer_fault_ctx *c)
{
    core_backend *be = model_backend(c->net);
    float *w = model_params(c->net) + model_num_floats(c->net) / 3, v;
    be->download(be, &v, w, 1);
    v += 1e-3f;
    be->upload(be, w, &v, 1);
}

static void kill_self(trainer_fault_ctx *c) { raise(SIGKILL); }

static const struct {
    const char *name;
    trainer_fault_point at;
    void (*fire)(trainer_fault_ctx *);
} HOOKS[] = {
    {"nan_loss", TRAINER_AT_LOSS, nan_loss},
    {"nan_grad", TRAINER_AT_BACKWARD, nan_grad},
    {"drift", TRAINER_AT_UPDATE, drift},
    {"kill", TRAINER_AT_STEP_END, kill_self},
};
#define NHOOKS (int)(sizeof HOOKS / sizeof HOOKS[0])

static int g_hook = -1; /* the armed hook, -1: none */
static long g_step;
static int g_rank;

void trainer_faults_init(void)
{
    g_hook = -1;
    const char *e = getenv("SSPOSE_TEST_FAULT");
    if (!e || !*e) return;
    char kind[32] = "";
    long step = -1;
    int rank = 0;
    int n = sscanf(e, "%31[a-z_]:%ld:%d", kind, &step, &rank);
    CHECK(n >= 2, "SSPOSE_TEST_FAULT='%s': expected kind:step[:rank]", e);
    for (int i = 0; i < NHOOKS; i++)
        if (!strcmp(kind, HOOKS[i].name)) g_hook = i;
    CHECK(g_hook >= 0, "SSPOSE_TEST_FAULT='%s': kind must be nan_loss, nan_grad, drift or kill", e);
    g_step = step;
    g_rank = rank;
}

void trainer_fault(trainer_fault_point at, long step, trainer_fault_ctx *c)
{
    if (g_hook < 0 || HOOKS[g_hook].at != at || g_step != step || g_rank != comm_rank()) return;
    HOOKS[g_hook].fire(c);
}
