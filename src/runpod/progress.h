/* Per-job FIFO of progress updates (spec §5.4, made ordered as §12 asks):
 * rp_progress_push() returns at once; a sender thread, started on the first
 * update, delivers {"status":"IN_PROGRESS","output":p} bodies one after the
 * other through `send`; rp_progress_finish() waits until all were delivered
 * (or drops the pending ones) so that the final result always comes last. */
#ifndef SDXL_RUNPOD_PROGRESS_H
#define SDXL_RUNPOD_PROGRESS_H

#include <stdbool.h>
#include <cjson/cJSON.h>

typedef void (*rp_progress_send_fn)(const char *job_id, const cJSON *body, void *ctx);

typedef struct rp_progress rp_progress;

rp_progress *rp_progress_new(const char *job_id, rp_progress_send_fn send, void *ctx);
/* Queues an update; takes ownership of `progress`. */
void rp_progress_push(rp_progress *p, cJSON *progress);
/* Delivers (or, with discard, drops) what is queued, stops the sender and
 * frees p. The update being sent when this is called is always completed. */
void rp_progress_finish(rp_progress *p, bool discard);

#endif
