/* Parsing of job-take answers (spec runpod-protocol.md §4.4) and of local
 * test jobs (§7.1). These functions see untrusted bytes: they never read
 * past `len`, accept no trailing garbage, and reject job ids that could not
 * be sent back safely. Matched: runpod-python 1.12.0 rp_job.get_job and
 * rp_local.run_local. */
#ifndef SDXL_RUNPOD_TAKE_H
#define SDXL_RUNPOD_TAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

#define RP_JOB_ID_MAX 1024

typedef enum {
    RP_TAKE_JOBS,         /* jobs holds >= 1 valid job objects */
    RP_TAKE_NONE,         /* 204, 400, empty 2xx body, null, [] */
    RP_TAKE_RATE_LIMITED, /* 429: pause 5 s */
    RP_TAKE_HTTP_ERROR,   /* other non-2xx */
    RP_TAKE_INVALID,      /* 2xx with a wrong content type, bad JSON or bad job(s) */
} rp_take_kind;

typedef struct {
    rp_take_kind kind;
    cJSON *jobs;          /* array of job objects when kind == RP_TAKE_JOBS */
    int dropped;          /* batch elements rejected (logged by the caller) */
    char message[256];    /* why, for the log */
} rp_take_result;

/* content_type: the mime type only, lower-cased ("" when absent). */
void rp_parse_take_response(long status, const char *content_type, const char *body,
                            size_t len, rp_take_result *out);
void rp_take_result_free(rp_take_result *r);

/* A job object is valid when it has a string "id" (1..RP_JOB_ID_MAX bytes,
 * no control characters) and an "input" key. */
bool rp_job_object_valid(const cJSON *job);

/* Parses JSON text strictly: the whole buffer must be one JSON value (only
 * whitespace around it). Returns NULL on any error.
 * A C string ends at a NUL, so cJSON cuts a string holding one (the escape
 * \u0000, or a raw 0 byte) short: "a\u0000cat" reads as "a". Such items
 * are marked in their type bits, which cJSON keeps through cJSON_Duplicate
 * and the cJSON_Add* functions (tests/test_rp_parse.c checks that), so the
 * validator can refuse them by name (a job id so cut is not valid). */
#define RP_JSON_CUT_VALUE (1 << 12) /* a string value was cut at a NUL */
#define RP_JSON_CUT_KEY (1 << 13)   /* the item's key was cut at a NUL */
cJSON *rp_json_parse_exact(const char *text, size_t len);

typedef enum {
    RP_LOCAL_OK,
    RP_LOCAL_BAD_JSON,    /* not JSON, or not an object */
    RP_LOCAL_NO_INPUT,    /* "input" missing or null */
} rp_local_status;

/* §7.1: a local test job; "id" defaults to "local_test" (a non-string id is
 * replaced by its JSON text). On RP_LOCAL_OK *job owns the object. */
rp_local_status rp_parse_local_job(const char *text, size_t len, cJSON **job);

#endif
