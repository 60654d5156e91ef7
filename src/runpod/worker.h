/* Production mode (spec runpod-protocol.md §3-§6): the take loop on the
 * calling thread, `concurrency` handler threads, the heartbeat and the
 * job-stop channel. Runs until `shutdown` is set (SIGTERM/SIGINT, or the
 * config refresh_worker after a job), then stops taking jobs, lets the
 * queued and running ones finish and post their results, and returns 0. */
#ifndef SDXL_RUNPOD_WORKER_H
#define SDXL_RUNPOD_WORKER_H

#include "runpod/event.h"
#include "runpod/http.h"
#include "runpod/runpod.h"
#include "runpod/settings.h"
#include "runpod/take.h"

#define RP_TAKE_TIMEOUT_MS 90000        /* §4.3 */
#define RP_TAKE_RATE_LIMIT_MS 5000      /* §4.4: 429 */
#define RP_TAKE_MAX_BODY (64u << 20)    /* a job with inlined images fits */

int rp_worker_run(const rp_config *cfg, const rp_settings *s, rp_event *shutdown);

/* What the take loop does after an answer (pure, for tests): */
typedef enum {
    RP_NEXT_NOW,      /* take again at once */
    RP_NEXT_PAUSE,    /* 429: wait RP_TAKE_RATE_LIMIT_MS */
    RP_NEXT_BACKOFF,  /* failure: wait the backoff delay */
} rp_take_next;
rp_take_next rp_take_next_step(rp_http_status transport, rp_take_kind kind);

#endif
