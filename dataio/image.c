#include "dataio/image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* Images larger than this are refused before allocating (a hostile header
 * could otherwise ask for gigabytes). COCO images are ~640x480. */
#define MAX_PIXELS (64u * 1024u * 1024u)

uint8_t *dataio_read_file(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            uint8_t *nb = cap >= max_bytes ? NULL : realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            int bad = ferror(f);
            fclose(f);
            if (bad || n > max_bytes) {
                snprintf(err, errlen, bad ? "cannot read '%s'" : "'%s' is too large", path);
                free(buf);
                return NULL;
            }
            *len = n;
            return buf;
        }
    }
    fclose(f);
    free(buf);
    snprintf(err, errlen, "'%s' is too large or memory ran out", path);
    return NULL;
}

/* ---- JPEG: libjpeg reports errors through a callback; we longjmp out of it. */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
    int strict;                     /* shard crops: every warning is corruption */
    char warning[JMSG_LENGTH_MAX];  /* the first warning, when strict */
} jpeg_err;

static void jpeg_fail(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* Warnings stay quiet (COCO has images with harmless extraneous bytes), but a
 * premature end of data means the pixels are partly invented: refuse those. */
static void jpeg_quiet(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    /* a crop we encoded ourselves has no excuse for extraneous bytes: a warning
     * there means flipped bits that libjpeg decoded into invented pixels */
    if (level < 0 && e->strict && !e->warning[0]) (*cinfo->err->format_message)(cinfo, e->warning);
}

static int decode_jpeg(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen, int strict)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_err je;
    uint8_t *volatile rgb = NULL, *volatile line = NULL;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.truncated = 0;
    je.strict = strict;
    je.warning[0] = 0;
    je.mgr.error_exit = jpeg_fail;
    je.mgr.emit_message = jpeg_quiet; /* corrupt-data warnings would spam stderr */
    if (setjmp(je.jump)) {
        snprintf(err, errlen, "corrupt JPEG: %s", je.msg);
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        free(line);
        return -1;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    /* libjpeg converts everything to RGB except CMYK/YCCK: those come out as
     * CMYK and are converted below */
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    if ((unsigned long long)cinfo.image_width * cinfo.image_height > MAX_PIXELS) {
        snprintf(err, errlen, "JPEG of %ux%u pixels is too large", cinfo.image_width, cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != (cmyk ? 4 : 3)) {
        snprintf(err, errlen, "JPEG has %d components after RGB conversion", cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    rgb = malloc(stride * cinfo.output_height);
    if (!rgb) {
        snprintf(err, errlen, "out of memory decoding JPEG");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (cmyk) {
        line = malloc((size_t)cinfo.output_width * 4);
        if (!line) {
            snprintf(err, errlen, "out of memory decoding JPEG");
            jpeg_destroy_decompress(&cinfo);
            free(rgb);
            return -1;
        }
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *dst = rgb + stride * cinfo.output_scanline;
        JSAMPROW row = cmyk ? line : dst;
        jpeg_read_scanlines(&cinfo, &row, 1);
        /* Adobe applications store CMYK inverted (their APP14 marker says so) */
        for (JDIMENSION x = 0; cmyk && x < cinfo.output_width; x++) {
            const uint8_t *p = line + 4 * x;
            int inv = cinfo.saw_Adobe_marker, k = inv ? p[3] : 255 - p[3];
            for (int c = 0; c < 3; c++) dst[3 * x + c] = (uint8_t)(((inv ? p[c] : 255 - p[c]) * k + 127) / 255);
        }
    }
    free(line);
    line = NULL;
    if (je.truncated || je.warning[0]) {
        if (je.truncated) snprintf(err, errlen, "truncated JPEG (premature end of data)");
        else snprintf(err, errlen, "corrupt JPEG: %s", je.warning);
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        return -1;
    }
    jpeg_finish_decompress(&cinfo);
    if (je.warning[0]) { /* warnings about trailing data come from finish */
        snprintf(err, errlen, "corrupt JPEG: %s", je.warning);
        jpeg_destroy_decompress(&cinfo);
        free(rgb);
        return -1;
    }
    img->width = (int)cinfo.output_width;
    img->height = (int)cinfo.output_height;
    img->rgb = rgb;
    jpeg_destroy_decompress(&cinfo);
    return 0;
}

/* ---- PNG through the simplified libpng API (handles palette, grey, 16-bit, alpha). */
static int decode_png(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, data, len)) {
        snprintf(err, errlen, "corrupt PNG: %s", pi.message);
        return -1;
    }
    if ((unsigned long long)pi.width * pi.height > MAX_PIXELS) {
        snprintf(err, errlen, "PNG of %ux%u pixels is too large", pi.width, pi.height);
        png_image_free(&pi);
        return -1;
    }
    pi.format = PNG_FORMAT_RGB;
    uint8_t *rgb = malloc(PNG_IMAGE_SIZE(pi));
    if (!rgb) {
        snprintf(err, errlen, "out of memory decoding PNG");
        png_image_free(&pi);
        return -1;
    }
    png_color grey = {128, 128, 128}; /* background for transparent pixels */
    if (!png_image_finish_read(&pi, &grey, rgb, 0, NULL)) {
        snprintf(err, errlen, "corrupt PNG: %s", pi.message);
        free(rgb);
        png_image_free(&pi);
        return -1;
    }
    img->width = (int)pi.width;
    img->height = (int)pi.height;
    img->rgb = rgb;
    return 0;
}

int dataio_image_decode(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    img->rgb = NULL;
    img->width = img->height = 0;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, len, img, err, errlen, 0);
    if (len >= 8 && !memcmp(data, png_sig, 8)) return decode_png(data, len, img, err, errlen);
    snprintf(err, errlen, "not a JPEG or PNG file (%zu bytes)", len);
    return -1;
}

int dataio_image_decode_strict(const uint8_t *data, size_t len, dataio_image *img, char *err, size_t errlen)
{
    img->rgb = NULL;
    img->width = img->height = 0;
    if (len >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, len, img, err, errlen, 1);
    snprintf(err, errlen, "not a JPEG (%zu bytes)", len);
    return -1;
}

int dataio_image_load(const char *path, dataio_image *img, char *err, size_t errlen)
{
    size_t len;
    img->rgb = NULL;
    uint8_t *data = dataio_read_file(path, (size_t)1 << 30, &len, err, errlen);
    if (!data) return -1;
    char inner[400];
    int rc = dataio_image_decode(data, len, img, inner, sizeof inner);
    if (rc) snprintf(err, errlen, "%s: %s", path, inner);
    free(data);
    return rc;
}

void dataio_image_free(dataio_image *img)
{
    free(img->rgb);
    img->rgb = NULL;
}

int dataio_jpeg_encode(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *outlen,
                       char *err, size_t errlen)
{
    struct jpeg_compress_struct cinfo;
    jpeg_err je;
    unsigned long size = 0;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.truncated = 0;
    je.mgr.error_exit = jpeg_fail;
    if (setjmp(je.jump)) {
        snprintf(err, errlen, "JPEG encoding failed: %s", je.msg);
        jpeg_destroy_compress(&cinfo); /* libjpeg may have moved its buffer: leave it (never seen in practice) */
        return -1;
    }
    jpeg_create_compress(&cinfo);
    unsigned char *b = NULL;
    jpeg_mem_dest(&cinfo, &b, &size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * width * 3);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    *out = b;
    *outlen = size;
    jpeg_destroy_compress(&cinfo);
    return 0;
}
