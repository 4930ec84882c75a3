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
/* Takes the run directory's exclusive lock (flock on RUNDIR/lock, released by
 * the kernel when the process dies, so a killed trainer never leaves it
 * behind) and records "pid <pid> on <host>" in it. Dies with one line naming
 * the holder when another trainer holds it. Call before anything in RUNDIR is
 * read or written; the descriptor stays open for the life of the process. */
void trainer_rundir_lock(const char *rundir);
/* Deletes temporary files a killed writer left behind (ckpt-*.h5.tmp.<pid>):
 * only those whose pid is not a live process of this host (the lock keeps
 * other trainers out; this keeps a live writer's file even so). Returns how many. */
int trainer_rundir_clean_tmp(const char *rundir);
/* Writes a text file through a temporary name and rename. */
void trainer_write_text_atomic(const char *path, const char *text);

#endif
