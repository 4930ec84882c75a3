#include "eval/draw.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "core/skeleton.h"

/* Evenly spaced hues, so neighbouring limbs are told apart. */
static void limb_colour(int l, double rgb[3])
{
    double h = 6.0 * l / SKEL_NUM_LIMBS, f = h - floor(h);
    double v[6][3] = {{1, f, 0}, {1 - f, 1, 0}, {0, 1, f}, {0, 1 - f, 1}, {f, 0, 1}, {1, 0, 1 - f}};
    memcpy(rgb, v[(int)h % 6], sizeof v[0]);
}

void eval_draw_png(const char *path, const uint8_t *rgb, int h, int w, const eval_person *people, int n)
{
    CHECK(h > 0 && w > 0, "draw: empty image");
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
    CHECK(cairo_surface_status(s) == CAIRO_STATUS_SUCCESS, "draw: cannot create a %dx%d surface: %s", w, h,
          cairo_status_to_string(cairo_surface_status(s)));
    cairo_surface_flush(s);
    unsigned char *px = cairo_image_surface_get_data(s);
    const int stride = cairo_image_surface_get_stride(s);
    for (int y = 0; y < h; y++) {
        uint32_t *row = (uint32_t *)(px + (size_t)y * stride);
        const uint8_t *src = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++)
            row[x] = (uint32_t)src[3 * x] << 16 | (uint32_t)src[3 * x + 1] << 8 | src[3 * x + 2];
    }
    cairo_surface_mark_dirty(s);

    cairo_t *cr = cairo_create(s);
    const double lw = fmax(2.0, (h < w ? h : w) / 150.0);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    cairo_set_line_width(cr, lw);
    for (int i = 0; i < n; i++) {
        const eval_person *p = &people[i];
        for (int l = 0; l < SKEL_NUM_LIMBS; l++) {
            const float *a = p->kp[skel_limbs[l][0]], *b = p->kp[skel_limbs[l][1]];
            if (a[2] <= 0 || b[2] <= 0) continue;
            double c[3];
            limb_colour(l, c);
            cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.85);
            /* +0.5: our coordinates are pixel indices, cairo's are pixel edges */
            cairo_move_to(cr, a[0] + 0.5, a[1] + 0.5);
            cairo_line_to(cr, b[0] + 0.5, b[1] + 0.5);
            cairo_stroke(cr);
        }
        for (int k = 0; k < SKEL_NUM_KP; k++) {
            if (p->kp[k][2] <= 0) continue;
            cairo_arc(cr, p->kp[k][0] + 0.5, p->kp[k][1] + 0.5, lw * 1.2, 0, 2 * M_PI);
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_fill_preserve(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            cairo_set_line_width(cr, 1);
            cairo_stroke(cr);
            cairo_set_line_width(cr, lw);
        }
    }
    CHECK(cairo_status(cr) == CAIRO_STATUS_SUCCESS, "draw: cairo failed: %s", cairo_status_to_string(cairo_status(cr)));
    cairo_destroy(cr);

    size_t len = strlen(path) + 16;
    char *tmp = core_malloc(len);
    snprintf(tmp, len, "%s.tmp%d", path, (int)getpid());
    cairo_status_t st = cairo_surface_write_to_png(s, tmp);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS) {
        unlink(tmp);
        CORE_DIE("cannot write %s: %s", path, cairo_status_to_string(st));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        CORE_DIE("cannot write %s: %s", path, strerror(e));
    }
    free(tmp);
}
