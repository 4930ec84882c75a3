#include "launch/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"

int cli_getopt(int argc, char **argv, const struct option *opts, const char *usage)
{
    /* Build the short-option string from the long table so both spellings work. */
    char shorts[128] = ":";
    size_t n = 1;
    for (const struct option *o = opts; o->name; o++) {
        if (o->flag || o->val <= 0 || o->val >= 128 || n + 3 >= sizeof shorts) continue;
        shorts[n++] = (char)o->val;
        if (o->has_arg == required_argument) shorts[n++] = ':';
    }
    shorts[n] = 0;
    opterr = 0;
    int idx = -1;
    int c = getopt_long(argc, argv, shorts, opts, &idx);
    if (c == 'h') {
        fputs(usage, stdout);
        exit(0);
    }
    if (c == '?') {
        if (optopt) CORE_DIE("%s: unknown option '-%c' (see '%s --help')", argv[0], optopt, argv[0]);
        CORE_DIE("%s: unknown option '%s' (see 'sspose %s --help')", argv[0], argv[optind - 1], argv[0]);
    }
    if (c == ':') CORE_DIE("%s: option '%s' needs a value", argv[0], argv[optind - 1]);
    return c;
}

long cli_long(const char *flag, const char *value, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(value, &end, 10);
    CHECK(end != value && !*end && !errno && v >= lo && v <= hi, "bad value for %s: '%s' (want an integer in [%ld, %ld])",
          flag, value, lo, hi);
    return v;
}

double cli_double(const char *flag, const char *value, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    CHECK(end != value && !*end && !errno && isfinite(v) && v >= lo && v <= hi,
          "bad value for %s: '%s' (want a number in [%g, %g])", flag, value, lo, hi);
    return v;
}

void cli_config_add_set(cli_config_args *a, const char *assignment)
{
    CHECK(a->nsets < (int)(sizeof a->sets / sizeof a->sets[0]), "too many --set options");
    a->sets[a->nsets++] = assignment;
}

void cli_config_build(const cli_config_args *a, core_config *cfg)
{
    core_config_defaults(cfg);
    if (a->config_path) core_config_load(cfg, a->config_path);
    for (int i = 0; i < a->nsets; i++) core_config_set(cfg, a->sets[i]);
}
