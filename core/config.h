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

typedef struct core_config {
    struct {
        double width;        /* channel multiplier w(c) = max(1, round(c*width)) */
        int stages;          /* S, refinement stages incl. stage 1 */
        int stride;          /* fd: 8 or 16 */
        int input;           /* training crop S x S */
        int offsets;         /* block-inside offsets on/off */
        core_ss_mode ss;     /* self-supervision subnet */
    } model;
    struct {
        double gamma, delta, alpha;
        char beta[256];                      /* schedule name or comma list, as given */
        double beta_values[CORE_MAX_STAGES]; /* resolved per stage */
        double offset_weight, pdd_threshold, kl_eps;
        int kl_detach;
    } loss;
    struct {
        double sigma, paf_width;
        char train[1024];    /* shard glob */
        double flip;         /* online flip probability in the loader */
        int threads;         /* loader worker threads */
        int prefetch;        /* batches decoded ahead */
        double scale_min, scale_max, max_rotate, center_perturb, target_height;
        int skip_corrupt;    /* corrupt samples: 0 = fatal error naming shard and sample, 1 = skip and count */
        int mix_shards;      /* 1 = allow shards of different seed/augment/target parameters in one glob */
    } data;
    struct {
        int batch, steps, seed, checkpoint_every, keep, log_every, warmup;
        double lr, momentum, weight_decay, lr_gamma, lr_mult_backbone, lr_mult_stages;
        int lr_step, skip_nonfinite, checksum_every;
    } train;
    struct {
        char device[16];     /* auto | cpu | cuda */
        double bucket_mb;
        int overlap;         /* all-reduce each bucket during backward, as soon as it is final */
        int tf32;
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

/* w(c) = max(1, round(c*width)) */
int core_width(const core_config *cfg, int channels);

#endif
