/* Integration tests: the runtime's HTTP client against the fake queue:
 * timeouts, interruption by an event (the long-poll shutdown path), dropped
 * connections, refused connections, the response-size cap, content-type /
 * reason parsing, and the exact request it sends for a POST. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_queue.h"
#include "runpod/http.h"
#include "runpod/log.h"
#include "runpod/post.h"

typedef struct {
    fake_queue *q;
    rp_http *http;
    char url[128];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->q = fq_start();
    f->http = rp_http_new();
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d/v2/ep1/job-take/w1?x=1", fq_port(f->q));
    *state = f;
    return f->q ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rp_http_free(f->http);
    fq_stop(f->q);
    free(f);
    return 0;
}

static rp_http_status get(fixture *f, long timeout_ms, rp_event *abort, rp_http_response *r)
{
    rp_http_request req = {.method = "GET", .url = f->url, .timeout_ms = timeout_ms, .abort = abort};
    return rp_http_perform(f->http, &req, r);
}

static void answer_fields(void **state)
{
    fixture *f = *state;
    fq_push(f->q, FQ_TAKE, (fq_response){.status = 200, .content_type = "Application/JSON; charset=UTF-8", .body = "{\"a\":1}"});
    fq_push(f->q, FQ_TAKE, (fq_response){.status = 500, .body = "{}"});
    rp_http_response r;
    assert_int_equal(get(f, 5000, NULL, &r), RP_HTTP_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(r.body, "{\"a\":1}");
    assert_int_equal(r.len, 7);
    rp_http_response_free(&r);
    assert_int_equal(get(f, 5000, NULL, &r), RP_HTTP_OK); /* any status is an answer */
    assert_int_equal(r.status, 500);
    assert_string_equal(r.reason, "Internal Server Error");
    rp_http_response_free(&r);
    assert_string_equal(fq_get(f->q, FQ_TAKE, 0)->url, "/v2/ep1/job-take/w1?x=1");
}

static void timeout_is_reported_in_time(void **state)
{
    fixture *f = *state;
    fq_push(f->q, FQ_TAKE, (fq_response){.status = 204, .delay_ms = 3000});
    rp_http_response r;
    long long t0 = rp_now_ms();
    assert_int_equal(get(f, 500, NULL, &r), RP_HTTP_TIMEOUT);
    long long took = rp_now_ms() - t0;
    assert_in_range(took, 450, 1200);
    assert_int_equal(r.status, 0);
    rp_http_response_free(&r);
}

typedef struct {
    rp_event *ev;
    long delay_ms;
} setter;

static void *set_later(void *arg)
{
    setter *s = arg;
    struct timespec ts = {s->delay_ms / 1000, (s->delay_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    rp_event_set(s->ev);
    return NULL;
}

static void event_interrupts_a_long_poll_at_once(void **state)
{
    fixture *f = *state;
    fq_set_default(f->q, FQ_TAKE, (fq_response){.status = 204, .delay_ms = FQ_HANG});
    rp_event ev;
    assert_int_equal(rp_event_init(&ev), 0);
    setter s = {&ev, 300};
    pthread_t t;
    pthread_create(&t, NULL, set_later, &s);
    rp_http_response r;
    long long t0 = rp_now_ms();
    assert_int_equal(get(f, 90000, &ev, &r), RP_HTTP_ABORTED);
    long long took = rp_now_ms() - t0;
    assert_in_range(took, 250, 600);
    rp_http_response_free(&r);
    pthread_join(t, NULL);
    /* once set, it stays set: the next request returns at once */
    t0 = rp_now_ms();
    assert_int_equal(get(f, 90000, &ev, &r), RP_HTTP_ABORTED);
    assert_true(rp_now_ms() - t0 < 200);
    assert_true(rp_event_wait(&ev, 5000));
    rp_http_response_free(&r);
    rp_event_destroy(&ev);
}

static void dropped_and_refused_connections_fail(void **state)
{
    fixture *f = *state;
    fq_push(f->q, FQ_TAKE, (fq_response){.status = FQ_RESET});
    rp_http_response r;
    assert_int_equal(get(f, 5000, NULL, &r), RP_HTTP_FAILED);
    assert_true(strlen(r.error) > 0);
    rp_http_response_free(&r);
    rp_http_request req = {.method = "GET", .url = "http://127.0.0.1:1/x", .timeout_ms = 5000};
    assert_int_equal(rp_http_perform(f->http, &req, &r), RP_HTTP_FAILED);
    rp_http_response_free(&r);
    /* the client is still usable afterwards */
    fq_push(f->q, FQ_TAKE, fq_json("[]"));
    assert_int_equal(get(f, 5000, NULL, &r), RP_HTTP_OK);
    assert_string_equal(r.body, "[]");
    rp_http_response_free(&r);
}

static void body_cap(void **state)
{
    fixture *f = *state;
    fq_push(f->q, FQ_TAKE, fq_json("{\"padding\": \"0123456789012345678901234567890123456789\"}"));
    rp_http_request req = {.method = "GET", .url = f->url, .timeout_ms = 5000, .max_body = 16};
    rp_http_response r;
    assert_int_equal(rp_http_perform(f->http, &req, &r), RP_HTTP_TOO_LARGE);
    rp_http_response_free(&r);
}

static void result_post_request_as_sent(void **state)
{
    fixture *f = *state;
    char url[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/ep1/job-done/w1/j%%C3%%A9?isStream=false", fq_port(f->q));
    cJSON *body = cJSON_Parse("{\"output\": {\"text\": \"caf\\u00e9 \\u2603\", \"big\": \"\"}}");
    char pad[3000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(body, "output"), "big", cJSON_CreateString(pad));
    assert_true(rp_post_json(f->http, url, "j\xc3\xa9", "KEY", body));
    const fq_request *r = fq_get(f->q, FQ_DONE, 0);
    assert_string_equal(r->method, "POST");
    assert_string_equal(r->job_id, "j\xc3\xa9");
    assert_string_equal(fq_header(r, "authorization"), "KEY");
    assert_string_equal(fq_header(r, "content-type"), "application/x-www-form-urlencoded");
    assert_string_equal(fq_header(r, "charset"), "utf-8");
    assert_null(fq_header(r, "expect")); /* no 100-continue round trip for large bodies */
    cJSON *got = fq_body_json(r);
    assert_true(cJSON_Compare(got, body, true));
    assert_non_null(strstr(r->body, "caf\xc3\xa9 \xe2\x98\x83")); /* UTF-8 left unescaped */
    cJSON_Delete(got);
    cJSON_Delete(body);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(answer_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(timeout_is_reported_in_time, setup, teardown),
        cmocka_unit_test_setup_teardown(event_interrupts_a_long_poll_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(dropped_and_refused_connections_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(body_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(result_post_request_as_sent, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
