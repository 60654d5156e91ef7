/* The rp_job behind the public accessors, and the run of one job through the
 * handler (spec §5.2 / §5.3): exception capture, dict unpacking, generator
 * iteration. Where progress updates and stream chunks go depends on the mode,
 * through an rp_job_sink. */
#ifndef SDXL_RUNPOD_JOB_H
#define SDXL_RUNPOD_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <cjson/cJSON.h>

#include "runpod/log.h"
#include "runpod/runpod.h"
#include "runpod/wrap.h"

typedef struct {
    /* A progress update for the job (ownership of `progress` passes). */
    void (*progress)(rp_job *job, cJSON *progress, void *ctx);
    /* One stream chunk {"output": v} of a generator, in order (borrowed). */
    void (*chunk)(rp_job *job, const cJSON *chunk, void *ctx);
    void *ctx;
} rp_job_sink;

struct rp_job {
    cJSON *json;          /* the whole job object; owns id and input */
    const char *id;
    const cJSON *input;
    atomic_bool cancelled;
    bool raised;
    rp_exception exc;
    rp_job_sink sink;
    /* generator state */
    bool generator;
    cJSON *outputs;       /* yielded values kept for the final output, or NULL */
    char *stream_error;   /* set by an error chunk: ends the stream */
};

/* Takes a validated job object (string "id", an "input"); takes ownership
 * (NULL when out of memory: the object stays the caller's). */
rp_job *rp_job_new(cJSON *json, const rp_job_sink *sink);
void rp_job_free(rp_job *job);
void rp_job_cancel(rp_job *job);

/* Runs the handler once and returns the wrapped result (§5.2, or §5.3 for a
 * generator handler; without the config refresh_worker stopPod). With
 * `aggregate` the generator's yielded values form the final output (the SDK's
 * return_aggregate_stream; the local modes always aggregate). */
cJSON *rp_job_execute(rp_job *job, const rp_config *cfg, bool aggregate);

/* Logs `prefix` + compact JSON of v, serialising only if the level is on. */
void rp_log_json(rp_log_level level, const char *job_id, const char *prefix, const cJSON *v);

#endif
