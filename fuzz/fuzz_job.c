/* libFuzzer target: the job-parsing path, which sees what the queue sends
 * (untrusted): job-take answers (src/runpod/take.c, spec §4.4), job-stop
 * answers (src/runpod/stop.c, §5.5) and local test jobs (§7.1), followed by
 * what the worker does with an accepted job: rp_job_new, the result URL built
 * from its id, and the §5.2 wrapping of its input as a handler result.
 * Input layout: byte 0 picks the HTTP status (index into kStatus), the low
 * bit of byte 1 picks the content type (0: application/json, 1: text/html),
 * the rest is the body. The body is copied to an exactly sized buffer so
 * that any read past its end is caught. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/job.h"
#include "runpod/stop.h"
#include "runpod/take.h"
#include "runpod/url.h"
#include "runpod/wrap.h"

static const long kStatus[8] = {200, 201, 204, 400, 429, 500, 404, 200};

static void use_job(cJSON *json)
{
    rp_job *job = rp_job_new(json, NULL);
    char *url = rp_result_url("http://h/v2/ep/job-done/w/$ID?gpu=x", rp_job_id(job), false);
    free(url);
    const cJSON *input = rp_job_input(job);
    cJSON *result = rp_wrap_result(input ? cJSON_Duplicate(input, 1) : NULL, NULL);
    char *text = cJSON_PrintUnformatted(result);
    free(text);
    cJSON_Delete(result);
    rp_job_free(job);
}

static void take_path(long status, const char *ct, const char *body, size_t len)
{
    rp_take_result r;
    rp_parse_take_response(status, ct, body, len, &r);
    if (r.kind == RP_TAKE_JOBS)
        while (r.jobs->child) use_job(cJSON_DetachItemViaPointer(r.jobs, r.jobs->child));
    rp_take_result_free(&r);
}

static void stop_path(long status, const char *ct, const char *body, size_t len)
{
    cJSON *ids;
    char why[128];
    rp_parse_stop_response(status, ct, body, len, &ids, why, sizeof why);
    cJSON_Delete(ids);
}

static void local_path(const char *body, size_t len)
{
    cJSON *job;
    if (rp_parse_local_job(body, len, &job) == RP_LOCAL_OK) use_job(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    long status = kStatus[data[0] % 8];
    const char *ct = (data[1] & 1) ? "text/html" : "application/json";
    size_t len = size - 2;
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 2, len);
    take_path(status, ct, body, len);
    stop_path(status, ct, body, len);
    local_path(body, len);
    free(body);
    return 0;
}
