/* The set of jobs this worker holds (the SDK's JobsProgress, spec §3): a
 * job is added when it is received and removed when its handling ends. The
 * heartbeat reports their ids, job-take sends job_in_progress from it, the
 * stop channel cancels through it. Thread-safe. */
#ifndef SDXL_RUNPOD_TRACKER_H
#define SDXL_RUNPOD_TRACKER_H

#include <stdbool.h>
#include <stddef.h>

#include "runpod/runpod.h"

#define RP_PING_IDS_MAX 65535 /* cap of the ping's job_id list (§6) */

typedef struct rp_tracker rp_tracker;

rp_tracker *rp_tracker_new(void);
void rp_tracker_free(rp_tracker *t);
/* job may be NULL (a dev-API job stored by /run, not running yet). */
void rp_tracker_add(rp_tracker *t, const char *id, rp_job *job);
/* Removes the entry of `job`, or when job is NULL the first entry with id. */
void rp_tracker_remove(rp_tracker *t, const char *id, rp_job *job);
int rp_tracker_count(rp_tracker *t);
/* Comma-separated ids, cut at a comma to at most `cap` bytes; NULL if empty. */
char *rp_tracker_ids(rp_tracker *t, size_t cap);
/* Sets the cancelled flag of every tracked job with this id; true if any. */
bool rp_tracker_cancel(rp_tracker *t, const char *id);

#endif
