/* Replays the fuzzing corpus (tests/fuzz/corpus/{json,image}) through the same
 * entry points as the libFuzzer drivers, without a fuzzer: every input must
 * either parse/decode or be refused with a message, never crash (run it under
 * `make test SANITIZE=1` for memory errors). Also checks the expected verdict
 * of the hand-made seeds. */
#include "test.h"

#include <dirent.h>
#include <stdint.h>

#include "core/check.h"
#include "dataio/augment.h"
#include "dataio/coco.h"
#include "dataio/image.h"

#define CORPUS "tests/fuzz/corpus"

typedef int (*replay_fn)(const uint8_t *data, size_t len, char *err, size_t errlen);

static int replay_json(const uint8_t *data, size_t len, char *err, size_t errlen)
{
    dataio_skips sk = {{0}, 1};
    dataio_coco c;
    if (dataio_coco_parse((const char *)data, len, &c, &sk, err, errlen)) return -1;
    int idx[64];
    for (int i = 0; i < c.nimages; i++) {
        const dataio_coco_image *ci = &c.images[i];
        if ((size_t)ci->width * ci->height <= 1 << 22) free(dataio_mask_miss(ci));
        if (ci->nanns <= 64) dataio_coco_main_persons(ci, idx);
    }
    dataio_coco_free(&c);
    return 0;
}

static int replay_image(const uint8_t *data, size_t len, char *err, size_t errlen)
{
    dataio_image img;
    if (dataio_image_decode(data, len, &img, err, errlen)) return -1;
    int ok = img.width > 0 && img.height > 0 && img.rgb;
    dataio_image_free(&img);
    return ok ? 0 : -2;
}

/* Returns the number of files replayed; records the verdict of `name` in *verdict. */
static int replay_dir(const char *dir, replay_fn fn, const char *name, int *verdict)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[400], err[1200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *data = dataio_read_file(path, 1 << 24, &len, err, sizeof err);
        T_CHECKF(data, "%s", err);
        if (!data) continue;
        err[0] = 0;
        int rc = fn(data, len, err, sizeof err);
        T_CHECKF(rc == 0 || (rc == -1 && err[0]), "%s: rc %d without a message", path, rc);
        if (name && !strcmp(e->d_name, name)) *verdict = rc;
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void json_corpus(void)
{
    int v = 1;
    int n = replay_dir(CORPUS "/json", replay_json, "truncated.json", &v);
    T_CHECKF(n >= 6, "only %d JSON corpus files", n);
    T_CHECK(v == -1);
    v = 1;
    replay_dir(CORPUS "/json", replay_json, "crowd_rle_string.json", &v);
    T_CHECK(v == 0);
}

static void image_corpus(void)
{
    int v = 1;
    int n = replay_dir(CORPUS "/image", replay_image, "truncated.jpg", &v);
    T_CHECKF(n >= 8, "only %d image corpus files", n);
    T_CHECK(v == -1);
    const char *good[] = {"cmyk.jpg", "grey.jpg", "progressive.jpg", "rgb.png", "rgba.png", "palette.png", "grey16.png"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        v = 1;
        replay_dir(CORPUS "/image", replay_image, good[i], &v);
        T_CHECKF(v == 0, "%s did not decode", good[i]);
    }
    /* the CMYK copy (inverted Adobe CMYK, as PIL writes it) shows the same picture as the RGB one */
    dataio_image a, b;
    char err[300];
    T_CHECK(dataio_image_load(CORPUS "/image/cmyk.jpg", &a, err, sizeof err) == 0);
    T_CHECK(dataio_image_load(CORPUS "/image/rgb.png", &b, err, sizeof err) == 0);
    if (a.rgb && b.rgb && a.width == b.width && a.height == b.height) {
        double d = 0;
        for (int p = 0; p < a.width * a.height * 3; p++) d += abs(a.rgb[p] - b.rgb[p]);
        d /= a.width * a.height * 3;
        T_CHECKF(d < 25, "CMYK decode differs from the RGB original by %.1f per channel", d);
    } else {
        T_FAILF("sizes differ");
    }
    dataio_image_free(&a);
    dataio_image_free(&b);
}

/* Every truncation and many single-byte corruptions of the real JPEGs: refused or decoded, never a crash. */
static void jpeg_mutations(void)
{
    char err[512];
    size_t len;
    uint8_t *orig = dataio_read_file(T_SHARED_DATA "/000000040083.jpg", 1 << 24, &len, err, sizeof err);
    if (!orig) T_SKIP("%s", err);
    uint8_t *buf = malloc(len);
    int refused = 0, total = 0;
    unsigned seed = 12345;
    for (int k = 0; k < 60; k++) {
        size_t cut = (size_t)k * len / 60;
        memcpy(buf, orig, len);
        dataio_image img;
        int rc = dataio_image_decode(buf, cut, &img, err, sizeof err);
        if (rc == 0) dataio_image_free(&img);
        refused += rc != 0, total++;
        /* flip a few bytes in the header area, where corruption matters most */
        for (int m = 0; m < 4; m++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % (len < 2048 ? len : 2048)] ^= (uint8_t)(seed >> 3);
        }
        rc = dataio_image_decode(buf, len, &img, err, sizeof err);
        if (rc == 0) dataio_image_free(&img);
        total++;
    }
    T_CHECKF(refused >= 59, "only %d of 60 truncations refused", refused); /* k = 0..59 are all short */
    free(buf);
    free(orig);
}

int main(void)
{
    core_set_quiet(1);
    CHECK(freopen("/dev/null", "w", stderr), "cannot silence stderr"); /* skipped annotations warn */
    T_RUN(json_corpus);
    T_RUN(image_corpus);
    T_RUN(jpeg_mutations);
    T_EXIT();
}
