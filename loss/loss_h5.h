/* HDF5 records of loss values and output tensors, as `sspose forward` writes them
 * (docs/loss.md): /loss/total, /loss/stage{t}/{term} and float32 tensors at any path. */
#ifndef SSPOSE_LOSS_LOSS_H5_H
#define SSPOSE_LOSS_LOSS_H5_H

#include <hdf5.h>

#include "loss/loss.h"

/* /loss/total and /loss/stage{t}/<term> for the active terms: float64 scalars, each term
 * with a float64 attribute `weight` (its coefficient in the total). Stages are 1-based. */
void loss_h5_write_values(hid_t file, const loss_values *v);

/* A float32 dataset of the given shape (ndim <= 4) at `path`, creating missing groups. */
void loss_h5_write_f32(hid_t file, const char *path, const float *host, int ndim, const int *dims);

/* A scalar float64 dataset at `path`, creating missing groups. */
void loss_h5_write_f64(hid_t file, const char *path, double value);

#endif
