/* File identity and atomic outputs.
 *
 * "Is this output one of my inputs?" is answered by device and inode, never by
 * spelling: `a.h5`, `./a.h5`, `dir/../a.h5`, a hard link and a symlink all name
 * the same file. Every command asks before it writes, so no input is ever
 * replaced by an output (docs/reliability.md). */
#ifndef SSPOSE_CORE_FILEID_H
#define SSPOSE_CORE_FILEID_H

#include <stdio.h>

/* 1 when both paths exist and are the same file (device and inode, symlinks
 * followed), else 0. */
int core_same_file(const char *a, const char *b);

/* Dies with one line "<cmd>: --out '<out>' is the input <what> '<input>' ..."
 * when `out` and any of the n inputs (NULL entries ignored) are the same file.
 * `whats` names each input for the message (e.g. "--checkpoint"). */
void core_refuse_input_output(const char *cmd, const char *out_flag, const char *out, const char *const *inputs,
                              const char *const *whats, int n);

/* Atomic text/binary output: core_atomic_open creates `<path>.tmp.<pid>` (its
 * name in tmp); core_atomic_commit flushes, fsyncs, closes and renames it over
 * path, dying with one line (and removing the temporary) on any failure. */
FILE *core_atomic_open(const char *path, char *tmp, size_t tmp_len);
void core_atomic_commit(FILE *f, const char *tmp, const char *path);
/* Both steps for a whole buffer. */
void core_atomic_write(const char *path, const void *data, size_t len);

#endif
