/* The heartbeat (spec runpod-protocol.md §6) on its own thread, so that a
 * busy handler never delays it: GET <ping URL>&job_id=<ids>&runpod_version=
 * at once and then every RUNPOD_PING_INTERVAL (>= 1 s) after the previous
 * ping ended; timeout 2 x interval; up to 3 retries (waits 0 s, 2 s, 4 s, or
 * Retry-After) on connection errors and on 429/500/502/503/504. Started only
 * when RUNPOD_AI_API_KEY, RUNPOD_POD_ID and the ping URL are set. */
#ifndef SDXL_RUNPOD_HEARTBEAT_H
#define SDXL_RUNPOD_HEARTBEAT_H

#include "runpod/settings.h"
#include "runpod/tracker.h"

typedef struct rp_heartbeat rp_heartbeat;

/* NULL (with a log line saying why) when the heartbeat is not wanted. */
rp_heartbeat *rp_heartbeat_start(const rp_settings *s, rp_tracker *tracker);
/* Interrupts a ping in flight, joins the thread, frees. NULL is fine. */
void rp_heartbeat_stop(rp_heartbeat *hb);

#endif
