/* Local development API (see devapi.h). Matched: runpod-python 1.12.0
 * rp_fastapi.WorkerAPI (_sim_run, _sim_runsync, _sim_status, _sim_stream,
 * _realtime, _send_webhook). */
#include "runpod/devapi.h"

#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/heartbeat.h"
#include "runpod/http.h"
#include "runpod/job.h"
#include "runpod/log.h"
#include "runpod/take.h"
#include "runpod/tracker.h"
#include "runpod/wrap.h"

typedef struct stored {
    char *id;
    cJSON *input;
    char *webhook;
    struct stored *next;
} stored;

typedef struct {
    const rp_config *cfg;
    const rp_settings *s;
    bool realtime;
    char *realtime_path;  /* "/<endpoint id>/realtime" or NULL */
    rp_tracker *tracker;  /* ids reported by the heartbeat */
    sem_t slots;          /* concurrent handler calls */
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    stored *jobs;
    int n_stored, running, completed, failed, webhooks;
} devapi;

typedef struct {
    char *body;
    size_t len, cap;
    bool too_large;
} request;

/* --- responses ----------------------------------------------------------- */

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, cJSON *body)
{
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) { /* out of memory while serialising a huge output */
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        text = strdup("{\"detail\":\"Internal Server Error\"}");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_detail(struct MHD_Connection *c, unsigned status, const char *detail)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "detail", detail);
    return reply(c, status, b);
}

/* FastAPI-style 422 entry: {"type","loc":["body",field?],"msg","input"?}. */
static void add_detail(cJSON *details, const char *type, const char *field, const char *msg, const cJSON *input)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "type", type);
    cJSON *loc = cJSON_AddArrayToObject(d, "loc");
    cJSON_AddItemToArray(loc, cJSON_CreateString("body"));
    if (field) cJSON_AddItemToArray(loc, cJSON_CreateString(field));
    cJSON_AddStringToObject(d, "msg", msg);
    if (input) cJSON_AddItemToObject(d, "input", cJSON_Duplicate(input, 1));
    cJSON_AddItemToArray(details, d);
}

static cJSON *job_status(const char *id, const char *status)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "id", id);
    cJSON_AddStringToObject(b, "status", status);
    return b;
}

static cJSON *failed(const char *id, const char *error)
{
    cJSON *b = job_status(id, "FAILED");
    cJSON_AddStringToObject(b, "error", error);
    return b;
}

/* --- running jobs -------------------------------------------------------- */

static void log_progress(rp_job *job, cJSON *progress, void *ctx)
{
    rp_log_json(RP_LOG_DEBUG, job->id, "Progress update: ", progress);
    cJSON_Delete(progress);
}

/* Runs the handler on {"id", "input"} (input owned) with every yielded value
 * collected; returns the wrapped result. */
static cJSON *execute(devapi *d, const char *id, cJSON *input)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", id);
    cJSON_AddItemToObject(json, "input", input);
    rp_job_sink sink = {.progress = log_progress};
    rp_job *job = rp_job_new(json, &sink);
    sem_wait(&d->slots);
    pthread_mutex_lock(&d->lock);
    d->running++;
    pthread_mutex_unlock(&d->lock);
    cJSON *result = rp_job_execute(job, d->cfg, true);
    bool ok = !rp_json_truthy(cJSON_GetObjectItemCaseSensitive(result, "error"));
    pthread_mutex_lock(&d->lock);
    d->running--;
    if (ok) d->completed++;
    else d->failed++;
    pthread_mutex_unlock(&d->lock);
    sem_post(&d->slots);
    rp_job_free(job);
    return result;
}

/* /runsync and /status answer: COMPLETED with the inner output (omitted when
 * null or absent) or FAILED with the error. */
static cJSON *sync_answer(const char *id, const cJSON *result)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(result, "error");
    if (rp_json_truthy(err)) {
        char *msg = rp_json_str(err);
        cJSON *b = failed(id, msg);
        free(msg);
        return b;
    }
    cJSON *b = job_status(id, "COMPLETED");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(result, "output");
    if (out && !cJSON_IsNull(out)) cJSON_AddItemToObject(b, "output", cJSON_Duplicate(out, 1));
    return b;
}

/* /stream answer: [{"output": v}, ...] from the aggregated outputs. */
static cJSON *stream_answer(const char *id, const cJSON *result)
{
    if (rp_json_truthy(cJSON_GetObjectItemCaseSensitive(result, "error"))) return sync_answer(id, result);
    cJSON *b = job_status(id, "COMPLETED");
    cJSON *list = cJSON_AddArrayToObject(b, "stream");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(result, "output")) {
        cJSON *chunk = cJSON_CreateObject();
        cJSON_AddItemToObject(chunk, "output", cJSON_Duplicate(v, 1));
        cJSON_AddItemToArray(list, chunk);
    }
    return b;
}

/* --- webhooks ------------------------------------------------------------ */

typedef struct {
    devapi *d;
    char *url;
    char *payload;
} webhook;

static void *webhook_thread(void *arg)
{
    webhook *wh = arg;
    rp_http *http = rp_http_new();
    const char *headers[] = {"Content-Type: application/json", NULL};
    rp_http_request req = {.method = "POST", .url = wh->url, .headers = headers, .body = wh->payload,
                           .body_len = strlen(wh->payload), .timeout_ms = RP_WEBHOOK_TIMEOUT_MS};
    rp_http_response r;
    rp_http_perform(http, &req, &r);
    if (r.result != RP_HTTP_OK) rp_error("WEBHOOK | Request to %s failed: %s", wh->url, r.error);
    else if (r.status >= 400) rp_error("WEBHOOK | Request to %s failed: %ld %s", wh->url, r.status, r.reason);
    rp_http_response_free(&r);
    rp_http_free(http);
    pthread_mutex_lock(&wh->d->lock);
    wh->d->webhooks--;
    pthread_cond_broadcast(&wh->d->cond);
    pthread_mutex_unlock(&wh->d->lock);
    free(wh->url);
    free(wh->payload);
    free(wh);
    return NULL;
}

static void send_webhook(devapi *d, const char *url, const cJSON *payload)
{
    if (!url) return;
    webhook *wh = calloc(1, sizeof *wh);
    wh->d = d;
    wh->url = strdup(url);
    wh->payload = cJSON_PrintUnformatted(payload);
    pthread_mutex_lock(&d->lock);
    d->webhooks++;
    pthread_mutex_unlock(&d->lock);
    pthread_t t;
    if (pthread_create(&t, NULL, webhook_thread, wh) == 0) { pthread_detach(t); return; }
    rp_error("WEBHOOK | Request to %s failed: cannot start a thread", url);
    pthread_mutex_lock(&d->lock);
    d->webhooks--;
    pthread_mutex_unlock(&d->lock);
    free(wh->url);
    free(wh->payload);
    free(wh);
}

/* --- the job table ------------------------------------------------------- */

static void store_job(devapi *d, const char *id, const cJSON *input, const char *webhook_url)
{
    stored *j = calloc(1, sizeof *j);
    j->id = strdup(id);
    j->input = cJSON_Duplicate(input, 1);
    j->webhook = webhook_url ? strdup(webhook_url) : NULL;
    rp_tracker_add(d->tracker, id, NULL);
    pthread_mutex_lock(&d->lock);
    j->next = d->jobs;
    d->jobs = j;
    d->n_stored++;
    pthread_mutex_unlock(&d->lock);
}

/* Hands the stored job to exactly one caller (removed from the table). */
static stored *claim_job(devapi *d, const char *id)
{
    pthread_mutex_lock(&d->lock);
    stored **pp = &d->jobs;
    while (*pp && strcmp((*pp)->id, id)) pp = &(*pp)->next;
    stored *j = *pp;
    if (j) { *pp = j->next; d->n_stored--; }
    pthread_mutex_unlock(&d->lock);
    return j;
}

static void free_stored(stored *j)
{
    free(j->id);
    cJSON_Delete(j->input);
    free(j->webhook);
    free(j);
}

/* --- request bodies ------------------------------------------------------ */

/* {"input": {object}, "webhook": str?}; NULL plus a 422 list when invalid. */
static cJSON *parse_run_body(const request *rq, cJSON **details)
{
    *details = cJSON_CreateArray();
    cJSON *b = rp_json_parse_exact(rq->body, rq->len);
    if (!b) {
        add_detail(*details, "json_invalid", NULL, "JSON decode error", NULL);
        return NULL;
    }
    if (!cJSON_IsObject(b)) {
        add_detail(*details, "dict_type", NULL, "Input should be a valid dictionary", b);
        cJSON_Delete(b);
        return NULL;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
    const cJSON *hook = cJSON_GetObjectItemCaseSensitive(b, "webhook");
    if (!input) add_detail(*details, "missing", "input", "Field required", b);
    else if (!cJSON_IsObject(input)) add_detail(*details, "dict_type", "input", "Input should be a valid dictionary", input);
    if (hook && !cJSON_IsNull(hook) && !cJSON_IsString(hook))
        add_detail(*details, "string_type", "webhook", "Input should be a valid string", hook);
    if (cJSON_GetArraySize(*details)) {
        cJSON_Delete(b);
        return NULL;
    }
    cJSON_Delete(*details);
    *details = NULL;
    return b;
}

static const char *webhook_of(const cJSON *body)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(body, "webhook");
    return cJSON_IsString(h) ? h->valuestring : NULL;
}

static enum MHD_Result unprocessable(struct MHD_Connection *c, cJSON *details)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddItemToObject(b, "detail", details);
    return reply(c, MHD_HTTP_UNPROCESSABLE_CONTENT, b);
}

/* --- routes -------------------------------------------------------------- */

static void new_job_id(char out[48])
{
    char uuid[37];
    rp_uuid4(uuid);
    snprintf(out, 48, "test-%s", uuid);
}

static enum MHD_Result route_run(devapi *d, struct MHD_Connection *c, const request *rq)
{
    cJSON *details;
    cJSON *b = parse_run_body(rq, &details);
    if (!b) return unprocessable(c, details);
    char id[48];
    new_job_id(id);
    store_job(d, id, cJSON_GetObjectItemCaseSensitive(b, "input"), webhook_of(b));
    cJSON_Delete(b);
    return reply(c, MHD_HTTP_OK, job_status(id, "IN_PROGRESS"));
}

static enum MHD_Result route_runsync(devapi *d, struct MHD_Connection *c, const request *rq)
{
    cJSON *details;
    cJSON *b = parse_run_body(rq, &details);
    if (!b) return unprocessable(c, details);
    char id[48];
    new_job_id(id);
    rp_tracker_add(d->tracker, id, NULL);
    cJSON *result = execute(d, id, cJSON_DetachItemFromObjectCaseSensitive(b, "input"));
    rp_tracker_remove(d->tracker, id, NULL);
    cJSON *answer = sync_answer(id, result);
    if (!cJSON_GetObjectItemCaseSensitive(answer, "error")) send_webhook(d, webhook_of(b), result);
    cJSON_Delete(result);
    cJSON_Delete(b);
    return reply(c, MHD_HTTP_OK, answer);
}

static enum MHD_Result route_status(devapi *d, struct MHD_Connection *c, const char *id, bool stream)
{
    if (stream && !d->cfg->generator)
        return reply(c, MHD_HTTP_OK, failed(id, "Stream not supported, handler must be a generator."));
    stored *j = claim_job(d, id);
    if (!j) return reply(c, MHD_HTTP_OK, failed(id, "Job ID not found"));
    cJSON *result = execute(d, j->id, j->input);
    j->input = NULL;
    rp_tracker_remove(d->tracker, j->id, NULL);
    cJSON *answer = stream ? stream_answer(j->id, result) : sync_answer(j->id, result);
    if (!cJSON_GetObjectItemCaseSensitive(answer, "error"))
        send_webhook(d, j->webhook, stream ? cJSON_GetObjectItemCaseSensitive(answer, "stream") : result);
    cJSON_Delete(result);
    free_stored(j);
    return reply(c, MHD_HTTP_OK, answer);
}

/* POST /<endpoint>/realtime: {"id": str, "input": any but null}. */
static enum MHD_Result route_realtime(devapi *d, struct MHD_Connection *c, const request *rq)
{
    cJSON *details = cJSON_CreateArray();
    cJSON *b = rp_json_parse_exact(rq->body, rq->len);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(b, "input");
    if (!cJSON_IsObject(b)) add_detail(details, b ? "dict_type" : "json_invalid", NULL,
                                       b ? "Input should be a valid dictionary" : "JSON decode error", NULL);
    else {
        if (!cJSON_IsString(id)) add_detail(details, id ? "string_type" : "missing", "id",
                                            id ? "Input should be a valid string" : "Field required", id);
        if (!input || cJSON_IsNull(input)) add_detail(details, "missing", "input", "Field required", NULL);
    }
    if (cJSON_GetArraySize(details)) {
        cJSON_Delete(b);
        return unprocessable(c, details);
    }
    cJSON_Delete(details);
    rp_tracker_add(d->tracker, id->valuestring, NULL);
    cJSON *result = execute(d, id->valuestring, cJSON_DetachItemFromObjectCaseSensitive(b, "input"));
    rp_tracker_remove(d->tracker, id->valuestring, NULL);
    cJSON_Delete(b);
    return reply(c, MHD_HTTP_OK, result);
}

static enum MHD_Result route_health(devapi *d, struct MHD_Connection *c)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "status", "ok");
    cJSON_AddStringToObject(b, "mode", d->realtime ? "realtime" : "dev_api");
    cJSON *jobs = cJSON_AddObjectToObject(b, "jobs");
    pthread_mutex_lock(&d->lock);
    cJSON_AddNumberToObject(jobs, "inQueue", d->n_stored);
    cJSON_AddNumberToObject(jobs, "inProgress", d->running);
    cJSON_AddNumberToObject(jobs, "completed", d->completed);
    cJSON_AddNumberToObject(jobs, "failed", d->failed);
    pthread_mutex_unlock(&d->lock);
    cJSON_AddStringToObject(b, "runpod_version", RP_SDK_VERSION);
    return reply(c, MHD_HTTP_OK, b);
}

static enum MHD_Result dispatch(devapi *d, struct MHD_Connection *c, const char *url, const char *method,
                                const request *rq)
{
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    if (!strcmp(url, "/health")) return get ? route_health(d, c) : reply_detail(c, 405, "Method Not Allowed");
    if (!strcmp(url, "/run")) return post ? route_run(d, c, rq) : reply_detail(c, 405, "Method Not Allowed");
    if (!strcmp(url, "/runsync")) return post ? route_runsync(d, c, rq) : reply_detail(c, 405, "Method Not Allowed");
    if (d->realtime_path && !strcmp(url, d->realtime_path))
        return post ? route_realtime(d, c, rq) : reply_detail(c, 405, "Method Not Allowed");
    bool status = !strncmp(url, "/status/", 8), stream = !strncmp(url, "/stream/", 8);
    if ((status || stream) && url[8] && !strchr(url + 8, '/'))
        return (post || get) ? route_status(d, c, url + 8, stream) : reply_detail(c, 405, "Method Not Allowed");
    return reply_detail(c, MHD_HTTP_NOT_FOUND, "Not Found");
}

/* --- libmicrohttpd glue -------------------------------------------------- */

static bool declared_too_large(struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return cl && strtoull(cl, NULL, 10) > RP_DEVAPI_MAX_BODY;
}

static void append_body(request *rq, const char *data, size_t n)
{
    if (rq->too_large || rq->len + n > RP_DEVAPI_MAX_BODY) {
        rq->too_large = true;
        return;
    }
    if (rq->len + n + 1 > rq->cap) {
        rq->cap = (rq->len + n + 1) * 2;
        rq->body = realloc(rq->body, rq->cap);
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
    rq->body[rq->len] = 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    devapi *d = cls;
    request *rq = *con_cls;
    if (!rq) {
        *con_cls = rq = calloc(1, sizeof *rq);
        if (declared_too_large(c)) return reply_detail(c, MHD_HTTP_CONTENT_TOO_LARGE, "Request body too large");
        return MHD_YES;
    }
    if (*upload_size) {
        append_body(rq, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_large) return reply_detail(c, MHD_HTTP_CONTENT_TOO_LARGE, "Request body too large");
    return dispatch(d, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;
    if (!rq) return;
    free(rq->body);
    free(rq);
    *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    rp_vlog(RP_LOG_DEBUG, NULL, fmt, ap);
}

static struct MHD_Daemon *listen_on(devapi *d, const char *host, int port)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *list = NULL;
    if (getaddrinfo(host, service, &hints, &list) != 0 || !list) {
        rp_error("Cannot resolve API host %s.", host);
        return NULL;
    }
    struct addrinfo *ai = list; /* an IPv4 address when there is one ("localhost") */
    for (struct addrinfo *p = list; p; p = p->ai_next)
        if (p->ai_family == AF_INET) { ai = p; break; }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, d,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, d,
        MHD_OPTION_CONNECTION_LIMIT, 256u,
        MHD_OPTION_CONNECTION_TIMEOUT, 120u,
        MHD_OPTION_END);
    freeaddrinfo(list);
    return daemon;
}

static void wait_for_webhooks(devapi *d)
{
    pthread_mutex_lock(&d->lock);
    while (d->webhooks > 0) pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

static void free_devapi(devapi *d)
{
    for (stored *j = d->jobs, *n; j; j = n) { n = j->next; free_stored(j); }
    rp_tracker_free(d->tracker);
    sem_destroy(&d->slots);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d->realtime_path);
}

int rp_devapi_run(const rp_config *cfg, const rp_settings *s, const char *host, int port,
                  int concurrency, bool realtime, rp_event *shutdown)
{
    devapi d = {.cfg = cfg, .s = s, .realtime = realtime, .tracker = rp_tracker_new()};
    if (s->endpoint_id && asprintf(&d.realtime_path, "/%s/realtime", s->endpoint_id) < 0) d.realtime_path = NULL;
    sem_init(&d.slots, 0, (unsigned)(concurrency > 0 ? concurrency : 1));
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    struct MHD_Daemon *daemon = listen_on(&d, host, port);
    if (!daemon) {
        rp_error("Cannot listen on %s:%d.", host, port);
        free_devapi(&d);
        return 1;
    }
    rp_info("Dev API listening on http://%s:%d", host, port);
    rp_heartbeat *hb = rp_heartbeat_start(s, d.tracker);
    while (!rp_event_wait(shutdown, 60000)) {}
    rp_info("Shutting down the API server.");
    MHD_stop_daemon(daemon);
    wait_for_webhooks(&d);
    rp_heartbeat_stop(hb);
    free_devapi(&d);
    return 0;
}
