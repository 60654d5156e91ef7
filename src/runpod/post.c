/* Result / stream / progress POSTs with the SDK's retry policy (see post.h).
 * Matched: runpod-python 1.12.0 rp_http._transmit/_handle_result and
 * aiohttp_retry FibonacciRetry(attempts=3) (waits 2 s, 3 s). */
#include "runpod/post.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runpod/log.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

static bool should_retry(const rp_http_response *r)
{
    if (r->result == RP_HTTP_OK) return r->status >= 500;
    return r->result == RP_HTTP_FAILED || r->result == RP_HTTP_TIMEOUT;
}

static void log_failure(const char *job_id, const char *url, const rp_http_response *r)
{
    if (r->result == RP_HTTP_OK)
        rp_log(RP_LOG_ERROR, job_id, "Failed to return job results. | %ld, message='%s', url='%s'",
               r->status, r->reason, url);
    else
        rp_log(RP_LOG_ERROR, job_id, "Failed to return job results. | %s, url='%s'", r->error, url);
}

bool rp_post_json(rp_http *http, const char *url, const char *job_id,
                  const char *api_key, const cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    if (!text) {
        rp_log(RP_LOG_ERROR, job_id, "Error while returning job result. | cannot serialise the result");
        return false;
    }
    size_t len = strlen(text);
    if (len > RP_RESULT_WARN_BYTES)
        rp_log(RP_LOG_WARN, job_id, "Result body is %zu bytes; the platform rejects bodies above about 20 MB.", len);
    char auth[1024], reqid[1100];
    snprintf(auth, sizeof auth, "Authorization: %s", api_key ? api_key : "");
    snprintf(reqid, sizeof reqid, "X-Request-ID: %s", job_id);
    const char *headers[] = {"Content-Type: application/x-www-form-urlencoded", "charset: utf-8",
                             reqid, api_key && *api_key ? auth : NULL, NULL};
    rp_http_request req = {.method = "POST", .url = url, .headers = headers, .body = text,
                           .body_len = len, .timeout_ms = RP_POST_TIMEOUT_MS};
    static const long waits_ms[RP_POST_ATTEMPTS] = {0, 2000, 3000};
    bool ok = false;
    for (int attempt = 0; attempt < RP_POST_ATTEMPTS && !ok; attempt++) {
        if (attempt) sleep_ms(waits_ms[attempt]);
        rp_http_response resp;
        rp_http_perform(http, &req, &resp);
        ok = resp.result == RP_HTTP_OK && resp.status >= 200 && resp.status < 300;
        bool last = attempt == RP_POST_ATTEMPTS - 1 || !should_retry(&resp);
        if (!ok && last) log_failure(job_id, url, &resp);
        if (!ok && !last)
            rp_log(RP_LOG_WARN, job_id, "Result POST attempt %d failed (%s); retrying.", attempt + 1,
                   resp.result == RP_HTTP_OK ? resp.reason : resp.error);
        rp_http_response_free(&resp);
        if (!ok && last) break;
    }
    free(text);
    return ok;
}
