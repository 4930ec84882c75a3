#include "core/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static void (*exit_hook)(int);
static char log_prefix[64];
static int quiet;

void core_set_exit_hook(void (*hook)(int code)) { exit_hook = hook; }
void core_set_quiet(int q) { quiet = q; }

void core_set_log_prefix(const char *prefix)
{
    if (!prefix) { log_prefix[0] = 0; return; }
    snprintf(log_prefix, sizeof log_prefix, "[%s] ", prefix);
}

static atomic_flag dying = ATOMIC_FLAG_INIT;
static _Thread_local int this_thread_dying;

void core_die_at(const char *file, int line, const char *fmt, ...)
{
    /* Several threads may fail at once (loader workers, data writers): the first one
     * reports and exits; the others wait here for the process to end, so the user
     * sees exactly one line. */
    if (this_thread_dying) _exit(1); /* the exit hook itself failed: leave without a second line */
    if (atomic_flag_test_and_set(&dying))
        for (;;) pause();
    this_thread_dying = 1;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Keep it one line whatever the message holds. */
    for (char *p = msg; *p; p++) if (*p == '\n' || *p == '\r') *p = ' ';
    fflush(stdout);
    fprintf(stderr, "%ssspose: error: %s (%s:%d)\n", log_prefix, msg, file, line);
    fflush(stderr);
    if (exit_hook) {
        void (*h)(int) = exit_hook;
        exit_hook = NULL; /* a failing hook must not recurse */
        h(1);
    }
    exit(1);
}

void core_warn(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%ssspose: warning: ", log_prefix);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void core_info(const char *fmt, ...)
{
    if (quiet) return;
    va_list ap;
    fputs(log_prefix, stdout);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void *core_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p, "out of memory allocating %zu bytes", n);
    return p;
}

void *core_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    CHECK(p, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *core_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    CHECK(q, "out of memory reallocating %zu bytes", n);
    return q;
}

char *core_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = core_malloc(n);
    memcpy(d, s, n);
    return d;
}
