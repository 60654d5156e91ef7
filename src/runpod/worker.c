/* Production queue worker (see worker.h). Matched: runpod-python 1.12.0
 * rp_scale.JobScaler (get_jobs, run_jobs, handle_job) and rp_job.handle_job;
 * the threads replace its asyncio tasks. */
#include "runpod/worker.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runpod/backoff.h"
#include "runpod/heartbeat.h"
#include "runpod/job.h"
#include "runpod/log.h"
#include "runpod/post.h"
#include "runpod/progress.h"
#include "runpod/stop.h"
#include "runpod/tracker.h"
#include "runpod/url.h"

typedef struct slot slot;

typedef struct {
    const rp_config *cfg;
    const rp_settings *s;
    rp_event *shutdown;
    rp_tracker *tracker;
    int concurrency;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    slot *head, *tail; /* queued jobs */
    int queued, running, last_running;
    bool taking_done;
} worker;

/* One acquired job and where its progress and stream chunks go. */
struct slot {
    worker *w;
    rp_job *job;
    rp_progress *progress;  /* created on the first update */
    rp_http *progress_http; /* used by the progress sender thread only */
    rp_http *http;          /* the handler thread's client (stream chunks) */
    slot *next;
};

rp_take_next rp_take_next_step(rp_http_status transport, rp_take_kind kind)
{
    if (transport == RP_HTTP_TIMEOUT) return RP_NEXT_NOW; /* §4.3: re-issued at once */
    if (transport != RP_HTTP_OK) return RP_NEXT_BACKOFF;
    if (kind == RP_TAKE_JOBS || kind == RP_TAKE_NONE) return RP_NEXT_NOW;
    if (kind == RP_TAKE_RATE_LIMITED) return RP_NEXT_PAUSE;
    return RP_NEXT_BACKOFF;
}

/* --- delivery ------------------------------------------------------------ */

static void send_progress(const char *job_id, const cJSON *body, void *ctx)
{
    slot *sl = ctx;
    if (!sl->progress_http) sl->progress_http = rp_http_new();
    char *url = rp_result_url(sl->w->s->output_tmpl, job_id, false);
    if (rp_post_json(sl->progress_http, url, job_id, sl->w->s->api_key, body))
        rp_debug("%s | Progress Update Sent.", job_id);
    free(url);
}

static void on_progress(rp_job *job, cJSON *progress, void *ctx)
{
    slot *sl = ctx;
    if (rp_job_cancelled(job)) { cJSON_Delete(progress); return; }
    if (!sl->progress) sl->progress = rp_progress_new(job->id, send_progress, sl);
    rp_progress_push(sl->progress, progress);
}

static void on_chunk(rp_job *job, const cJSON *chunk, void *ctx)
{
    slot *sl = ctx;
    char *url = rp_result_url(sl->w->s->stream_tmpl, job->id, false);
    if (rp_post_json(sl->http, url, job->id, sl->w->s->api_key, chunk))
        rp_log(RP_LOG_DEBUG, job->id, "Intermediate results sent.");
    free(url);
}

static void post_final(slot *sl, cJSON *result)
{
    worker *w = sl->w;
    if (w->cfg->refresh_worker) {
        rp_log(RP_LOG_INFO, sl->job->id, "refresh_worker flag set, stopping pod after job.");
        rp_add_stop_pod(result);
    }
    char *url = rp_result_url(w->s->output_tmpl, sl->job->id, w->cfg->generator);
    if (rp_post_json(sl->http, url, sl->job->id, w->s->api_key, result))
        rp_log(RP_LOG_DEBUG, sl->job->id, "Results sent.");
    rp_log(RP_LOG_INFO, sl->job->id, "Finished.");
    free(url);
}

/* --- handler threads ----------------------------------------------------- */

static void handle(slot *sl)
{
    worker *w = sl->w;
    rp_job *job = sl->job;
    rp_log(RP_LOG_DEBUG, job->id, "Handling Job");
    cJSON *result = rp_job_cancelled(job) ? NULL : rp_job_execute(job, w->cfg, w->cfg->return_aggregate_stream);
    bool stopped = rp_job_cancelled(job);
    rp_progress_finish(sl->progress, stopped);
    sl->progress = NULL;
    if (stopped) rp_log(RP_LOG_INFO, job->id, "Job stopped.");
    else post_final(sl, result);
    cJSON_Delete(result);
    if (!stopped && w->cfg->refresh_worker) rp_event_set(w->shutdown);
    rp_tracker_remove(w->tracker, job->id, job);
    rp_log(RP_LOG_DEBUG, job->id, "Finished Job");
}

static slot *next_job(worker *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->head && !w->taking_done) pthread_cond_wait(&w->cond, &w->lock);
    slot *sl = w->head;
    if (sl) {
        w->head = sl->next;
        if (!w->head) w->tail = NULL;
        w->queued--;
        w->running++;
        if (w->running != w->last_running) rp_info("Jobs in progress: %d", w->running);
        w->last_running = w->running;
    }
    pthread_mutex_unlock(&w->lock);
    return sl;
}

static void *handler_thread(void *arg)
{
    worker *w = arg;
    rp_http *http = rp_http_new();
    slot *sl;
    while ((sl = next_job(w))) {
        sl->http = http;
        handle(sl);
        rp_job_free(sl->job);
        rp_http_free(sl->progress_http);
        free(sl);
        pthread_mutex_lock(&w->lock);
        w->running--;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
    }
    rp_http_free(http);
    return NULL;
}

/* --- take loop ----------------------------------------------------------- */

/* Queues one job; returns the queue length. */
static int enqueue(worker *w, cJSON *json)
{
    slot *sl = calloc(1, sizeof *sl);
    sl->w = w;
    rp_job_sink sink = {.progress = on_progress, .chunk = on_chunk, .ctx = sl};
    sl->job = rp_job_new(json, &sink);
    rp_tracker_add(w->tracker, sl->job->id, sl->job);
    rp_log(RP_LOG_DEBUG, sl->job->id, "Job Queued"); /* before a handler thread may own it */
    pthread_mutex_lock(&w->lock);
    if (w->tail) w->tail->next = sl;
    else w->head = sl;
    w->tail = sl;
    int queued = ++w->queued;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    return queued;
}

/* Waits for a free place; returns how many jobs to ask for, 0 on shutdown. */
static int jobs_needed(worker *w)
{
    pthread_mutex_lock(&w->lock);
    while (w->queued + w->running >= w->concurrency && !rp_event_is_set(w->shutdown)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&w->cond, &w->lock, &ts);
    }
    int need = w->concurrency - w->queued - w->running;
    pthread_mutex_unlock(&w->lock);
    return rp_event_is_set(w->shutdown) ? 0 : need;
}

static void log_take_failure(const rp_http_response *r, const rp_take_result *t, const char *url)
{
    if (r->result != RP_HTTP_OK)
        rp_error("Failed to get job. | Error Type: ClientConnectionError | Error Message: %s", r->error);
    else if (t->kind == RP_TAKE_HTTP_ERROR)
        rp_error("Failed to get job. | Error Type: ClientResponseError | Error Message: %ld, message='%s', url='%s'",
                 r->status, r->reason, url);
    else if (t->kind == RP_TAKE_INVALID)
        rp_error("Failed to get job. | Error Type: Exception | Error Message: %s", t->message);
}

static void take_loop(worker *w)
{
    rp_http *http = rp_http_new();
    rp_backoff bo;
    rp_backoff_init(&bo, (unsigned)rp_now_ms() ^ (unsigned)getpid());
    char auth[1024];
    snprintf(auth, sizeof auth, "Authorization: %s", w->s->api_key);
    const char *headers[] = {"Content-Type: application/json", auth, NULL};
    int need;
    while ((need = jobs_needed(w)) > 0) {
        char *url = rp_take_url(w->s->take_base, need, rp_tracker_count(w->tracker) > 0);
        rp_debug("rp_job | get_job: %s", url);
        rp_http_request req = {.method = "GET", .url = url, .headers = headers, .timeout_ms = RP_TAKE_TIMEOUT_MS,
                               .max_body = RP_TAKE_MAX_BODY, .abort = w->shutdown};
        rp_http_response r;
        rp_take_result t = {.kind = RP_TAKE_INVALID};
        if (rp_http_perform(http, &req, &r) == RP_HTTP_OK)
            rp_parse_take_response(r.status, r.content_type, r.body, r.len, &t);
        if (r.result == RP_HTTP_ABORTED) { rp_http_response_free(&r); free(url); break; }
        rp_take_next next = rp_take_next_step(r.result, t.kind);
        if (r.result == RP_HTTP_TIMEOUT) rp_debug("Job acquisition timed out. Retrying.");
        else if (next == RP_NEXT_BACKOFF) log_take_failure(&r, &t, url);
        else if (t.kind != RP_TAKE_JOBS) rp_debug("rp_job | %s", t.message);
        if (t.dropped) rp_error("Failed to get job. | Error Type: Exception | Error Message: Job has missing field(s): id or input.");
        if (t.kind == RP_TAKE_JOBS) {
            int queued = 0;
            while (t.jobs->child) queued = enqueue(w, cJSON_DetachItemViaPointer(t.jobs, t.jobs->child));
            rp_info("Jobs in queue: %d", queued);
        }
        if (next != RP_NEXT_BACKOFF) rp_backoff_reset(&bo);
        if (next == RP_NEXT_PAUSE) rp_event_wait(w->shutdown, RP_TAKE_RATE_LIMIT_MS);
        if (next == RP_NEXT_BACKOFF) rp_event_wait(w->shutdown, rp_backoff_next_ms(&bo));
        rp_take_result_free(&t);
        rp_http_response_free(&r);
        free(url);
    }
    rp_http_free(http);
}

/* --- lifecycle ----------------------------------------------------------- */

int rp_worker_run(const rp_config *cfg, const rp_settings *s, rp_event *shutdown)
{
    worker w = {.cfg = cfg, .s = s, .shutdown = shutdown, .tracker = rp_tracker_new(),
                .concurrency = cfg->concurrency > 0 ? cfg->concurrency : 1};
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    rp_heartbeat *hb = rp_heartbeat_start(s, w.tracker);
    rp_stopchan *sc = rp_stopchan_start(s, w.tracker);
    pthread_t *threads = calloc((size_t)w.concurrency, sizeof *threads);
    int started = 0;
    while (started < w.concurrency && pthread_create(&threads[started], NULL, handler_thread, &w) == 0) started++;
    if (started) take_loop(&w);
    else rp_error("Cannot start a handler thread.");
    pthread_mutex_lock(&w.lock);
    rp_info("Shutting down: no new jobs; finishing %d queued and running.", w.queued + w.running);
    w.taking_done = true;
    pthread_cond_broadcast(&w.cond);
    pthread_mutex_unlock(&w.lock);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    rp_stopchan_stop(sc);
    rp_heartbeat_stop(hb);
    free(threads);
    rp_tracker_free(w.tracker);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return started ? 0 : 1;
}
