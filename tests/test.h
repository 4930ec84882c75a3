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
#include <sys/wait.h>
#include <unistd.h>

#include "core/backend.h"

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

/* Runs fn in a forked child with its stderr captured into err; returns the
 * child's exit status (128 + signal when killed). For checking fatal paths
 * (one error line, non-zero exit) without ending the test program. Fork only
 * before threads or a CUDA context exist. */
static inline int t_run_child(void (*fn)(void), char *err, size_t cap)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], 2);
        fn();
        _exit(0);
    }
    close(fds[1]);
    size_t len = 0;
    ssize_t r;
    while (len < cap - 1 && (r = read(fds[0], err + len, cap - 1 - len)) > 0) len += (size_t)r;
    err[len] = 0;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Direct convolution in double (stride 1, same padding, bias, optional ReLU):
 * the reference the backends' convolutions are checked against. */
static inline void t_conv_ref(const core_conv_shape *s, const float *x, const float *w, const float *b, double *y)
{
    int p = s->k / 2;
    for (int n = 0; n < s->n; n++)
        for (int co = 0; co < s->cout; co++)
            for (int i = 0; i < s->h; i++)
                for (int j = 0; j < s->w; j++) {
                    double acc = b[co];
                    for (int ci = 0; ci < s->cin; ci++)
                        for (int ky = 0; ky < s->k; ky++)
                            for (int kx = 0; kx < s->k; kx++) {
                                int yy = i + ky - p, xx = j + kx - p;
                                if (yy < 0 || yy >= s->h || xx < 0 || xx >= s->w) continue;
                                acc += (double)w[((co * s->cin + ci) * s->k + ky) * s->k + kx] *
                                       x[((n * s->cin + ci) * s->h + yy) * s->w + xx];
                            }
                    if (s->relu && acc < 0) acc = 0;
                    y[((n * s->cout + co) * s->h + i) * s->w + j] = acc;
                }
}

#endif
