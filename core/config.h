/* Run configuration: INI sections [model] [loss] [data] [train] [comm] [eval]
 * with `key = value` lines, then `--set section.key=value` overrides.
 * Every key has a type, a default and a range; unknown keys and bad values
 * are fatal errors naming the key. core_config_text() gives the resolved
 * config as `section.key = value` lines (checkpoints, RUNDIR/config.ini). */
#ifndef SSPOSE_CORE_CONFIG_H
#define SSPOSE_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CORE_MAX_STAGES 12
#define CORE_MAX_SCALES 8

typedef enum { CORE_SS_OFF = 0, CORE_SS_P2H, CORE_SS_H2P, CORE_SS_BOTH } core_ss_mode;
typedef enum { CORE_OPT_SGD = 0, CORE_OPT_ADAM, CORE_OPT_ADAMW } core_optimizer;
/* Normalisation after every hidden convolution (docs/training.md, "Batch norm"). */
typedef enum { CORE_NORM_NONE = 0, CORE_NORM_BATCH } core_norm_mode;

/* What the network's input is (dataio/input_norm.h): SPEC's pixel/255 - 0.5 RGB; torchvision's
 * ImageNet mean/std RGB; Caffe's BGR mean subtraction (Keras VGG); CMU OpenPose's BGR pixel/256 - 0.5. */
typedef enum { CORE_NORM_CENTERED = 0, CORE_NORM_IMAGENET, CORE_NORM_CAFFE, CORE_NORM_CMU } core_input_norm;
#define CORE_NUM_INPUT_NORMS 4
extern const char *const core_input_norm_names[CORE_NUM_INPUT_NORMS];

typedef struct core_config {
    struct {
        double width;        /* channel multiplier w(c) = max(1, round(c*width)) */
        int stages;          /* S, refinement stages incl. stage 1 */
        int stride;          /* fd: 8 or 16 */
        int input;           /* training crop S x S */
        int offsets;         /* block-inside offsets on/off */
        core_ss_mode ss;     /* self-supervision subnet */
        core_norm_mode norm; /* none | batch */
        double bn_momentum;  /* running = (1-m)*running + m*batch, as torch's BatchNorm2d */
        double bn_eps;
        core_input_norm input_norm; /* how images become the network input */
    } model;
    struct {
        double gamma, delta, alpha;
        char beta[256];                      /* schedule name or comma list, as given */
        double beta_values[CORE_MAX_STAGES]; /* resolved per stage */
        double offset_weight, pdd_threshold, kl_eps;
        int kl_detach;
        char normalize[16];  /* sum (SPEC) | cells: every term divided by the output grid's h*w */
        int normalize_cells; /* resolved from normalize */
    } loss;
    struct {
        double sigma, paf_width;
        char train[1024];    /* shard glob */
        double flip;         /* online flip probability in the loader */
        int threads;         /* loader worker threads */
        int prefetch;        /* batches decoded ahead */
        double scale_min, scale_max, max_rotate, center_perturb, target_height;
        char val_ann[1024];    /* validation ground truth (COCO JSON), for train.val_every */
        char val_images[1024]; /* its images folder */
        int val_max_images;    /* validate on the first N images of val_ann (file order); 0: all */
        int skip_corrupt;    /* corrupt samples: 0 = fatal error naming shard and sample, 1 = skip and count */
        int mix_shards;      /* 1 = allow shards of different seed/augment/target parameters in one glob */
    } data;
    struct {
        int batch, steps, seed, checkpoint_every, keep, log_every, warmup;
        double lr, momentum, weight_decay, lr_gamma, lr_mult_backbone, lr_mult_stages;
        int lr_step, skip_nonfinite, checksum_every;
        char optimizer[16];  /* sgd | adam | adamw (docs/training.md, "Optimizers") */
        int optimizer_kind;  /* resolved: core_optimizer */
        int nesterov;        /* sgd only */
        double beta1, beta2, eps; /* adam, adamw */
        double clip_norm;    /* global gradient-norm clipping after the all-reduce; 0: off */
        char schedule[16];   /* step | cosine */
        int schedule_cosine; /* resolved from schedule */
        double warmup_start; /* warm-up starts from lr*warmup_start */
        double lr_final;     /* cosine ends at lr*lr_final */
        int val_every;       /* validation AP every N steps and at the last (trainer/validate.h); 0: off */
    } train;
    struct {
        char device[16];     /* auto | cpu | cuda */
        double bucket_mb;
        int overlap;         /* all-reduce each bucket during backward, as soon as it is final */
        int tf32;
        int cudnn_workspace_mb; /* cuDNN convolution workspace, allocated once (docs/gpu.md) */
        double timeout_s;    /* collective watchdog */
    } comm;
    struct {
        double scales[CORE_MAX_SCALES];
        int nscales;
        int flip;
        double thre1, thre2, mid_thresh, min_inlier_frac;
        int mid_num, min_parts;
        double min_person_score;
        int base_size;       /* short side at scale 1 */
    } eval;
} core_config;

/* Defaults (= configs/paper.ini without a data path). */
void core_config_defaults(core_config *cfg);
/* Reads an INI file over cfg; fatal on unknown keys, bad values, missing file. */
void core_config_load(core_config *cfg, const char *path);
/* Applies one "section.key=value" override; fatal when bad. */
void core_config_set(core_config *cfg, const char *assignment);
/* 1 when "section.key" is a config key of this build (sweeps check their grid with it). */
int core_config_has_key(const char *name);
/* The same, naming `origin` (e.g. "--grid") in its error messages. */
void core_config_set_origin(core_config *cfg, const char *assignment, const char *origin);
/* Parses a config text of "section.key = value" lines (checkpoint attribute). */
void core_config_parse_text(core_config *cfg, const char *text, const char *origin);
/* Parses INI text (len bytes, need not be NUL-terminated) into cfg without
 * resolving or dying: 0, or -1 with one line in err (unknown key or section,
 * bad value, a key set twice, NUL bytes). For fuzzing and tools. */
int core_config_try_parse(core_config *cfg, const char *text, size_t len, const char *origin, char *err, size_t errlen);
/* Recomputes derived values (beta_values) and checks cross-key rules. Fatal when inconsistent. */
void core_config_resolve(core_config *cfg);
/* The resolved config as "section.key = value\n" lines; caller frees. */
char *core_config_text(const core_config *cfg);

/* Named beta schedules resampled to `stages` values; 0 on success, -1 when the
 * name is unknown and the text is no number list. */
int core_beta_schedule(const char *spec, int stages, double *out);

/* Lenient reading of a config text written by any version of sspose (RUNDIR/config.ini
 * of older or newer runs): "key = value" lines under [section] headers, or
 * "section.key = value" lines, with '#'/';' comments. Unknown keys and sections
 * are kept as they are, malformed lines skipped: readers that only show or
 * compare values (plots, sweep tables) must not die on a key this build lacks. */
typedef struct core_config_kv {
    int n;
    char **keys, **vals; /* "section.key" and its value, trimmed, in file order */
} core_config_kv;
/* 0 on success; -1 when the file cannot be opened (kv is then empty). */
int core_config_kv_read(core_config_kv *kv, const char *path);
void core_config_kv_parse(core_config_kv *kv, const char *text);
/* The value of a key (the last one when repeated), NULL when absent. */
const char *core_config_kv_get(const core_config_kv *kv, const char *key);
void core_config_kv_free(core_config_kv *kv);

/* Compares a stored config text (core_config_text of this or another build:
 * a checkpoint's `config` attribute) with `now`, key by key in the key table's
 * order: fn gets every key whose stored value differs from now's, both as
 * core_config_text writes them. Keys the text lacks (older writers) and lines
 * that are not keys of this build are ignored. Returns the number of differences. */
typedef void (*core_config_diff_fn)(const char *key, const char *then, const char *now, void *ctx);
int core_config_diff(const char *then_text, const core_config *now, core_config_diff_fn fn, void *ctx);

/* w(c) = max(1, round(c*width)) */
int core_width(const core_config *cfg, int channels);

#endif
