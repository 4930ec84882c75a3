#include "core/progress.h"

#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double core_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void core_format_duration(double s, char *buf, size_t len)
{
    if (!isfinite(s) || s < 0) { snprintf(buf, len, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
}

void core_progress_start(core_progress *p, const char *label, const char *unit, long total, FILE *out, double every_s)
{
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->out = out ? out : stdout;
    p->tty = isatty(fileno(p->out));
    p->every_s = every_s > 0 ? every_s : 10.0;
    p->start = p->last_print = core_now();
}

double core_progress_elapsed(const core_progress *p) { return core_now() - p->start; }

static void render(core_progress *p, double now, int final)
{
    double el = now - p->start;
    double rate = el > 0 ? p->done / el : 0;
    char eta[32] = "", elapsed[32];
    core_format_duration(el, elapsed, sizeof elapsed);
    if (p->total > 0 && rate > 0 && !final) core_format_duration((p->total - p->done) / rate, eta, sizeof eta);
    if (p->tty) {
        char bar[32] = "";
        int pct = 0;
        if (p->total > 0) {
            int fill = (int)(25.0 * p->done / p->total);
            fill = fill < 0 ? 0 : fill > 25 ? 25 : fill;
            for (int i = 0; i < 25; i++) bar[i] = i < fill ? '#' : '.';
            bar[25] = 0;
            pct = (int)(100.0 * p->done / p->total);
            fprintf(p->out, "\r%s [%s] %ld/%ld %3d%%  %.1f %s/s  %s %s\033[K", p->label, bar, p->done, p->total, pct,
                    rate, p->unit, final ? "in" : "ETA", final ? elapsed : eta);
        } else {
            fprintf(p->out, "\r%s %ld  %.1f %s/s  %s\033[K", p->label, p->done, rate, p->unit, elapsed);
        }
        if (final) fputc('\n', p->out);
    } else if (p->total > 0) {
        fprintf(p->out, "%s: %ld/%ld (%d%%), %.1f %s/s, %s %s\n", p->label, p->done, p->total,
                (int)(100.0 * p->done / p->total), rate, p->unit, final ? "elapsed" : "ETA", final ? elapsed : eta);
    } else {
        fprintf(p->out, "%s: %ld, %.1f %s/s, elapsed %s\n", p->label, p->done, rate, p->unit, elapsed);
    }
    fflush(p->out);
    p->last_print = now;
}

void core_progress_update(core_progress *p, long done)
{
    p->done = done;
    double now = core_now();
    if (now - p->last_print >= (p->tty ? 0.1 : p->every_s)) render(p, now, 0);
}

void core_progress_finish(core_progress *p) { render(p, core_now(), 1); }
