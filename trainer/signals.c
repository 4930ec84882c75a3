#include "trainer/signals.h"

#include <signal.h>
#include <string.h>

#include "core/check.h"

static volatile sig_atomic_t g_stop;
static struct sigaction g_old_term, g_old_usr1, g_old_int;
/* TERM/INT received so far. USR1 does not count: SLURM sends USR1 ahead of the
 * time limit (--signal) and then TERM when the limit or a requeue arrives, and
 * `scancel --signal=USR1 --full` reaches each rank twice (directly and through
 * srun); all of these are one request to stop gracefully. */
static volatile sig_atomic_t g_terms;

static void on_signal(int sig)
{
    if (sig != SIGUSR1 && g_terms++ > 0) {
        /* A second TERM/INT: the user means it. */
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    if (!g_stop) g_stop = sig;
}

void trainer_signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    g_stop = 0;
    g_terms = 0;
    CHECK(sigaction(SIGTERM, &sa, &g_old_term) == 0, "cannot install the SIGTERM handler");
    CHECK(sigaction(SIGUSR1, &sa, &g_old_usr1) == 0, "cannot install the SIGUSR1 handler");
    CHECK(sigaction(SIGINT, &sa, &g_old_int) == 0, "cannot install the SIGINT handler");
}

void trainer_signals_restore(void)
{
    sigaction(SIGTERM, &g_old_term, NULL);
    sigaction(SIGUSR1, &g_old_usr1, NULL);
    sigaction(SIGINT, &g_old_int, NULL);
}

int trainer_stop_signal(void) { return (int)g_stop; }
