/* Integration tests: the production loop against the fake queue (spec
 * §4-§6): what the queue receives for a normal job (URLs, headers, exact
 * bodies of §5.2), dict unpacking, an exception, a handler returning
 * nothing, progress updates in order before the result, generator stream
 * posts, batch takes with concurrency 2, and the config refresh_worker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_assert.h"
#include "rp_harness.h"
#include "rp_test_handler.h"

/* The first result POST (not a progress update) for a job, or NULL. */
static const fq_request *final_post(fake_queue *q, const char *job_id)
{
    for (int i = 0; i < fq_count(q, FQ_DONE); i++) {
        const fq_request *r = fq_get(q, FQ_DONE, i);
        if (r->job_id && !strcmp(r->job_id, job_id) && !strstr(r->body, "\"IN_PROGRESS\"")) return r;
    }
    return NULL;
}

static void stop_worker(rph *h)
{
    rph_signal(h, SIGTERM);
    assert_int_equal(rph_wait(h, 10000), 0);
}

static void normal_job_urls_headers_and_body(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"job-1\",\"input\":{\"return\":\"Hello, John Doe!\"},\"webhook\":\"https://c/h\"}"));
    rp_config cfg = {.handler = rpt_script_handler};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    assert_true(fq_wait(h->q, FQ_STOP, 1, 5000));
    stop_worker(h);

    const fq_request *take = fq_get(h->q, FQ_TAKE, 0);
    assert_string_equal(take->method, "GET");
    assert_string_equal(take->url, "/v2/ep1/job-take/pod-1?gpu=test&job_in_progress=0");
    assert_string_equal(fq_header(take, "authorization"), RPH_API_KEY); /* raw, no "Bearer" */
    assert_string_equal(fq_header(take, "content-type"), "application/json");

    assert_int_equal(fq_count(h->q, FQ_DONE), 1);
    const fq_request *done = fq_get(h->q, FQ_DONE, 0);
    assert_string_equal(done->method, "POST");
    assert_string_equal(done->url, "/v2/ep1/job-done/pod-1/job-1?gpu=test&isStream=false");
    assert_string_equal(fq_header(done, "authorization"), RPH_API_KEY);
    assert_string_equal(fq_header(done, "content-type"), "application/x-www-form-urlencoded");
    assert_string_equal(fq_header(done, "charset"), "utf-8");
    assert_string_equal(fq_header(done, "x-request-id"), "job-1");
    assert_json_text(done->body, "{\"output\": \"Hello, John Doe!\"}");

    const fq_request *ping = fq_get(h->q, FQ_PING, 0);
    assert_non_null(ping);
    assert_string_equal(ping->url, "/v2/ep1/ping/pod-1?gpu=test&runpod_version=1.12.0");
    assert_string_equal(fq_header(ping, "authorization"), RPH_API_KEY);
    assert_true(ping->t < take->t + 1.0); /* first ping at once */

    assert_string_equal(fq_get(h->q, FQ_STOP, 0)->url, "/v2/ep1/job-stop/pod-1?gpu=test");
    assert_int_equal(fq_count(h->q, FQ_STREAM), 0);

    char *log = rph_log(h);
    assert_null(strstr(log, RPH_API_KEY)); /* the key is never printed */
    assert_non_null(strstr(log, "job-1 | Started."));
    assert_non_null(strstr(log, "job-1 | Finished."));
    free(log);
}

static void dict_unpacking_and_nothing_returned(void **state)
{
    rph *h = *state;
    const char *jobs[][2] = {
        {"{\"id\":\"a\",\"input\":{\"return\":{\"images\":[\"x\"],\"seed\":42}}}", "{\"output\":{\"images\":[\"x\"],\"seed\":42}}"},
        {"{\"id\":\"b\",\"input\":{\"return\":{\"error\":\"Invalid input\"}}}", "{\"error\":\"Invalid input\"}"},
        {"{\"id\":\"c\",\"input\":{\"return\":{\"error\":\"x\",\"details\":[1]}}}", "{\"output\":{\"details\":[1]},\"error\":\"x\"}"},
        {"{\"id\":\"d\",\"input\":{\"return\":{}}}", "{}"},
        {"{\"id\":\"e\",\"input\":{\"return\":null}}", "{\"output\":null}"},
        {"{\"id\":\"f\",\"input\":{\"return\":{\"refresh_worker\":true,\"r\":1}}}", "{\"output\":{\"r\":1},\"stopPod\":true}"},
        {"{\"id\":\"g\",\"input\":{\"return\":{\"output\":\"x\"}}}", "{\"output\":{\"output\":\"x\"}}"},
    };
    size_t n = sizeof jobs / sizeof jobs[0];
    for (size_t i = 0; i < n; i++) fq_push(h->q, FQ_TAKE, fq_json(jobs[i][0]));
    rp_config cfg = {.handler = rpt_script_handler};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, (int)n, 10000));
    /* a returned refresh_worker does not stop the loop: it takes again */
    assert_true(fq_wait(h->q, FQ_TAKE, (int)n + 1, 5000));
    stop_worker(h);
    const char *ids[] = {"a", "b", "c", "d", "e", "f", "g"};
    for (size_t i = 0; i < n; i++) {
        const fq_request *r = final_post(h->q, ids[i]);
        assert_non_null(r);
        assert_json_text(r->body, jobs[i][1]);
    }
}

static void handler_exception_posts_six_key_report(void **state)
{
    rph *h = *state;
    static const char *env[] = {"RUNPOD_POD_HOSTNAME=host-9", NULL};
    h->env = env;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"x-1\",\"input\":{\"raise\":\"bad seed\"}}"));
    rp_config cfg = {.handler = rpt_script_handler};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    stop_worker(h);
    const fq_request *done = fq_get(h->q, FQ_DONE, 0);
    cJSON *body = fq_body_json(done);
    assert_int_equal(cJSON_GetArraySize(body), 1);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(body, "error");
    assert_true(cJSON_IsString(err));
    cJSON *report = cJSON_Parse(err->valuestring);
    assert_int_equal(cJSON_GetArraySize(report), 6);
    assert_string_equal(cJSON_GetObjectItem(report, "error_type")->valuestring, "<class 'ValueError'>");
    assert_string_equal(cJSON_GetObjectItem(report, "error_message")->valuestring, "bad seed");
    assert_non_null(strstr(cJSON_GetObjectItem(report, "error_traceback")->valuestring, "ValueError: bad seed"));
    assert_string_equal(cJSON_GetObjectItem(report, "hostname")->valuestring, "host-9");
    assert_string_equal(cJSON_GetObjectItem(report, "worker_id")->valuestring, RPH_POD_ID);
    assert_string_equal(cJSON_GetObjectItem(report, "runpod_version")->valuestring, "1.12.0");
    cJSON_Delete(report);
    cJSON_Delete(body);
    char *log = rph_log(h);
    assert_non_null(strstr(log, "x-1 | Captured Handler Exception"));
    free(log);
}

static void progress_in_order_and_before_the_result(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"p-1\",\"input\":{\"progress\":25,\"return\":\"done\"}}"));
    rp_config cfg = {.handler = rpt_script_handler};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 26, 10000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_DONE), 26);
    for (int i = 0; i < 25; i++) {
        const fq_request *r = fq_get(h->q, FQ_DONE, i);
        assert_string_equal(r->url, "/v2/ep1/job-done/pod-1/p-1?gpu=test&isStream=false");
        assert_string_equal(fq_header(r, "x-request-id"), "p-1");
        char want[96];
        snprintf(want, sizeof want, "{\"status\":\"IN_PROGRESS\",\"output\":{\"step\":%d}}", i + 1);
        assert_json_text(r->body, want);
    }
    assert_json_text(fq_get(h->q, FQ_DONE, 25)->body, "{\"output\":\"done\"}");
}

static void generator_stream_posts_and_aggregate(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"g-1\",\"input\":{\"yield\":[1,\"two\",{\"three\":3}]}}"));
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"g-2\",\"input\":{\"yield\":[\"ok\",{\"error\":\"broke\"},\"never\"]}}"));
    rp_config cfg = {.handler = rpt_script_handler, .generator = true, .return_aggregate_stream = true};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 2, 10000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_STREAM), 4);
    const char *chunks[] = {"{\"output\":1}", "{\"output\":\"two\"}", "{\"output\":{\"three\":3}}"};
    for (int i = 0; i < 3; i++) {
        const fq_request *r = fq_get(h->q, FQ_STREAM, i);
        assert_string_equal(r->url, "/v2/ep1/job-stream/pod-1/g-1?gpu=test&isStream=false");
        assert_string_equal(fq_header(r, "x-request-id"), "g-1");
        assert_json_text(r->body, chunks[i]);
    }
    const fq_request *done = final_post(h->q, "g-1");
    assert_string_equal(done->url, "/v2/ep1/job-done/pod-1/g-1?gpu=test&isStream=true");
    assert_json_text(done->body, "{\"output\":[1,\"two\",{\"three\":3}]}");
    assert_true(done->t >= fq_get(h->q, FQ_STREAM, 2)->t);
    /* an error chunk ends the stream; it is not streamed */
    assert_json_text(fq_get(h->q, FQ_STREAM, 3)->body, "{\"output\":\"ok\"}");
    assert_json_text(final_post(h->q, "g-2")->body, "{\"error\":\"broke\"}");
}

static void generator_without_aggregate_posts_empty_list(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"g-3\",\"input\":{\"yield\":[1,2]}}"));
    rp_config cfg = {.handler = rpt_script_handler, .generator = true};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_STREAM), 2);
    const fq_request *done = fq_get(h->q, FQ_DONE, 0);
    assert_string_equal(done->url, "/v2/ep1/job-done/pod-1/g-3?gpu=test&isStream=true");
    assert_json_text(done->body, "{\"output\":[]}");
}

static void batch_take_with_concurrency_two(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE_BATCH, fq_json("[{\"id\":\"b1\",\"input\":{\"sleep_ms\":1000,\"return\":1}},"
                                         "{\"id\":\"b2\",\"input\":{\"sleep_ms\":2500,\"return\":2}}]"));
    rp_config cfg = {.handler = rpt_script_handler, .concurrency = 2};
    rph_spawn(h, &cfg);
    assert_true(fq_wait(h->q, FQ_DONE, 2, 10000));
    stop_worker(h);
    const fq_request *batch = fq_get(h->q, FQ_TAKE_BATCH, 0);
    assert_string_equal(batch->url, "/v2/ep1/job-take-batch/pod-1?gpu=test&batch_size=2&job_in_progress=0");
    const fq_request *d1 = final_post(h->q, "b1"), *d2 = final_post(h->q, "b2");
    assert_json_text(d1->body, "{\"output\":1}");
    assert_json_text(d2->body, "{\"output\":2}");
    /* both ran at once: b2 (2.5 s) finished ~1.5 s after b1 (1 s), not 2.5 s */
    assert_true(d2->t - batch->t < 3.4);
    assert_true(d1->t - batch->t >= 0.95);
    /* while both ran nothing was taken; once b1 was done, one more with b2 still held */
    const fq_request *next = fq_get(h->q, FQ_TAKE, 0);
    assert_non_null(next);
    assert_true(next->t >= d1->t - 0.05);
    assert_string_equal(next->url, "/v2/ep1/job-take/pod-1?gpu=test&job_in_progress=1");
    for (int i = 1; i < fq_count(h->q, FQ_TAKE_BATCH); i++) assert_true(fq_get(h->q, FQ_TAKE_BATCH, i)->t >= d2->t - 0.05);
}

static void config_refresh_worker_stops_pod_and_exits(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"r-1\",\"input\":{\"return\":{\"a\":1}}}"));
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"r-2\",\"input\":{}}"));
    rp_config cfg = {.handler = rpt_script_handler, .refresh_worker = true};
    rph_spawn(h, &cfg);
    assert_int_equal(rph_wait(h, 10000), 0); /* exits by itself after one job */
    assert_int_equal(fq_count(h->q, FQ_TAKE), 1);
    assert_int_equal(fq_count(h->q, FQ_DONE), 1);
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"output\":{\"a\":1},\"stopPod\":true}");
    char *log = rph_log(h);
    assert_non_null(strstr(log, "r-1 | refresh_worker flag set, stopping pod after job."));
    free(log);
}

#define T(f) cmocka_unit_test_setup_teardown(f, rph_setup, rph_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(normal_job_urls_headers_and_body),
        T(dict_unpacking_and_nothing_returned),
        T(handler_exception_posts_six_key_report),
        T(progress_in_order_and_before_the_result),
        T(generator_stream_posts_and_aggregate),
        T(generator_without_aggregate_posts_empty_list),
        T(batch_take_with_concurrency_two),
        T(config_refresh_worker_stops_pod_and_exits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
