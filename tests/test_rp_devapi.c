/* Integration tests: the local dev API (spec §7.3) served by the runtime in
 * a child process on a free loopback port and driven with libcurl:
 * /runsync, /run + /status (kept answers), /stream, /cancel, /health,
 * RunPod's public paths, webhooks (and their SSRF policy), 404/405/413/422
 * JSON answers, the bounded job table (429), 256 idle connections, 8
 * concurrent clients x 10 requests, the realtime route, SIGTERM. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fake_queue.h"
#include "json_assert.h"
#include "rp_child.h"
#include "rp_test_handler.h"
#include "testutil.h"

typedef struct {
    pid_t pid;
    int port;
    char base[64];
    char port_arg[16];
    char *dir;
    char log_path[512];
    const char *const *env;
    fake_queue *hooks; /* receives webhooks */
} server;

typedef struct {
    long status;
    char *body;
    size_t len;
    char content_type[64];
} reply;

static size_t collect(char *data, size_t size, size_t n, void *userp)
{
    reply *r = userp;
    r->body = realloc(r->body, r->len + size * n + 1);
    memcpy(r->body + r->len, data, size * n);
    r->len += size * n;
    r->body[r->len] = 0;
    return size * n;
}

/* One request; body NULL means GET. */
static reply call(const server *s, const char *method, const char *path, const char *body, size_t body_len)
{
    reply r = {.body = calloc(1, 1)};
    char url[256];
    snprintf(url, sizeof url, "%s%s", s->base, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r.content_type, sizeof r.content_type, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    return r;
}

static reply post(const server *s, const char *path, const char *body)
{
    return call(s, "POST", path, body, strlen(body));
}

/* Starts the server (with --rp_api_host=host when host is set; env:
 * "NAME=value" lines for it) and waits for /health on 127.0.0.1. */
static server *start(const rp_config *cfg, bool realtime, const char *host, const char *const *env)
{
    server *s = calloc(1, sizeof *s);
    s->port = tu_free_port();
    snprintf(s->base, sizeof s->base, "http://127.0.0.1:%d", s->port);
    snprintf(s->port_arg, sizeof s->port_arg, "%d", s->port);
    s->dir = tu_mkdtemp("rp-devapi");
    snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
    char env_port[64];
    snprintf(env_port, sizeof env_port, "RUNPOD_REALTIME_PORT=%d", s->port);
    const char *all[16] = {"RUNPOD_LOG_LEVEL=INFO"};
    size_t n = 1;
    if (realtime) all[n++] = env_port, all[n++] = "RUNPOD_ENDPOINT_ID=ep9";
    for (const char *const *e = env; e && *e && n < 15; e++) all[n++] = *e;
    char host_arg[64];
    snprintf(host_arg, sizeof host_arg, "--rp_api_host=%s", host ? host : "127.0.0.1");
    char *argv[] = {"sdxl-worker", "--rp_serve_api", "--rp_api_port", s->port_arg, host_arg, NULL};
    char *rt_argv[] = {"sdxl-worker", NULL};
    rpc_spec spec = {.cfg = cfg, .argc = realtime ? 1 : 5, .argv = realtime ? rt_argv : argv, .env = all,
                     .stderr_path = s->log_path};
    s->pid = rpc_spawn(&spec);
    s->hooks = fq_start();
    fq_set_default(s->hooks, FQ_OTHER, (fq_response){.status = 200});
    for (int i = 0; i < 500; i++) {
        reply r = call(s, "GET", "/health", NULL, 0);
        free(r.body);
        if (r.status == 200) return s;
        usleep(10000);
    }
    return s;
}

static void stop(server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        rpc_wait(s->pid, 5000);
    }
    fq_stop(s->hooks);
    tu_rm_rf(s->dir);
    free(s->dir);
    free(s);
}

static rp_config plain_cfg = {.handler = rpt_script_handler, .concurrency = 4};
static rp_config gen_cfg = {.handler = rpt_script_handler, .generator = true};
/* the webhook receiver is on loopback */
static const char *const private_hooks[] = {"RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=1", NULL};

static int setup_plain(void **state) { *state = start(&plain_cfg, false, NULL, private_hooks); return 0; }
static int setup_public(void **state) { *state = start(&plain_cfg, false, NULL, NULL); return 0; }
static int setup_gen(void **state) { *state = start(&gen_cfg, false, NULL, NULL); return 0; }
static int setup_realtime(void **state) { *state = start(&plain_cfg, true, NULL, NULL); return 0; }
static int setup_localhost(void **state) { *state = start(&plain_cfg, false, "localhost", NULL); return 0; }
static int teardown(void **state) { stop(*state); return 0; }

static bool is_test_id(const char *id)
{
    return id && strlen(id) == 41 && !strncmp(id, "test-", 5) && id[13] == '-' && id[19] == '4';
}

/* Checks r is 200 JSON whose "id" is a fresh test id; returns the body without "id". */
static cJSON *ok_body(reply *r)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->content_type, "application/json");
    cJSON *b = cJSON_Parse(r->body);
    assert_non_null(b);
    cJSON *id = cJSON_DetachItemFromObject(b, "id");
    assert_true(is_test_id(cJSON_GetStringValue(id)));
    cJSON_Delete(id);
    free(r->body);
    return b;
}

static void health(void **state)
{
    server *s = *state;
    reply r = call(s, "GET", "/health", NULL, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    cJSON *b = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItem(b, "status")->valuestring, "ok");
    assert_string_equal(cJSON_GetObjectItem(b, "mode")->valuestring, "dev_api");
    assert_string_equal(cJSON_GetObjectItem(b, "runpod_version")->valuestring, "1.12.0");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "jobs"), "completed"));
    cJSON_Delete(b);
    free(r.body);
}

static void runsync_shapes(void **state)
{
    server *s = *state;
    reply r = post(s, "/runsync", "{\"input\": {\"prompt\": \"a cat\"}}");
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":{\"echo\":{\"prompt\":\"a cat\"}}}");
    cJSON_Delete(b);
    r = post(s, "/runsync", "{\"input\": {\"return\": null}}"); /* null output is omitted */
    b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\"}");
    cJSON_Delete(b);
    r = post(s, "/runsync", "{\"input\": {\"return\": {\"error\": \"Invalid input\", \"x\": 1}}}");
    b = ok_body(&r);
    assert_json(b, "{\"status\":\"FAILED\",\"error\":\"Invalid input\"}");
    cJSON_Delete(b);
    r = post(s, "/runsync", "{\"input\": {\"raise\": \"boom\"}}");
    b = ok_body(&r);
    assert_string_equal(cJSON_GetObjectItem(b, "status")->valuestring, "FAILED");
    cJSON *report = cJSON_Parse(cJSON_GetObjectItem(b, "error")->valuestring);
    assert_string_equal(cJSON_GetObjectItem(report, "error_message")->valuestring, "boom");
    cJSON_Delete(report);
    cJSON_Delete(b);
}

static void run_then_status(void **state)
{
    server *s = *state;
    reply r = post(s, "/run", "{\"input\": {\"return\": {\"n\": 1}}}");
    assert_int_equal(r.status, 200);
    cJSON *b = cJSON_Parse(r.body);
    free(r.body);
    char *id = strdup(cJSON_GetObjectItem(b, "id")->valuestring);
    assert_true(is_test_id(id));
    assert_string_equal(cJSON_GetObjectItem(b, "status")->valuestring, "IN_PROGRESS");
    cJSON_Delete(b);
    char path[96];
    snprintf(path, sizeof path, "/stream/%s", id);
    r = post(s, path, ""); /* not a generator: refused, job kept; "stream" for the SDK client's Job.stream() */
    char want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"FAILED\",\"error\":\"Stream not supported, handler must be "
             "a generator.\",\"stream\":[]}", id);
    assert_json_text(r.body, want);
    free(r.body);
    snprintf(path, sizeof path, "/status/%s", id);
    r = call(s, "GET", path, NULL, 0);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"COMPLETED\",\"output\":{\"n\":1}}", id);
    assert_json_text(r.body, want);
    free(r.body);
    r = post(s, path, ""); /* ran once; later polls get the answer kept */
    assert_json_text(r.body, want);
    free(r.body);
    r = post(s, "/status/test-never-stored", "");
    assert_json_text(r.body, "{\"id\":\"test-never-stored\",\"status\":\"FAILED\",\"error\":\"Job ID not found\"}");
    free(r.body);
    free(id);
}

static void webhook_gets_the_result(void **state)
{
    server *s = *state;
    char body[256];
    snprintf(body, sizeof body, "{\"input\": {\"return\": [7]}, \"webhook\": \"http://127.0.0.1:%d/hook\"}", fq_port(s->hooks));
    reply r = post(s, "/runsync", body);
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":[7]}");
    cJSON_Delete(b);
    assert_true(fq_wait(s->hooks, FQ_OTHER, 1, 5000));
    const fq_request *hook = fq_get(s->hooks, FQ_OTHER, 0);
    assert_string_equal(hook->method, "POST");
    assert_string_equal(hook->url, "/hook");
    assert_json_text(hook->body, "{\"output\":[7]}");
}

/* The id of a job stored with /run. */
static char *run_job(server *s, const char *path, const char *body)
{
    reply r = post(s, path, body);
    assert_int_equal(r.status, 200);
    cJSON *b = cJSON_Parse(r.body);
    free(r.body);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(b, "status")), "IN_PROGRESS");
    char *id = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(b, "id")));
    cJSON_Delete(b);
    return id;
}

/* Expects `method path` to answer 200 with exactly {"id": id, "status": status}. */
static void expect_status(server *s, const char *method, const char *path, const char *id, const char *status)
{
    char want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"%s\"}", id, status);
    reply r = call(s, method, path, method[0] == 'P' ? "" : NULL, 0);
    assert_int_equal(r.status, 200);
    assert_json_text(r.body, want);
    free(r.body);
}

/* Webhooks follow the image-URL SSRF policy: a receiver on loopback is not
 * reached unless RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS is set (this server has
 * it unset), and the log names only the host, never the path or query (a
 * webhook's token). A webhook that is not an http(s) URL is refused. */
static void webhook_to_a_private_address_is_refused(void **state)
{
    server *s = *state;
    char body[256], line[160];
    snprintf(body, sizeof body, "{\"input\": {\"return\": 1}, \"webhook\": \"http://127.0.0.1:%d/hook/SECRET?token=SECRET\"}",
             fq_port(s->hooks));
    reply r = post(s, "/runsync", body);
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":1}");
    cJSON_Delete(b);
    snprintf(line, sizeof line, "WEBHOOK | Request to 127.0.0.1:%d failed: it resolves to the non-public address "
             "127.0.0.1 (set RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=1 to allow)", fq_port(s->hooks));
    char *log = NULL;
    for (int i = 0; i < 500 && !(log && strstr(log, line)); i++) {
        free(log);
        usleep(10000);
        log = tu_read_file(s->log_path, NULL);
    }
    assert_non_null(strstr(log, line));
    assert_null(strstr(log, "SECRET"));
    free(log);
    assert_int_equal(fq_count(s->hooks, FQ_OTHER), 0);
    const char *bad[] = {"\"file:///etc/passwd\"", "\"not a url\"", "\"http://\"", "\"http://a\\u0000.example/\""};
    for (size_t i = 0; i < 4; i++) {
        snprintf(body, sizeof body, "{\"input\": {}, \"webhook\": %s}", bad[i]);
        r = post(s, "/run", body);
        assert_int_equal(r.status, 422);
        assert_json_text(r.body, "{\"detail\":[{\"type\":\"url_parsing\",\"loc\":[\"body\",\"webhook\"],"
                                 "\"msg\":\"Input should be an absolute http or https URL\"}]}");
        free(r.body);
    }
}

/* RunPod's public paths, {base}/{endpoint id}/{route} as the SDK client
 * builds them (runpod.endpoint_url_base = ".../v2"), answer as the short
 * routes do. */
static void public_paths_answer_as_the_short_ones(void **state)
{
    server *s = *state;
    reply r = post(s, "/v2/my-endpoint/runsync", "{\"input\": {\"return\": 5}}");
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":5}");
    cJSON_Delete(b);
    char *id = run_job(s, "/v2/my-endpoint/run", "{\"input\": {\"return\": 6}}"), path[128], want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"COMPLETED\",\"output\":6}", id);
    snprintf(path, sizeof path, "/v2/my-endpoint/status/%s", id);
    r = call(s, "GET", path, NULL, 0);
    assert_json_text(r.body, want);
    free(r.body);
    snprintf(path, sizeof path, "/my-endpoint/status/%s", id); /* a base without /v2 */
    r = call(s, "GET", path, NULL, 0);
    assert_json_text(r.body, want);
    free(r.body);
    snprintf(path, sizeof path, "/v2/my-endpoint/cancel/%s", id); /* finished: its status */
    expect_status(s, "POST", path, id, "COMPLETED");
    snprintf(path, sizeof path, "/v2/my-endpoint/stream/%s", id);
    r = call(s, "GET", path, NULL, 0);
    assert_non_null(strstr(r.body, "\"error\":\"Stream not supported, handler must be a generator.\",\"stream\":[]"));
    free(r.body);
    free(id);
    r = call(s, "GET", "/v2/my-endpoint/health", NULL, 0);
    assert_int_equal(r.status, 200);
    b = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItem(b, "status")->valuestring, "ok");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "jobs"), "inQueue"));
    cJSON_Delete(b);
    free(r.body);
    static const struct { const char *method, *path; long status; } wrong[] = {
        {"GET", "/v2/my-endpoint/runsync", 405}, {"GET", "/v2/my-endpoint/cancel/x", 405},
        {"GET", "/v2/my-endpoint/purge-queue", 404}, {"GET", "/v2//health", 404}, {"GET", "/v2/health", 404},
        {"GET", "/v2/a/b/health", 404},
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        r = call(s, wrong[i].method, wrong[i].path, NULL, 0);
        if (r.status != wrong[i].status) fail_msg("%s %s answered %ld", wrong[i].method, wrong[i].path, r.status);
        free(r.body);
    }
}

typedef struct {
    server *s;
    char path[128];
    reply r;
    double seconds;
} poller;

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void *poll_thread(void *arg)
{
    poller *p = arg;
    double t0 = seconds_now();
    p->r = call(p->s, "GET", p->path, NULL, 0);
    p->seconds = seconds_now() - t0;
    return NULL;
}

/* Handler calls running now (/health). */
static int in_progress(server *s)
{
    reply r = call(s, "GET", "/health", NULL, 0);
    cJSON *b = cJSON_Parse(r.body);
    int n = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(b, "jobs"), "inProgress"));
    cJSON_Delete(b);
    free(r.body);
    return n;
}

/* /cancel: a stored job is dropped and later polls say CANCELLED; a running
 * one is told to stop, and the call running it answers CANCELLED; while it
 * runs, other polls answer IN_PROGRESS. */
static void cancel_stored_and_running_jobs(void **state)
{
    server *s = *state;
    char *id = run_job(s, "/run", "{\"input\": {\"return\": 1}}"), path[128];
    snprintf(path, sizeof path, "/cancel/%s", id);
    expect_status(s, "POST", path, id, "CANCELLED");
    snprintf(path, sizeof path, "/status/%s", id);
    expect_status(s, "GET", path, id, "CANCELLED");
    free(id);

    id = run_job(s, "/run", "{\"input\": {\"sleep_ms\": 20000}}");
    poller p = {.s = s};
    snprintf(p.path, sizeof p.path, "/status/%s", id);
    pthread_t t;
    pthread_create(&t, NULL, poll_thread, &p);
    for (int i = 0; i < 1000 && in_progress(s) < 1; i++) usleep(10000); /* the thread's poll runs it (a poll */
    assert_int_equal(in_progress(s), 1);                                 /* from here could have claimed it) */
    char want[256];
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"IN_PROGRESS\"}", id);
    reply running = call(s, "GET", p.path, NULL, 0);
    assert_json_text(running.body, want);
    free(running.body);
    snprintf(path, sizeof path, "/cancel/%s", id);
    expect_status(s, "POST", path, id, "CANCELLED");
    pthread_join(t, NULL);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"CANCELLED\"}", id);
    assert_json_text(p.r.body, want);
    assert_true(p.seconds < 15); /* stopped, not slept out */
    free(p.r.body);
    expect_status(s, "GET", p.path, id, "CANCELLED");
    free(id);

    reply r = post(s, "/cancel/test-unknown", "");
    assert_json_text(r.body, "{\"id\":\"test-unknown\",\"status\":\"FAILED\",\"error\":\"Job ID not found\"}");
    free(r.body);
}

/* The table of /run jobs is bounded: 64 MiB of stored input (the 5th job of
 * 15 MB is refused with 429, and the server stays well), and 256 entries;
 * kept answers make room for new jobs. */
static void full_job_table_answers_429(void **state)
{
    server *s = *state;
    size_t n = 15u << 20;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    memcpy(big, "{\"input\": {\"pad\": \"", 19);
    memcpy(big + n - 3, "\"}}", 3);
    big[n] = 0;
    char *first = NULL;
    for (int i = 0; i < 4; i++) {
        char *id = run_job(s, "/run", big);
        if (!first) first = id;
        else free(id);
    }
    reply r = post(s, "/run", big);
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body, "bytes of stored jobs, and this one's 15728628 would pass its limit of 67108864"));
    free(r.body);
    char path[128];
    snprintf(path, sizeof path, "/cancel/%s", first); /* frees its input */
    expect_status(s, "POST", path, first, "CANCELLED");
    free(run_job(s, "/run", big));
    free(big);
    free(first);
    int accepted = 0;
    for (;; accepted++) {
        r = post(s, "/run", "{\"input\": {}}");
        if (r.status != 200) break;
        free(r.body);
    }
    assert_int_equal(r.status, 429);
    assert_non_null(strstr(r.body, "the dev API already holds 256 jobs, its limit"));
    free(r.body);
    assert_int_equal(accepted, 256 - 4); /* the kept CANCELLED answer made room */
}

/* Idle connections cost no thread: with 256 of them held open (half with a
 * request begun and never finished), /health and a job still answer at
 * once. Before, 256 was the connection limit and /health timed out. */
static void health_answers_under_256_idle_connections(void **state)
{
    server *s = *state;
    int fds[256];
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    const char *begun = "POST /runsync HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inp";
    for (int i = 0; i < 256; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
        if (i % 2) assert_true(write(fds[i], begun, strlen(begun)) > 0);
    }
    usleep(200000); /* the server has taken them all */
    double t0 = seconds_now();
    reply r = call(s, "GET", "/health", NULL, 0);
    double health_s = seconds_now() - t0;
    assert_int_equal(r.status, 200);
    free(r.body);
    r = post(s, "/runsync", "{\"input\": {\"return\": 2}}");
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":2}");
    cJSON_Delete(b);
    printf("/health under 256 idle connections: %.1f ms\n", health_s * 1000);
    assert_true(health_s < 5); /* at once; 5 s leaves room for a loaded sanitizer build */
    for (int i = 0; i < 256; i++) close(fds[i]);
}

static void error_answers_are_json(void **state)
{
    server *s = *state;
    reply r = call(s, "GET", "/nope", NULL, 0);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.content_type, "application/json");
    assert_json_text(r.body, "{\"detail\":\"Not Found\"}");
    free(r.body);
    r = call(s, "GET", "/runsync", NULL, 0);
    assert_int_equal(r.status, 405);
    assert_json_text(r.body, "{\"detail\":\"Method Not Allowed\"}");
    free(r.body);
    r = post(s, "/runsync", "{\"input\": 5}");
    assert_int_equal(r.status, 422);
    assert_json_text(r.body, "{\"detail\":[{\"type\":\"dict_type\",\"loc\":[\"body\",\"input\"],"
                             "\"msg\":\"Input should be a valid dictionary\",\"input\":5}]}");
    free(r.body);
    r = post(s, "/run", "{\"webhook\": 3}");
    assert_int_equal(r.status, 422);
    cJSON *b = cJSON_Parse(r.body);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b, "detail")), 2);
    cJSON_Delete(b);
    free(r.body);
    const char *bad[] = {"not json", "[1]", ""};
    for (size_t i = 0; i < 3; i++) {
        r = post(s, "/runsync", bad[i]);
        assert_int_equal(r.status, 422);
        free(r.body);
    }
}

static void oversized_body_gets_413(void **state)
{
    server *s = *state;
    size_t n = (20u << 20) + 100;
    char *big = malloc(n);
    memset(big, ' ', n);
    memcpy(big, "{\"input\": {}}", 13);
    reply r = call(s, "POST", "/runsync", big, n);
    assert_int_equal(r.status, 413);
    assert_json_text(r.body, "{\"detail\":\"Request body too large\"}");
    free(r.body);
    free(big);
    r = call(s, "GET", "/health", NULL, 0); /* still serving */
    assert_int_equal(r.status, 200);
    free(r.body);
}

typedef struct {
    server *s;
    int thread;
    int failures;
    char ids[10][48];
} client;

static bool expect_output(const char *body, int thread, int n)
{
    char want[64];
    snprintf(want, sizeof want, "{\"t\":%d,\"n\":%d}", thread, n);
    cJSON *b = cJSON_Parse(body);
    bool ok = b && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(b, "status")), "COMPLETED") &&
              ja_equal(cJSON_GetObjectItem(b, "output"), want);
    cJSON_Delete(b);
    return ok;
}

/* Even requests: /runsync; odd: /run then /status. */
static void *client_thread(void *arg)
{
    client *c = arg;
    for (int n = 0; n < 10; n++) {
        char body[96];
        snprintf(body, sizeof body, "{\"input\": {\"return\": {\"t\": %d, \"n\": %d}}}", c->thread, n);
        reply r = post(c->s, n % 2 ? "/run" : "/runsync", body);
        cJSON *b = cJSON_Parse(r.body);
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(b, "id"));
        snprintf(c->ids[n], sizeof c->ids[n], "%s", id ? id : "");
        if (n % 2) {
            char path[96];
            snprintf(path, sizeof path, "/status/%s", c->ids[n]);
            free(r.body);
            r = post(c->s, path, "");
        }
        if (r.status != 200 || !expect_output(r.body, c->thread, n)) c->failures++;
        cJSON_Delete(b);
        free(r.body);
    }
    return NULL;
}

static double completed_count(server *s)
{
    reply r = call(s, "GET", "/health", NULL, 0);
    cJSON *b = cJSON_Parse(r.body);
    double n = cJSON_GetObjectItem(cJSON_GetObjectItem(b, "jobs"), "completed")->valuedouble;
    assert_int_equal((int)cJSON_GetObjectItem(cJSON_GetObjectItem(b, "jobs"), "inQueue")->valuedouble, 0);
    cJSON_Delete(b);
    free(r.body);
    return n;
}

static void concurrent_clients(void **state)
{
    server *s = *state;
    double before = completed_count(s);
    client clients[8];
    pthread_t threads[8];
    for (int i = 0; i < 8; i++) {
        clients[i] = (client){.s = s, .thread = i};
        pthread_create(&threads[i], NULL, client_thread, &clients[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < 8; i++) assert_int_equal(clients[i].failures, 0);
    for (int a = 0; a < 80; a++)
        for (int b = a + 1; b < 80; b++)
            assert_string_not_equal(clients[a / 10].ids[a % 10], clients[b / 10].ids[b % 10]);
    assert_int_equal((int)(completed_count(s) - before), 80);
}

static void sigterm_exits_zero(void **state)
{
    server *s = *state;
    kill(s->pid, SIGTERM);
    assert_int_equal(rpc_wait(s->pid, 5000), 0);
    s->pid = 0;
    char *log = tu_read_file(s->log_path, NULL);
    assert_non_null(strstr(log, "Dev API listening on http://127.0.0.1:"));
    free(log);
}

static void generator_runsync_run_stream(void **state)
{
    server *s = *state;
    reply r = post(s, "/runsync", "{\"input\": {\"yield\": [1, \"two\"]}}");
    cJSON *b = ok_body(&r);
    assert_json(b, "{\"status\":\"COMPLETED\",\"output\":[1,\"two\"]}");
    cJSON_Delete(b);
    r = post(s, "/run", "{\"input\": {\"yield\": [{\"a\": 1}, 2]}}");
    b = cJSON_Parse(r.body);
    free(r.body);
    char path[96], want[256];
    const char *id = cJSON_GetObjectItem(b, "id")->valuestring;
    snprintf(path, sizeof path, "/stream/%s", id);
    r = call(s, "GET", path, NULL, 0);
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"COMPLETED\",\"stream\":[{\"output\":{\"a\":1}},{\"output\":2}]}", id);
    assert_json_text(r.body, want);
    free(r.body);
    r = call(s, "GET", path, NULL, 0); /* nothing new: the SDK client's Job.stream() then stops */
    snprintf(want, sizeof want, "{\"id\":\"%s\",\"status\":\"COMPLETED\",\"stream\":[]}", id);
    assert_json_text(r.body, want);
    free(r.body);
    cJSON_Delete(b);
    /* a failing generator answers FAILED (the SDK would answer HTTP 500) */
    r = post(s, "/runsync", "{\"input\": {\"yield\": [1, {\"error\": \"bad\"}]}}");
    b = ok_body(&r);
    assert_json(b, "{\"status\":\"FAILED\",\"error\":\"bad\"}");
    cJSON_Delete(b);
}

static void realtime_route_and_mode(void **state)
{
    server *s = *state;
    reply r = post(s, "/ep9/realtime", "{\"id\": \"rt-1\", \"input\": {\"return\": 3}}");
    assert_int_equal(r.status, 200);
    assert_json_text(r.body, "{\"output\":3}");
    free(r.body);
    r = post(s, "/ep9/realtime", "{\"input\": {}}");
    assert_int_equal(r.status, 422);
    free(r.body);
    r = call(s, "GET", "/health", NULL, 0);
    cJSON *b = cJSON_Parse(r.body);
    assert_string_equal(cJSON_GetObjectItem(b, "mode")->valuestring, "realtime");
    cJSON_Delete(b);
    free(r.body);
}

/* "localhost" may resolve to ::1 first; the server still answers on 127.0.0.1. */
static void localhost_binds_ipv4_loopback(void **state)
{
    server *s = *state;
    reply r = call(s, "GET", "/health", NULL, 0);
    assert_int_equal(r.status, 200);
    free(r.body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest plain_tests[] = {
        cmocka_unit_test(health),
        cmocka_unit_test(runsync_shapes),
        cmocka_unit_test(run_then_status),
        cmocka_unit_test(webhook_gets_the_result),
        cmocka_unit_test(public_paths_answer_as_the_short_ones),
        cmocka_unit_test(cancel_stored_and_running_jobs),
        cmocka_unit_test(health_answers_under_256_idle_connections),
        cmocka_unit_test(error_answers_are_json),
        cmocka_unit_test(oversized_body_gets_413),
        cmocka_unit_test(concurrent_clients),
        cmocka_unit_test(sigterm_exits_zero),
    };
    const struct CMUnitTest gen_tests[] = {cmocka_unit_test(generator_runsync_run_stream)};
    const struct CMUnitTest rt_tests[] = {cmocka_unit_test(realtime_route_and_mode)};
    const struct CMUnitTest host_tests[] = {cmocka_unit_test(localhost_binds_ipv4_loopback)};
    const struct CMUnitTest public_tests[] = {cmocka_unit_test(webhook_to_a_private_address_is_refused),
                                              cmocka_unit_test(full_job_table_answers_429)};
    int failed = cmocka_run_group_tests_name("devapi", plain_tests, setup_plain, teardown);
    failed += cmocka_run_group_tests_name("devapi_public_webhooks_limits", public_tests, setup_public, teardown);
    failed += cmocka_run_group_tests_name("devapi_localhost", host_tests, setup_localhost, teardown);
    failed += cmocka_run_group_tests_name("devapi_generator", gen_tests, setup_gen, teardown);
    failed += cmocka_run_group_tests_name("realtime", rt_tests, setup_realtime, teardown);
    curl_global_cleanup();
    return failed;
}
