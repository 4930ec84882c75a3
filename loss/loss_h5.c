#include <stdio.h>

#include "core/check.h"
#include "core/h5util.h"
#include "loss/loss_h5.h"

static void write_scalar(hid_t file, const char *path, double value, const double *weight)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5_CHECK(lcpl, "HDF5: property list");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "HDF5: property list");
    hid_t space = H5Screate(H5S_SCALAR);
    H5_CHECK(space, "HDF5: dataspace for '%s'", path);
    hid_t ds = H5Dcreate2(file, path, H5T_IEEE_F64LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(ds, "HDF5: cannot create dataset '%s'", path);
    H5_CHECK(H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value), "HDF5: cannot write '%s'", path);
    if (weight) core_h5_attr_f64(ds, "weight", *weight);
    H5_CHECK(H5Dclose(ds), "HDF5: cannot close '%s'", path);
    H5_CHECK(H5Sclose(space), "HDF5: close");
    H5_CHECK(H5Pclose(lcpl), "HDF5: close");
}

void loss_h5_write_values(hid_t file, const loss_values *v)
{
    write_scalar(file, "/loss/total", v->total, NULL);
    char path[96];
    for (int s = 0; s < v->stages; s++)
        for (int k = 0; k < LOSS_NUM_TERMS; k++)
            if (v->active >> k & 1) {
                snprintf(path, sizeof path, "/loss/stage%d/%s", s + 1, loss_term_names[k]);
                write_scalar(file, path, v->term[s][k], &v->weight[k]);
            }
}
