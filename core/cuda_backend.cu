// Placeholder CUDA backend until the CUDA issue lands: it reports the devices
// it sees and refuses to create a backend, with a clear message.
#include <cuda_runtime.h>

extern "C" {
#include "core/backend.h"
#include "core/check.h"
}

extern "C" int core_cuda_device_count(void)
{
    int n = 0;
    // No driver or no device is "zero GPUs", not an error: the CPU backend takes over.
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

extern "C" core_backend *core_cuda_backend_create(int device)
{
    (void)device;
    CORE_DIE("the CUDA backend's kernels are not built yet (use comm.device=cpu)");
}
