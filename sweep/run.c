/* `sweep run`: the unfinished runs of a sweep on this machine, J at a time,
 * each `sspose train --out RUNDIR --resume` (under mpirun for N ranks). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/check.h"
#include "sweep/sweep.h"
#include "trainer/rundir.h"

static char *self_exe(void)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    CHECK(n > 0, "sweep run: cannot find the sspose binary (/proc/self/exe): %s", strerror(errno));
    buf[n] = 0;
    return core_strdup(buf);
}

/* Whether prog (a path, or a name looked up in PATH) is an executable. */
int sweep_on_path(const char *prog)
{
    if (strchr(prog, '/')) return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path) return 0;
    char *copy = core_strdup(path);
    int found = 0;
    for (char *save = NULL, *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", d, prog);
        found = access(p, X_OK) == 0;
    }
    free(copy);
    return found;
}

/* argv of one run: [mpirun words -np N] sspose train --out RUNDIR --resume */
static char **run_argv(const char *exe, const char *rundir, int np, char *mpirun_words)
{
    char **argv = core_calloc(80, sizeof *argv);
    int n = 0;
    static char npbuf[16];
    if (np > 1) {
        for (char *save = NULL, *w = strtok_r(mpirun_words, " \t", &save); w && n < 60; w = strtok_r(NULL, " \t", &save))
            argv[n++] = w;
        snprintf(npbuf, sizeof npbuf, "%d", np);
        argv[n++] = "-np";
        argv[n++] = npbuf;
    }
    argv[n++] = (char *)exe;
    argv[n++] = "train";
    argv[n++] = "--out";
    argv[n++] = (char *)rundir;
    argv[n++] = "--resume";
    return argv;
}

static pid_t spawn(const char *exe, const char *rundir, int np, const char *mpirun)
{
    char *exitp = core_malloc(strlen(rundir) + 8), *logp = core_malloc(strlen(rundir) + 16);
    sprintf(exitp, "%s/exit", rundir);
    sprintf(logp, "%s/train.log", rundir);
    unlink(exitp); /* no exit file: running (or killed with the runner) */
    int fd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    CHECK(fd >= 0, "sweep run: cannot open '%s': %s", logp, strerror(errno));
    time_t now = time(NULL);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    dprintf(fd, "=== sspose sweep run, %s, %d rank%s\n", stamp, np, np == 1 ? "" : "s");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "sweep run: fork failed: %s", strerror(errno));
    if (pid == 0) {
        char *words = core_strdup(mpirun);
        char **argv = run_argv(exe, rundir, np, words);
        dup2(fd, 1);
        dup2(fd, 2);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) dup2(null, 0);
        execvp(argv[0], argv);
        dprintf(2, "sspose: error: sweep run: cannot start %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    free(exitp);
    free(logp);
    return pid;
}

static void write_exit(const char *rundir, int code)
{
    char *p = core_malloc(strlen(rundir) + 8);
    sprintf(p, "%s/exit", rundir);
    char text[32];
    snprintf(text, sizeof text, "%d\n", code);
    trainer_write_text_atomic(p, text);
    free(p);
}

int sweep_run_local(const sweep *s, int np, int jobs)
{
    const char *mpirun = getenv("SSPOSE_MPIRUN");
    if (!mpirun || !*mpirun) mpirun = "mpirun";
    if (np > 1) {
        char *first = core_strdup(mpirun);
        first[strcspn(first, " \t")] = 0;
        CHECK(sweep_on_path(first), "sweep run: --np %d needs '%s', which is not on PATH (set SSPOSE_MPIRUN)", np, first);
        free(first);
    }
    /* two runners on one sweep would train the same runs twice, into the same files */
    char lockp[PATH_MAX];
    snprintf(lockp, sizeof lockp, "%s/.sweep-run.lock", s->dir);
    int lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(lock >= 0, "sweep run: cannot open '%s': %s", lockp, strerror(errno));
    CHECK(flock(lock, LOCK_EX | LOCK_NB) == 0, "sweep run: another 'sspose sweep run' is running on '%s'", s->dir);
    char *exe = self_exe();
    int *todo = core_malloc(s->nruns * sizeof *todo), ntodo = 0, ndone = 0;
    for (int i = 0; i < s->nruns; i++) {
        char *d = sweep_run_dir(s, i);
        sweep_state st;
        sweep_state_read(d, &st, 0);
        if (st.status == SWEEP_DONE) ndone++;
        else todo[ntodo++] = i;
        free(d);
    }
    printf("sweep %s: %d of %d runs done, %d to run (%d rank%s each, %d at a time)\n", s->dir, ndone, s->nruns, ntodo,
           np, np == 1 ? "" : "s", jobs);
    fflush(stdout);
    pid_t *pids = core_calloc(jobs, sizeof *pids);
    int *which = core_calloc(jobs, sizeof *which);
    time_t *t0 = core_calloc(jobs, sizeof *t0);
    int next = 0, active = 0, failed = 0, finished = 0;
    while (next < ntodo || active > 0) {
        while (active < jobs && next < ntodo) {
            int slot = 0;
            while (pids[slot]) slot++;
            which[slot] = todo[next++];
            char *d = sweep_run_dir(s, which[slot]);
            pids[slot] = spawn(exe, d, np, mpirun);
            t0[slot] = time(NULL);
            free(d);
            active++;
        }
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0 && errno == EINTR) continue;
        CHECK(pid > 0, "sweep run: waitpid failed: %s", strerror(errno));
        int slot = -1;
        for (int k = 0; k < jobs; k++)
            if (pids[k] == pid) slot = k;
        if (slot < 0) continue;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        char *d = sweep_run_dir(s, which[slot]);
        write_exit(d, code);
        sweep_state st;
        sweep_state_read(d, &st, 0);
        finished++;
        long secs = (long)(time(NULL) - t0[slot]);
        if (st.status == SWEEP_DONE) {
            printf("[%d/%d] %s: done (%lds)\n", finished, ntodo, s->runs[which[slot]].name, secs);
        } else if (code == 0) {
            printf("[%d/%d] %s: stopped at step %ld of %ld (%lds); 'sweep run' again resumes it\n", finished, ntodo,
                   s->runs[which[slot]].name, st.step, st.steps, secs);
        } else {
            failed++;
            printf("[%d/%d] %s: failed (exit %d): %s\n", finished, ntodo, s->runs[which[slot]].name, code, st.error);
        }
        fflush(stdout);
        free(d);
        pids[slot] = 0;
        active--;
    }
    free(pids);
    free(which);
    free(t0);
    free(todo);
    free(exe);
    close(lock);
    return failed;
}
