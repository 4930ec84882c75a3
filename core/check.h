/* Error reporting for the whole project.
 *
 * Fatal errors print exactly one line, "sspose: error: <what> (<file>:<line>)",
 * then leave through the exit hook: exit(1) for a single process, MPI_Abort
 * once comm/ has installed its hook, so one rank's failure ends the job
 * instead of hanging it. Recoverable problems (a skipped annotation, a
 * fallback checkpoint) go through core_warn and are counted by the caller. */
#ifndef SSPOSE_CORE_CHECK_H
#define SSPOSE_CORE_CHECK_H

#include <stdarg.h>
#include <stddef.h>

#if defined(__GNUC__)
#define CORE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CORE_NORETURN __attribute__((noreturn))
#else
#define CORE_PRINTF(a, b)
#define CORE_NORETURN
#endif

CORE_NORETURN void core_die_at(const char *file, int line, const char *fmt, ...) CORE_PRINTF(3, 4);
void core_warn(const char *fmt, ...) CORE_PRINTF(1, 2);
void core_info(const char *fmt, ...) CORE_PRINTF(1, 2);

/* Called (once) instead of exit(1) after a fatal message; comm/ points it at MPI_Abort. */
void core_set_exit_hook(void (*hook)(int code));
/* Prefix for messages, e.g. "rank 3" under MPI; NULL for none. */
void core_set_log_prefix(const char *prefix);
/* 1 = quiet core_info (tests), 0 = normal. */
void core_set_quiet(int quiet);

#define CORE_DIE(...) core_die_at(__FILE__, __LINE__, __VA_ARGS__)

/* CHECK(cond, hint...): die with the hint when cond is false. */
#define CHECK(cond, ...) do { if (!(cond)) core_die_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* HDF5 calls return negative on failure. */
#define H5_CHECK(call, ...) do { if ((long long)(call) < 0) core_die_at(__FILE__, __LINE__, __VA_ARGS__); } while (0)

/* Allocation that never returns NULL. */
void *core_malloc(size_t n);
void *core_calloc(size_t n, size_t size);
void *core_realloc(void *p, size_t n);
char *core_strdup(const char *s);

#endif
