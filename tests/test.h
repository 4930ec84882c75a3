/* Minimal test harness shared by every tests/test_*.c program.
 *
 * Each test is a void function run by T_RUN; it prints one result line,
 *   "ok - <name>", "FAIL - <name>: <file:line> <what>" or "skip - <name>: <why>",
 * which tests/run_tests.sh counts. A test program exits non-zero when any
 * of its tests failed. */
#ifndef SSPOSE_TESTS_TEST_H
#define SSPOSE_TESTS_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_cur_failed, t_cur_skipped, t_total_failed;
static char t_cur_msg[512];

#define T_FAILF(...) do { if (!t_cur_failed) { \
        int t_n_ = snprintf(t_cur_msg, sizeof t_cur_msg, "%s:%d ", __FILE__, __LINE__); \
        snprintf(t_cur_msg + t_n_, sizeof t_cur_msg - t_n_, __VA_ARGS__); } \
        t_cur_failed = 1; } while (0)

#define T_CHECK(cond) do { if (!(cond)) T_FAILF("check failed: %s", #cond); } while (0)
#define T_CHECKF(cond, ...) do { if (!(cond)) T_FAILF(__VA_ARGS__); } while (0)

/* |a-b| <= atol + rtol*|b| (b is the reference) */
#define T_NEAR(a, b, rtol, atol) do { double t_a_ = (a), t_b_ = (b); \
        if (!(fabs(t_a_ - t_b_) <= (atol) + (rtol) * fabs(t_b_))) \
            T_FAILF("%s = %.9g, expected %s = %.9g", #a, t_a_, #b, t_b_); } while (0)

#define T_SKIP(...) do { t_cur_skipped = 1; snprintf(t_cur_msg, sizeof t_cur_msg, __VA_ARGS__); return; } while (0)

static void t_run(const char *name, void (*fn)(void))
{
    t_cur_failed = t_cur_skipped = 0;
    t_cur_msg[0] = 0;
    fn();
    if (t_cur_skipped) printf("skip - %s: %s\n", name, t_cur_msg);
    else if (t_cur_failed) { printf("FAIL - %s: %s\n", name, t_cur_msg); t_total_failed++; }
    else printf("ok - %s\n", name);
    fflush(stdout);
}

#define T_RUN(fn) t_run(#fn, fn)
#define T_EXIT() return t_total_failed ? 1 : 0

/* Path of the shared sample data, relative to the repository root (tests run from there). */
#define T_SHARED_DATA "../shared/data/coco-sample"

/* A scratch directory for one test program, removed by run_tests.sh. */
static inline const char *t_tmpdir(void)
{
    const char *d = getenv("SSPOSE_TEST_TMP");
    return d ? d : "/tmp";
}

#endif
