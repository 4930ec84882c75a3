/* Progress reporting for long loops (data conversion, training, evaluation).
 *
 * On a terminal: one bar redrawn in place at most ~10 times a second,
 *   "label [#####.....]  412/1000  41%  153.2 it/s  ETA 0:03".
 * Otherwise (logs, CI): a plain line every `every_s` seconds,
 *   "label: 412/1000 (41%), 153.2 it/s, ETA 0:03".
 * total <= 0 means unknown (no percentage, no ETA). Not thread-safe: update
 * it from one thread. */
#ifndef SSPOSE_CORE_PROGRESS_H
#define SSPOSE_CORE_PROGRESS_H

#include <stdio.h>

typedef struct core_progress {
    char label[64];
    char unit[16];
    long total, done;
    double start, last_print, every_s;
    int tty;
    FILE *out;
} core_progress;

/* out = NULL means stdout; every_s <= 0 means 10 s between plain lines. */
void core_progress_start(core_progress *p, const char *label, const char *unit, long total, FILE *out,
                         double every_s);
/* Sets the count done so far and redraws or prints when due. */
void core_progress_update(core_progress *p, long done);
/* Final state: ends the bar's line (terminal) or prints a last plain line. */
void core_progress_finish(core_progress *p);
/* Seconds since start. */
double core_progress_elapsed(const core_progress *p);
/* "1:02:03" or "2:03" into buf. */
void core_format_duration(double seconds, char *buf, size_t len);
/* Monotonic clock in seconds. */
double core_now(void);

#endif
