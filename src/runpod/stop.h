/* The per-job stop channel (spec runpod-protocol.md §5.5): a thread
 * long-polls GET <job-take URL with /job-stop/> (90 s deadline) and sets the
 * cancelled flag of every listed job this worker holds (cooperative cancel;
 * the worker then posts no result for it). 204 = nothing, 429 = wait 5 s,
 * other errors = wait 1 s, after an empty answer wait 1 s. */
#ifndef SDXL_RUNPOD_STOP_H
#define SDXL_RUNPOD_STOP_H

#include <stddef.h>
#include <cjson/cJSON.h>

#include "runpod/settings.h"
#include "runpod/tracker.h"

typedef enum {
    RP_STOP_NONE,         /* 204, or 2xx without ids */
    RP_STOP_IDS,          /* ids holds >= 1 strings */
    RP_STOP_RATE_LIMITED, /* 429 */
    RP_STOP_HTTP_ERROR,   /* other non-2xx */
    RP_STOP_INVALID,      /* 2xx we cannot use (warned, treated as empty) */
} rp_stop_kind;

/* Parses an answer of the stop channel. On RP_STOP_IDS *ids is a cJSON array
 * of the string ids (non-string entries dropped); why says what was wrong. */
rp_stop_kind rp_parse_stop_response(long status, const char *content_type, const char *body,
                                    size_t len, cJSON **ids, char *why, size_t why_len);

typedef struct rp_stopchan rp_stopchan;

/* NULL when the take URL has no /job-take/ (feature disabled, warned). */
rp_stopchan *rp_stopchan_start(const rp_settings *s, rp_tracker *tracker);
void rp_stopchan_stop(rp_stopchan *sc);

#endif
