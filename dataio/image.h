/* Image decoding (JPEG via libjpeg-turbo, PNG via libpng) and JPEG encoding.
 * Decoders never exit: a corrupt or truncated file gives an error text, so a
 * converter can skip the image and count it. Always RGB, 8 bits, HWC. */
#ifndef SSPOSE_DATAIO_IMAGE_H
#define SSPOSE_DATAIO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int width, height;
    uint8_t *rgb; /* [height, width, 3], malloc'd */
} dataio_image;

/* Decodes JPEG or PNG bytes (sniffed from the signature). 0 on success; on
 * failure -1 with a message in err and img->rgb NULL. */
int dataio_image_decode(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen);
/* JPEG only, and any libjpeg warning (corrupt data, extraneous bytes) is an
 * error: for bytes we encoded ourselves, where a warning can only mean damage. */
int dataio_image_decode_strict(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen);
/* Reads and decodes a file; the same contract (missing files are errors too). */
int dataio_image_load(const char *path, dataio_image *img, char *err, size_t errlen);
void dataio_image_free(dataio_image *img);

/* Encodes RGB as baseline JPEG (4:2:0). *out is malloc'd; returns 0, or -1 with err. */
int dataio_jpeg_encode(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *outlen,
                       char *err, size_t errlen);

/* Whole file into memory; NULL with err on failure. Refuses files over max_bytes. */
uint8_t *dataio_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen);

#endif
