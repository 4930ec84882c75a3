#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/cuda_backend.h"

typedef enum { K_INT, K_DBL, K_BOOL, K_STR, K_SS, K_SCALES, K_NORM, K_INORM } key_type;

typedef struct {
    const char *name;   /* section.key */
    key_type type;
    size_t off;
    size_t size;        /* for strings */
    double lo, hi;      /* valid range for numbers */
} key_desc;

#define F(field) offsetof(core_config, field)
#define S(field) offsetof(core_config, field), sizeof(((core_config *)0)->field)

static const key_desc KEYS[] = {
    {"model.width", K_DBL, F(model.width), 0, 1e-3, 16},
    {"model.stages", K_INT, F(model.stages), 0, 1, CORE_MAX_STAGES},
    {"model.stride", K_INT, F(model.stride), 0, 8, 16},
    {"model.input", K_INT, F(model.input), 0, 16, 4096},
    {"model.offsets", K_BOOL, F(model.offsets), 0, 0, 1},
    {"model.ss", K_SS, F(model.ss), 0, 0, 3},
    {"model.norm", K_NORM, F(model.norm), 0, 0, 1},
    {"model.bn_momentum", K_DBL, F(model.bn_momentum), 0, 0, 1},
    {"model.bn_eps", K_DBL, F(model.bn_eps), 0, 1e-12, 1},
    {"model.input_norm", K_INORM, F(model.input_norm), 0, 0, CORE_NUM_INPUT_NORMS - 1},
    {"loss.gamma", K_DBL, F(loss.gamma), 0, 0, 1e6},
    {"loss.delta", K_DBL, F(loss.delta), 0, -1, 1e6}, /* -1: gamma + 1 */
    {"loss.alpha", K_DBL, F(loss.alpha), 0, 0, 1e6},
    {"loss.beta", K_STR, S(loss.beta), 0, 0},
    {"loss.offset_weight", K_DBL, F(loss.offset_weight), 0, 0, 1e6},
    {"loss.pdd_threshold", K_DBL, F(loss.pdd_threshold), 0, 0, 1},
    {"loss.kl_detach", K_BOOL, F(loss.kl_detach), 0, 0, 1},
    {"loss.kl_eps", K_DBL, F(loss.kl_eps), 0, 1e-12, 1},
    {"loss.normalize", K_STR, S(loss.normalize), 0, 0},
    {"data.sigma", K_DBL, F(data.sigma), 0, 0.1, 1000},
    {"data.paf_width", K_DBL, F(data.paf_width), 0, 0.01, 100},
    {"data.train", K_STR, S(data.train), 0, 0},
    {"data.flip", K_DBL, F(data.flip), 0, 0, 1},
    {"data.threads", K_INT, F(data.threads), 0, 0, 256},
    {"data.prefetch", K_INT, F(data.prefetch), 0, 1, 64},
    {"data.scale_min", K_DBL, F(data.scale_min), 0, 0.01, 10},
    {"data.scale_max", K_DBL, F(data.scale_max), 0, 0.01, 10},
    {"data.max_rotate", K_DBL, F(data.max_rotate), 0, 0, 180},
    {"data.center_perturb", K_DBL, F(data.center_perturb), 0, 0, 10000},
    {"data.target_height", K_DBL, F(data.target_height), 0, 0.01, 10},
    {"data.val_ann", K_STR, S(data.val_ann), 0, 0},
    {"data.val_images", K_STR, S(data.val_images), 0, 0},
    {"data.val_max_images", K_INT, F(data.val_max_images), 0, 0, 1e9},
    {"data.skip_corrupt", K_BOOL, F(data.skip_corrupt), 0, 0, 1},
    {"data.mix_shards", K_BOOL, F(data.mix_shards), 0, 0, 1},
    {"train.batch", K_INT, F(train.batch), 0, 1, 4096},
    {"train.steps", K_INT, F(train.steps), 0, 0, 1e9},
    {"train.lr", K_DBL, F(train.lr), 0, 0, 100},
    {"train.momentum", K_DBL, F(train.momentum), 0, 0, 0.99999},
    {"train.weight_decay", K_DBL, F(train.weight_decay), 0, 0, 1},
    {"train.lr_step", K_INT, F(train.lr_step), 0, 0, 1e9},
    {"train.lr_gamma", K_DBL, F(train.lr_gamma), 0, 1e-6, 1e6},
    {"train.warmup", K_INT, F(train.warmup), 0, 0, 1e9},
    {"train.lr_mult_backbone", K_DBL, F(train.lr_mult_backbone), 0, 0, 1e6},
    {"train.lr_mult_stages", K_DBL, F(train.lr_mult_stages), 0, 0, 1e6},
    {"train.seed", K_INT, F(train.seed), 0, 0, 2147483647.0},
    {"train.checkpoint_every", K_INT, F(train.checkpoint_every), 0, 0, 1e9},
    {"train.keep", K_INT, F(train.keep), 0, 1, 1e6},
    {"train.log_every", K_INT, F(train.log_every), 0, 1, 1e9},
    {"train.skip_nonfinite", K_BOOL, F(train.skip_nonfinite), 0, 0, 1},
    {"train.checksum_every", K_INT, F(train.checksum_every), 0, 0, 1e9},
    {"train.optimizer", K_STR, S(train.optimizer), 0, 0},
    {"train.nesterov", K_BOOL, F(train.nesterov), 0, 0, 1},
    {"train.beta1", K_DBL, F(train.beta1), 0, 0, 0.99999},
    {"train.beta2", K_DBL, F(train.beta2), 0, 0, 0.9999999},
    {"train.eps", K_DBL, F(train.eps), 0, 1e-30, 1},
    {"train.clip_norm", K_DBL, F(train.clip_norm), 0, 0, 1e30},
    {"train.schedule", K_STR, S(train.schedule), 0, 0},
    {"train.warmup_start", K_DBL, F(train.warmup_start), 0, 0, 1},
    {"train.lr_final", K_DBL, F(train.lr_final), 0, 0, 1},
    {"train.val_every", K_INT, F(train.val_every), 0, 0, 1e9},
    {"comm.device", K_STR, S(comm.device), 0, 0},
    {"comm.bucket_mb", K_DBL, F(comm.bucket_mb), 0, 0.001, 4096},
    {"comm.overlap", K_BOOL, F(comm.overlap), 0, 0, 1},
    {"comm.tf32", K_BOOL, F(comm.tf32), 0, 0, 1},
    {"comm.cudnn_workspace_mb", K_INT, F(comm.cudnn_workspace_mb), 0, 0, 1 << 20},
    {"comm.timeout_s", K_DBL, F(comm.timeout_s), 0, 1, 1e6},
    {"eval.scales", K_SCALES, F(eval.scales), 0, 0.05, 8},
    {"eval.flip", K_BOOL, F(eval.flip), 0, 0, 1},
    {"eval.thre1", K_DBL, F(eval.thre1), 0, 0, 1},
    {"eval.thre2", K_DBL, F(eval.thre2), 0, -1, 1},
    {"eval.mid_num", K_INT, F(eval.mid_num), 0, 2, 1000},
    {"eval.mid_thresh", K_DBL, F(eval.mid_thresh), 0, -1, 1},
    {"eval.min_inlier_frac", K_DBL, F(eval.min_inlier_frac), 0, 0, 1},
    {"eval.min_parts", K_INT, F(eval.min_parts), 0, 1, 18},
    {"eval.min_person_score", K_DBL, F(eval.min_person_score), 0, 0, 100},
    {"eval.base_size", K_INT, F(eval.base_size), 0, 16, 8192},
};
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

static const char *SS_NAMES[] = {"off", "p2h", "h2p", "both"};
static const char *NORM_NAMES[] = {"none", "batch"};
const char *const core_input_norm_names[CORE_NUM_INPUT_NORMS] = {"centered", "imagenet", "caffe", "cmu"};

void core_config_defaults(core_config *c)
{
    memset(c, 0, sizeof *c);
    c->model.width = 1.0;
    c->model.stages = 6;
    c->model.stride = 8;
    c->model.input = 368;
    c->model.offsets = 1;
    c->model.ss = CORE_SS_P2H;
    c->model.norm = CORE_NORM_NONE;
    c->model.bn_momentum = 0.1;
    c->model.bn_eps = 1e-5;
    c->loss.gamma = 9;
    c->loss.delta = -1;
    c->loss.alpha = 10;
    snprintf(c->loss.beta, sizeof c->loss.beta, "quadratic_b");
    c->loss.offset_weight = 1;
    c->loss.pdd_threshold = 0.1;
    c->loss.kl_detach = 0;
    c->loss.kl_eps = 1e-3; /* SPEC: 1e-6; docs/deviations-training.md, "KL epsilon" */
    snprintf(c->loss.normalize, sizeof c->loss.normalize, "sum");
    c->data.sigma = 7;
    c->data.paf_width = 1;
    c->data.flip = 0.5;
    c->data.threads = 2;
    c->data.prefetch = 4;
    c->data.scale_min = 0.5;
    c->data.scale_max = 1.1;
    c->data.max_rotate = 40;
    c->data.center_perturb = 40;
    c->data.target_height = 0.6;
    c->train.batch = 10;
    c->train.steps = 1000;
    c->train.lr = 4e-5;
    c->train.momentum = 0.9;
    c->train.weight_decay = 5e-4;
    c->train.lr_step = 136106;
    c->train.lr_gamma = 3;
    c->train.warmup = 0;
    c->train.lr_mult_backbone = 1;
    c->train.lr_mult_stages = 4;
    c->train.seed = 1;
    c->train.checkpoint_every = 500;
    c->train.keep = 3;
    c->train.log_every = 10;
    c->train.skip_nonfinite = 0;
    c->train.checksum_every = 100;
    snprintf(c->train.optimizer, sizeof c->train.optimizer, "sgd");
    c->train.nesterov = 0;
    c->train.beta1 = 0.9;
    c->train.beta2 = 0.999;
    c->train.eps = 1e-8;
    c->train.clip_norm = 0;
    snprintf(c->train.schedule, sizeof c->train.schedule, "step");
    c->train.warmup_start = 0;
    c->train.lr_final = 0;
    snprintf(c->comm.device, sizeof c->comm.device, "auto");
    c->comm.bucket_mb = 25;
    c->comm.overlap = 1;
    c->comm.tf32 = 0;
    c->comm.cudnn_workspace_mb = CORE_CUDA_WORKSPACE_MB;
    c->comm.timeout_s = 600;
    c->eval.nscales = 1;
    c->eval.scales[0] = 1.0;
    c->eval.flip = 0;
    c->eval.thre1 = 0.1;
    c->eval.thre2 = 0.05;
    c->eval.mid_num = 10;
    c->eval.mid_thresh = 0.05;
    c->eval.min_inlier_frac = 0.8;
    c->eval.min_parts = 3;
    c->eval.min_person_score = 0.4;
    c->eval.base_size = 368;
    core_config_resolve(c);
}

static const key_desc *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(KEYS[i].name, name)) return &KEYS[i];
    return NULL;
}

int core_config_has_key(const char *name) { return find_key(name) != NULL; }

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

/* Plain decimal numbers only: strtod would also take hex ("0x10" = 16), hex
 * floats and "infinity", none of which a config means. */
static int parse_double(const char *v, double *out)
{
    for (const char *p = v; *p; p++)
        if (!strchr("0123456789+-.eE \t", *p)) return -1;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *trim(end) || errno || !isfinite(d)) return -1;
    *out = d;
    return 0;
}

#define FAIL(...) return snprintf(err, errlen, __VA_ARGS__), -1

static int set_scales(core_config *cfg, const key_desc *k, const char *name, const char *value, const char *where,
                      char *err, size_t errlen)
{
    double *arr = (double *)((char *)cfg + k->off), d;
    int n = 0;
    char buf[256];
    if (strlen(value) >= sizeof buf) FAIL("%s: config key '%s' value is too long", where, name);
    snprintf(buf, sizeof buf, "%s", value);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= CORE_MAX_SCALES) FAIL("%s: config key '%s' takes at most %d values", where, name, CORE_MAX_SCALES);
        if (parse_double(trim(tok), &d) != 0 || d < k->lo || d > k->hi)
            FAIL("%s: config key '%s' wants numbers in [%g, %g], got '%s'", where, name, k->lo, k->hi, value);
        arr[n++] = d;
    }
    if (n == 0) FAIL("%s: config key '%s' is empty", where, name);
    cfg->eval.nscales = n;
    return 0;
}

/* Sets one key; `where` names the origin for messages ("file.ini:12", "--set"). 0, or -1 with err. */
static int set_key(core_config *cfg, const char *name, const char *value, const char *where, char *err, size_t errlen)
{
    const key_desc *k = find_key(name);
    if (!k) FAIL("%s: unknown config key '%s'", where, name);
    char *base = (char *)cfg + k->off;
    double d;
    switch (k->type) {
    case K_INT:
    case K_BOOL:
        if (parse_double(value, &d) != 0 || d != floor(d))
            FAIL("%s: config key '%s' wants an integer, got '%s'", where, name, value);
        if (d < k->lo || d > k->hi) FAIL("%s: config key '%s' = %s is outside [%g, %g]", where, name, value, k->lo, k->hi);
        *(int *)base = (int)d;
        return 0;
    case K_DBL:
        if (parse_double(value, &d) != 0) FAIL("%s: config key '%s' wants a number, got '%s'", where, name, value);
        if (d < k->lo || d > k->hi) FAIL("%s: config key '%s' = %s is outside [%g, %g]", where, name, value, k->lo, k->hi);
        *(double *)base = d;
        return 0;
    case K_STR:
        if (strlen(value) >= k->size) FAIL("%s: config key '%s' value is too long", where, name);
        snprintf(base, k->size, "%s", value);
        return 0;
    case K_SS:
        for (int i = 0; i < 4; i++)
            if (!strcmp(value, SS_NAMES[i])) return *(core_ss_mode *)base = (core_ss_mode)i, 0;
        FAIL("%s: config key '%s' must be off, p2h, h2p or both, got '%s'", where, name, value);
    case K_NORM:
        for (int i = 0; i < 2; i++)
            if (!strcmp(value, NORM_NAMES[i])) return *(core_norm_mode *)base = (core_norm_mode)i, 0;
        FAIL("%s: config key '%s' must be none or batch, got '%s'", where, name, value);
    case K_INORM:
        for (int i = 0; i < CORE_NUM_INPUT_NORMS; i++)
            if (!strcmp(value, core_input_norm_names[i])) return *(core_input_norm *)base = (core_input_norm)i, 0;
        FAIL("%s: config key '%s' must be centered, imagenet, caffe or cmu, got '%s'", where, name, value);
    case K_SCALES:
        return set_scales(cfg, k, name, value, where, err, errlen);
    }
    FAIL("%s: config key '%s' has no parser", where, name);
}

/* One "key = value" line inside [section], or "section.key = value" at top level.
 * The full key name goes to full (for duplicate detection). */
static int parse_line(core_config *cfg, char *line, const char *section, const char *where, char *full, size_t fulllen,
                      char *err, size_t errlen)
{
    char *eq = strchr(line, '=');
    if (!eq) FAIL("%s: expected 'key = value', got '%s'", where, line);
    *eq = 0;
    char *key = trim(line), *val = trim(eq + 1);
    if (strchr(key, '.') || !section[0])
        snprintf(full, fulllen, "%s", key);
    else
        snprintf(full, fulllen, "%s.%s", section, key);
    return set_key(cfg, full, val, where, err, errlen);
}

static int parse_section(char *s, char *section, size_t seclen, const char *where, char *err, size_t errlen)
{
    char *e = strchr(s, ']');
    if (!e || e[1]) FAIL("%s: malformed section header '%s'", where, s);
    *e = 0;
    const char *name = trim(s + 1);
    if (strcmp(name, "model") && strcmp(name, "loss") && strcmp(name, "data") && strcmp(name, "train") &&
        strcmp(name, "comm") && strcmp(name, "eval"))
        FAIL("%s: unknown config section [%s]", where, name);
    snprintf(section, seclen, "%s", name);
    return 0;
}

int core_config_try_parse(core_config *cfg, const char *text, size_t len, const char *origin, char *err, size_t errlen)
{
    char section[32] = "";
    char *copy = core_malloc(len + 1);
    memcpy(copy, text, len);
    copy[len] = 0;
    int rc = strlen(copy) == len ? 0 : (snprintf(err, errlen, "config '%s' is not a text file", origin), -1);
    int lineno = 0, nseen = 0;
    /* a key given twice in one file is a mistake whichever copy was meant: name both lines */
    struct { const key_desc *k; int line; } seen[NKEYS];
    char *save = NULL;
    for (char *line = rc ? NULL : strtok_r(copy, "\n", &save); line && !rc; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char where[512], full[160];
        snprintf(where, sizeof where, "%s:%d", origin, lineno);
        /* '#' or ';' start comments (a value never needs them) */
        char *hash = strpbrk(line, "#;");
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        if (*s == '[') {
            rc = parse_section(s, section, sizeof section, where, err, errlen);
            continue;
        }
        rc = parse_line(cfg, s, section, where, full, sizeof full, err, errlen);
        const key_desc *k = rc ? NULL : find_key(full);
        for (int i = 0; k && i < nseen; i++)
            if (seen[i].k == k) {
                snprintf(err, errlen, "%s: config key '%s' is set twice (first at line %d)", where, full, seen[i].line);
                rc = -1;
            }
        if (k && !rc) seen[nseen].k = k, seen[nseen++].line = lineno;
    }
    free(copy);
    return rc;
}

static void parse_text(core_config *cfg, const char *text, size_t len, const char *origin)
{
    char err[1024];
    CHECK(core_config_try_parse(cfg, text, len, origin, err, sizeof err) == 0, "%s", err);
}

void core_config_load(core_config *cfg, const char *path)
{
    FILE *f = fopen(path, "rb");
    CHECK(f, "cannot open config '%s': %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) buf = core_realloc(buf, cap = 2 * cap + 8192);
        size_t got = fread(buf + len, 1, 4096, f);
        len += got;
        if (got < 4096) break;
    }
    CHECK(!ferror(f), "cannot read config '%s'", path);
    fclose(f);
    buf[len] = 0;
    parse_text(cfg, buf, len, path);
    free(buf);
    core_config_resolve(cfg);
}

void core_config_parse_text(core_config *cfg, const char *text, const char *origin)
{
    parse_text(cfg, text, strlen(text), origin);
    core_config_resolve(cfg);
}

void core_config_set_origin(core_config *cfg, const char *assignment, const char *origin)
{
    char *copy = core_strdup(assignment);
    char *eq = strchr(copy, '=');
    CHECK(eq, "%s wants section.key=value, got '%s'", origin, assignment);
    CHECK(strchr(copy, '.') && strchr(copy, '.') < eq, "%s wants section.key=value, got '%s'", origin, assignment);
    char err[1024], full[160];
    int rc = parse_line(cfg, copy, "", origin, full, sizeof full, err, sizeof err);
    free(copy);
    CHECK(rc == 0, "%s", err);
    core_config_resolve(cfg);
}

void core_config_set(core_config *cfg, const char *assignment) { core_config_set_origin(cfg, assignment, "--set"); }

/* Named schedules are given at six stages (SPEC section 4). */
static const struct {
    const char *name;
    double v[6];
} BETAS[] = {
    {"uniform", {1, 1, 1, 1, 1, 1}},
    {"linear", {0, .2, .4, .6, .8, 1}},
    {"quadratic_a", {0, .45, .69, .85, .95, 1}},
    {"quadratic_b", {0, .05, .15, .31, .65, 1}},
};

/* Linear resampling of n points over [0,1] onto `stages` points; one stage takes the last value,
 * since the single stage is also the final one, where every schedule reaches its end. */
static void resample(const double *v, int n, int stages, double *out)
{
    for (int s = 0; s < stages; s++) {
        if (stages == 1 || n == 1) { out[s] = v[n - 1]; continue; }
        double x = (double)s * (n - 1) / (stages - 1);
        int i = (int)floor(x);
        if (i >= n - 1) { out[s] = v[n - 1]; continue; }
        double t = x - i;
        out[s] = v[i] * (1 - t) + v[i + 1] * t;
    }
}

int core_beta_schedule(const char *spec, int stages, double *out)
{
    for (size_t i = 0; i < sizeof BETAS / sizeof BETAS[0]; i++)
        if (!strcmp(spec, BETAS[i].name)) {
            resample(BETAS[i].v, 6, stages, out);
            return 0;
        }
    double v[64];
    int n = 0;
    char buf[256];
    if (strlen(spec) >= sizeof buf) return -1;
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n >= 64 || parse_double(trim(tok), &v[n]) != 0 || v[n] < 0) return -1;
        n++;
    }
    if (n == 0) return -1;
    resample(v, n, stages, out);
    return 0;
}

void core_config_resolve(core_config *c)
{
    CHECK(c->model.stride == 8 || c->model.stride == 16, "config key 'model.stride' must be 8 or 16, got %d",
          c->model.stride);
    CHECK(c->model.input % c->model.stride == 0, "config key 'model.input' = %d must be a multiple of model.stride = %d",
          c->model.input, c->model.stride);
    CHECK(core_beta_schedule(c->loss.beta, c->model.stages, c->loss.beta_values) == 0,
          "config key 'loss.beta' must be uniform, linear, quadratic_a, quadratic_b or a comma list of "
          "non-negative numbers, got '%s'",
          c->loss.beta);
    CHECK(c->data.scale_min <= c->data.scale_max, "config key 'data.scale_min' exceeds data.scale_max");
    c->loss.normalize_cells = !strcmp(c->loss.normalize, "cells");
    CHECK(c->loss.normalize_cells || !strcmp(c->loss.normalize, "sum"),
          "config key 'loss.normalize' must be sum or cells, got '%s'", c->loss.normalize);
    const char *opts[] = {"sgd", "adam", "adamw"};
    c->train.optimizer_kind = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(c->train.optimizer, opts[i])) c->train.optimizer_kind = i;
    CHECK(c->train.optimizer_kind >= 0, "config key 'train.optimizer' must be sgd, adam or adamw, got '%s'",
          c->train.optimizer);
    CHECK(!c->train.nesterov || c->train.optimizer_kind == CORE_OPT_SGD,
          "config key 'train.nesterov' applies to train.optimizer = sgd only");
    c->train.schedule_cosine = !strcmp(c->train.schedule, "cosine");
    CHECK(c->train.schedule_cosine || !strcmp(c->train.schedule, "step"),
          "config key 'train.schedule' must be step or cosine, got '%s'", c->train.schedule);
    CHECK(!strcmp(c->comm.device, "auto") || !strcmp(c->comm.device, "cpu") || !strcmp(c->comm.device, "cuda"),
          "config key 'comm.device' must be auto, cpu or cuda, got '%s'", c->comm.device);
}

static double effective_delta(const core_config *c) { return c->loss.delta < 0 ? c->loss.gamma + 1 : c->loss.delta; }

/* One key's value as core_config_text writes it. */
static void format_value(const core_config *c, const key_desc *k, char *val, size_t len)
{
    const char *base = (const char *)c + k->off;
    switch (k->type) {
    case K_INT:
    case K_BOOL: snprintf(val, len, "%d", *(const int *)base); break;
    case K_DBL:
        /* delta is written resolved so that readers need not know the gamma+1 rule */
        snprintf(val, len, "%.17g", !strcmp(k->name, "loss.delta") ? effective_delta(c) : *(const double *)base);
        break;
    case K_STR: snprintf(val, len, "%s", base); break;
    case K_SS: snprintf(val, len, "%s", SS_NAMES[*(const core_ss_mode *)base]); break;
    case K_NORM: snprintf(val, len, "%s", NORM_NAMES[*(const core_norm_mode *)base]); break;
    case K_INORM: snprintf(val, len, "%s", core_input_norm_names[*(const core_input_norm *)base]); break;
    case K_SCALES: {
        size_t n = 0;
        val[0] = 0;
        for (int j = 0; j < c->eval.nscales && n < len; j++)
            n += snprintf(val + n, len - n, "%s%.17g", j ? "," : "", c->eval.scales[j]);
        break;
    }
    }
}

char *core_config_text(const core_config *c)
{
    size_t cap = 8192, len = 0;
    char *out = core_malloc(cap);
    out[0] = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const key_desc *k = &KEYS[i];
        char val[1100];
        format_value(c, k, val, sizeof val);
        size_t need = strlen(k->name) + strlen(val) + 8;
        if (len + need >= cap) out = core_realloc(out, cap = 2 * cap + need);
        len += snprintf(out + len, cap - len, "%s = %s\n", k->name, val);
    }
    return out;
}

void core_config_kv_parse(core_config_kv *kv, const char *text)
{
    memset(kv, 0, sizeof *kv);
    char section[64] = "";
    char *copy = core_strdup(text);
    int cap = 0;
    for (char *save = NULL, *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *hash = strpbrk(line, "#;");
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        if (*s == '[') {
            char *e = strchr(s, ']');
            if (e) {
                *e = 0;
                snprintf(section, sizeof section, "%s", trim(s + 1));
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = trim(s), *v = trim(eq + 1);
        if (!*k) continue;
        size_t len = strlen(section) + strlen(k) + 2;
        char *full = core_malloc(len);
        if (strchr(k, '.') || !section[0]) snprintf(full, len, "%s", k);
        else snprintf(full, len, "%s.%s", section, k);
        if (kv->n == cap) {
            cap = cap ? 2 * cap : 64;
            kv->keys = core_realloc(kv->keys, cap * sizeof *kv->keys);
            kv->vals = core_realloc(kv->vals, cap * sizeof *kv->vals);
        }
        kv->keys[kv->n] = full;
        kv->vals[kv->n++] = core_strdup(v);
    }
    free(copy);
}

int core_config_kv_read(core_config_kv *kv, const char *path)
{
    memset(kv, 0, sizeof *kv);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char *buf = NULL;
    size_t len = 0, cap = 0, got;
    do {
        if (len + 4096 + 1 > cap) buf = core_realloc(buf, cap = 2 * cap + 8192);
        got = fread(buf + len, 1, 4096, f);
        len += got;
    } while (got == 4096);
    fclose(f);
    buf[len] = 0; /* a NUL inside ends the text: what follows is no config */
    core_config_kv_parse(kv, buf);
    free(buf);
    return 0;
}

const char *core_config_kv_get(const core_config_kv *kv, const char *key)
{
    for (int i = kv->n - 1; i >= 0; i--)
        if (!strcmp(kv->keys[i], key)) return kv->vals[i];
    return NULL;
}

void core_config_kv_free(core_config_kv *kv)
{
    for (int i = 0; i < kv->n; i++) {
        free(kv->keys[i]);
        free(kv->vals[i]);
    }
    free(kv->keys);
    free(kv->vals);
    memset(kv, 0, sizeof *kv);
}

int core_width(const core_config *cfg, int channels)
{
    int w = (int)lround(channels * cfg->model.width);
    return w < 1 ? 1 : w;
}

/* ---- comparing a stored config text with a config (resume) ---------------- */

int core_config_diff(const char *then_text, const core_config *now, core_config_diff_fn fn, void *ctx)
{
    int n = 0;
    core_config_kv kv; /* the one lenient reader: a stored text may come from another build */
    core_config_kv_parse(&kv, then_text);
    for (size_t i = 0; i < NKEYS; i++) {
        char val[1100];
        const char *then = core_config_kv_get(&kv, KEYS[i].name);
        if (!then) continue;
        format_value(now, &KEYS[i], val, sizeof val);
        if (!strcmp(then, val)) continue;
        n++;
        if (fn) fn(KEYS[i].name, then, val, ctx);
    }
    core_config_kv_free(&kv);
    return n;
}
