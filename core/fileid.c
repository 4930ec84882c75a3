#include "core/fileid.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"

int core_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (!a || !b || stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void core_refuse_input_output(const char *cmd, const char *out_flag, const char *out, const char *const *inputs,
                              const char *const *whats, int n)
{
    for (int i = 0; i < n; i++)
        CHECK(!core_same_file(out, inputs[i]),
              "%s: %s '%s' is the same file as the input %s '%s'; writing it would destroy the input", cmd, out_flag,
              out, whats[i], inputs[i]);
}

FILE *core_atomic_open(const char *path, char *tmp, size_t tmp_len)
{
    int n = snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    CHECK(n > 0 && (size_t)n < tmp_len, "output path too long: '%s'", path);
    FILE *f = fopen(tmp, "wb");
    CHECK(f, "cannot create '%s': %s", tmp, strerror(errno));
    return f;
}

void core_atomic_commit(FILE *f, const char *tmp, const char *path)
{
    int ok = fflush(f) == 0 && !ferror(f);
    int e = errno;
    ok &= fsync(fileno(f)) == 0 || errno == EINVAL; /* EINVAL: a pipe or special file cannot be synced */
    if (!ok) e = errno;
    if (fclose(f) != 0 && ok) ok = 0, e = errno;
    if (!ok) {
        unlink(tmp);
        CORE_DIE("cannot write '%s': %s (disk full?)", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        CORE_DIE("cannot rename '%s' to '%s': %s", tmp, path, strerror(e));
    }
}

void core_atomic_write(const char *path, const void *data, size_t len)
{
    char tmp[4200];
    FILE *f = core_atomic_open(path, tmp, sizeof tmp);
    if (len && fwrite(data, 1, len, f) != len) {
        int e = errno;
        fclose(f);
        unlink(tmp);
        CORE_DIE("cannot write '%s': %s (disk full?)", tmp, strerror(e));
    }
    core_atomic_commit(f, tmp, path);
}
