/* model.input_norm: the coefficients against the formulas they stand for, and one
 * normalisation everywhere an image becomes network input: the training loader (SIMD
 * rows, flipped or not), the shard reader (`sspose forward`) and test-time inputs
 * (`sspose eval` / `infer`) give the same bits for the same pixels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/config.h"
#include "core/h5util.h"
#include "dataio/input_norm.h"
#include "dataio/loader.h"
#include "dataio/sample.h"
#include "eval/testtime.h"
#include "test.h"
#include "test_loader_fixture.h"

/* The modes as documented (dataio/input_norm.h), in double, RGB pixel in -> channel c out. */
static double formula(core_input_norm m, const int rgb[3], int c)
{
    static const double mean[3] = {0.485, 0.456, 0.406}, sd[3] = {0.229, 0.224, 0.225};
    static const double caffe_bgr[3] = {103.939, 116.779, 123.68};
    switch (m) {
    case CORE_NORM_CENTERED: return rgb[c] / 255.0 - 0.5;
    case CORE_NORM_IMAGENET: return (rgb[c] / 255.0 - mean[c]) / sd[c];
    case CORE_NORM_CAFFE: return rgb[2 - c] - caffe_bgr[c];
    case CORE_NORM_CMU: return rgb[2 - c] / 256.0 - 0.5;
    }
    return NAN;
}

static void coefficients_match_the_formulas(void)
{
    for (int m = 0; m < CORE_NUM_INPUT_NORMS; m++) {
        uint8_t img[256 * 3];
        for (int p = 0; p < 256; p++) img[3 * p] = (uint8_t)p, img[3 * p + 1] = (uint8_t)(255 - p), img[3 * p + 2] = (uint8_t)(p * 7);
        float out[3 * 256];
        dataio_input_norm_image((core_input_norm)m, img, 256, out);
        for (int p = 0; p < 256; p++) {
            int rgb[3] = {img[3 * p], img[3 * p + 1], img[3 * p + 2]};
            for (int c = 0; c < 3; c++) {
                double want = formula((core_input_norm)m, rgb, c);
                /* two float roundings of the coefficients plus two of the arithmetic */
                T_NEAR(out[c * 256 + p], want, 3e-7, 3e-7 * 255);
            }
        }
    }
}

/* SPEC's input is pixel/255 - 0.5 in float, as the code computed it before input_norm existed. */
static void centered_is_the_spec_input_bit_for_bit(void)
{
    uint8_t img[256 * 3];
    for (int i = 0; i < 256 * 3; i++) img[i] = (uint8_t)(i * 37);
    float out[3 * 256];
    dataio_input_norm_image(CORE_NORM_CENTERED, img, 256, out);
    for (int p = 0; p < 256; p++)
        for (int c = 0; c < 3; c++) T_CHECK(out[c * 256 + p] == img[3 * p + c] * (1.0f / 255.0f) - 0.5f);
}

static void config_key_round_trips(void)
{
    core_config cfg;
    core_config_defaults(&cfg);
    T_CHECK(cfg.model.input_norm == CORE_NORM_CENTERED);
    for (int m = 0; m < CORE_NUM_INPUT_NORMS; m++) {
        char set[64];
        snprintf(set, sizeof set, "model.input_norm=%s", core_input_norm_names[m]);
        core_config_set(&cfg, set);
        T_CHECK(cfg.model.input_norm == (core_input_norm)m);
        char *text = core_config_text(&cfg);
        char line[64];
        snprintf(line, sizeof line, "model.input_norm = %s\n", core_input_norm_names[m]);
        T_CHECKF(strstr(text, line), "config text lacks '%s'", line);
        core_config back;
        core_config_defaults(&back);
        core_config_parse_text(&back, text, "text");
        T_CHECK(back.model.input_norm == (core_input_norm)m);
        free(text);
    }
}

static void bad_value(void)
{
    core_config cfg;
    core_config_defaults(&cfg);
    core_config_set(&cfg, "model.input_norm=bgr");
}

static void bad_value_is_one_line(void)
{
    char err[1024];
    int rc = t_run_child(bad_value, err, sizeof err);
    T_CHECK(rc != 0);
    T_CHECKF(!strncmp(err, "sspose: error: ", 15) && strchr(err, '\n') == err + strlen(err) - 1 &&
                 strstr(err, "centered, imagenet, caffe or cmu"),
             "stderr: %s", err);
}

/* Test-time input at scale 1: the image itself, normalised by the same function, then zero padding. */
static void testtime_input_is_the_same_normalisation(void)
{
    const int h = 21, w = 30;
    uint8_t *rgb = core_malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w * 3; i++) rgb[i] = (uint8_t)(fx_hash((uint64_t)i) & 255);
    float *ref = core_malloc((size_t)3 * h * w * sizeof(float));
    for (int m = 0; m < CORE_NUM_INPUT_NORMS; m++) {
        dataio_input_norm_image((core_input_norm)m, rgb, (size_t)h * w, ref);
        for (int flip = 0; flip <= 1; flip++) {
            int H, W;
            eval_pass ps;
            float *in = eval_make_input_norm(rgb, h, w, 1.0, flip, 8, (core_input_norm)m, &H, &W, &ps);
            T_CHECK(H == 24 && W == 32);
            int bad = 0;
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++) {
                        float got = in[((size_t)c * H + y) * W + x];
                        float want = y < h && x < w ? ref[((size_t)c * h + y) * w + (flip ? w - 1 - x : x)] : 0.0f;
                        bad += got != want;
                    }
            T_CHECKF(bad == 0, "mode %s flip %d: %d values differ", core_input_norm_names[m], flip, bad);
            free(in);
        }
    }
    free(ref);
    free(rgb);
}

/* The loader's SIMD rows (S = 40: two 16-pixel groups and an 8-pixel tail), flipped and not,
 * against the shard reader's sample through dataio_sample_input, for every mode. */
static void loader_matches_reader(void)
{
    const int S = 40, n = 3;
    char path[600], pat[620];
    snprintf(path, sizeof path, "%s/norm-shard.h5", t_tmpdir());
    snprintf(pat, sizeof pat, "%s/norm-shard.h5", t_tmpdir());
    fx_write_shard_noisy(path, n, S, 8, 5, 40);
    dataio_shard *sh = dataio_shard_open(path);
    dataio_sample s;
    dataio_shard_sample_init(sh, &s);
    float *want = core_malloc((size_t)3 * S * S * sizeof(float));
    for (int m = 0; m < CORE_NUM_INPUT_NORMS; m++)
        for (int flip = 0; flip <= 1; flip++) {
            dataio_loader_opts o = {.pattern = pat, .world = 1, .batch = n, .seed = 1, .flip = flip, .threads = 0,
                                    .prefetch = 1, .input_norm = (core_input_norm)m};
            dataio_loader *L = dataio_loader_open(&o, NULL);
            const dataio_batch *b = dataio_loader_next(L);
            int bad = 0, seen = 0;
            for (int j = 0; j < b->n; j++) {
                T_CHECK(b->index[j] >= 0 && b->index[j] < n);
                dataio_shard_read(sh, (long)b->index[j], &s);
                if (b->flipped[j]) dataio_flip_sample(&s);
                seen += b->flipped[j] == flip;
                dataio_sample_input(&s, (core_input_norm)m, want);
                const float *got = b->image + (size_t)j * 3 * S * S;
                for (int i = 0; i < 3 * S * S; i++) bad += got[i] != want[i];
            }
            T_CHECK(seen == n);
            T_CHECKF(bad == 0, "mode %s flip %d: %d values differ", core_input_norm_names[m], flip, bad);
            dataio_loader_release(L, b);
            dataio_loader_close(L);
        }
    free(want);
    dataio_sample_free(&s);
    dataio_shard_close(sh);
}

int main(void)
{
    core_h5_quiet();
    T_RUN(coefficients_match_the_formulas);
    T_RUN(centered_is_the_spec_input_bit_for_bit);
    T_RUN(config_key_round_trips);
    T_RUN(bad_value_is_one_line);
    T_RUN(testtime_input_is_the_same_normalisation);
    T_RUN(loader_matches_reader);
    T_EXIT();
}
