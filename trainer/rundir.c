#include "trainer/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "core/fileid.h"

void trainer_rundir_make(const char *rundir)
{
    char path[4096];
    CHECK(strlen(rundir) > 0 && strlen(rundir) < sizeof path, "bad run directory '%s'", rundir);
    snprintf(path, sizeof path, "%s", rundir);
    for (char *p = path + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                CORE_DIE("cannot create run directory '%s': %s", path, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    CHECK(stat(rundir, &st) == 0 && S_ISDIR(st.st_mode), "run directory '%s' is not a directory", rundir);
    CHECK(access(rundir, W_OK) == 0, "run directory '%s' is not writable", rundir);
}

void trainer_ckpt_path(const char *rundir, long step, char *out, size_t len)
{
    int n = snprintf(out, len, "%s/ckpt-%09ld.h5", rundir, step);
    CHECK(n > 0 && (size_t)n < len, "run directory path too long: '%s'", rundir);
}

/* "ckpt-000000120.h5" -> 120; -1 for any other name (temporaries included). */
static long parse_name(const char *name)
{
    if (strncmp(name, "ckpt-", 5) || strlen(name) != 5 + 9 + 3 || strcmp(name + 14, ".h5")) return -1;
    long step = 0;
    for (int i = 5; i < 14; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        step = step * 10 + (name[i] - '0');
    }
    return step;
}

static int cmp_desc(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

int trainer_ckpt_list(const char *rundir, long **steps)
{
    *steps = NULL;
    DIR *d = opendir(rundir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long s = parse_name(e->d_name);
        if (s < 0) continue;
        if (n == cap) { cap = cap ? 2 * cap : 16; *steps = core_realloc(*steps, (size_t)cap * sizeof **steps); }
        (*steps)[n++] = s;
    }
    closedir(d);
    if (n) qsort(*steps, (size_t)n, sizeof **steps, cmp_desc);
    return n;
}

void trainer_ckpt_prune(const char *rundir, int keep)
{
    long *steps;
    int n = trainer_ckpt_list(rundir, &steps);
    for (int i = keep; i < n; i++) {
        char path[4200];
        trainer_ckpt_path(rundir, steps[i], path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) core_warn("cannot delete old checkpoint '%s': %s", path, strerror(errno));
    }
    free(steps);
}

void trainer_rundir_lock(const char *rundir)
{
    static int held_fd = -1; /* kept open: closing it would drop the lock */
    char path[4200], host[256] = "?";
    snprintf(path, sizeof path, "%s/lock", rundir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    CHECK(fd >= 0, "cannot open the run directory lock '%s': %s", path, strerror(errno));
    struct stat a, b;
    /* a second run of this process in the same directory (sweeps) already holds it:
     * flock on a new descriptor would conflict with our own */
    if (held_fd >= 0 && fstat(held_fd, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
        close(fd);
        return;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char holder[300] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        close(fd);
        CHECK(e == EWOULDBLOCK, "cannot lock the run directory '%s': %s", rundir, strerror(e));
        CORE_DIE("run directory '%s' is in use by another trainer (%s); one trainer per run directory", rundir,
                 holder[0] ? holder : "holder unknown");
    }
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    char text[400];
    int len = snprintf(text, sizeof text, "pid %ld on %s\n", (long)getpid(), host);
    CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, text, (size_t)len, 0) == len, "cannot write the run directory lock '%s': %s",
          path, strerror(errno));
    if (held_fd >= 0) close(held_fd);
    held_fd = fd;
}

/* The pid a temporary name ends with ("ckpt-...h5.tmp.<pid>"), or -1. */
static long tmp_pid(const char *name)
{
    const char *p = strstr(name, ".h5.tmp.");
    if (!p) return -1;
    char *end;
    long pid = strtol(p + 8, &end, 10);
    return *end || pid <= 0 ? -1 : pid;
}

int trainer_rundir_clean_tmp(const char *rundir)
{
    DIR *d = opendir(rundir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "ckpt-", 5) || !strstr(e->d_name, ".h5.tmp.")) continue;
        long pid = tmp_pid(e->d_name);
        /* a live process of that pid may be writing it: never pull a file from under a writer */
        if (pid > 0 && pid != (long)getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", rundir, e->d_name);
        if (unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}

void trainer_write_text_atomic(const char *path, const char *text) { core_atomic_write(path, text, strlen(text)); }
