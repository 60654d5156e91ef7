/* Fake RunPod queue on libmicrohttpd (see fake_queue.h). */
#include "fake_queue.h"

#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SCRIPT 64
#define MAX_REQUESTS 4096

typedef struct {
    char *content_type, *body;
    int status, delay_ms;
} answer;

struct fake_queue {
    struct MHD_Daemon *daemon;
    int port;
    double t0;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stopping;
    answer script[FQ_NROUTES][MAX_SCRIPT];
    int script_head[FQ_NROUTES], script_len[FQ_NROUTES];
    answer fallback[FQ_NROUTES];
    fq_request *reqs[FQ_NROUTES][MAX_REQUESTS];
    int count[FQ_NROUTES];
};

typedef struct {
    fq_request *req;
    size_t cap;
    bool started, committed;
} conn;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double fq_now(const fake_queue *q) { return mono() - q->t0; }
int fq_port(const fake_queue *q) { return q->port; }

static answer make_answer(fq_response r)
{
    answer a = {.status = r.status, .delay_ms = r.delay_ms};
    a.body = r.body ? strdup(r.body) : NULL;
    const char *ct = r.content_type ? r.content_type : (r.body ? "application/json" : NULL);
    a.content_type = ct ? strdup(ct) : NULL;
    return a;
}

static void free_answer(answer *a)
{
    free(a->body);
    free(a->content_type);
    memset(a, 0, sizeof *a);
}

fq_response fq_json(const char *body)
{
    return (fq_response){.status = 200, .content_type = "application/json", .body = body};
}

void fq_push(fake_queue *q, fq_route route, fq_response r)
{
    pthread_mutex_lock(&q->lock);
    int i = (q->script_head[route] + q->script_len[route]) % MAX_SCRIPT;
    q->script[route][i] = make_answer(r);
    q->script_len[route]++;
    pthread_mutex_unlock(&q->lock);
}

void fq_set_default(fake_queue *q, fq_route route, fq_response r)
{
    pthread_mutex_lock(&q->lock);
    free_answer(&q->fallback[route]);
    q->fallback[route] = make_answer(r);
    pthread_mutex_unlock(&q->lock);
}

/* The next answer for a route (caller frees it). Under the lock. */
static answer next_answer(fake_queue *q, fq_route route)
{
    if (q->script_len[route]) {
        answer a = q->script[route][q->script_head[route]];
        q->script_head[route] = (q->script_head[route] + 1) % MAX_SCRIPT;
        q->script_len[route]--;
        return a;
    }
    answer f = q->fallback[route];
    answer a = {.status = f.status, .delay_ms = f.delay_ms};
    a.body = f.body ? strdup(f.body) : NULL;
    a.content_type = f.content_type ? strdup(f.content_type) : NULL;
    return a;
}

/* /v2/<ep>/<kind>/<worker>[/<job>] */
static fq_route route_of(const char *path, char **job_id)
{
    *job_id = NULL;
    char kind[32] = "";
    const char *p = path;
    if (strncmp(p, "/v2/", 4)) return FQ_OTHER;
    p = strchr(p + 4, '/');
    if (!p) return FQ_OTHER;
    const char *end = strchr(p + 1, '/');
    if (!end || (size_t)(end - p - 1) >= sizeof kind) return FQ_OTHER;
    memcpy(kind, p + 1, (size_t)(end - p - 1));
    const char *job = strchr(end + 1, '/');
    if (job) *job_id = strdup(job + 1);
    if (!strcmp(kind, "job-take")) return FQ_TAKE;
    if (!strcmp(kind, "job-take-batch")) return FQ_TAKE_BATCH;
    if (!strcmp(kind, "job-stop")) return FQ_STOP;
    if (!strcmp(kind, "job-done")) return FQ_DONE;
    if (!strcmp(kind, "job-stream")) return FQ_STREAM;
    if (!strcmp(kind, "ping")) return FQ_PING;
    return FQ_OTHER;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    fake_queue *q = cls;
    conn *cn = calloc(1, sizeof *cn);
    cn->req = calloc(1, sizeof *cn->req);
    cn->req->url = strdup(uri);
    cn->req->t = fq_now(q);
    cn->req->headers = cJSON_CreateObject();
    cn->req->body = calloc(1, 1);
    return cn;
}

static enum MHD_Result add_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    cJSON *h = cls;
    char name[256];
    size_t i = 0;
    for (; key[i] && i < sizeof name - 1; i++) name[i] = (char)tolower((unsigned char)key[i]);
    name[i] = 0;
    if (!cJSON_GetObjectItemCaseSensitive(h, name)) cJSON_AddStringToObject(h, name, value ? value : "");
    return MHD_YES;
}

static void commit(fake_queue *q, conn *cn, const char *url, const char *method, struct MHD_Connection *c)
{
    fq_request *r = cn->req;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->route = route_of(url, &r->job_id);
    MHD_get_connection_values(c, MHD_HEADER_KIND, add_header, r->headers);
    pthread_mutex_lock(&q->lock);
    if (q->count[r->route] < MAX_REQUESTS) {
        q->reqs[r->route][q->count[r->route]++] = r;
        cn->committed = true;
    }
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

/* Waits delay_ms (or until stop for FQ_HANG); false if the queue is stopping. */
static bool hold(fake_queue *q, int delay_ms)
{
    if (delay_ms == 0) return true;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long long ns = until.tv_nsec + (long long)(delay_ms > 0 ? delay_ms : 0) * 1000000LL;
    until.tv_sec += ns / 1000000000LL;
    until.tv_nsec = ns % 1000000000LL;
    pthread_mutex_lock(&q->lock);
    while (!q->stopping) {
        if (delay_ms == FQ_HANG) pthread_cond_wait(&q->cond, &q->lock);
        else if (pthread_cond_timedwait(&q->cond, &q->lock, &until) != 0) break;
    }
    bool ok = !q->stopping;
    pthread_mutex_unlock(&q->lock);
    return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    fake_queue *q = cls;
    conn *cn = *con_cls;
    if (!cn->started) { /* first call: headers only */
        cn->started = true;
        return MHD_YES;
    }
    if (*upload_size) {
        fq_request *r = cn->req;
        if (r->body_len + *upload_size + 1 > cn->cap) {
            cn->cap = (r->body_len + *upload_size + 1) * 2;
            r->body = realloc(r->body, cn->cap);
        }
        memcpy(r->body + r->body_len, upload, *upload_size);
        r->body_len += *upload_size;
        r->body[r->body_len] = 0;
        *upload_size = 0;
        return MHD_YES;
    }
    commit(q, cn, url, method, c);
    pthread_mutex_lock(&q->lock);
    answer a = next_answer(q, cn->req->route);
    pthread_mutex_unlock(&q->lock);
    enum MHD_Result ret = MHD_NO;
    if (hold(q, a.delay_ms) && a.status != FQ_RESET) {
        size_t len = a.body ? strlen(a.body) : 0;
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, a.body ? a.body : (char *)"",
                                                                    MHD_RESPMEM_MUST_COPY);
        if (a.content_type) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a.content_type);
        ret = MHD_queue_response(c, (unsigned)a.status, resp);
        MHD_destroy_response(resp);
    }
    free_answer(&a);
    return ret;
}

static void free_request(fq_request *r)
{
    free(r->url);
    free(r->job_id);
    cJSON_Delete(r->headers);
    free(r->body);
    free(r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    conn *cn = *con_cls;
    if (!cn) return;
    if (!cn->committed) free_request(cn->req);
    free(cn);
    *con_cls = NULL;
}

fake_queue *fq_start(void)
{
    fake_queue *q = calloc(1, sizeof *q);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    q->t0 = mono();
    fq_response hold_then_204 = {.status = 204, .delay_ms = 300};
    q->fallback[FQ_TAKE] = make_answer(hold_then_204);
    q->fallback[FQ_TAKE_BATCH] = make_answer(hold_then_204);
    q->fallback[FQ_STOP] = make_answer(hold_then_204);
    q->fallback[FQ_DONE] = make_answer((fq_response){.status = 200});
    q->fallback[FQ_STREAM] = make_answer((fq_response){.status = 200});
    q->fallback[FQ_PING] = make_answer((fq_response){.status = 200});
    q->fallback[FQ_OTHER] = make_answer((fq_response){.status = 404});
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    q->daemon = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                                 on_request, q, MHD_OPTION_SOCK_ADDR, &addr,
                                 MHD_OPTION_URI_LOG_CALLBACK, on_uri, q,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, q, MHD_OPTION_END);
    if (!q->daemon) { free(q); return NULL; }
    q->port = MHD_get_daemon_info(q->daemon, MHD_DAEMON_INFO_BIND_PORT)->port;
    return q;
}

void fq_stop(fake_queue *q)
{
    if (!q) return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    MHD_stop_daemon(q->daemon);
    for (int r = 0; r < FQ_NROUTES; r++) {
        for (int i = 0; i < q->count[r]; i++) free_request(q->reqs[r][i]);
        for (int i = 0; i < q->script_len[r]; i++) free_answer(&q->script[r][(q->script_head[r] + i) % MAX_SCRIPT]);
        free_answer(&q->fallback[r]);
    }
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void fq_env(const fake_queue *q, const char *pod_id, const char *api_key, char env[FQ_ENV_LINES][256])
{
    snprintf(env[0], 256, "RUNPOD_WEBHOOK_GET_JOB=http://127.0.0.1:%d/v2/ep1/job-take/$ID?gpu=test", q->port);
    snprintf(env[1], 256, "RUNPOD_WEBHOOK_POST_OUTPUT=http://127.0.0.1:%d/v2/ep1/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
             q->port);
    snprintf(env[2], 256,
             "RUNPOD_WEBHOOK_POST_STREAM=http://127.0.0.1:%d/v2/ep1/job-stream/$RUNPOD_POD_ID/$ID?gpu=test", q->port);
    snprintf(env[3], 256, "RUNPOD_WEBHOOK_PING=http://127.0.0.1:%d/v2/ep1/ping/$RUNPOD_POD_ID?gpu=test", q->port);
    snprintf(env[4], 256, pod_id ? "RUNPOD_POD_ID=%s" : "RUNPOD_POD_ID", pod_id); /* no '=': unset */
    snprintf(env[5], 256, api_key ? "RUNPOD_AI_API_KEY=%s" : "RUNPOD_AI_API_KEY", api_key);
}

int fq_count(fake_queue *q, fq_route route)
{
    pthread_mutex_lock(&q->lock);
    int n = q->count[route];
    pthread_mutex_unlock(&q->lock);
    return n;
}

const fq_request *fq_get(fake_queue *q, fq_route route, int i)
{
    pthread_mutex_lock(&q->lock);
    const fq_request *r = (i >= 0 && i < q->count[route]) ? q->reqs[route][i] : NULL;
    pthread_mutex_unlock(&q->lock);
    return r;
}

bool fq_wait(fake_queue *q, fq_route route, int n, int timeout_ms)
{
    double deadline = mono() + timeout_ms / 1000.0;
    while (fq_count(q, route) < n) {
        if (mono() > deadline) return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

int fq_count_job(fake_queue *q, fq_route route, const char *job_id)
{
    int n = 0;
    pthread_mutex_lock(&q->lock);
    for (int i = 0; i < q->count[route]; i++)
        if (q->reqs[route][i]->job_id && !strcmp(q->reqs[route][i]->job_id, job_id)) n++;
    pthread_mutex_unlock(&q->lock);
    return n;
}

const char *fq_header(const fq_request *r, const char *name)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(r->headers, name);
    return cJSON_IsString(h) ? h->valuestring : NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    c = (char)tolower((unsigned char)c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

bool fq_query_param(const fq_request *r, const char *name, char *out, size_t cap)
{
    const char *q = strchr(r->url, '?');
    size_t n = strlen(name);
    for (const char *p = q; p; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, name, n) || p[1 + n] != '=') continue;
        const char *v = p + 2 + n;
        size_t o = 0;
        for (; *v && *v != '&' && o + 1 < cap; v++) {
            if (*v == '%' && hexval(v[1]) >= 0 && hexval(v[2]) >= 0) {
                out[o++] = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                v += 2;
            } else {
                out[o++] = *v == '+' ? ' ' : *v;
            }
        }
        out[o] = 0;
        return true;
    }
    return false;
}

cJSON *fq_body_json(const fq_request *r)
{
    return cJSON_ParseWithLength(r->body, r->body_len);
}
