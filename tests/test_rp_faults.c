/* Integration tests: a misbehaving queue (spec §4.4, §5.1, §6, issue 2's
 * fault list). Each test asserts on what the fake queue received: a 500 and
 * a dropped connection on the result POST (retried after 2 s / 3 s, result
 * delivered), a 4xx (not retried), 429 on take (5 s pause), 5xx and dropped
 * connections on take (jittered exponential backoff), a take that never
 * answers (heartbeats go on, SIGTERM is prompt), a ping that does not
 * answer within its 2 x interval timeout, malformed jobs. */
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

static const rp_config plain = {.handler = rpt_script_handler};
static const char *fast_ping[] = {"RUNPOD_PING_INTERVAL=1000", NULL};

static double gap(fake_queue *q, fq_route route, int i)
{
    return fq_get(q, route, i + 1)->t - fq_get(q, route, i)->t;
}

static void stop_worker(rph *h)
{
    rph_signal(h, SIGTERM);
    assert_int_equal(rph_wait(h, 10000), 0);
}

static bool log_has(const rph *h, const char *text)
{
    char *log = rph_log(h);
    bool found = log && strstr(log, text);
    free(log);
    return found;
}

static void result_500_retried_after_2s_then_3s(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-500\",\"input\":{\"return\":{\"seed\":42}}}"));
    fq_push(h->q, FQ_DONE, (fq_response){.status = 500, .body = "{}"});
    fq_push(h->q, FQ_DONE, (fq_response){.status = 502});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 3, 15000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_DONE), 3); /* delivered on the third attempt, not posted again */
    assert_in_range((long)(gap(h->q, FQ_DONE, 0) * 1000), 1950, 2800);
    assert_in_range((long)(gap(h->q, FQ_DONE, 1) * 1000), 2950, 3800);
    for (int i = 0; i < 3; i++) {
        const fq_request *r = fq_get(h->q, FQ_DONE, i);
        assert_string_equal(r->url, "/v2/ep1/job-done/pod-1/j-500?gpu=test&isStream=false");
        assert_json_text(r->body, "{\"output\":{\"seed\":42}}");
    }
}

static void result_connection_reset_is_retried(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-rst\",\"input\":{\"return\":\"x\"}}"));
    fq_push(h->q, FQ_DONE, (fq_response){.status = FQ_RESET});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 2, 10000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_DONE), 2);
    assert_in_range((long)(gap(h->q, FQ_DONE, 0) * 1000), 1950, 2800);
    assert_json_text(fq_get(h->q, FQ_DONE, 1)->body, "{\"output\":\"x\"}");
}

static void result_4xx_is_not_retried(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-400\",\"input\":{\"return\":\"x\"}}"));
    fq_push(h->q, FQ_DONE, (fq_response){.status = 400, .body = "{\"error\":\"too big\"}"});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    assert_false(fq_wait(h->q, FQ_DONE, 2, 2600));
    stop_worker(h);
    assert_true(log_has(h, "j-400 | Failed to return job results. | 400, message='Bad Request', url='http://127.0.0.1:"));
}

static void take_429_pauses_five_seconds(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 429});
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-429\",\"input\":{\"return\":1}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    stop_worker(h);
    assert_in_range((long)(gap(h->q, FQ_TAKE, 0) * 1000), 5000, 5800);
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"output\":1}");
}

static void take_5xx_backs_off_exponentially(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 500});
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 503});
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 401});
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-5xx\",\"input\":{\"return\":1}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 15000));
    stop_worker(h);
    /* waits in [d/2, d] for d = 1 s, 2 s, 4 s */
    assert_in_range((long)(gap(h->q, FQ_TAKE, 0) * 1000), 480, 1300);
    assert_in_range((long)(gap(h->q, FQ_TAKE, 1) * 1000), 980, 2300);
    assert_in_range((long)(gap(h->q, FQ_TAKE, 2) * 1000), 1980, 4300);
    assert_true(log_has(h, "Failed to get job. | Error Type: ClientResponseError | Error Message: 500, message='Internal Server Error'"));
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"output\":1}");
}

static void take_connection_reset_backs_off_and_recovers(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, (fq_response){.status = FQ_RESET});
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"j-reset\",\"input\":{\"return\":2}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000));
    stop_worker(h);
    assert_in_range((long)(gap(h->q, FQ_TAKE, 0) * 1000), 480, 1300);
    assert_true(log_has(h, "Failed to get job. | Error Type: ClientConnectionError | Error Message: "));
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"output\":2}");
}

static void take_that_never_answers(void **state)
{
    rph *h = *state;
    h->env = fast_ping;
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 200, .body = "{\"id\":\"late\",\"input\":{}}", .delay_ms = FQ_HANG});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_TAKE, 1, 5000));
    assert_true(fq_wait(h->q, FQ_PING, 3, 5000)); /* the heartbeat does not wait for the take */
    double t_signal = fq_now(h->q);
    stop_worker(h);
    assert_true(h->t_exit - t_signal < 1.0); /* the long-poll is interrupted at once */
    assert_int_equal(fq_count(h->q, FQ_TAKE), 1);
    assert_int_equal(fq_count(h->q, FQ_DONE), 0);
}

static void ping_timeout_and_5xx_are_retried(void **state)
{
    rph *h = *state;
    h->env = fast_ping; /* interval 1 s, so the ping times out after 2 s */
    fq_push(h->q, FQ_PING, (fq_response){.status = 200, .delay_ms = 6000});
    fq_push(h->q, FQ_PING, (fq_response){.status = 503});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_PING, 5, 12000));
    stop_worker(h);
    assert_in_range((long)(gap(h->q, FQ_PING, 0) * 1000), 1950, 2700); /* timeout 2 s, retry at once */
    assert_in_range((long)(gap(h->q, FQ_PING, 1) * 1000), 1950, 2600); /* second retry waits 2 s */
    assert_in_range((long)(gap(h->q, FQ_PING, 2) * 1000), 950, 1600);  /* success: next after the interval */
    assert_in_range((long)(gap(h->q, FQ_PING, 3) * 1000), 950, 1600);
    for (int i = 0; i < 5; i++)
        assert_string_equal(fq_get(h->q, FQ_PING, i)->url, "/v2/ep1/ping/pod-1?gpu=test&runpod_version=1.12.0");
}

static void malformed_and_incomplete_jobs_are_skipped(void **state)
{
    rph *h = *state;
    fq_response none = {.status = 204};
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\": \"broken\", \"input\": {"));
    fq_push(h->q, FQ_TAKE, none);
    fq_push(h->q, FQ_TAKE, fq_json("{\"input\":{\"return\":1}}"));
    fq_push(h->q, FQ_TAKE, none);
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"no-input\"}"));
    fq_push(h->q, FQ_TAKE, none);
    fq_push(h->q, FQ_TAKE, (fq_response){.status = 200, .content_type = "text/html", .body = "{\"id\":\"html\",\"input\":{}}"});
    fq_push(h->q, FQ_TAKE, none);
    fq_push(h->q, FQ_TAKE, fq_json("[{\"id\":\"bad\\u0001id\",\"input\":{}},{\"id\":\"ok-1\",\"input\":{\"return\":\"fine\"}}]"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 15000));
    assert_true(fq_wait(h->q, FQ_TAKE, 10, 5000));
    stop_worker(h);
    assert_int_equal(fq_count(h->q, FQ_DONE), 1);
    assert_string_equal(fq_get(h->q, FQ_DONE, 0)->job_id, "ok-1");
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"output\":\"fine\"}");
    assert_true(log_has(h, "Failed to get job. | Error Type: Exception | Error Message: Job has missing field(s): id or input."));
    /* each bad answer backed off (the 204 in between reset the backoff) */
    for (int i = 0; i < 8; i += 2) assert_in_range((long)(gap(h->q, FQ_TAKE, i) * 1000), 480, 1300);
}

#define T(f) cmocka_unit_test_setup_teardown(f, rph_setup, rph_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(result_500_retried_after_2s_then_3s),
        T(result_connection_reset_is_retried),
        T(result_4xx_is_not_retried),
        T(take_429_pauses_five_seconds),
        T(take_5xx_backs_off_exponentially),
        T(take_connection_reset_backs_off_and_recovers),
        T(take_that_never_answers),
        T(ping_timeout_and_5xx_are_retried),
        T(malformed_and_incomplete_jobs_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
