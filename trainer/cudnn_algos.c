/* RUNDIR/cudnn_algos.txt: read, shared over MPI, rewritten (see the header). */
#include "trainer/cudnn_algos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "core/check.h"
#include "core/cuda_backend.h"
#include "trainer/rundir.h"

struct trainer_algos {
    core_backend *be;
    char path[4200];
    char *written; /* the record as last read or written */
};

/* Rank 0's choice for a shape first used in this run, on every rank. */
static void agree_rank0(void *ctx, char *line, size_t cap)
{
    (void)ctx;
    comm_bcast_bytes(line, cap, 0);
    line[cap - 1] = 0;
}

/* The whole file (NULL when absent). */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    CHECK(fseek(f, 0, SEEK_END) == 0, "cannot read %s", path);
    long len = ftell(f);
    CHECK(len >= 0 && len < (1 << 24) && fseek(f, 0, SEEK_SET) == 0, "cannot read %s (or larger than 16 MiB)", path);
    char *text = core_malloc((size_t)len + 1);
    CHECK(fread(text, 1, (size_t)len, f) == (size_t)len, "cannot read %s", path);
    text[len] = 0;
    fclose(f);
    return text;
}

trainer_algos *trainer_algos_open(core_backend *be, const char *rundir)
{
    if (be->dev != CORE_DEV_CUDA) return NULL;
    trainer_algos *a = core_calloc(1, sizeof *a);
    a->be = be;
    snprintf(a->path, sizeof a->path, "%s/cudnn_algos.txt", rundir);
    /* Rank 0's file reaches every rank. A fresh run reads one too: copying a
     * run's record into a new run directory pins its algorithms (the tests
     * compare runs bit for bit that way); lines for other shapes, math or
     * workspace are simply never used. */
    char *text = comm_rank() == 0 ? read_text(a->path) : NULL;
    long long len = text ? (long long)strlen(text) : -1;
    comm_bcast_bytes(&len, sizeof len, 0);
    if (len >= 0) {
        if (!text) text = core_malloc((size_t)len + 1);
        comm_bcast_bytes(text, (size_t)len + 1, 0);
        int n = core_cuda_algos_load(be, text, a->path);
        if (comm_rank() == 0) core_info("cuDNN algorithms: %d recorded choice(s) from %s", n, a->path);
        a->written = text;
    }
    core_cuda_set_algo_agree(be, agree_rank0, NULL);
    return a;
}

void trainer_algos_save(trainer_algos *a)
{
    if (!a || comm_rank() != 0) return;
    char *text = core_cuda_algos_save(a->be);
    if (!text || (a->written && !strcmp(text, a->written))) {
        free(text);
        return;
    }
    trainer_write_text_atomic(a->path, text);
    free(a->written);
    a->written = text;
}

void trainer_algos_close(trainer_algos *a)
{
    if (!a) return;
    core_cuda_set_algo_agree(a->be, NULL, NULL);
    free(a->written);
    free(a);
}
