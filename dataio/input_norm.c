#include "dataio/input_norm.h"

#include "core/check.h"

dataio_input_norm dataio_input_norm_get(core_input_norm mode)
{
    /* Coefficients are rounded once from double, so pixel*scale + bias is within one
     * float rounding of the exact formula in every mode. */
    static const double IMNET_MEAN[3] = {0.485, 0.456, 0.406}, IMNET_STD[3] = {0.229, 0.224, 0.225};
    static const double CAFFE_MEAN_BGR[3] = {103.939, 116.779, 123.68};
    dataio_input_norm n;
    for (int c = 0; c < 3; c++) {
        switch (mode) {
        case CORE_NORM_CENTERED:
            n.src[c] = c;
            n.scale[c] = 1.0f / 255.0f;
            n.bias[c] = -0.5f;
            break;
        case CORE_NORM_IMAGENET:
            n.src[c] = c;
            n.scale[c] = (float)(1.0 / (255.0 * IMNET_STD[c]));
            n.bias[c] = (float)(-IMNET_MEAN[c] / IMNET_STD[c]);
            break;
        case CORE_NORM_CAFFE:
            n.src[c] = 2 - c;
            n.scale[c] = 1.0f;
            n.bias[c] = (float)-CAFFE_MEAN_BGR[c];
            break;
        case CORE_NORM_CMU:
            n.src[c] = 2 - c;
            n.scale[c] = 1.0f / 256.0f;
            n.bias[c] = -0.5f;
            break;
        default: CORE_DIE("unknown model.input_norm %d", (int)mode);
        }
    }
    return n;
}

void dataio_input_norm_plane(const dataio_input_norm *n, int c, const uint8_t *rgb, size_t npix, float *plane)
{
    const uint8_t *px = rgb + n->src[c];
    for (size_t p = 0; p < npix; p++) plane[p] = dataio_input_norm_px(n, c, px[3 * p]);
}

void dataio_input_norm_image(core_input_norm mode, const uint8_t *rgb, size_t npix, float *chw)
{
    dataio_input_norm n = dataio_input_norm_get(mode);
    for (int c = 0; c < 3; c++) dataio_input_norm_plane(&n, c, rgb, npix, chw + (size_t)c * npix);
}
