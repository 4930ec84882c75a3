#include "dataio/mask.h"

#include <cairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

void dataio_segm_free(dataio_segm *s)
{
    free(s->poly_len);
    free(s->xy);
    free(s->counts);
    memset(s, 0, sizeof *s);
}

/* Each count is a little-endian sequence of 5-bit groups, one character each
 * (value + 48), bit 0x20 = more groups follow, bit 0x10 of the last group =
 * negative; from the third count on the text holds the difference to the
 * count two places back (runs of zeros and of ones are each smooth). */
int dataio_rle_from_string(const char *s, uint32_t **out, int *nout, char *err, size_t errlen)
{
    size_t len = strlen(s);
    int64_t *c = malloc(sizeof(int64_t) * (len + 1));
    CHECK(c, "out of memory decoding an RLE of %zu characters", len);
    int n = 0;
    size_t p = 0;
    while (p < len) {
        int64_t x = 0;
        int k = 0, more = 1;
        while (more) {
            if (p >= len) { snprintf(err, errlen, "RLE string ends inside a count"); goto bad; }
            int v = (unsigned char)s[p] - 48;
            if (v < 0 || v > 63) { snprintf(err, errlen, "RLE string has a bad character (code %d)", (unsigned char)s[p]); goto bad; }
            if (k >= 12) { snprintf(err, errlen, "RLE count is too long"); goto bad; }
            x |= (int64_t)(v & 0x1f) << (5 * k);
            more = v & 0x20;
            p++, k++;
            if (!more && (v & 0x10)) x -= (int64_t)1 << (5 * k); /* sign-extend */
        }
        if (n > 2) x += c[n - 2];
        if (x < 0 || x > 0xffffffffll) { snprintf(err, errlen, "RLE count %lld out of range", (long long)x); goto bad; }
        c[n++] = x;
    }
    *out = malloc(sizeof(uint32_t) * (n ? n : 1));
    CHECK(*out, "out of memory");
    for (int i = 0; i < n; i++) (*out)[i] = (uint32_t)c[i];
    *nout = n;
    free(c);
    return 0;
bad:
    free(c);
    return -1;
}

int dataio_rle_check(const uint32_t *counts, int n, int h, int w, char *err, size_t errlen)
{
    unsigned long long sum = 0;
    for (int i = 0; i < n; i++) sum += counts[i];
    if (sum != (unsigned long long)h * w) {
        snprintf(err, errlen, "RLE counts sum to %llu, image has %d x %d = %llu pixels", sum, h, w,
                 (unsigned long long)h * w);
        return -1;
    }
    return 0;
}

static void paint_rle(const dataio_segm *s, uint8_t *mask, int h, int w, uint8_t value)
{
    /* column-major runs: position p is pixel (x = p / h, y = p % h) */
    uint64_t pos = 0, total = (uint64_t)h * w;
    for (int i = 0; i < s->ncounts && pos < total; i++) {
        uint64_t end = pos + s->counts[i];
        if (end > total) end = total;
        if (i & 1)
            for (uint64_t q = pos; q < end; q++) mask[(q % h) * w + q / h] = value;
        pos = end;
    }
}

static void paint_polygons(const dataio_segm *s, uint8_t *mask, int h, int w, uint8_t value)
{
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_A8, w, h);
    CHECK(cairo_surface_status(surf) == CAIRO_STATUS_SUCCESS, "cairo: cannot create a %dx%d mask", w, h);
    cairo_t *cr = cairo_create(surf);
    cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);
    cairo_set_source_rgba(cr, 0, 0, 0, 1);
    const float *xy = s->xy;
    for (int p = 0; p < s->npoly; p++) {
        int n = s->poly_len[p];
        if (n >= 3) {
            cairo_new_path(cr);
            cairo_move_to(cr, xy[0], xy[1]);
            for (int k = 1; k < n; k++) cairo_line_to(cr, xy[2 * k], xy[2 * k + 1]);
            cairo_close_path(cr);
            cairo_fill(cr); /* one fill per polygon: the union of the parts */
        }
        xy += 2 * n;
    }
    cairo_surface_flush(surf);
    const unsigned char *data = cairo_image_surface_get_data(surf);
    int stride = cairo_image_surface_get_stride(surf);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if (data[y * stride + x]) mask[y * w + x] = value;
    cairo_destroy(cr);
    cairo_surface_destroy(surf);
}

void dataio_segm_paint(const dataio_segm *s, uint8_t *mask, int h, int w, uint8_t value)
{
    if (s->rle_h > 0) paint_rle(s, mask, h, w, value);
    else if (s->npoly > 0) paint_polygons(s, mask, h, w, value);
}
