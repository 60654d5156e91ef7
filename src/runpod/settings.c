/* Reading the RUNPOD_* environment once (see settings.h). Matched:
 * runpod-python 1.12.0 worker_state.py, rp_http.py, rp_ping.py,
 * serverless/__init__.py. */
#include "runpod/settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "runpod/url.h"

void rp_uuid4(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

long rp_ping_interval_ms(const char *env_value)
{
    long ms = 10000;
    if (env_value && *env_value) {
        char *end;
        long v = strtol(env_value, &end, 10);
        if (end != env_value && !*end) ms = v;
    }
    long seconds = ms / 1000;
    return (seconds < 1 ? 1 : seconds) * 1000;
}

static char *env_dup(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback ? strdup(fallback) : NULL;
    return strdup(v);
}

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    long n = strtol(v, &end, 10);
    return (end != v && !*end && n >= 0 && n <= 65535) ? (int)n : fallback;
}

void rp_settings_load(rp_settings *s)
{
    memset(s, 0, sizeof *s);
    s->pod_id = env_dup("RUNPOD_POD_ID", NULL);
    char uuid[37];
    rp_uuid4(uuid);
    s->worker_id = strdup(s->pod_id ? s->pod_id : uuid);
    char *get_job = env_dup("RUNPOD_WEBHOOK_GET_JOB", NULL);
    char *output = env_dup("RUNPOD_WEBHOOK_POST_OUTPUT", "JOB_DONE_URL");
    char *stream = env_dup("RUNPOD_WEBHOOK_POST_STREAM", "JOB_STREAM_URL");
    char *ping = env_dup("RUNPOD_WEBHOOK_PING", NULL);
    char *worker_enc = rp_url_encode(s->worker_id);
    s->take_base = get_job ? rp_url_for_worker(get_job, s->worker_id) : NULL;
    s->output_tmpl = rp_str_replace(output, "$RUNPOD_POD_ID", worker_enc);
    s->stream_tmpl = rp_str_replace(stream, "$RUNPOD_POD_ID", worker_enc);
    s->ping_base = ping ? rp_url_for_worker(ping, s->worker_id) : NULL;
    free(worker_enc);
    free(get_job);
    free(output);
    free(stream);
    free(ping);
    s->api_key = env_dup("RUNPOD_AI_API_KEY", "");
    s->ping_interval_ms = rp_ping_interval_ms(getenv("RUNPOD_PING_INTERVAL"));
    s->realtime_port = env_int("RUNPOD_REALTIME_PORT", 0);
    s->realtime_concurrency = env_int("RUNPOD_REALTIME_CONCURRENCY", 1);
    s->endpoint_id = env_dup("RUNPOD_ENDPOINT_ID", NULL);
}

void rp_settings_free(rp_settings *s)
{
    free(s->take_base);
    free(s->output_tmpl);
    free(s->stream_tmpl);
    free(s->ping_base);
    free(s->api_key);
    free(s->pod_id);
    free(s->worker_id);
    free(s->endpoint_id);
    memset(s, 0, sizeof *s);
}
