/* The bodies the SDK posts for a finished job (spec runpod-protocol.md §5.2
 * and §5.3), as pure functions: Python truthiness, the six-key exception
 * report, dict unpacking of "error"/"refresh_worker", the generator's final
 * result. Matched against runpod-python 1.12.0 rp_job.run_job,
 * rp_job.handle_job and rp_job.run_job_generator. */
#ifndef SDXL_RUNPOD_WRAP_H
#define SDXL_RUNPOD_WRAP_H

#include <stdbool.h>
#include <cjson/cJSON.h>

/* What rp_job_raise() recorded: the C stand-in of a Python exception. */
typedef struct {
    char *type;      /* e.g. "ValueError" */
    char *message;
    char *traceback; /* Python-like text naming the raising call site */
} rp_exception;

/* Python's bool(v) for a JSON value (NULL counts as None). */
bool rp_json_truthy(const cJSON *v);
/* str(v) for error values: a string as is, anything else as compact JSON. */
char *rp_json_str(const cJSON *v);
/* The "error" string of an exception (§5.2): json.dumps of
 * {error_type, error_message, error_traceback, hostname, worker_id,
 * runpod_version} with Python's ", " / ": " separators. hostname and
 * worker_id come from RUNPOD_POD_HOSTNAME / RUNPOD_POD_ID ("unknown"). */
char *rp_exception_report(const rp_exception *exc);
/* §5.2 for a normal handler: takes ownership of ret (may be NULL); exc, when
 * not NULL, means the handler raised and ret is discarded. */
cJSON *rp_wrap_result(cJSON *ret, const rp_exception *exc);
/* §5.3 final result of a generator: {"error": error} when error is not NULL,
 * else {"output": outputs} (takes ownership; NULL means []). */
cJSON *rp_wrap_stream_final(cJSON *outputs, const char *error);
/* §5.3 error text for a generator that raised. */
char *rp_stream_exception_text(const rp_exception *exc);
/* Config refresh_worker: adds "stopPod": true. */
void rp_add_stop_pod(cJSON *result);

#endif
