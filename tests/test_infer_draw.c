/* Skeleton overlays (eval/draw.h) read back with libpng (dataio/image.h). */
#include "tests/test.h"

#include <stdint.h>

#include "core/check.h"
#include "dataio/image.h"
#include "eval/draw.h"
#include "tests/test_decode_paint.h"

static void test_draw_png_size_and_strokes(void)
{
    const int w = 203, h = 151; /* odd sizes: no stride or padding assumptions */
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int q = 0; q < w * h * 3; q++) rgb[q] = 90;
    rgb[(5 * w + 7) * 3] = 200; /* a marked pixel must survive unchanged */
    eval_person p;
    memset(&p, 0, sizeof p);
    float kp[18][3];
    paint_stick_person(kp, 100, 80, 120);
    for (int k = 0; k < 18; k++) p.kp[k][0] = kp[k][0], p.kp[k][1] = kp[k][1], p.kp[k][2] = 0.9f;
    p.kp[10][2] = 0; /* an absent right ankle: its limb is not drawn */
    p.count = 17;
    char path[1024];
    snprintf(path, sizeof path, "%s/overlay.png", t_tmpdir());
    eval_draw_png(path, rgb, h, w, &p, 1);
    dataio_image img;
    char err[256];
    int rc = dataio_image_load(path, &img, err, sizeof err);
    T_CHECKF(rc == 0, "read back: %s", err);
    if (rc) return;
    T_CHECK(img.width == w && img.height == h);
    /* mid-thigh (r_hip -> r_knee, limb 1) is drawn over */
    int mx = (int)((kp[8][0] + kp[9][0]) / 2), my = (int)((kp[8][1] + kp[9][1]) / 2);
    const uint8_t *c = img.rgb + ((size_t)my * w + mx) * 3;
    T_CHECKF(!(c[0] == 90 && c[1] == 90 && c[2] == 90), "limb pixel (%d,%d) not drawn", mx, my);
    /* below the knee on the right leg: the shin is absent (ankle missing) */
    int sx = (int)kp[9][0], sy = (int)(kp[9][1] + 0.6 * (kp[10][1] - kp[9][1]));
    c = img.rgb + ((size_t)sy * w + sx) * 3;
    T_CHECKF(c[0] == 90 && c[1] == 90 && c[2] == 90, "absent limb drawn at (%d,%d)", sx, sy);
    c = img.rgb + ((size_t)5 * w + 7) * 3;
    T_CHECK(c[0] == 200 && c[1] == 90 && c[2] == 90);
    dataio_image_free(&img);
    free(rgb);
}

static void test_draw_png_no_people(void)
{
    const int w = 17, h = 9;
    uint8_t rgb[17 * 9 * 3];
    for (int q = 0; q < w * h * 3; q++) rgb[q] = (uint8_t)(q * 7);
    char path[1024];
    snprintf(path, sizeof path, "%s/plain.png", t_tmpdir());
    eval_draw_png(path, rgb, h, w, NULL, 0);
    dataio_image img;
    char err[256];
    int rc = dataio_image_load(path, &img, err, sizeof err);
    T_CHECKF(rc == 0, "read back: %s", err);
    if (rc) return;
    T_CHECK(img.width == w && img.height == h && !memcmp(img.rgb, rgb, sizeof rgb)); /* lossless copy */
    dataio_image_free(&img);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(test_draw_png_size_and_strokes);
    T_RUN(test_draw_png_no_people);
    T_EXIT();
}
