/* The environment the runtime reads (spec runpod-protocol.md §1.1), read
 * once at start: webhook templates with the worker id already substituted,
 * the API key, the worker id, the ping interval, the realtime settings. */
#ifndef SDXL_RUNPOD_SETTINGS_H
#define SDXL_RUNPOD_SETTINGS_H

#include <stdbool.h>

typedef struct {
    char *take_base;      /* RUNPOD_WEBHOOK_GET_JOB, $ID/$RUNPOD_POD_ID -> worker; NULL if unset */
    char *output_tmpl;    /* RUNPOD_WEBHOOK_POST_OUTPUT ("JOB_DONE_URL"), worker substituted, $ID kept */
    char *stream_tmpl;    /* RUNPOD_WEBHOOK_POST_STREAM ("JOB_STREAM_URL"), likewise */
    char *ping_base;      /* RUNPOD_WEBHOOK_PING, $ID/$RUNPOD_POD_ID -> worker; NULL if unset */
    char *api_key;        /* RUNPOD_AI_API_KEY, "" if unset */
    char *pod_id;         /* RUNPOD_POD_ID, NULL if unset/empty */
    char *worker_id;      /* pod_id, or a random UUID4 */
    long ping_interval_ms;/* RUNPOD_PING_INTERVAL (10000) cut to whole seconds, >= 1 s */
    int realtime_port;    /* RUNPOD_REALTIME_PORT, 0 = off */
    int realtime_concurrency; /* RUNPOD_REALTIME_CONCURRENCY (1) */
    char *endpoint_id;    /* RUNPOD_ENDPOINT_ID, NULL if unset */
} rp_settings;

void rp_settings_load(rp_settings *s);
void rp_settings_free(rp_settings *s);

/* Interval in ms from RUNPOD_PING_INTERVAL text: integer division to whole
 * seconds as the SDK, clamped to >= 1 s (the SDK's 0 s busy loop is a bug). */
long rp_ping_interval_ms(const char *env_value);
/* A random UUID4 string (36 chars + NUL) into out. */
void rp_uuid4(char out[37]);

#endif
