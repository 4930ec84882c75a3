#include "trainer/rundir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"

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

int trainer_rundir_clean_tmp(const char *rundir)
{
    DIR *d = opendir(rundir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "ckpt-", 5) || !strstr(e->d_name, ".h5.tmp.")) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", rundir, e->d_name);
        if (unlink(path) == 0) removed++;
    }
    closedir(d);
    return removed;
}

void trainer_write_text_atomic(const char *path, const char *text)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    CHECK(f, "cannot write '%s': %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    ok &= fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    CHECK(ok, "cannot write '%s': %s", tmp, strerror(errno));
    CHECK(rename(tmp, path) == 0, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
}
