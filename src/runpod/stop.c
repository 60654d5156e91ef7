/* Job-stop channel (see stop.h). Matched: runpod-python 1.12.0
 * rp_job.get_stop_signals and rp_scale.JobScaler.monitor_stop_signals. */
#include "runpod/stop.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/http.h"
#include "runpod/log.h"
#include "runpod/take.h"
#include "runpod/url.h"

#define STOP_POLL_TIMEOUT_MS 90000

struct rp_stopchan {
    const rp_settings *settings;
    rp_tracker *tracker;
    char *url;
    rp_event stop;
    pthread_t thread;
    rp_http *http;
};

static rp_stop_kind invalid(char *why, size_t why_len, const char *msg)
{
    snprintf(why, why_len, "%s", msg);
    return RP_STOP_INVALID;
}

rp_stop_kind rp_parse_stop_response(long status, const char *content_type, const char *body,
                                    size_t len, cJSON **ids, char *why, size_t why_len)
{
    *ids = NULL;
    if (why_len) why[0] = 0;
    if (status == 204) return RP_STOP_NONE;
    if (status == 429) return RP_STOP_RATE_LIMITED;
    if (status < 200 || status > 299) {
        snprintf(why, why_len, "HTTP status %ld", status);
        return RP_STOP_HTTP_ERROR;
    }
    if (!content_type || strcmp(content_type, "application/json"))
        return invalid(why, why_len, "unexpected content type");
    cJSON *v = rp_json_parse_exact(body, len);
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return invalid(why, why_len, v ? "unexpected payload type" : "failed to parse response");
    }
    cJSON *raw = cJSON_GetObjectItemCaseSensitive(v, "jobsToStop");
    if (raw && !cJSON_IsArray(raw)) {
        cJSON_Delete(v);
        return invalid(why, why_len, "jobsToStop is not a list");
    }
    cJSON *out = cJSON_CreateArray();
    int dropped = 0;
    cJSON *item;
    cJSON_ArrayForEach(item, raw) {
        if (cJSON_IsString(item)) cJSON_AddItemToArray(out, cJSON_CreateString(item->valuestring));
        else dropped++;
    }
    cJSON_Delete(v);
    if (dropped) snprintf(why, why_len, "dropped %d non-string job ids", dropped);
    if (!out->child) {
        cJSON_Delete(out);
        return RP_STOP_NONE;
    }
    *ids = out;
    return RP_STOP_IDS;
}

static void stop_listed(rp_stopchan *sc, const cJSON *ids)
{
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) {
        if (rp_tracker_cancel(sc->tracker, id->valuestring))
            rp_log(RP_LOG_INFO, id->valuestring, "Stopping job.");
        else
            rp_debug("No in-progress job for %s.", id->valuestring);
    }
}

/* One poll; returns how long to wait before the next one. */
static long poll_once(rp_stopchan *sc)
{
    char auth[1024];
    snprintf(auth, sizeof auth, "Authorization: %s", sc->settings->api_key);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    rp_http_request req = {.method = "GET", .url = sc->url, .headers = headers,
                           .timeout_ms = STOP_POLL_TIMEOUT_MS, .abort = &sc->stop};
    rp_http_response r;
    rp_http_perform(sc->http, &req, &r);
    long wait = 0;
    if (r.result == RP_HTTP_TIMEOUT) {
        rp_debug("Stop poll timed out. Retrying.");
    } else if (r.result != RP_HTTP_OK) {
        if (r.result != RP_HTTP_ABORTED) rp_error("Stop channel | Error Message: %s", r.error);
        wait = 1000;
    } else {
        cJSON *ids;
        char why[128];
        rp_stop_kind kind = rp_parse_stop_response(r.status, r.content_type, r.body, r.len, &ids, why, sizeof why);
        if (why[0] && kind != RP_STOP_HTTP_ERROR) rp_warn("rp_job | get_stop_signals: %s", why);
        if (kind == RP_STOP_HTTP_ERROR) rp_error("Stop channel | Error Message: %s", why);
        if (kind == RP_STOP_IDS) stop_listed(sc, ids);
        wait = kind == RP_STOP_RATE_LIMITED ? 5000 : kind == RP_STOP_IDS ? 0 : 1000;
        cJSON_Delete(ids);
    }
    rp_http_response_free(&r);
    return wait;
}

static void *stop_loop(void *arg)
{
    rp_stopchan *sc = arg;
    while (!rp_event_is_set(&sc->stop)) {
        long wait = poll_once(sc);
        if (wait && rp_event_wait(&sc->stop, wait)) break;
    }
    return NULL;
}

rp_stopchan *rp_stopchan_start(const rp_settings *s, rp_tracker *tracker)
{
    char *url = s->take_base ? rp_stop_url(s->take_base) : NULL;
    if (!url) {
        rp_warn("Stop channel could not be derived from the job-take URL; per-job stop is disabled for this worker.");
        return NULL;
    }
    rp_stopchan *sc = calloc(1, sizeof *sc);
    sc->settings = s;
    sc->tracker = tracker;
    sc->url = url;
    if (rp_event_init(&sc->stop) != 0) {
        free(sc->url);
        free(sc);
        return NULL;
    }
    sc->http = rp_http_new();
    if (pthread_create(&sc->thread, NULL, stop_loop, sc) != 0) {
        rp_error("Cannot start the stop-channel thread.");
        rp_event_destroy(&sc->stop);
        rp_http_free(sc->http);
        free(sc->url);
        free(sc);
        return NULL;
    }
    return sc;
}

void rp_stopchan_stop(rp_stopchan *sc)
{
    if (!sc) return;
    rp_event_set(&sc->stop);
    pthread_join(sc->thread, NULL);
    rp_event_destroy(&sc->stop);
    rp_http_free(sc->http);
    free(sc->url);
    free(sc);
}
