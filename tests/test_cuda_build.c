/* CPU suite: the CUDA backend is compiled in and behaves sanely on a machine
 * without a GPU (the CI and dev machines): device count 0 without dying,
 * comm.device=auto falls back to the CPU, and asking for CUDA explicitly
 * fails with exactly one clear error line. On a GPU machine the same
 * program checks the backend comes up, and the real op checks are
 * tests/test_gpu_ops.c (make test-gpu). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/cuda_backend.h"
#include "tests/test.h"

static int ngpu;

#ifdef SSPOSE_CUDA
#define NEED_CUDA_BUILD() ((void)0)
#else
#define NEED_CUDA_BUILD() T_SKIP("sspose was built without CUDA (no nvcc, or make CUDA=0)")
#endif

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void cuda_built_in(void)
{
    NEED_CUDA_BUILD();
    T_CHECKF(strstr(core_backends_built(), "cuda") != NULL, "backends built: '%s'", core_backends_built());
}

static void cuda_device_count_does_not_die(void)
{
    int a = core_cuda_device_count(), b = core_cuda_device_count();
    T_CHECKF(a >= 0 && a == b, "device count %d then %d", a, b);
}

static void cuda_auto_picks_available_backend(void)
{
    core_backend *be = core_backend_create("auto", 0, 1);
    T_CHECK(be != NULL);
    if (ngpu == 0) T_CHECKF(be->dev == CORE_DEV_CPU && !strcmp(be->name, "cpu"), "auto gave '%s'", be->name);
    else T_CHECKF(be->dev == CORE_DEV_CUDA && !strcmp(be->name, "cuda"), "auto gave '%s' with a GPU", be->name);
    /* the CUDA knobs are harmless on any backend */
    core_cuda_set_math(be, 1, 1);
    core_cuda_set_math(be, 0, 1);
    T_CHECK((core_cuda_stream(be) != NULL) == (be->dev == CORE_DEV_CUDA));
    core_backend_destroy(be);
}

static void child_create_direct(void) { core_cuda_backend_create(0); }
static void child_create_via_config(void) { core_backend_create("cuda", 0, 1); }

static void cuda_create_without_gpu_is_one_line(void)
{
    NEED_CUDA_BUILD();
    if (ngpu > 0) T_SKIP("a GPU is present (the failure path needs a GPU-less machine)");
    char err[2048];
    int st = t_run_child(child_create_direct, err, sizeof err);
    T_CHECKF(st == 1, "core_cuda_backend_create exited %d without a GPU", st);
    T_CHECKF(count_lines(err) == 1, "expected one error line, got: %.300s", err);
    T_CHECKF(strstr(err, "sspose: error: no usable GPU for the CUDA backend") != NULL, "message: %.300s", err);
    st = t_run_child(child_create_via_config, err, sizeof err);
    T_CHECKF(st == 1, "comm.device=cuda exited %d without a GPU", st);
    T_CHECKF(count_lines(err) == 1, "expected one error line, got: %.300s", err);
    T_CHECKF(strstr(err, "comm.device = cuda but no usable GPU") != NULL, "message: %.300s", err);
}

static void cuda_device_peak_without_device(void)
{
    core_cuda_peak pk;
    T_CHECK(core_cuda_device_peak(ngpu, 0, &pk) == -1); /* one past the last device */
    T_CHECK(core_cuda_device_peak(-1, 1980, &pk) == -1);
    if (ngpu > 0 && core_cuda_device_peak(0, 0, &pk) == 0) {
        T_CHECKF(pk.fp32 > 1 && pk.tf32 >= pk.fp32 && pk.bf16 == 2 * pk.tf32 && pk.clock_mhz > 100 && pk.name[0],
                 "peak fp32 %g tf32 %g bf16 %g at %g MHz, name '%s'", pk.fp32, pk.tf32, pk.bf16, pk.clock_mhz, pk.name);
        core_cuda_peak half;
        T_CHECK(core_cuda_device_peak(0, pk.clock_mhz / 2, &half) == 0);
        T_NEAR(half.bf16, pk.bf16 / 2, 1e-9, 0); /* the peak scales with the clock asked for */
    }
}

/* The knobs added for the GPU trainer are harmless on the CPU backend (a
 * CPU-only build has inline no-ops; a CUDA build checks the device). */
static void cuda_knobs_are_noops_on_cpu(void)
{
    core_backend *be = core_cpu_backend_create(1);
    core_cuda_set_workspace(be, 64);
    core_cuda_set_algo_agree(be, NULL, NULL);
    T_CHECK(core_cuda_algos_save(be) == NULL);
    T_CHECK(core_cuda_algos_load(be, "fwd n=1 cin=1 h=1 w=1 cout=1 k=1 tf32=0 det=1 algo=0 math=3\n", "x") == 0);
    core_backend_destroy(be);
    if (ngpu == 0) T_CHECK(core_cuda_select_device(0) == -1);
}

static void child_bad_algo_line(void)
{
    core_backend *be = core_cuda_backend_create(0);
    core_cuda_algos_load(be, "fwd n=1 cin=1 h=1 w=1 cout=1 k=1 tf32=0 det=1 algo=0 math=3\nnot a line\n", "algos.txt");
}

/* A damaged algorithm file is one line naming the file and the line. */
static void cuda_algos_file_damaged_is_one_line(void)
{
    NEED_CUDA_BUILD();
    if (ngpu == 0) T_SKIP("skipped: no GPU");
    char err[2048];
    int st = t_run_child(child_bad_algo_line, err, sizeof err);
    T_CHECKF(st == 1 && count_lines(err) == 1 && strstr(err, "algos.txt:2: not a cuDNN algorithm choice"),
             "exit %d: %.300s", st, err);
}

/* The GPU suite itself runs only under make test-gpu; here it is reported
 * visibly as skipped, or, with a GPU present, the backend is brought up. */
static void gpu_suite(void)
{
    NEED_CUDA_BUILD();
    if (ngpu == 0) T_SKIP("skipped: no GPU (run 'make test-gpu' on a GPU machine; see docs/gpu.md)");
    core_backend *be = core_cuda_backend_create(0);
    float h[5] = {1, -2, 3, -4, 5}, back[5] = {0};
    float *d = be->alloc(be, 5);
    be->upload(be, d, h, 5);
    T_NEAR(be->sumsq(be, d, 5), 55.0, 0, 0);
    be->download(be, back, d, 5);
    T_CHECK(memcmp(h, back, sizeof h) == 0);
    be->free(be, d);
    core_backend_destroy(be);
}

int main(void)
{
    core_set_quiet(1);
    ngpu = core_cuda_device_count();
    T_RUN(cuda_built_in);
    T_RUN(cuda_device_count_does_not_die);
    T_RUN(cuda_auto_picks_available_backend);
    T_RUN(cuda_create_without_gpu_is_one_line);
    T_RUN(cuda_device_peak_without_device);
    T_RUN(cuda_knobs_are_noops_on_cpu);
    T_RUN(cuda_algos_file_damaged_is_one_line);
    T_RUN(gpu_suite);
    T_EXIT();
}
