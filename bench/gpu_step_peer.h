/* The processes bench/gpu_step.c drives, included by it alone (a benchmark
 * program is one .c file; this keeps the process plumbing apart from the
 * timing):
 *  - the PyTorch peer (bench/gpu_step_torch.py), a child on two pipes that
 *    runs timed rounds on command, so rounds can alternate with ours;
 *  - one `sspose train` run on shards (made with `sspose synth` + `sspose
 *    data` when none are given), whose metrics.jsonl gives the trainer's
 *    end-to-end samples/s. */
#ifndef SSPOSE_BENCH_GPU_STEP_PEER_H
#define SSPOSE_BENCH_GPU_STEP_PEER_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/check.h"

typedef struct gpu_peer {
    pid_t pid;
    FILE *to, *from;
    char last[1024]; /* the last line that was not a reply, for error messages */
} gpu_peer;

/* The next reply line starting with `key` (other lines are kept as context);
 * dies with the peer's last words when it exits first. */
static const char *gpu_peer_expect(gpu_peer *p, const char *key, char *line, size_t cap)
{
    while (fgets(line, (int)cap, p->from)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, key, strlen(key))) return line + strlen(key);
        if (line[0]) snprintf(p->last, sizeof p->last, "%s", line);
    }
    int st = 0;
    waitpid(p->pid, &st, 0);
    CORE_DIE("gpu_step: the PyTorch peer ended (exit %d) before '%s': %s", WIFEXITED(st) ? WEXITSTATUS(st) : -1, key,
             p->last[0] ? p->last : "no output");
}

/* Starts `python script ARGS` (args split on spaces) and reads its header. */
static gpu_peer *gpu_peer_start(const char *python, const char *script, const char *args, double *flops)
{
    int down[2], up[2];
    CHECK(pipe(down) == 0 && pipe(up) == 0, "gpu_step: pipe: %s", strerror(errno));
    char buf[1024], *argv[64];
    snprintf(buf, sizeof buf, "%s", args);
    int argc = 0;
    argv[argc++] = (char *)python;
    argv[argc++] = (char *)script;
    for (char *t = strtok(buf, " "); t && argc < 62; t = strtok(NULL, " ")) argv[argc++] = t;
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0, "gpu_step: fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(down[0], 0);
        dup2(up[1], 1);
        dup2(up[1], 2); /* its error line comes back to us */
        close(down[0]); close(down[1]); close(up[0]); close(up[1]);
        execv(python, argv);
        fprintf(stderr, "gpu_step_torch: error: cannot run %s: %s\n", python, strerror(errno));
        _exit(127);
    }
    close(down[0]);
    close(up[1]);
    gpu_peer *p = core_calloc(1, sizeof *p);
    p->pid = pid;
    p->to = fdopen(down[1], "w");
    p->from = fdopen(up[0], "r");
    CHECK(p->to && p->from, "gpu_step: fdopen: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN); /* a dead peer shows as EOF on its output, not a signal */
    char line[1024];
    *flops = atof(gpu_peer_expect(p, "torch_flops_per_step ", line, sizeof line));
    gpu_peer_expect(p, "torch_ready", line, sizeof line);
    return p;
}

static void gpu_peer_say(gpu_peer *p, const char *cmd, int n)
{
    fprintf(p->to, "%s %d\n", cmd, n);
    fflush(p->to);
}

static void gpu_peer_warmup(gpu_peer *p, int n)
{
    char line[1024];
    gpu_peer_say(p, "warmup", n);
    gpu_peer_expect(p, "ok", line, sizeof line);
}

/* Total ms of n PyTorch steps (CUDA events on its side). */
static double gpu_peer_round(gpu_peer *p, int n)
{
    char line[1024];
    gpu_peer_say(p, "round", n);
    double ms = atof(gpu_peer_expect(p, "round_ms ", line, sizeof line));
    CHECK(ms > 0, "gpu_step: the PyTorch peer timed a round at %g ms", ms);
    return ms;
}

static void gpu_peer_stop(gpu_peer *p)
{
    fputs("quit\n", p->to);
    fclose(p->to);
    fclose(p->from);
    int st = 0;
    waitpid(p->pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "gpu_step: the PyTorch peer exited with status %d", st);
    free(p);
}

/* Runs a shell command with its output in `log`; dies naming the log on failure. */
static void gpu_run_logged(const char *cmd, const char *log, const char *what)
{
    char full[4096];
    snprintf(full, sizeof full, "%s >'%s' 2>&1", cmd, log);
    int rc = system(full);
    CHECK(rc == 0, "gpu_step: %s failed (exit %d); see %s", what, WIFEXITED(rc) ? WEXITSTATUS(rc) : rc, log);
}

/* samples/s of the second half of a `sspose train` run: one rank on GPU 0
 * (comm.device=cuda), its first steps (the algorithm search) left out. */
static double gpu_train_samples_per_s(const char *sspose, const char *config, const char *shards, int batch, int input,
                                      int tf32, int steps)
{
    char dir[] = "/tmp/gpu_step_train.XXXXXX", cmd[4096], log[512], glob[512], path[512];
    CHECK(mkdtemp(dir), "gpu_step: mkdtemp: %s", strerror(errno));
    snprintf(log, sizeof log, "%s/log.txt", dir);
    if (!shards) {
        snprintf(cmd, sizeof cmd, "'%s' synth --out '%s/coco' --images 24 --seed 3", sspose, dir);
        gpu_run_logged(cmd, log, "sspose synth");
        snprintf(cmd, sizeof cmd,
                 "'%s' data --config '%s' --set model.input=%d --ann '%s/coco/annotations.json' --images "
                 "'%s/coco/images' --out '%s/train' --threads 8",
                 sspose, config, input, dir, dir, dir);
        gpu_run_logged(cmd, log, "sspose data");
        snprintf(glob, sizeof glob, "%s/train-*.h5", dir);
        shards = glob;
    }
    int half = steps / 2;
    snprintf(cmd, sizeof cmd,
             "'%s' train --config '%s' --out '%s/run' --set data.train='%s' --set comm.device=cuda --set comm.tf32=%d "
             "--set train.batch=%d --set model.input=%d --set train.steps=%d --set train.log_every=%d "
             "--set train.checkpoint_every=0",
             sspose, config, dir, shards, tf32, batch, input, steps, half);
    gpu_run_logged(cmd, log, "sspose train");
    snprintf(path, sizeof path, "%s/run/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    CHECK(f, "gpu_step: sspose train wrote no %s", path);
    char line[8192];
    double sps = 0;
    while (fgets(line, sizeof line, f)) {
        const char *at = strstr(line, "\"samples_per_s\":");
        if (at) sps = atof(at + strlen("\"samples_per_s\":"));
    }
    fclose(f);
    CHECK(sps > 0, "gpu_step: no samples_per_s in %s", path);
    return sps;
}

#endif
