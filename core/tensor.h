/* NCHW float32 tensors tagged with the device their memory lives on.
 * A tensor never owns its memory: model arenas, parameter buffers and batch
 * buffers do, and hand out views. */
#ifndef SSPOSE_CORE_TENSOR_H
#define SSPOSE_CORE_TENSOR_H

#include <stddef.h>

typedef enum { CORE_DEV_CPU = 0, CORE_DEV_CUDA = 1 } core_device;

typedef struct core_tensor {
    float *data;
    int n, c, h, w;
    core_device dev;
} core_tensor;

static inline size_t core_tensor_numel(const core_tensor *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

static inline core_tensor core_tensor_view(float *data, int n, int c, int h, int w, core_device dev)
{
    core_tensor t = {data, n, c, h, w, dev};
    return t;
}

#endif
