/* SIGTERM / SIGINT handling for the long-running modes (spec §3 shutdown):
 * the signal only sets an rp_event (async-signal-safe); the loops watch it,
 * stop taking work, finish what runs and return. SIGPIPE is ignored. */
#ifndef SDXL_RUNPOD_SIGNALS_H
#define SDXL_RUNPOD_SIGNALS_H

#include "runpod/event.h"

/* Routes SIGTERM and SIGINT to `shutdown` until rp_signals_restore(). */
void rp_signals_install(rp_event *shutdown);
/* Puts back the dispositions that were there before. */
void rp_signals_restore(void);
/* The signal that set the event (0 if none yet). */
int rp_signals_received(void);

#endif
