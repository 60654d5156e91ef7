/* Heartbeat thread (see heartbeat.h). Matched: runpod-python 1.12.0
 * rp_ping.Heartbeat (requests + urllib3 Retry(total=3, backoff_factor=1,
 * status_forcelist=[429, 500, 502, 503, 504])). */
#include "runpod/heartbeat.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/http.h"
#include "runpod/log.h"
#include "runpod/url.h"

#define PING_RETRIES 3
#define RETRY_AFTER_CAP_S 60

struct rp_heartbeat {
    const rp_settings *settings;
    rp_tracker *tracker;
    rp_event stop;
    pthread_t thread;
    rp_http *http;
};

static bool retry_status(long status)
{
    return status == 429 || status == 500 || status == 502 || status == 503 || status == 504;
}

/* urllib3: no wait before the first retry, then backoff_factor * 2^(n-1). */
static long retry_wait_ms(int retry, const rp_http_response *r)
{
    if (r->result == RP_HTTP_OK && (r->status == 429 || r->status == 503) && r->retry_after_s >= 0)
        return (r->retry_after_s > RETRY_AFTER_CAP_S ? RETRY_AFTER_CAP_S : r->retry_after_s) * 1000;
    return retry <= 1 ? 0 : 1000L << (retry - 1);
}

static void send_ping(rp_heartbeat *hb)
{
    char *ids = rp_tracker_ids(hb->tracker, RP_PING_IDS_MAX);
    char *url = rp_ping_url(hb->settings->ping_base, ids, RP_SDK_VERSION);
    free(ids);
    char auth[1024];
    snprintf(auth, sizeof auth, "Authorization: %s", hb->settings->api_key);
    const char *headers[] = {auth, "Accept: */*", NULL};
    rp_http_request req = {.method = "GET", .url = url, .headers = headers,
                           .timeout_ms = 2 * hb->settings->ping_interval_ms, .abort = &hb->stop};
    for (int retry = 0;; retry++) {
        rp_http_response r;
        rp_http_perform(hb->http, &req, &r);
        bool again = r.result == RP_HTTP_FAILED || r.result == RP_HTTP_TIMEOUT ||
                     (r.result == RP_HTTP_OK && retry_status(r.status));
        if (r.result == RP_HTTP_ABORTED) { rp_http_response_free(&r); break; }
        if (!again) {
            rp_debug("Heartbeat Sent | URL: %s | Status: %ld", url, r.status);
            rp_http_response_free(&r);
            break;
        }
        if (retry == PING_RETRIES) {
            if (r.result == RP_HTTP_OK)
                rp_error("Ping Request Error: too many %ld error responses, attempting to restart ping.", r.status);
            else
                rp_error("Ping Request Error: %s, attempting to restart ping.", r.error);
            rp_http_response_free(&r);
            break;
        }
        long wait = retry_wait_ms(retry + 1, &r);
        rp_http_response_free(&r);
        if (rp_event_wait(&hb->stop, wait)) break;
    }
    free(url);
}

static void *ping_loop(void *arg)
{
    rp_heartbeat *hb = arg;
    do send_ping(hb);
    while (!rp_event_wait(&hb->stop, hb->settings->ping_interval_ms));
    return NULL;
}

rp_heartbeat *rp_heartbeat_start(const rp_settings *s, rp_tracker *tracker)
{
    if (!s->api_key[0]) { rp_debug("Not deployed on Runpod serverless, pings will not be sent."); return NULL; }
    if (!s->pod_id) { rp_info("Not running on Runpod, pings will not be sent."); return NULL; }
    if (!s->ping_base) { rp_error("Ping URL not set, cannot start ping."); return NULL; }
    rp_heartbeat *hb = calloc(1, sizeof *hb);
    hb->settings = s;
    hb->tracker = tracker;
    if (rp_event_init(&hb->stop) != 0) {
        free(hb);
        rp_error("Cannot start the heartbeat thread.");
        return NULL;
    }
    hb->http = rp_http_new();
    if (pthread_create(&hb->thread, NULL, ping_loop, hb) != 0) {
        rp_event_destroy(&hb->stop);
        rp_http_free(hb->http);
        free(hb);
        rp_error("Cannot start the heartbeat thread.");
        return NULL;
    }
    return hb;
}

void rp_heartbeat_stop(rp_heartbeat *hb)
{
    if (!hb) return;
    rp_event_set(&hb->stop);
    pthread_join(hb->thread, NULL);
    rp_event_destroy(&hb->stop);
    rp_http_free(hb->http);
    free(hb);
}
