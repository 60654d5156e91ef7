/* Unit tests: URL templating and query building (spec §1.4, §4.1, §5.1,
 * §5.5, §6), the ping interval rule, settings from the environment, and the
 * take backoff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/backoff.h"
#include "runpod/settings.h"
#include "runpod/url.h"

#define assert_str_owned(expr, want) do { char *s_ = (expr); assert_non_null(s_); assert_string_equal(s_, want); free(s_); } while (0)

static void encode_keeps_unreserved_and_escapes_the_rest(void **state)
{
    assert_str_owned(rp_url_encode("5e0ae067-4a83_x.y~z-u1"), "5e0ae067-4a83_x.y~z-u1");
    assert_str_owned(rp_url_encode("abc-u1,def-u1"), "abc-u1%2Cdef-u1");
    assert_str_owned(rp_url_encode("a b/c?d&e#\xc3\xa9"), "a%20b%2Fc%3Fd%26e%23%C3%A9");
    assert_str_owned(rp_url_encode(""), "");
}

static void replace_every_occurrence(void **state)
{
    assert_str_owned(rp_str_replace("/job-take/x/job-take/", "/job-take/", "/job-stop/"), "/job-stop/x/job-stop/");
    assert_str_owned(rp_str_replace("nothing here", "$ID", "POD"), "nothing here");
    assert_str_owned(rp_str_replace("$ID$ID", "$ID", ""), "");
}

static void worker_substitution_in_take_and_ping_templates(void **state)
{
    assert_str_owned(rp_url_for_worker("https://api.runpod.ai/v2/EP/job-take/$ID?gpu=NVIDIA+A40", "POD"),
                     "https://api.runpod.ai/v2/EP/job-take/POD?gpu=NVIDIA+A40");
    assert_str_owned(rp_url_for_worker("http://h/v2/EP/job-take/$RUNPOD_POD_ID?gpu=x", "POD"),
                     "http://h/v2/EP/job-take/POD?gpu=x");
    assert_str_owned(rp_url_for_worker("http://h/ping/$RUNPOD_POD_ID/$ID", "p d"), "http://h/ping/p%20d/p%20d");
}

static void take_url_single_and_batch(void **state)
{
    const char *base = "https://api.runpod.ai/v2/EP/job-take/POD?gpu=NVIDIA+A40";
    assert_str_owned(rp_take_url(base, 1, false),
                     "https://api.runpod.ai/v2/EP/job-take/POD?gpu=NVIDIA+A40&job_in_progress=0");
    assert_str_owned(rp_take_url(base, 1, true),
                     "https://api.runpod.ai/v2/EP/job-take/POD?gpu=NVIDIA+A40&job_in_progress=1");
    assert_str_owned(rp_take_url(base, 3, true),
                     "https://api.runpod.ai/v2/EP/job-take-batch/POD?gpu=NVIDIA+A40&batch_size=3&job_in_progress=1");
}

static void take_url_without_query_starts_one(void **state)
{
    assert_str_owned(rp_take_url("http://h/v2/EP/job-take/POD", 1, false), "http://h/v2/EP/job-take/POD?job_in_progress=0");
    assert_str_owned(rp_take_url("http://h/v2/EP/job-take/POD", 2, false),
                     "http://h/v2/EP/job-take-batch/POD?batch_size=2&job_in_progress=0");
}

static void stop_url_derived_from_take_url(void **state)
{
    assert_str_owned(rp_stop_url("https://api.runpod.ai/v2/EP/job-take/POD?gpu=NVIDIA+A40"),
                     "https://api.runpod.ai/v2/EP/job-stop/POD?gpu=NVIDIA+A40");
    assert_null(rp_stop_url("https://example.com/custom/take/POD"));
}

static void result_url_with_job_id_and_is_stream(void **state)
{
    const char *tmpl = "https://api.runpod.ai/v2/EP/job-done/POD/$ID?gpu=NVIDIA+H100+PCIe";
    assert_str_owned(rp_result_url(tmpl, "abc-u1", false),
                     "https://api.runpod.ai/v2/EP/job-done/POD/abc-u1?gpu=NVIDIA+H100+PCIe&isStream=false");
    assert_str_owned(rp_result_url(tmpl, "abc-u1", true),
                     "https://api.runpod.ai/v2/EP/job-done/POD/abc-u1?gpu=NVIDIA+H100+PCIe&isStream=true");
    /* an id with URL syntax in it cannot change the URL's structure */
    assert_str_owned(rp_result_url(tmpl, "a/b?c", false),
                     "https://api.runpod.ai/v2/EP/job-done/POD/a%2Fb%3Fc?gpu=NVIDIA+H100+PCIe&isStream=false");
    /* the SDK's placeholder template when POST_OUTPUT is unset */
    assert_str_owned(rp_result_url("JOB_DONE_URL", "local_test", false), "JOB_DONE_URL?isStream=false");
}

static void ping_url_ids_encoded_and_omitted_when_empty(void **state)
{
    const char *base = "https://api.runpod.ai/v2/EP/ping/POD?gpu=NVIDIA+A40";
    assert_str_owned(rp_ping_url(base, "abc-u1,def-u1", "1.12.0"),
                     "https://api.runpod.ai/v2/EP/ping/POD?gpu=NVIDIA+A40&job_id=abc-u1%2Cdef-u1&runpod_version=1.12.0");
    assert_str_owned(rp_ping_url(base, NULL, "1.12.0"),
                     "https://api.runpod.ai/v2/EP/ping/POD?gpu=NVIDIA+A40&runpod_version=1.12.0");
    assert_str_owned(rp_ping_url(base, "", "1.12.0"),
                     "https://api.runpod.ai/v2/EP/ping/POD?gpu=NVIDIA+A40&runpod_version=1.12.0");
    assert_str_owned(rp_ping_url("http://h/ping/POD", "x", "1.12.0"), "http://h/ping/POD?job_id=x&runpod_version=1.12.0");
}

static void ping_interval_whole_seconds_at_least_one(void **state)
{
    assert_int_equal(rp_ping_interval_ms(NULL), 10000);
    assert_int_equal(rp_ping_interval_ms(""), 10000);
    assert_int_equal(rp_ping_interval_ms("1000"), 1000);
    assert_int_equal(rp_ping_interval_ms("1500"), 1000);  /* integer division as the SDK */
    assert_int_equal(rp_ping_interval_ms("2999"), 2000);
    assert_int_equal(rp_ping_interval_ms("999"), 1000);   /* the SDK would ping in a tight loop */
    assert_int_equal(rp_ping_interval_ms("0"), 1000);
    assert_int_equal(rp_ping_interval_ms("-5000"), 1000);
    assert_int_equal(rp_ping_interval_ms("abc"), 10000);
    assert_int_equal(rp_ping_interval_ms("25000"), 25000);
}

static void clear_env(void)
{
    const char *names[] = {"RUNPOD_WEBHOOK_GET_JOB", "RUNPOD_WEBHOOK_POST_OUTPUT", "RUNPOD_WEBHOOK_POST_STREAM",
                           "RUNPOD_WEBHOOK_PING", "RUNPOD_POD_ID", "RUNPOD_AI_API_KEY", "RUNPOD_PING_INTERVAL",
                           "RUNPOD_REALTIME_PORT", "RUNPOD_ENDPOINT_ID"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unsetenv(names[i]);
}

static void settings_from_environment(void **state)
{
    clear_env();
    setenv("RUNPOD_WEBHOOK_GET_JOB", "http://h/v2/EP/job-take/$ID?gpu=A40", 1);
    setenv("RUNPOD_WEBHOOK_POST_OUTPUT", "http://h/v2/EP/job-done/$RUNPOD_POD_ID/$ID?gpu=A40", 1);
    setenv("RUNPOD_WEBHOOK_PING", "http://h/v2/EP/ping/$RUNPOD_POD_ID?gpu=A40", 1);
    setenv("RUNPOD_POD_ID", "pod123", 1);
    setenv("RUNPOD_PING_INTERVAL", "1500", 1);
    setenv("RUNPOD_REALTIME_PORT", "8080", 1);
    rp_settings s;
    rp_settings_load(&s);
    assert_string_equal(s.take_base, "http://h/v2/EP/job-take/pod123?gpu=A40");
    assert_string_equal(s.output_tmpl, "http://h/v2/EP/job-done/pod123/$ID?gpu=A40");
    assert_string_equal(s.stream_tmpl, "JOB_STREAM_URL");
    assert_string_equal(s.ping_base, "http://h/v2/EP/ping/pod123?gpu=A40");
    assert_string_equal(s.worker_id, "pod123");
    assert_string_equal(s.api_key, "");
    assert_int_equal(s.ping_interval_ms, 1000);
    assert_int_equal(s.realtime_port, 8080);
    assert_null(s.endpoint_id);
    rp_settings_free(&s);
    clear_env();
}

static void settings_defaults_and_random_worker_id(void **state)
{
    clear_env();
    rp_settings s;
    rp_settings_load(&s);
    assert_null(s.take_base);
    assert_null(s.ping_base);
    assert_null(s.pod_id);
    assert_string_equal(s.output_tmpl, "JOB_DONE_URL");
    assert_int_equal(strlen(s.worker_id), 36);
    assert_int_equal(s.worker_id[14], '4'); /* UUID version 4 */
    assert_int_equal(s.worker_id[8], '-');
    assert_int_equal(s.ping_interval_ms, 10000);
    rp_settings_free(&s);
}

static void backoff_doubles_with_jitter_up_to_the_cap(void **state)
{
    rp_backoff b;
    rp_backoff_init(&b, 12345);
    long base = RP_BACKOFF_BASE_MS;
    for (int n = 0; n < 12; n++) {
        long d = base << n;
        if (d > RP_BACKOFF_CAP_MS) d = RP_BACKOFF_CAP_MS;
        long got = rp_backoff_next_ms(&b);
        assert_in_range(got, d / 2, d);
    }
    rp_backoff_reset(&b);
    assert_in_range(rp_backoff_next_ms(&b), RP_BACKOFF_BASE_MS / 2, RP_BACKOFF_BASE_MS);
    /* jitter: not every worker waits the same */
    rp_backoff a, c;
    rp_backoff_init(&a, 1);
    rp_backoff_init(&c, 2);
    int differ = 0;
    for (int n = 0; n < 5; n++) differ += rp_backoff_next_ms(&a) != rp_backoff_next_ms(&c);
    assert_true(differ > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_keeps_unreserved_and_escapes_the_rest),
        cmocka_unit_test(replace_every_occurrence),
        cmocka_unit_test(worker_substitution_in_take_and_ping_templates),
        cmocka_unit_test(take_url_single_and_batch),
        cmocka_unit_test(take_url_without_query_starts_one),
        cmocka_unit_test(stop_url_derived_from_take_url),
        cmocka_unit_test(result_url_with_job_id_and_is_stream),
        cmocka_unit_test(ping_url_ids_encoded_and_omitted_when_empty),
        cmocka_unit_test(ping_interval_whole_seconds_at_least_one),
        cmocka_unit_test(settings_from_environment),
        cmocka_unit_test(settings_defaults_and_random_worker_id),
        cmocka_unit_test(backoff_doubles_with_jitter_up_to_the_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
