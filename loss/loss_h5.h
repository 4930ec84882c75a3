/* HDF5 record of loss values as `sspose forward` writes it (docs/loss.md). */
#ifndef SSPOSE_LOSS_LOSS_H5_H
#define SSPOSE_LOSS_LOSS_H5_H

#include <hdf5.h>

#include "loss/loss.h"

/* /loss/total and /loss/stage{t}/<term> for the active terms (stages 1-based): float64
 * scalars; each term carries a float64 attribute `weight`, its coefficient in the total. */
void loss_h5_write_values(hid_t file, const loss_values *v);

#endif
