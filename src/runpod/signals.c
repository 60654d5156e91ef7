/* Signal-to-event routing (see signals.h). */
#include "runpod/signals.h"

#include <signal.h>
#include <stddef.h>
#include <string.h>

static rp_event *volatile target;
static volatile sig_atomic_t received;
static struct sigaction old_term, old_int, old_pipe;

static void on_signal(int sig)
{
    received = sig;
    if (target) rp_event_set(target);
}

void rp_signals_install(rp_event *shutdown)
{
    target = shutdown;
    received = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &ign, &old_pipe);
}

void rp_signals_restore(void)
{
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    target = NULL;
}

int rp_signals_received(void)
{
    return received;
}
