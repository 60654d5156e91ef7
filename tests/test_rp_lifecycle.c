/* Integration tests: the worker's lifecycle against the fake queue:
 * heartbeats at RUNPOD_PING_INTERVAL with the job id while the handler
 * sleeps 5 s (spec §6), the job-stop channel cancelling a running job with
 * no result posted (§5.5), SIGTERM in the middle of a job (the result and
 * its progress are still posted, exit 0), SIGINT while idle. */
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

static bool log_has(const rph *h, const char *text)
{
    char *log = rph_log(h);
    bool found = log && strstr(log, text);
    free(log);
    return found;
}

static void heartbeats_while_the_handler_sleeps(void **state)
{
    rph *h = *state;
    h->env = fast_ping;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"hb-1\",\"input\":{\"sleep_ms\":5000,\"return\":\"rested\"}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 12000));
    assert_true(fq_wait(h->q, FQ_PING, fq_count(h->q, FQ_PING) + 1, 3000));
    rph_signal(h, SIGTERM);
    assert_int_equal(rph_wait(h, 10000), 0);
    const fq_request *take = fq_get(h->q, FQ_TAKE, 0), *done = fq_get(h->q, FQ_DONE, 0);
    assert_json_text(done->body, "{\"output\":\"rested\"}");
    assert_true(done->t - take->t >= 4.9);
    /* Pings are never early; the late bounds leave room for a loaded machine
     * (the ASan suite runs two tests at a time on 2 cores). */
    assert_true(fq_get(h->q, FQ_PING, 0)->t <= take->t + 1.0); /* first ping at once */
    int during = 0;
    for (int i = 0; i < fq_count(h->q, FQ_PING); i++) {
        const fq_request *p = fq_get(h->q, FQ_PING, i);
        char ids[128], version[32];
        assert_true(fq_query_param(p, "runpod_version", version, sizeof version));
        assert_string_equal(version, "1.12.0");
        if (i) assert_in_range((long)((p->t - fq_get(h->q, FQ_PING, i - 1)->t) * 1000), 950, 3000);
        bool has_ids = fq_query_param(p, "job_id", ids, sizeof ids);
        if (p->t > take->t + 0.1 && p->t < done->t - 0.1) {
            assert_true(has_ids);
            assert_string_equal(ids, "hb-1");
            during++;
        }
        if (p->t < take->t - 1.0 || p->t > done->t + 1.0) assert_false(has_ids);
    }
    assert_true(during >= 3);
}

static void job_stop_cancels_the_running_job(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"s-1\",\"input\":{\"progress\":1,\"sleep_ms\":10000,\"return\":\"too late\"}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 1, 10000)); /* its progress update: it is running */
    int polls = fq_count(h->q, FQ_STOP);
    fq_push(h->q, FQ_STOP, fq_json("{\"jobsToStop\":[\"s-1\",\"not-mine\",7]}"));
    assert_true(fq_wait(h->q, FQ_TAKE, 2, 5000)); /* free again: taking the next job */
    const fq_request *stop_poll = fq_get(h->q, FQ_STOP, polls);
    assert_non_null(stop_poll);
    assert_true(fq_get(h->q, FQ_TAKE, 1)->t - stop_poll->t < 1.0);
    assert_true(fq_get(h->q, FQ_TAKE, 1)->t - fq_get(h->q, FQ_TAKE, 0)->t < 6.0); /* long before 10 s */
    assert_false(fq_wait(h->q, FQ_DONE, 2, 500));
    rph_signal(h, SIGTERM);
    assert_int_equal(rph_wait(h, 10000), 0);
    assert_int_equal(fq_count(h->q, FQ_DONE), 1); /* no result for a stopped job */
    assert_json_text(fq_get(h->q, FQ_DONE, 0)->body, "{\"status\":\"IN_PROGRESS\",\"output\":{\"step\":1}}");
    assert_true(log_has(h, "s-1 | Stopping job."));
    assert_true(log_has(h, "s-1 | Job stopped."));
}

static void sigterm_mid_job_posts_the_result_and_exits_zero(void **state)
{
    rph *h = *state;
    fq_push(h->q, FQ_TAKE, fq_json("{\"id\":\"t-1\",\"input\":{\"progress\":3,\"sleep_ms\":2000,\"return\":\"finished\"}}"));
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_DONE, 3, 10000));
    double t_signal = fq_now(h->q);
    rph_signal(h, SIGTERM);
    assert_int_equal(rph_wait(h, 10000), 0);
    assert_int_equal(fq_count(h->q, FQ_DONE), 4);
    const fq_request *final = fq_get(h->q, FQ_DONE, 3);
    assert_json_text(final->body, "{\"output\":\"finished\"}");
    assert_true(final->t > t_signal);
    assert_true(h->t_exit - final->t < 1.5);
    assert_int_equal(fq_count(h->q, FQ_TAKE), 1); /* nothing taken after the signal */
    for (int i = 0; i < 3; i++) assert_non_null(strstr(fq_get(h->q, FQ_DONE, i)->body, "IN_PROGRESS"));
}

static void sigint_while_idle_exits_at_once(void **state)
{
    rph *h = *state;
    fq_set_default(h->q, FQ_TAKE, (fq_response){.status = 204, .delay_ms = FQ_HANG});
    rph_spawn(h, &plain);
    assert_true(fq_wait(h->q, FQ_TAKE, 1, 5000));
    assert_true(fq_wait(h->q, FQ_STOP, 1, 5000));
    double t_signal = fq_now(h->q);
    rph_signal(h, SIGINT);
    assert_int_equal(rph_wait(h, 5000), 0);
    assert_true(h->t_exit - t_signal < 1.0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, rph_setup, rph_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(heartbeats_while_the_handler_sleeps),
        T(job_stop_cancels_the_running_job),
        T(sigterm_mid_job_posts_the_result_and_exits_zero),
        T(sigint_while_idle_exits_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
