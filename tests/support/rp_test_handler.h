/* A scripted handler for the runtime's tests: the job input says what to do,
 * so one handler drives every scenario (it lives in tests/, never in the
 * shipped binary). Input keys, applied in this order:
 *   "progress": n        send n progress updates {"step": i}, i = 1..n
 *   "sleep_ms": n        sleep n ms, returning early when cancelled
 *   "yield": [v, ...]    rp_job_yield each value (generator config)
 *   "raise": "message"   rp_job_raise(job, "ValueError", message)
 *   "return": v          return a copy of v ("return": null -> NULL)
 * Without "return" it returns {"echo": <input>}; a cancelled job returns
 * {"cancelled": true}. */
#ifndef SDXL_RP_TEST_HANDLER_H
#define SDXL_RP_TEST_HANDLER_H

#include "runpod/runpod.h"

cJSON *rpt_script_handler(rp_job *job, void *ctx);

#endif
