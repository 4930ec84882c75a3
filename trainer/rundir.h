/* The run directory: RUNDIR/config.ini, RUNDIR/metrics.jsonl and the
 * checkpoints RUNDIR/ckpt-<step, 9 digits>.h5 (the newest `train.keep` kept).
 * Only rank 0 touches it. */
#ifndef SSPOSE_TRAINER_RUNDIR_H
#define SSPOSE_TRAINER_RUNDIR_H

#include <stddef.h>

/* Creates the directory (and parents) when missing; dies with one line when it cannot. */
void trainer_rundir_make(const char *rundir);
void trainer_ckpt_path(const char *rundir, long step, char *out, size_t len);
/* Steps of the checkpoints present, newest first; returns the count (*steps malloc'd, caller frees). */
int trainer_ckpt_list(const char *rundir, long **steps);
/* Deletes all but the `keep` newest checkpoints. */
void trainer_ckpt_prune(const char *rundir, int keep);
/* Deletes temporary files a killed writer left behind (ckpt-*.h5.tmp.*). Returns how many. */
int trainer_rundir_clean_tmp(const char *rundir);
/* Writes a text file through a temporary name and rename. */
void trainer_write_text_atomic(const char *path, const char *text);

#endif
