/* Backend selection: comm.device = auto | cpu | cuda. */
#include <string.h>

#include "core/backend.h"
#include "core/check.h"

const char *core_backends_built(void)
{
#if defined(SSPOSE_DNNL)
#define CORE_CPU_DESC "cpu (convolutions: oneDNN + OpenBLAS)"
#else
#define CORE_CPU_DESC "cpu (convolutions: OpenBLAS)"
#endif
#ifdef SSPOSE_CUDA
    return CORE_CPU_DESC " cuda (cuDNN, NCCL)";
#else
    return CORE_CPU_DESC;
#endif
#undef CORE_CPU_DESC
}

core_backend *core_backend_create(const char *device, int local_rank, int threads)
{
    if (!strcmp(device, "cpu")) return core_cpu_backend_create(threads);
    int ngpu = core_cuda_device_count();
    if (!strcmp(device, "cuda")) {
        CHECK(ngpu > 0, "comm.device = cuda but no usable GPU (%s)",
              strstr(core_backends_built(), "cuda") ? "none present" : "sspose was built without CUDA");
        return core_cuda_backend_create(local_rank % ngpu);
    }
    CHECK(!strcmp(device, "auto"), "comm.device must be auto, cpu or cuda, got '%s'", device);
    return ngpu > 0 ? core_cuda_backend_create(local_rank % ngpu) : core_cpu_backend_create(threads);
}

void core_backend_destroy(core_backend *be)
{
    if (be) be->destroy(be);
}

#ifndef SSPOSE_CUDA
/* CPU-only build: the CUDA entry points exist and say so. */
int core_cuda_device_count(void) { return 0; }
core_backend *core_cuda_backend_create(int device)
{
    (void)device;
    CORE_DIE("the CUDA backend is not built into this binary (rebuild where nvcc is found)");
}
#endif
