/* Preemption: SIGTERM and SIGUSR1 (what SLURM sends before it kills a job)
 * only raise a flag; the training loop agrees on it across ranks at the end
 * of a step, writes a checkpoint and exits 0. USR1 followed by TERM (SLURM's
 * warning, then its time limit or requeue) is still one graceful stop; only a
 * second SIGTERM/SIGINT while the first is being honoured falls back to the
 * default action. */
#ifndef SSPOSE_TRAINER_SIGNALS_H
#define SSPOSE_TRAINER_SIGNALS_H

void trainer_signals_install(void);
void trainer_signals_restore(void);
/* The signal number received (0 when none). */
int trainer_stop_signal(void);

#endif
