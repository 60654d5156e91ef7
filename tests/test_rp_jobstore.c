/* Unit tests of the dev API's job table (runpod/jobstore.h) with the clock
 * passed in: queued jobs and kept answers expire after the TTL (a queued
 * one is reported), the job and byte limits refuse new jobs after the
 * oldest kept answers are dropped, claims move QUEUED -> RUNNING -> DONE and
 * hand out the input once, and cancellation of each state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/jobstore.h"

static void put_ok(rp_jobstore *s, const char *id, const char *input, double now)
{
    bool full;
    char why[256];
    assert_int_equal(rp_jobstore_put(s, id, input, NULL, now, &full, why, sizeof why), 0);
}

static void expect_counts(rp_jobstore *s, int queued, int running, int done, size_t bytes)
{
    int q, r, d;
    size_t b;
    rp_jobstore_counts(s, &q, &r, &d, &b);
    assert_int_equal(q, queued);
    assert_int_equal(r, running);
    assert_int_equal(d, done);
    assert_int_equal(b, bytes);
}

static void dropped(const char *id, void *ctx)
{
    char *list = ctx;
    strcat(list, id);
    strcat(list, " ");
}

static void claims_run_a_job_once_and_keep_its_answer(void **state)
{
    rp_jobstore *s = rp_jobstore_new(8, 1000, 600);
    bool full;
    char why[256];
    assert_int_equal(rp_jobstore_put(s, "a", "{\"x\":1}", "http://h/", 0, &full, why, sizeof why), 0);
    expect_counts(s, 1, 0, 0, 7 + 9);
    char *input, *hook, *status, *answer;
    assert_int_equal(rp_jobstore_claim(s, "a", &input, &hook, &status, &answer), RP_JOB_QUEUED);
    assert_string_equal(input, "{\"x\":1}");
    assert_string_equal(hook, "http://h/");
    free(input), free(hook);
    expect_counts(s, 0, 1, 0, 0);
    assert_int_equal(rp_jobstore_claim(s, "a", &input, &hook, &status, &answer), RP_JOB_RUNNING);
    assert_null(input);
    rp_jobstore_finish(s, "a", "COMPLETED", "{\"id\":\"a\"}", 10);
    expect_counts(s, 0, 0, 1, 9 + 10);
    assert_int_equal(rp_jobstore_claim(s, "a", &input, &hook, &status, &answer), RP_JOB_DONE);
    assert_string_equal(status, "COMPLETED");
    assert_string_equal(answer, "{\"id\":\"a\"}");
    free(status), free(answer);
    assert_int_equal(rp_jobstore_claim(s, "b", &input, &hook, &status, &answer), RP_JOB_UNKNOWN);
    rp_jobstore_free(s);
}

/* The TTL: a queued job never polled and a kept answer go after ttl_s;
 * a running job never does. */
static void entries_expire_after_the_ttl(void **state)
{
    rp_jobstore *s = rp_jobstore_new(8, 1000, 600);
    put_ok(s, "old", "{}", 0);
    put_ok(s, "new", "{}", 300);
    put_ok(s, "run", "{}", 0);
    char *input, *hook, *status, *answer, list[64] = "";
    assert_int_equal(rp_jobstore_claim(s, "run", &input, &hook, &status, &answer), RP_JOB_QUEUED);
    free(input);
    rp_jobstore_expire(s, 599.9, dropped, list);
    assert_string_equal(list, "");
    rp_jobstore_expire(s, 600, dropped, list);
    assert_string_equal(list, "old "); /* reported: the dev API forgets its id */
    expect_counts(s, 1, 1, 0, 2);
    rp_jobstore_finish(s, "run", "COMPLETED", "{}", 700);
    rp_jobstore_expire(s, 1299, dropped, list);
    expect_counts(s, 0, 0, 1, 9 + 2);
    assert_string_equal(list, "old new ");
    rp_jobstore_expire(s, 1300, dropped, list);
    expect_counts(s, 0, 0, 0, 0);
    assert_string_equal(list, "old new "); /* kept answers go silently */
    rp_jobstore_free(s);
}

/* Limits: a new job that does not fit is refused after the oldest kept
 * answers are dropped; queued jobs are never dropped for room. */
static void limits_refuse_new_jobs_after_dropping_kept_answers(void **state)
{
    rp_jobstore *s = rp_jobstore_new(3, 100, 600);
    bool full;
    char why[256], *input, *hook, *status, *answer;
    put_ok(s, "a", "{}", 0);
    put_ok(s, "b", "{}", 1);
    assert_int_equal(rp_jobstore_claim(s, "a", &input, &hook, &status, &answer), RP_JOB_QUEUED);
    free(input);
    rp_jobstore_finish(s, "a", "COMPLETED", "{}", 2);
    put_ok(s, "c", "{}", 3);
    put_ok(s, "d", "{}", 4); /* the kept answer of a made room */
    assert_int_equal(rp_jobstore_claim(s, "a", &input, &hook, &status, &answer), RP_JOB_UNKNOWN);
    assert_int_equal(rp_jobstore_put(s, "e", "{}", NULL, 5, &full, why, sizeof why), -1);
    assert_true(full);
    assert_string_equal(why, "the dev API already holds 3 jobs, its limit; poll or cancel some first");
    char big[120];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    rp_jobstore *t = rp_jobstore_new(8, 100, 600);
    assert_int_equal(rp_jobstore_put(t, "big", big, NULL, 0, &full, why, sizeof why), -1);
    assert_true(full);
    assert_string_equal(why, "the dev API holds 0 bytes of stored jobs, and this one's 119 would pass its limit of "
                             "100; poll or cancel some first");
    /* an answer too large to keep is dropped: later polls do not find it */
    put_ok(t, "r", "{}", 0);
    assert_int_equal(rp_jobstore_claim(t, "r", &input, &hook, &status, &answer), RP_JOB_QUEUED);
    free(input);
    rp_jobstore_finish(t, "r", "COMPLETED", big, 1);
    expect_counts(t, 0, 0, 0, 0);
    rp_jobstore_free(t);
    rp_jobstore_free(s);
}

static void cancel_each_state(void **state)
{
    rp_jobstore *s = rp_jobstore_new(8, 1000, 600);
    char *input, *hook, *status, *answer;
    put_ok(s, "q", "{\"big\":1}", 0);
    assert_int_equal(rp_jobstore_cancel(s, "q", "{\"status\":\"CANCELLED\"}", 1, &status), RP_JOB_QUEUED);
    expect_counts(s, 0, 0, 1, 9 + 22); /* its input is gone, the answer kept */
    assert_int_equal(rp_jobstore_claim(s, "q", &input, &hook, &status, &answer), RP_JOB_DONE);
    assert_string_equal(status, "CANCELLED");
    free(status), free(answer);
    put_ok(s, "r", "{}", 0);
    assert_int_equal(rp_jobstore_claim(s, "r", &input, &hook, &status, &answer), RP_JOB_QUEUED);
    free(input);
    assert_false(rp_jobstore_cancel_requested(s, "r"));
    assert_int_equal(rp_jobstore_cancel(s, "r", "{}", 2, &status), RP_JOB_RUNNING);
    assert_true(rp_jobstore_cancel_requested(s, "r"));
    rp_jobstore_finish(s, "r", "CANCELLED", "{}", 3);
    assert_int_equal(rp_jobstore_cancel(s, "r", "{}", 4, &status), RP_JOB_DONE);
    assert_string_equal(status, "CANCELLED");
    free(status);
    assert_int_equal(rp_jobstore_cancel(s, "nope", "{}", 4, &status), RP_JOB_UNKNOWN);
    rp_jobstore_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(claims_run_a_job_once_and_keep_its_answer),
        cmocka_unit_test(entries_expire_after_the_ttl),
        cmocka_unit_test(limits_refuse_new_jobs_after_dropping_kept_answers),
        cmocka_unit_test(cancel_each_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
