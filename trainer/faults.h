/* Test-only fault injection, SSPOSE_TEST_FAULT=kind:step[:rank] (docs/training.md):
 *   nan_loss  this rank's loss becomes NaN at that step
 *   nan_grad  one float of this rank's gradient becomes NaN at that step, before its bucket is reduced
 *   drift     one of this rank's weights is nudged after that step's update
 *   kill      this rank raises SIGKILL at the end of that step (after any checkpoint)
 * One table of hooks, each tied to a point of the step, always compiled in;
 * with the variable unset every point costs one comparison. */
#ifndef SSPOSE_TRAINER_FAULTS_H
#define SSPOSE_TRAINER_FAULTS_H

#include "loss/loss.h"
#include "model/net.h"

typedef enum {
    TRAINER_AT_LOSS,     /* after the loss is queued, before its guard (and backward) */
    TRAINER_AT_BACKWARD, /* before backward starts: where a gradient fault is armed */
    TRAINER_AT_UPDATE,   /* after the optimizer's update */
    TRAINER_AT_STEP_END, /* after the step's checkpoint */
    TRAINER_AT_COUNT
} trainer_fault_point;

/* What a hook may touch. */
typedef struct trainer_fault_ctx {
    model_net *net;
    double *loss_sums;  /* TRAINER_AT_LOSS: the loss's per-sample sums in the backend's memory */
    float *poison;      /* TRAINER_AT_BACKWARD: set to the gradient float to poison ... */
    int poison_at;      /* ... and the backward position to poison it at (-1: none; 0: before backward) */
} trainer_fault_ctx;

/* Reads SSPOSE_TEST_FAULT; dies with one line when it is malformed. */
void trainer_faults_init(void);
/* Runs the armed hook when it belongs to this point, step (1-based) and rank. */
void trainer_fault(trainer_fault_point at, long step, trainer_fault_ctx *c);
/* The poisoning itself, for the backward hook: gradient float *p becomes NaN. */
void trainer_fault_poison(model_net *net, float *p);

#endif
