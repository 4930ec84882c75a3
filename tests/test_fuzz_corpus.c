/* Replays the INI and results-JSON fuzzing corpora (tests/fuzz/corpus/{ini,results})
 * through the entry points of tests/fuzz/fuzz_ini.c and fuzz_results.c without a
 * fuzzer: every input parses or is refused with a message, never crashes (run
 * under `make test SANITIZE=1` for memory errors); a parsed config prints and
 * parses back to the same text; the hand-made seeds get their expected verdict. */
#include "test.h"

#include <dirent.h>
#include <stdint.h>

#include "core/check.h"
#include "core/config.h"
#include "dataio/image.h"
#include "eval/coco_json.h"
#include "eval/cocoeval.h"

#define CORPUS "tests/fuzz/corpus"

/* 0 parsed, -1 refused with a message, -2 refused silently or round trip broken */
static int replay_ini(const uint8_t *data, size_t len, int *extra)
{
    core_config cfg, again;
    char err[512] = "";
    core_config_defaults(&cfg);
    if (core_config_try_parse(&cfg, (const char *)data, len, "corpus", err, sizeof err)) return err[0] ? -1 : -2;
    char *text = core_config_text(&cfg);
    core_config_defaults(&again);
    int rc = core_config_try_parse(&again, text, strlen(text), "text", err, sizeof err) ? -2 : 0;
    char *text2 = rc ? NULL : core_config_text(&again);
    if (text2 && strcmp(text, text2)) rc = -2;
    *extra = cfg.model.stages;
    free(text);
    free(text2);
    return rc;
}

static const char GT[] =
    "{\"images\":[{\"id\":1,\"width\":64,\"height\":48},{\"id\":2,\"width\":32,\"height\":32}],"
    "\"categories\":[{\"id\":1,\"name\":\"person\"}],\"annotations\":["
    "{\"id\":10,\"image_id\":1,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":2,\"area\":300,\"bbox\":[4,4,20,30],"
    "\"keypoints\":[10,10,2,12,12,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}";

static int replay_results(const uint8_t *data, size_t len, int *extra)
{
    static eval_coco_gt gt;
    static int ready;
    char err[512] = "";
    if (!ready) {
        CHECK(eval_coco_parse_gt(GT, sizeof GT - 1, &gt, err, sizeof err) == 0, "%s", err);
        ready = 1;
    }
    eval_coco_dets dets;
    if (eval_coco_parse_results((const char *)data, len, &gt, &dets, err, sizeof err)) return err[0] ? -1 : -2;
    eval_coco_summary sum;
    eval_coco_evaluate(&gt, &dets, &sum);
    *extra = dets.ndet;
    eval_coco_dets_free(&dets);
    return 0;
}

typedef int (*replay_fn)(const uint8_t *data, size_t len, int *extra);

/* Replays a folder; returns the count; the verdict and extra of `name` land in *verdict, *extra. */
static int replay_dir(const char *dir, replay_fn fn, const char *name, int *verdict, int *extra)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1200], err[600];
        size_t len;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        uint8_t *data = dataio_read_file(path, 1 << 20, &len, err, sizeof err);
        T_CHECKF(data, "%.300s", err);
        if (!data) continue;
        int x = 0, rc = fn(data, len, &x);
        T_CHECKF(rc == 0 || rc == -1, "%.300s: refused without a message or round trip broken (rc %d)", path, rc);
        if (name && !strcmp(e->d_name, name)) *verdict = rc, *extra = x;
        free(data);
        n++;
    }
    closedir(d);
    return n;
}

static void ini_corpus(void)
{
    static const struct { const char *name; int verdict, stages; } want[] = {
        {"tiny.ini", 0, -1}, {"paper.ini", 0, -1}, {"top_level_and_lists.ini", 0, 3}, {"string_with_equals.ini", 0, -1},
        {"duplicate_key.ini", -1, -1}, {"hex_number.ini", -1, -1}, {"nan_value.ini", -1, -1},
        {"unknown_section.ini", -1, -1}, {"bad_header.ini", -1, -1}, {"no_equals.ini", -1, -1}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int v = 9, x = 0;
        int n = replay_dir(CORPUS "/ini", replay_ini, want[i].name, &v, &x);
        T_CHECKF(n >= 10, "only %d INI corpus files", n);
        T_CHECKF(v == want[i].verdict, "%s: verdict %d, want %d", want[i].name, v, want[i].verdict);
        if (want[i].stages >= 0) T_CHECKF(x == want[i].stages, "%s: model.stages %d", want[i].name, x);
    }
}

static void results_corpus(void)
{
    static const struct { const char *name; int verdict, ndet; } want[] = {
        {"empty.json", 0, 0}, {"two.json", 0, 2}, {"other_category_bbox.json", 0, 0}, {"unknown_image.json", -1, -1},
        {"short_keypoints.json", -1, -1}, {"truncated.json", -1, -1}, {"not_a_list.json", -1, -1}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        int v = 9, x = -7;
        int n = replay_dir(CORPUS "/results", replay_results, want[i].name, &v, &x);
        T_CHECKF(n >= 8, "only %d results corpus files", n);
        T_CHECKF(v == want[i].verdict, "%s: verdict %d, want %d", want[i].name, v, want[i].verdict);
        if (want[i].ndet >= 0) T_CHECKF(x == want[i].ndet, "%s: %d results", want[i].name, x);
    }
}

/* Truncations and byte flips of a real config: refused with a message or parsed, never a crash. */
static void ini_mutations(void)
{
    char err[300];
    size_t len;
    uint8_t *orig = dataio_read_file("configs/paper.ini", 1 << 20, &len, err, sizeof err);
    T_CHECKF(orig, "%s", err);
    if (!orig) return;
    uint8_t *buf = malloc(len);
    unsigned seed = 777;
    int refused = 0;
    for (int k = 0; k < 400; k++) {
        memcpy(buf, orig, len);
        size_t n = (size_t)k * len / 400;
        for (int m = 0; m < 3; m++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % len] ^= (uint8_t)(seed >> 3);
        }
        int x, rc = replay_ini(buf, k % 2 ? n : len, &x);
        T_CHECKF(rc == 0 || rc == -1, "mutation %d: rc %d", k, rc);
        refused += rc == -1;
    }
    T_CHECKF(refused > 0 && refused < 400, "%d of 400 mutations refused", refused);
    free(buf);
    free(orig);
}

int main(void)
{
    core_set_quiet(1);
    T_RUN(ini_corpus);
    T_RUN(results_corpus);
    T_RUN(ini_mutations);
    T_EXIT();
}
