/* `sweep submit` and the SLURM side of `sweep status`: the unfinished runs as
 * one job array of cluster/sweep.sbatch, and squeue's view of it. */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/check.h"
#include "sweep/sweep.h"
#include "trainer/rundir.h"

/* Runs argv, its stdout into out (NUL-terminated, cut at len), stderr passed through.
 * Returns the exit status, 127 when it could not start. */
static int capture(char *const *argv, char *out, size_t len, int quiet_stderr)
{
    int fd[2];
    CHECK(pipe(fd) == 0, "sweep: pipe failed: %s", strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "sweep: fork failed: %s", strerror(errno));
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (quiet_stderr) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0) dup2(null, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t got;
    char sink[4096];
    while ((got = read(fd[0], n + 1 < len ? out + n : sink, n + 1 < len ? len - 1 - n : sizeof sink)) > 0 ||
           (got < 0 && errno == EINTR))
        if (got > 0 && n + 1 < len) n += (size_t)got;
    out[n] = 0;
    close(fd[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The job runs from SLURM's copy of the script: tell it where this sspose and
 * train.sbatch are (sbatch exports the environment by default). */
static void export_paths(const char *script)
{
    char exe[PATH_MAX], dir[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0 && !getenv("SSPOSE")) {
        exe[n] = 0;
        setenv("SSPOSE", exe, 1);
    }
    if (!getenv("SSPOSE_TRAIN_SBATCH") && realpath(script, dir)) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        char train[PATH_MAX + 16];
        snprintf(train, sizeof train, "%s/train.sbatch", dir);
        setenv("SSPOSE_TRAIN_SBATCH", train, 1);
    }
}

long sweep_submit(const sweep *s, const char *script, int max_running, const char *const *sbatch_args, int nargs)
{
    CHECK(sweep_on_path("sbatch"), "sweep submit: sbatch is not on PATH (no SLURM here? use 'sspose sweep run')");
    CHECK(access(script, R_OK) == 0, "sweep submit: cannot read the job script '%s'", script);
    int *todo = core_malloc(s->nruns * sizeof *todo), ntodo = 0;
    for (int i = 0; i < s->nruns; i++) {
        char *d = sweep_run_dir(s, i);
        sweep_state st;
        sweep_state_read(d, &st, 0);
        if (st.status != SWEEP_DONE) todo[ntodo++] = i;
        free(d);
    }
    if (!ntodo) {
        printf("sweep %s: all %d runs are done; nothing to submit\n", s->dir, s->nruns);
        free(todo);
        return 0;
    }
    /* task i runs the i-th line: array indices stay dense however many runs are done */
    size_t len = strlen(s->dir) + 32, cap = 1024, used = 0;
    char *tasks = core_malloc(cap), *path = core_malloc(len);
    tasks[0] = 0;
    for (int k = 0; k < ntodo; k++) {
        const char *n = s->runs[todo[k]].name;
        if (used + strlen(n) + 2 > cap) tasks = core_realloc(tasks, cap = 2 * cap + strlen(n) + 2);
        used += sprintf(tasks + used, "%s\n", n);
    }
    snprintf(path, len, "%s/slurm-tasks.txt", s->dir);
    trainer_write_text_atomic(path, tasks);

    char array[64], abs_dir[PATH_MAX];
    CHECK(realpath(s->dir, abs_dir), "sweep submit: cannot resolve '%s': %s", s->dir, strerror(errno));
    if (max_running > 0) snprintf(array, sizeof array, "--array=0-%d%%%d", ntodo - 1, max_running);
    else snprintf(array, sizeof array, "--array=0-%d", ntodo - 1);
    char **argv = core_calloc(nargs + 8, sizeof *argv);
    int n = 0;
    argv[n++] = "sbatch";
    argv[n++] = "--parsable";
    argv[n++] = array;
    for (int i = 0; i < nargs; i++) argv[n++] = (char *)sbatch_args[i];
    argv[n++] = (char *)script;
    argv[n++] = abs_dir;
    export_paths(script);
    char out[256];
    int rc = capture(argv, out, sizeof out, 0);
    CHECK(rc == 0, "sweep submit: sbatch failed (exit %d)", rc);
    char *end;
    long job = strtol(out, &end, 10);
    CHECK(end != out && job > 0, "sweep submit: sbatch printed no job id ('%.80s')", out);

    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "job", (double)job);
    cJSON *arr = cJSON_AddArrayToObject(j, "tasks");
    for (int k = 0; k < ntodo; k++) cJSON_AddItemToArray(arr, cJSON_CreateString(s->runs[todo[k]].name));
    char *text = cJSON_Print(j);
    snprintf(path, len, "%s/slurm.json", s->dir);
    trainer_write_text_atomic(path, text);
    printf("submitted job array %ld: %d run%s", job, ntodo, ntodo == 1 ? "" : "s");
    if (max_running > 0) printf(", at most %d at a time", max_running);
    printf(" (%d of %d already done)\n", s->nruns - ntodo, s->nruns);
    free(text);
    cJSON_Delete(j);
    free(argv);
    free(tasks);
    free(path);
    free(todo);
    return job;
}

/* squeue's state of each run of the last submitted array; states[i] = "" when unknown. */
static void queue_states(const sweep *s, char (*states)[24])
{
    for (int i = 0; i < s->nruns; i++) states[i][0] = 0;
    size_t len = strlen(s->dir) + 32;
    char *path = core_malloc(len);
    snprintf(path, len, "%s/slurm.json", s->dir);
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f || !sweep_on_path("squeue")) {
        if (f) fclose(f);
        return;
    }
    char buf[1 << 16];
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = 0;
    cJSON *j = cJSON_Parse(buf);
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(j, "job"), *tasks = cJSON_GetObjectItemCaseSensitive(j, "tasks");
    if (cJSON_IsNumber(job) && cJSON_IsArray(tasks)) {
        char jid[32], out[1 << 16];
        snprintf(jid, sizeof jid, "%ld", (long)job->valuedouble);
        char *argv[] = {"squeue", "-h", "-r", "-j", jid, "-o", "%K %T", NULL};
        if (capture(argv, out, sizeof out, 1) == 0)
            for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                int task;
                char state[24];
                if (sscanf(l, "%d %23s", &task, state) != 2) continue;
                const cJSON *name = cJSON_GetArrayItem(tasks, task);
                for (int i = 0; cJSON_IsString(name) && i < s->nruns; i++)
                    if (!strcmp(s->runs[i].name, name->valuestring)) snprintf(states[i], sizeof states[i], "%s", state);
            }
    }
    cJSON_Delete(j);
}

void sweep_status_print(const sweep *s)
{
    char (*q)[24] = core_calloc(s->nruns, sizeof *q);
    queue_states(s, q);
    int count[4] = {0};
    int w = 4;
    for (int i = 0; i < s->nruns; i++) w = (int)strlen(s->runs[i].name) > w ? (int)strlen(s->runs[i].name) : w;
    for (int i = 0; i < s->nruns; i++) {
        char *d = sweep_run_dir(s, i);
        sweep_state st;
        sweep_state_read(d, &st, 0);
        count[st.status]++;
        printf("%-*s  ", w, s->runs[i].name);
        switch (st.status) {
        case SWEEP_DONE: printf("done (%ld steps)", st.steps); break;
        case SWEEP_PARTIAL: printf("step %ld of %ld", st.step, st.steps); break;
        case SWEEP_FAILED: printf("failed at step %ld of %ld: %s", st.step, st.steps, st.error); break;
        default: printf("not started"); break;
        }
        if (q[i][0] && st.status != SWEEP_DONE) printf("  [slurm: %s]", q[i]);
        printf("\n");
        free(d);
    }
    printf("%d run%s: %d done, %d partial, %d failed, %d not started\n", s->nruns, s->nruns == 1 ? "" : "s",
           count[SWEEP_DONE], count[SWEEP_PARTIAL], count[SWEEP_FAILED], count[SWEEP_NOT_STARTED]);
    free(q);
}
