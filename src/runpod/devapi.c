/* Local development API (see devapi.h). Matched: runpod-python 1.12.0
 * rp_fastapi.WorkerAPI (_sim_run, _sim_runsync, _sim_status, _sim_stream,
 * _realtime, _send_webhook) and, for the public paths, the client's
 * runpod/endpoint/runner.py (RunPodClient, Job, Endpoint).
 *
 * One libmicrohttpd polling thread reads every connection (an idle one
 * costs a socket, not a thread) and answers what needs no handler call at
 * once; a request that runs a job suspends its connection, the job runs on
 * a thread of its own, and the connection resumes with the answer. */
#include "runpod/devapi.h"

#include <curl/curl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "image/fetch.h" /* the SSRF policy of image URLs, for webhooks */
#include "runpod/heartbeat.h"
#include "runpod/http.h"
#include "runpod/job.h"
#include "runpod/jobstore.h"
#include "runpod/log.h"
#include "runpod/take.h"
#include "runpod/tracker.h"
#include "runpod/wrap.h"

typedef struct {
    const rp_config *cfg;
    const rp_settings *s;
    bool realtime;
    char *realtime_path;  /* "/<endpoint id>/realtime" or NULL */
    rp_tracker *tracker;  /* ids reported by the heartbeat; running jobs, for /cancel */
    rp_jobstore *jobs;    /* jobs stored by /run */
    bool private_webhooks; /* RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS */
    sem_t slots;          /* concurrent handler calls */
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t cond;
    int running, completed, failed, webhooks, in_flight;
} devapi;

typedef struct {
    char *body;
    size_t len, cap;
    bool too_large, no_memory;
    bool deferred;   /* a job runs for this request off the polling thread */
    bool answered;   /* ... and its answer is here */
    unsigned code;
    char *answer;
} request;

static double now_s(void) { return (double)rp_now_ms() / 1000.0; }

static void count(devapi *d, int *counter, int delta)
{
    pthread_mutex_lock(&d->lock);
    *counter += delta;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
}

/* --- responses ----------------------------------------------------------- */

/* Queues `text` (owned; NULL after a failed allocation gives a 500). */
static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, char *text)
{
    if (!text) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        text = strdup("{\"detail\":\"Internal Server Error\"}");
        if (!text) return MHD_NO; /* closes the connection */
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, cJSON *body)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL; /* NULL: out of memory */
    cJSON_Delete(body);
    return reply_text(c, status, text);
}

static enum MHD_Result reply_detail(struct MHD_Connection *c, unsigned status, const char *detail)
{
    cJSON *b = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(b, "detail", detail)) b = (cJSON_Delete(b), NULL);
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
    if (!cJSON_AddStringToObject(b, "id", id) || !cJSON_AddStringToObject(b, "status", status)) {
        cJSON_Delete(b);
        return NULL;
    }
    return b;
}

/* Stream answers always carry "stream" (empty when nothing is new): the
 * SDK client's Job.stream() reads it whatever the status. */
static cJSON *with_empty_stream(cJSON *b)
{
    if (b && !cJSON_AddArrayToObject(b, "stream")) b = (cJSON_Delete(b), NULL);
    return b;
}

static cJSON *failed(const char *id, const char *error, bool stream)
{
    cJSON *b = job_status(id, "FAILED");
    if (b && !cJSON_AddStringToObject(b, "error", error)) b = (cJSON_Delete(b), NULL);
    return stream ? with_empty_stream(b) : b;
}

/* --- running jobs -------------------------------------------------------- */

static void log_progress(rp_job *job, cJSON *progress, void *ctx)
{
    rp_log_json(RP_LOG_DEBUG, job->id, "Progress update: ", progress);
    cJSON_Delete(progress);
}

/* Runs the handler on {"id", "input"} (input owned) with every yielded value
 * collected; returns the wrapped result (NULL when out of memory) and
 * whether the job was cancelled (/cancel) while it ran. */
static cJSON *execute(devapi *d, const char *id, cJSON *input, bool *cancelled)
{
    *cancelled = false;
    cJSON *json = cJSON_CreateObject();
    if (!cJSON_AddStringToObject(json, "id", id) || !cJSON_AddItemToObject(json, "input", input)) {
        cJSON_Delete(json);
        cJSON_Delete(input);
        return NULL;
    }
    rp_job_sink sink = {.progress = log_progress};
    rp_job *job = rp_job_new(json, &sink);
    if (!job) {
        cJSON_Delete(json);
        return NULL;
    }
    rp_tracker_add(d->tracker, id, job);
    if (rp_jobstore_cancel_requested(d->jobs, id)) rp_job_cancel(job); /* cancelled between claim and here */
    sem_wait(&d->slots);
    count(d, &d->running, 1);
    cJSON *result = rp_job_execute(job, d->cfg, true);
    bool ok = result && !rp_json_truthy(cJSON_GetObjectItemCaseSensitive(result, "error"));
    count(d, &d->running, -1);
    count(d, ok ? &d->completed : &d->failed, 1);
    sem_post(&d->slots);
    *cancelled = rp_job_cancelled(job);
    rp_tracker_remove(d->tracker, id, job);
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
        cJSON *b = msg ? failed(id, msg, false) : NULL;
        free(msg);
        return b;
    }
    cJSON *b = job_status(id, "COMPLETED");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(result, "output");
    if (b && out && !cJSON_IsNull(out)) cJSON_AddItemToObject(b, "output", cJSON_Duplicate(out, 1));
    return b;
}

/* /stream answer: [{"output": v}, ...] from the aggregated outputs. */
static cJSON *stream_answer(const char *id, const cJSON *result)
{
    if (rp_json_truthy(cJSON_GetObjectItemCaseSensitive(result, "error")))
        return with_empty_stream(sync_answer(id, result));
    cJSON *b = job_status(id, "COMPLETED");
    cJSON *list = b ? cJSON_AddArrayToObject(b, "stream") : NULL;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(result, "output")) {
        cJSON *chunk = cJSON_CreateObject();
        cJSON_AddItemToObject(chunk, "output", cJSON_Duplicate(v, 1));
        cJSON_AddItemToArray(list, chunk);
    }
    return b;
}

/* --- webhooks ------------------------------------------------------------ */

/* "host:port" of an absolute http(s) URL (what the log may name: the path
 * and query of a webhook can carry tokens); false for any other URL. */
static bool webhook_host(const char *url, char *host, size_t n)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *name = NULL, *port = NULL;
    bool ok = u && !curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) &&
              !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
              (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https")) &&
              !curl_url_get(u, CURLUPART_HOST, &name, 0) && name[0] &&
              !curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
    if (ok) snprintf(host, n, "%s:%s", name, port);
    curl_free(scheme);
    curl_free(name);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

typedef struct {
    devapi *d;
    char *url;
    char *payload;
    char host[320];
    char blocked[64]; /* the first address the policy refused */
} webhook;

/* The image-URL SSRF policy (image/fetch.h): public addresses only, unless
 * RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS. */
static int webhook_address_ok(const struct sockaddr *addr, void *ctx)
{
    webhook *wh = ctx;
    if (wh->d->private_webhooks || img_fetch_address_is_public(addr)) return 1;
    if (!wh->blocked[0]) img_fetch_address_text(addr, wh->blocked, sizeof wh->blocked);
    return 0;
}

static void free_webhook(webhook *wh)
{
    free(wh->url);
    free(wh->payload);
    free(wh);
}

static void *webhook_thread(void *arg)
{
    webhook *wh = arg;
    rp_http *http = rp_http_new();
    const char *headers[] = {"Content-Type: application/json", NULL};
    rp_http_request req = {.method = "POST", .url = wh->url, .headers = headers, .body = wh->payload,
                           .body_len = strlen(wh->payload), .timeout_ms = RP_WEBHOOK_TIMEOUT_MS,
                           .address_ok = webhook_address_ok, .address_ctx = wh};
    rp_http_response r;
    if (!http) rp_error("WEBHOOK | Request to %s failed: out of memory", wh->host);
    else if (rp_http_perform(http, &req, &r) != RP_HTTP_OK && wh->blocked[0])
        rp_error("WEBHOOK | Request to %s failed: it resolves to the non-public address %s (set "
                 "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=1 to allow)", wh->host, wh->blocked);
    else if (r.result != RP_HTTP_OK) rp_error("WEBHOOK | Request to %s failed: %s", wh->host, r.error);
    else if (r.status >= 400) rp_error("WEBHOOK | Request to %s failed: %ld %s", wh->host, r.status, r.reason);
    if (http) rp_http_response_free(&r);
    rp_http_free(http);
    count(wh->d, &wh->d->webhooks, -1);
    free_webhook(wh);
    return NULL;
}

/* POSTs the payload to the job's webhook on a thread of its own (no retry). */
static void send_webhook(devapi *d, const char *url, const cJSON *payload)
{
    if (!url) return;
    webhook *wh = calloc(1, sizeof *wh);
    if (!wh || !(wh->url = strdup(url)) || !(wh->payload = cJSON_PrintUnformatted(payload))) {
        rp_error("WEBHOOK | Request failed: out of memory");
        if (wh) free_webhook(wh);
        return;
    }
    wh->d = d;
    if (!webhook_host(url, wh->host, sizeof wh->host)) snprintf(wh->host, sizeof wh->host, "(not an http URL)");
    count(d, &d->webhooks, 1);
    pthread_t t;
    if (pthread_create(&t, NULL, webhook_thread, wh) == 0) {
        pthread_detach(t);
        return;
    }
    rp_error("WEBHOOK | Request to %s failed: cannot start a thread", wh->host);
    count(d, &d->webhooks, -1);
    free_webhook(wh);
}

/* --- jobs off the polling thread ------------------------------------------ */

typedef enum { RUN_SYNC, RUN_POLLED, RUN_STREAMED, RUN_REALTIME } run_kind;

typedef struct {
    devapi *d;
    struct MHD_Connection *c;
    request *rq;
    run_kind kind;
    char *id;
    cJSON *input; /* owned until execute takes it */
    char *webhook;
} run;

/* The answer of a finished run, per route; sends the webhook of a success
 * and keeps the answer of a stored job for later polls. */
static cJSON *answer_run(run *r, const cJSON *result, bool cancelled)
{
    if (r->kind == RUN_REALTIME) return result ? cJSON_Duplicate(result, 1) : NULL;
    bool stream = r->kind == RUN_STREAMED;
    cJSON *sync = cancelled ? job_status(r->id, "CANCELLED")
                : result    ? sync_answer(r->id, result)
                            : failed(r->id, "Out of memory while running the job.", false);
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sync, "status"));
    bool completed = status && !strcmp(status, "COMPLETED");
    cJSON *streamed = stream && completed ? stream_answer(r->id, result) : NULL;
    if (completed) send_webhook(r->d, r->webhook, stream ? cJSON_GetObjectItemCaseSensitive(streamed, "stream") : result);
    if (r->kind != RUN_SYNC) {
        char *text = sync ? cJSON_PrintUnformatted(sync) : NULL;
        rp_jobstore_finish(r->d->jobs, r->id, status ? status : "FAILED", text, now_s());
        free(text);
    }
    if (!stream) return sync;
    if (!completed) return with_empty_stream(sync);
    cJSON_Delete(sync);
    return streamed;
}

/* Hands the answer to the suspended connection and resumes it; r and the
 * request are not touched after that (the polling thread frees them). */
static void finish_run(run *r, char *text)
{
    devapi *d = r->d;
    r->rq->code = MHD_HTTP_OK;
    r->rq->answer = text;
    r->rq->answered = true;
    struct MHD_Connection *c = r->c;
    free(r->id);
    free(r->webhook);
    cJSON_Delete(r->input);
    free(r);
    MHD_resume_connection(c);
    count(d, &d->in_flight, -1);
}

static void *run_thread(void *arg)
{
    run *r = arg;
    bool cancelled;
    cJSON *result = execute(r->d, r->id, r->input, &cancelled);
    r->input = NULL;
    cJSON *answer = answer_run(r, result, cancelled);
    char *text = answer ? cJSON_PrintUnformatted(answer) : NULL;
    cJSON_Delete(answer);
    cJSON_Delete(result);
    finish_run(r, text);
    return NULL;
}

/* Runs a job for this request on a thread of its own (input and webhook
 * owned); the connection waits suspended. */
static enum MHD_Result start_run(devapi *d, struct MHD_Connection *c, request *rq, run_kind kind, const char *id,
                                 cJSON *input, char *webhook)
{
    run *r = calloc(1, sizeof *r);
    char *rid = strdup(id);
    if (!r || !rid || !input) {
        free(r), free(rid), free(webhook);
        cJSON_Delete(input);
        if (kind == RUN_POLLED || kind == RUN_STREAMED) rp_jobstore_finish(d->jobs, id, "FAILED", NULL, now_s());
        return reply_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Out of memory");
    }
    *r = (run){.d = d, .c = c, .rq = rq, .kind = kind, .id = rid, .input = input, .webhook = webhook};
    rq->deferred = true;
    count(d, &d->in_flight, 1);
    MHD_suspend_connection(c); /* before the thread can resume it */
    pthread_t t;
    if (pthread_create(&t, NULL, run_thread, r) == 0) {
        pthread_detach(t);
        return MHD_YES;
    }
    rp_error("Cannot start a thread for job %s.", id);
    if (kind == RUN_POLLED || kind == RUN_STREAMED) rp_jobstore_finish(d->jobs, id, "FAILED", NULL, now_s());
    cJSON *b = failed(id, "Cannot start a thread for the job.", kind == RUN_STREAMED);
    finish_run(r, b ? cJSON_PrintUnformatted(b) : NULL);
    cJSON_Delete(b);
    return MHD_YES;
}

/* --- request bodies ------------------------------------------------------ */

/* {"input": {object}, "webhook": http(s) URL?}; NULL plus a 422 list when
 * invalid. */
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
    char host[320];
    if (!input) add_detail(*details, "missing", "input", "Field required", b);
    else if (!cJSON_IsObject(input)) add_detail(*details, "dict_type", "input", "Input should be a valid dictionary", input);
    if (hook && !cJSON_IsNull(hook) && !cJSON_IsString(hook))
        add_detail(*details, "string_type", "webhook", "Input should be a valid string", hook);
    else if (cJSON_IsString(hook) && ((hook->type & RP_JSON_CUT_VALUE) || !webhook_host(hook->valuestring, host, sizeof host)))
        add_detail(*details, "url_parsing", "webhook", "Input should be an absolute http or https URL", NULL);
    if (cJSON_GetArraySize(*details) || !*details) {
        cJSON_Delete(b);
        return NULL;
    }
    cJSON_Delete(*details);
    *details = NULL;
    return b;
}

/* A copy of the body's webhook URL (NULL when none); false when out of memory. */
static bool webhook_of(const cJSON *body, char **url)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(body, "webhook");
    *url = cJSON_IsString(h) ? strdup(h->valuestring) : NULL;
    return !cJSON_IsString(h) || *url;
}

static enum MHD_Result unprocessable(struct MHD_Connection *c, cJSON *details)
{
    cJSON *b = cJSON_CreateObject();
    if (!details || !cJSON_AddItemToObject(b, "detail", details)) {
        cJSON_Delete(details);
        cJSON_Delete(b);
        return reply_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Out of memory");
    }
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
    char id[48], why[256];
    new_job_id(id);
    char *input = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(b, "input"));
    const cJSON *hook = cJSON_GetObjectItemCaseSensitive(b, "webhook");
    bool full = false;
    rp_tracker_add(d->tracker, id, NULL); /* before a poll can claim it */
    int rc = input ? rp_jobstore_put(d->jobs, id, input, cJSON_GetStringValue(hook), now_s(), &full, why, sizeof why)
                   : -1;
    free(input);
    cJSON_Delete(b);
    if (rc) {
        rp_tracker_remove(d->tracker, id, NULL);
        return reply_detail(c, full ? MHD_HTTP_TOO_MANY_REQUESTS : MHD_HTTP_SERVICE_UNAVAILABLE,
                            full ? why : "Out of memory");
    }
    return reply(c, MHD_HTTP_OK, job_status(id, "IN_PROGRESS"));
}

static enum MHD_Result route_runsync(devapi *d, struct MHD_Connection *c, request *rq)
{
    cJSON *details;
    cJSON *b = parse_run_body(rq, &details);
    if (!b) return unprocessable(c, details);
    char id[48];
    new_job_id(id);
    cJSON *input = cJSON_DetachItemFromObjectCaseSensitive(b, "input");
    char *hook;
    bool ok = webhook_of(b, &hook);
    cJSON_Delete(b);
    return start_run(d, c, rq, RUN_SYNC, id, ok ? input : (cJSON_Delete(input), NULL), hook);
}

/* POST|GET /status/{id} and /stream/{id}: a stored job runs now; a job that
 * runs already is IN_PROGRESS; a finished one gives its kept answer. */
static enum MHD_Result route_status(devapi *d, struct MHD_Connection *c, request *rq, const char *id, bool stream)
{
    if (stream && !d->cfg->generator)
        return reply(c, MHD_HTTP_OK, failed(id, "Stream not supported, handler must be a generator.", true));
    char *input, *hook, *status, *answer;
    rp_job_state st = rp_jobstore_claim(d->jobs, id, &input, &hook, &status, &answer);
    if (st == RP_JOB_UNKNOWN) return reply(c, MHD_HTTP_OK, failed(id, "Job ID not found", stream));
    if (st == RP_JOB_RUNNING) {
        cJSON *b = job_status(id, "IN_PROGRESS");
        return reply(c, MHD_HTTP_OK, stream ? with_empty_stream(b) : b);
    }
    if (st == RP_JOB_DONE) { /* the answer kept, or only its status when it did not fit */
        enum MHD_Result ret = !stream && answer ? reply_text(c, MHD_HTTP_OK, answer)
                            : reply(c, MHD_HTTP_OK, stream ? with_empty_stream(job_status(id, status))
                                                           : job_status(id, status));
        if (stream || !answer) free(answer);
        free(status);
        return ret;
    }
    rp_tracker_remove(d->tracker, id, NULL);
    cJSON *parsed = cJSON_Parse(input); /* our own compact text */
    free(input);
    return start_run(d, c, rq, stream ? RUN_STREAMED : RUN_POLLED, id, parsed, hook);
}

/* POST /cancel/{id}: a stored job is dropped (later polls say CANCELLED),
 * a running one is told to stop (its handler polls the flag), and both
 * answer CANCELLED; a finished job answers its status. */
static enum MHD_Result route_cancel(devapi *d, struct MHD_Connection *c, const char *id)
{
    cJSON *cancelled = job_status(id, "CANCELLED");
    char *text = cancelled ? cJSON_PrintUnformatted(cancelled) : NULL, *status = NULL;
    cJSON_Delete(cancelled);
    if (!text) return reply_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Out of memory");
    rp_job_state st = rp_jobstore_cancel(d->jobs, id, text, now_s(), &status);
    bool stopped = st == RP_JOB_QUEUED;
    if (st == RP_JOB_QUEUED) rp_tracker_remove(d->tracker, id, NULL);
    else if (st == RP_JOB_RUNNING || st == RP_JOB_UNKNOWN) /* a stored job, or a /runsync or realtime one */
        stopped = rp_tracker_cancel(d->tracker, id) || st == RP_JOB_RUNNING;
    if (stopped) return reply_text(c, MHD_HTTP_OK, text);
    free(text);
    cJSON *b = st == RP_JOB_DONE ? job_status(id, status) : failed(id, "Job ID not found", false);
    free(status);
    return reply(c, MHD_HTTP_OK, b);
}

/* POST /<endpoint>/realtime: {"id": str, "input": any but null}. */
static enum MHD_Result route_realtime(devapi *d, struct MHD_Connection *c, request *rq)
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
    if (cJSON_GetArraySize(details) || !details) {
        cJSON_Delete(b);
        return unprocessable(c, details);
    }
    cJSON_Delete(details);
    enum MHD_Result ret = start_run(d, c, rq, RUN_REALTIME, id->valuestring,
                                    cJSON_DetachItemFromObjectCaseSensitive(b, "input"), NULL);
    cJSON_Delete(b);
    return ret;
}

static enum MHD_Result route_health(devapi *d, struct MHD_Connection *c)
{
    int queued, running_stored, done;
    size_t bytes;
    rp_jobstore_counts(d->jobs, &queued, &running_stored, &done, &bytes);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "status", "ok");
    cJSON_AddStringToObject(b, "mode", d->realtime ? "realtime" : "dev_api");
    cJSON *jobs = cJSON_AddObjectToObject(b, "jobs");
    pthread_mutex_lock(&d->lock);
    cJSON_AddNumberToObject(jobs, "inQueue", queued);
    cJSON_AddNumberToObject(jobs, "inProgress", d->running);
    cJSON_AddNumberToObject(jobs, "completed", d->completed);
    cJSON_AddNumberToObject(jobs, "failed", d->failed);
    pthread_mutex_unlock(&d->lock);
    cJSON_AddStringToObject(b, "runpod_version", RP_SDK_VERSION);
    return reply(c, MHD_HTTP_OK, jobs ? b : (cJSON_Delete(b), NULL));
}

/* "/<route>/<id>" with a non-empty id of one segment, or NULL. */
static const char *id_after(const char *url, const char *route)
{
    size_t n = strlen(route);
    if (strncmp(url, route, n) || !url[n] || strchr(url + n, '/')) return NULL;
    return url + n;
}

static enum MHD_Result not_allowed(struct MHD_Connection *c) { return reply_detail(c, 405, "Method Not Allowed"); }

/* The short routes: /run, /runsync, /status/{id}, /stream/{id},
 * /cancel/{id}, /health. MHD_NO when url is none of them. */
static enum MHD_Result short_route(devapi *d, struct MHD_Connection *c, const char *url, const char *method,
                                   request *rq, bool *found)
{
    bool post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    const char *id;
    *found = true;
    if (!strcmp(url, "/health")) return get ? route_health(d, c) : not_allowed(c);
    if (!strcmp(url, "/run")) return post ? route_run(d, c, rq) : not_allowed(c);
    if (!strcmp(url, "/runsync")) return post ? route_runsync(d, c, rq) : not_allowed(c);
    if ((id = id_after(url, "/status/"))) return post || get ? route_status(d, c, rq, id, false) : not_allowed(c);
    if ((id = id_after(url, "/stream/"))) return post || get ? route_status(d, c, rq, id, true) : not_allowed(c);
    if ((id = id_after(url, "/cancel/"))) return post ? route_cancel(d, c, id) : not_allowed(c);
    *found = false;
    return MHD_NO;
}

/* RunPod's public paths as the SDK client builds them from
 * runpod.endpoint_url_base: "{base}/{endpoint id}/{route}", base usually
 * ending in "/v2". The route part, or NULL: the endpoint id is one segment,
 * and RUNPOD_ENDPOINT_ID when that is set. */
static const char *public_route(const devapi *d, const char *url)
{
    if (!strncmp(url, "/v2/", 4)) url += 3;
    const char *ep = url + 1, *slash = url[0] == '/' ? strchr(ep, '/') : NULL;
    if (!slash || slash == ep) return NULL;
    const char *want = d->s->endpoint_id;
    if (want && (strlen(want) != (size_t)(slash - ep) || strncmp(want, ep, (size_t)(slash - ep)))) return NULL;
    return slash;
}

static enum MHD_Result dispatch(devapi *d, struct MHD_Connection *c, const char *url, const char *method,
                                request *rq)
{
    bool found;
    enum MHD_Result ret = short_route(d, c, url, method, rq, &found);
    if (found) return ret;
    if (d->realtime_path && !strcmp(url, d->realtime_path))
        return !strcmp(method, "POST") ? route_realtime(d, c, rq) : not_allowed(c);
    const char *route = public_route(d, url);
    if (route) ret = short_route(d, c, route, method, rq, &found);
    return route && found ? ret : reply_detail(c, MHD_HTTP_NOT_FOUND, "Not Found");
}

/* --- libmicrohttpd glue -------------------------------------------------- */

static bool declared_too_large(struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return cl && strtoull(cl, NULL, 10) > RP_DEVAPI_MAX_BODY;
}

static void append_body(request *rq, const char *data, size_t n)
{
    if (rq->too_large || rq->no_memory) return;
    if (rq->len + n > RP_DEVAPI_MAX_BODY) {
        rq->too_large = true;
        return;
    }
    if (rq->len + n + 1 > rq->cap) {
        size_t cap = (rq->len + n + 1) * 2;
        char *grown = realloc(rq->body, cap);
        if (!grown) {
            rq->no_memory = true;
            return;
        }
        rq->body = grown, rq->cap = cap;
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
        if (!(*con_cls = rq = calloc(1, sizeof *rq))) return MHD_NO;
        if (declared_too_large(c)) return reply_detail(c, MHD_HTTP_CONTENT_TOO_LARGE, "Request body too large");
        return MHD_YES;
    }
    if (rq->deferred) { /* resumed: the job's answer is here */
        if (!rq->answered) return MHD_YES;
        rq->deferred = false;
        char *text = rq->answer;
        rq->answer = NULL;
        return reply_text(c, rq->code, text);
    }
    if (*upload_size) {
        append_body(rq, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (rq->too_large) return reply_detail(c, MHD_HTTP_CONTENT_TOO_LARGE, "Request body too large");
    if (rq->no_memory) return reply_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "Out of memory");
    return dispatch(d, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    request *rq = *con_cls;
    if (!rq) return;
    free(rq->body);
    free(rq->answer);
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
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *daemon = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, d,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, d,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, d,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)RP_DEVAPI_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)RP_DEVAPI_IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    freeaddrinfo(list);
    return daemon;
}

static void wait_until_zero(devapi *d, int *counter)
{
    pthread_mutex_lock(&d->lock);
    while (*counter > 0) pthread_cond_wait(&d->cond, &d->lock);
    pthread_mutex_unlock(&d->lock);
}

/* No new connections; the jobs that run finish and resume their
 * connections (MHD must not be stopped with one suspended), which get up
 * to a second to take their answers. */
static void stop_serving(devapi *d, struct MHD_Daemon *daemon)
{
    MHD_socket listener = MHD_quiesce_daemon(daemon);
    if (listener != MHD_INVALID_SOCKET) close(listener);
    wait_until_zero(d, &d->in_flight);
    for (int i = 0; i < 100; i++) {
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
        if (!info || info->num_connections == 0) break;
        usleep(10000);
    }
    MHD_stop_daemon(daemon);
}

static void forget_dropped(const char *id, void *ctx)
{
    devapi *d = ctx;
    rp_tracker_remove(d->tracker, id, NULL);
    rp_debug("Job %s was never polled; dropped after %d s.", id, RP_DEVAPI_JOB_TTL_S);
}

static void free_devapi(devapi *d)
{
    rp_jobstore_free(d->jobs);
    rp_tracker_free(d->tracker);
    sem_destroy(&d->slots);
    pthread_cond_destroy(&d->cond);
    pthread_mutex_destroy(&d->lock);
    free(d->realtime_path);
}

int rp_devapi_run(const rp_config *cfg, const rp_settings *s, const char *host, int port,
                  int concurrency, bool realtime, rp_event *shutdown)
{
    img_fetch_opts policy;
    img_fetch_opts_default(&policy);
    devapi d = {.cfg = cfg, .s = s, .realtime = realtime, .tracker = rp_tracker_new(),
                .jobs = rp_jobstore_new(RP_DEVAPI_MAX_JOBS, RP_DEVAPI_MAX_STORED_BYTES, RP_DEVAPI_JOB_TTL_S),
                .private_webhooks = policy.allow_private};
    if (s->endpoint_id && asprintf(&d.realtime_path, "/%s/realtime", s->endpoint_id) < 0) d.realtime_path = NULL;
    sem_init(&d.slots, 0, (unsigned)(concurrency > 0 ? concurrency : 1));
    pthread_mutex_init(&d.lock, NULL);
    pthread_cond_init(&d.cond, NULL);
    struct MHD_Daemon *daemon = d.tracker && d.jobs ? listen_on(&d, host, port) : NULL;
    if (!daemon) {
        rp_error("Cannot listen on %s:%d.", host, port);
        free_devapi(&d);
        return 1;
    }
    rp_info("Dev API listening on http://%s:%d", host, port);
    rp_heartbeat *hb = rp_heartbeat_start(s, d.tracker);
    while (!rp_event_wait(shutdown, RP_DEVAPI_SWEEP_MS)) rp_jobstore_expire(d.jobs, now_s(), forget_dropped, &d);
    rp_info("Shutting down the API server.");
    stop_serving(&d, daemon);
    wait_until_zero(&d, &d.webhooks);
    rp_heartbeat_stop(hb);
    free_devapi(&d);
    return 0;
}
