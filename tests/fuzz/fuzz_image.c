/* libFuzzer driver: JPEG and PNG decoding (dataio_image_decode). */
#include <stddef.h>
#include <stdint.h>

#include "dataio/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dataio_image img;
    char err[256];
    if (dataio_image_decode(data, size, &img, err, sizeof err) == 0) dataio_image_free(&img);
    return 0;
}
