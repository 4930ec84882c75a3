#include <stdio.h>

#include "core/check.h"
#include "loss/loss_h5.h"

static hid_t link_plist(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5_CHECK(lcpl, "HDF5: cannot create a link property list");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "HDF5: cannot set intermediate group creation");
    return lcpl;
}

static void write_dataset(hid_t file, const char *path, hid_t type, const void *data, int ndim, const hsize_t *dims,
                          const char *attr_name, double attr_value)
{
    hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    H5_CHECK(space, "HDF5: cannot create a dataspace for %s", path);
    hid_t lcpl = link_plist();
    hid_t ds = H5Dcreate2(file, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5_CHECK(ds, "HDF5: cannot create dataset %s", path);
    H5_CHECK(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), "HDF5: cannot write dataset %s", path);
    if (attr_name) {
        hid_t as = H5Screate(H5S_SCALAR);
        H5_CHECK(as, "HDF5: cannot create a dataspace");
        hid_t a = H5Acreate2(ds, attr_name, H5T_NATIVE_DOUBLE, as, H5P_DEFAULT, H5P_DEFAULT);
        H5_CHECK(a, "HDF5: cannot create attribute %s on %s", attr_name, path);
        H5_CHECK(H5Awrite(a, H5T_NATIVE_DOUBLE, &attr_value), "HDF5: cannot write attribute %s", attr_name);
        H5_CHECK(H5Aclose(a), "HDF5: close");
        H5_CHECK(H5Sclose(as), "HDF5: close");
    }
    H5_CHECK(H5Dclose(ds), "HDF5: cannot close dataset %s", path);
    H5_CHECK(H5Pclose(lcpl), "HDF5: close");
    H5_CHECK(H5Sclose(space), "HDF5: close");
}

void loss_h5_write_f32(hid_t file, const char *path, const float *host, int ndim, const int *dims)
{
    CHECK(ndim >= 1 && ndim <= 4, "loss_h5_write_f32: bad rank %d for %s", ndim, path);
    hsize_t d[4];
    for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
    write_dataset(file, path, H5T_NATIVE_FLOAT, host, ndim, d, NULL, 0);
}

void loss_h5_write_f64(hid_t file, const char *path, double value)
{
    write_dataset(file, path, H5T_NATIVE_DOUBLE, &value, 0, NULL, NULL, 0);
}

void loss_h5_write_values(hid_t file, const loss_values *v)
{
    loss_h5_write_f64(file, "/loss/total", v->total);
    char path[96];
    for (int s = 0; s < v->stages; s++)
        for (int k = 0; k < LOSS_NUM_TERMS; k++)
            if (v->active >> k & 1) {
                snprintf(path, sizeof path, "/loss/stage%d/%s", s + 1, loss_term_names[k]);
                write_dataset(file, path, H5T_NATIVE_DOUBLE, &v->term[s][k], 0, NULL, "weight", v->weight[k]);
            }
}
