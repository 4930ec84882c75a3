/* sspose plot: training curves of one or more run directories as PNG/SVG/PDF. */
#include <cairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/fileid.h"
#include "launch/cli.h"
#include "report/plot.h"

static const char USAGE[] =
    "usage: sspose plot RUNDIR... --out FILE.png|svg|pdf [options]\n"
    "\n"
    "Draws the curves of RUNDIR/metrics.jsonl (written by 'sspose train'), one panel\n"
    "per metric. Several RUNDIRs are overlaid, one colour per run, with a legend naming\n"
    "each run and the RUNDIR/config.ini values that differ between them (a sweep).\n"
    "A run still in progress is fine: a partly written last line is skipped.\n"
    "\n"
    "  --out FILE        output; the format follows the extension: .png, .svg, .pdf\n"
    "  --metric NAMES    panels to draw, comma-separated or repeated (default: all below\n"
    "                    that the runs logged):\n"
    "                      loss          total loss (log scale)\n"
    "                      weighted      each term's share of the loss: weight x sum over stages\n"
    "                      terms         each term summed over stages, unweighted\n"
    "                      last-stage    each term at the last stage; stageN: at stage N\n"
    "                      lr            learning rate\n"
    "                      grad_norm     gradient norm\n"
    "                      samples_per_s throughput\n"
    "                      time          seconds per step waiting for data, computing, communicating\n"
    "                      heat, paf, .. one term, summed over stages\n"
    "                      KEY           any number in metrics.jsonl, e.g. time.step, terms.stage2.paf\n"
    "  --x step|time     x axis: step (default) or training time (the logged step times added up)\n"
    "  --steps A:B       only steps A..B (either side may be left out: 100: or :500)\n"
    "  --smooth N        centred moving average over N logged points (geometric on log\n"
    "                    panels); the raw curve stays, faint\n"
    "  --log, --linear   every panel on a log / linear y scale (default: losses and the\n"
    "                    gradient norm log, the rest linear)\n"
    "  --title TEXT      figure title (default: the run names)\n"
    "  --size WxH        figure size in pixels (default: 560x330 per panel)\n"
    "  --cols N          panels per row (default: 2, 3 above 8 panels)\n"
    "  --scale F         PNG pixels per figure pixel, e.g. 2 for sharp slides (default 1)\n"
    "  --legend-keys N   differing config values named per run in the legend (default 4)\n"
    "  --dump-layout F   also write the panel boxes, axis ranges and series colours as\n"
    "                    JSON to F ('-': stdout), to map values to pixels\n"
    "  -h, --help        this text\n"
    "\n"
    "Non-finite values (NaN/Inf, logged as null) leave a gap and a cross on the panel's\n"
    "top edge; a run that ended before train.steps gets a dot at its last point.\n"
    "See docs/plot.md.\n";

static void parse_steps(const char *v, long *from, long *to)
{
    const char *colon = strchr(v, ':');
    CHECK(colon, "bad value for --steps: '%s' (want FROM:TO, e.g. 100:500, 100: or :500)", v);
    char a[64], b[64];
    size_t na = (size_t)(colon - v);
    CHECK(na < sizeof a && strlen(colon + 1) < sizeof b, "bad value for --steps: '%s'", v);
    memcpy(a, v, na);
    a[na] = 0;
    snprintf(b, sizeof b, "%s", colon + 1);
    *from = *a ? cli_long("--steps", a, 0, 1000000000000L) : -1;
    *to = *b ? cli_long("--steps", b, 0, 1000000000000L) : -1;
    CHECK(*from >= 0 || *to >= 0, "bad value for --steps: '%s' (give FROM, TO or both)", v);
    CHECK(*from < 0 || *to < 0 || *from <= *to, "bad value for --steps: '%s' (FROM is after TO)", v);
}

static void parse_size(const char *v, int *w, int *h)
{
    char *x = strchr(v, 'x');
    CHECK(x && x != v && x[1], "bad value for --size: '%s' (want WxH, e.g. 1200x800)", v);
    char a[32];
    size_t n = (size_t)(x - v);
    CHECK(n < sizeof a, "bad value for --size: '%s'", v);
    memcpy(a, v, n);
    a[n] = 0;
    *w = (int)cli_long("--size", a, 100, 20000);
    *h = (int)cli_long("--size", x + 1, 100, 20000);
}

/* The run files plot reads must survive any --out/--dump-layout spelling. */
static void refuse_overwriting_runs(const char *flag, const char *out, char **runs, int n)
{
    if (!out || !strcmp(out, "-")) return;
    for (int i = 0; i < n; i++) {
        char a[4200], b[4200];
        snprintf(a, sizeof a, "%s/metrics.jsonl", runs[i]);
        snprintf(b, sizeof b, "%s/config.ini", runs[i]);
        core_refuse_input_output("plot", flag, out, (const char *const[]){a, b, runs[i]},
                                 (const char *const[]){"run file", "run file", "RUNDIR"}, 3);
    }
}

int cmd_plot(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},    {"metric", required_argument, 0, 'm'},
        {"x", required_argument, 0, 'x'},      {"steps", required_argument, 0, 's'},
        {"smooth", required_argument, 0, 'S'}, {"log", no_argument, 0, 'l'},
        {"linear", no_argument, 0, 'L'},       {"title", required_argument, 0, 't'},
        {"size", required_argument, 0, 'z'},   {"cols", required_argument, 0, 'c'},
        {"scale", required_argument, 0, 'k'},  {"legend-keys", required_argument, 0, 'K'},
        {"dump-layout", required_argument, 0, 'D'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    report_plot_opts o;
    report_plot_opts_init(&o);
    const char **metrics = core_calloc(argc, sizeof *metrics);
    int c, nm = 0, log = 0, linear = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'o': o.out = optarg; break;
        case 'm': metrics[nm++] = optarg; break;
        case 'x':
            if (!strcmp(optarg, "time")) o.x_time = 1;
            else CHECK(!strcmp(optarg, "step"), "bad value for --x: '%s' (want step or time)", optarg);
            break;
        case 's': parse_steps(optarg, &o.step_from, &o.step_to); break;
        case 'S': o.smooth = (int)cli_long("--smooth", optarg, 0, 1000000); break;
        case 'l': log = 1; break;
        case 'L': linear = 1; break;
        case 't': o.title = optarg; break;
        case 'z': parse_size(optarg, &o.width, &o.height); break;
        case 'c': o.cols = (int)cli_long("--cols", optarg, 1, 12); break;
        case 'k': o.scale = cli_double("--scale", optarg, 0.25, 8); break;
        case 'K': o.label_keys = (int)cli_long("--legend-keys", optarg, 0, 50); break;
        case 'D': o.dump_layout = optarg; break;
        default: CORE_DIE("plot: unexpected option (see 'sspose plot --help')");
        }
    }
    CHECK(!(log && linear), "plot: give --log or --linear, not both");
    o.log_mode = log ? 1 : linear ? -1 : 0;
    o.metrics = metrics;
    o.nmetrics = nm;
    CHECK(o.out, "plot: --out FILE.png|svg|pdf is required (see 'sspose plot --help')");
    refuse_overwriting_runs("--out", o.out, argv + optind, argc - optind);
    refuse_overwriting_runs("--dump-layout", o.dump_layout, argv + optind, argc - optind);
    CHECK(!o.dump_layout || (!core_same_file(o.out, o.dump_layout) && strcmp(o.out, o.dump_layout)),
          "plot: --out and --dump-layout name the same file '%s'", o.out);
    report_plot_format(o.out); /* a wrong extension fails before reading any run */
    CHECK(optind < argc, "plot: no RUNDIR given (see 'sspose plot --help')");
    int np = report_plot((const char *const *)argv + optind, argc - optind, &o);
    /* with --dump-layout -, stdout carries the JSON alone */
    FILE *say = o.dump_layout && !strcmp(o.dump_layout, "-") ? stderr : stdout;
    int nr = report_plot_count_runs((const char *const *)argv + optind, argc - optind); /* a sweep DIR is many */
    fprintf(say, "wrote %s: %d panel%s, %d run%s\n", o.out, np, np == 1 ? "" : "s", nr, nr == 1 ? "" : "s");
    fflush(say);
    CHECK(!ferror(stdout), "plot: cannot write to stdout");
    free(metrics);
    return 0;
}
