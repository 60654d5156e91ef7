/* Unit tests: the final-result bodies of spec §5.2 (every row of its table,
 * the six-key exception report, config refresh_worker) and §5.3 (generator
 * chunks, aggregation, error chunk, raising generator), run through the real
 * job execution path with the scripted test handler. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "json_assert.h"
#include "rp_test_handler.h"
#include "runpod/job.h"
#include "runpod/log.h"
#include "runpod/wrap.h"

/* §5.2 for a value given as JSON text. */
static cJSON *wrap_text(const char *ret_json)
{
    return rp_wrap_result(cJSON_Parse(ret_json), NULL);
}

static bool starts_with(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

static void check_row(const char *handler_returns, const char *posted)
{
    cJSON *r = wrap_text(handler_returns);
    assert_json(r, posted);
    cJSON_Delete(r);
}

static void table_5_2_every_row(void **state)
{
    check_row("\"Hello, John Doe!\"", "{\"output\": \"Hello, John Doe!\"}");
    check_row("{\"images\": [\"...\"], \"seed\": 42}", "{\"output\": {\"images\": [\"...\"], \"seed\": 42}}");
    check_row("{\"output\": \"x\"}", "{\"output\": {\"output\": \"x\"}}");
    check_row("{\"error\": \"Invalid input\"}", "{\"error\": \"Invalid input\"}");
    check_row("{\"error\": \"x\", \"details\": [1]}", "{\"output\": {\"details\": [1]}, \"error\": \"x\"}");
    check_row("{\"error\": \"\", \"a\": 1}", "{\"output\": {\"a\": 1}}");
    check_row("{\"refresh_worker\": true, \"r\": 1}", "{\"output\": {\"r\": 1}, \"stopPod\": true}");
    check_row("{}", "{}");
    check_row("null", "{\"output\": null}");
    cJSON *r = rp_wrap_result(NULL, NULL); /* a handler returning nothing */
    assert_json(r, "{\"output\": null}");
    cJSON_Delete(r);
}

static void other_scalars_and_lists_are_the_output(void **state)
{
    check_row("42", "{\"output\": 42}");
    check_row("false", "{\"output\": false}");
    check_row("[1, {\"error\": \"x\"}]", "{\"output\": [1, {\"error\": \"x\"}]}");
    check_row("\"\"", "{\"output\": \"\"}");
}

static void dict_unpacking_edge_cases(void **state)
{
    check_row("{\"refresh_worker\": false, \"r\": 1}", "{\"output\": {\"r\": 1}}");
    check_row("{\"refresh_worker\": 1, \"error\": \"e\"}", "{\"error\": \"e\", \"stopPod\": true}");
    check_row("{\"error\": null}", "{}");
    check_row("{\"error\": 0, \"a\": []}", "{\"output\": {\"a\": []}}");
    /* our deviation: a non-string error is posted as its JSON text */
    check_row("{\"error\": [\"a\", \"b\"]}", "{\"error\": \"[\\\"a\\\",\\\"b\\\"]\"}");
    check_row("{\"error\": {\"code\": 5}}", "{\"error\": \"{\\\"code\\\":5}\"}");
    check_row("{\"error\": true}", "{\"error\": \"true\"}");
}

static void key_order_output_error_stop_pod(void **state)
{
    cJSON *r = wrap_text("{\"refresh_worker\": true, \"error\": \"x\", \"d\": 1}");
    char *text = cJSON_PrintUnformatted(r);
    assert_string_equal(text, "{\"output\":{\"d\":1},\"error\":\"x\",\"stopPod\":true}");
    free(text);
    cJSON_Delete(r);
}

static void config_refresh_worker_adds_stop_pod(void **state)
{
    cJSON *r = wrap_text("\"done\"");
    rp_add_stop_pod(r);
    assert_json(r, "{\"output\": \"done\", \"stopPod\": true}");
    rp_add_stop_pod(r); /* idempotent */
    assert_json(r, "{\"output\": \"done\", \"stopPod\": true}");
    cJSON_Delete(r);
}

static void truthiness_as_python(void **state)
{
    const char *falsy[] = {"null", "false", "0", "0.0", "\"\"", "[]", "{}"};
    const char *truthy[] = {"true", "1", "-0.5", "\"x\"", "[0]", "{\"a\":null}"};
    for (size_t i = 0; i < sizeof falsy / sizeof *falsy; i++) {
        cJSON *v = cJSON_Parse(falsy[i]);
        assert_false(rp_json_truthy(v));
        cJSON_Delete(v);
    }
    for (size_t i = 0; i < sizeof truthy / sizeof *truthy; i++) {
        cJSON *v = cJSON_Parse(truthy[i]);
        assert_true(rp_json_truthy(v));
        cJSON_Delete(v);
    }
    assert_false(rp_json_truthy(NULL));
}

static void exception_report_has_exactly_the_six_keys(void **state)
{
    setenv("RUNPOD_POD_HOSTNAME", "host-7", 1);
    unsetenv("RUNPOD_POD_ID");
    rp_exception exc = {.type = "ValueError", .message = "bad \"seed\"", .traceback = "Traceback...\n"};
    cJSON *r = rp_wrap_result(cJSON_Parse("{\"ignored\": 1}"), &exc);
    assert_int_equal(cJSON_GetArraySize(r), 1);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    assert_true(cJSON_IsString(err));
    /* a JSON *string*, with Python's json.dumps separators */
    assert_true(starts_with(err->valuestring, "{\"error_type\": \"<class 'ValueError'>\", \"error_message\": "));
    cJSON *report = cJSON_Parse(err->valuestring);
    assert_json(report, "{\"error_type\": \"<class 'ValueError'>\", \"error_message\": \"bad \\\"seed\\\"\","
                        " \"error_traceback\": \"Traceback...\\n\", \"hostname\": \"host-7\","
                        " \"worker_id\": \"unknown\", \"runpod_version\": \"1.12.0\"}");
    const char *order[] = {"error_type", "error_message", "error_traceback", "hostname", "worker_id", "runpod_version"};
    int i = 0;
    for (const cJSON *k = report->child; k; k = k->next, i++) assert_string_equal(k->string, order[i]);
    assert_int_equal(i, 6);
    cJSON_Delete(report);
    cJSON_Delete(r);
    unsetenv("RUNPOD_POD_HOSTNAME");
}

static void stream_final_bodies(void **state)
{
    cJSON *r = rp_wrap_stream_final(cJSON_Parse("[1, \"a\"]"), NULL);
    assert_json(r, "{\"output\": [1, \"a\"]}");
    cJSON_Delete(r);
    r = rp_wrap_stream_final(NULL, NULL);
    assert_json(r, "{\"output\": []}");
    cJSON_Delete(r);
    r = rp_wrap_stream_final(cJSON_Parse("[1]"), "boom");
    assert_json(r, "{\"error\": \"boom\"}");
    cJSON_Delete(r);
}

/* --- through the real execution path ------------------------------------ */

typedef struct {
    cJSON *chunks;   /* every stream chunk, in order */
    cJSON *progress; /* every progress update, in order */
} capture;

static void cap_progress(rp_job *job, cJSON *p, void *ctx)
{
    cJSON_AddItemToArray(((capture *)ctx)->progress, p);
}

static void cap_chunk(rp_job *job, const cJSON *chunk, void *ctx)
{
    cJSON_AddItemToArray(((capture *)ctx)->chunks, cJSON_Duplicate(chunk, 1));
}

static cJSON *execute(const char *job_json, bool generator, bool aggregate, capture *cap)
{
    rp_config cfg = {.handler = rpt_script_handler, .generator = generator};
    rp_job_sink sink = {.progress = cap_progress, .chunk = cap_chunk, .ctx = cap};
    cap->chunks = cJSON_CreateArray();
    cap->progress = cJSON_CreateArray();
    rp_job *job = rp_job_new(cJSON_Parse(job_json), &sink);
    cJSON *r = rp_job_execute(job, &cfg, aggregate);
    rp_job_free(job);
    return r;
}

static void capture_free(capture *cap)
{
    cJSON_Delete(cap->chunks);
    cJSON_Delete(cap->progress);
}

static void handler_result_wrapped(void **state)
{
    capture cap;
    cJSON *r = execute("{\"id\":\"j1\",\"input\":{\"return\":{\"images\":[1],\"refresh_worker\":true}}}", false, false, &cap);
    assert_json(r, "{\"output\": {\"images\": [1]}, \"stopPod\": true}");
    cJSON_Delete(r);
    capture_free(&cap);
    r = execute("{\"id\":\"j2\",\"input\":{\"return\":null}}", false, false, &cap);
    assert_json(r, "{\"output\": null}");
    cJSON_Delete(r);
    capture_free(&cap);
}

static void handler_raise_becomes_exception_report(void **state)
{
    capture cap;
    cJSON *r = execute("{\"id\":\"j1\",\"input\":{\"raise\":\"bad seed\",\"progress\":2}}", false, false, &cap);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    assert_true(cJSON_IsString(err));
    cJSON *report = cJSON_Parse(err->valuestring);
    assert_string_equal(cJSON_GetObjectItem(report, "error_type")->valuestring, "<class 'ValueError'>");
    assert_string_equal(cJSON_GetObjectItem(report, "error_message")->valuestring, "bad seed");
    const char *tb = cJSON_GetObjectItem(report, "error_traceback")->valuestring;
    assert_non_null(strstr(tb, "Traceback (most recent call last):\n  File \""));
    assert_non_null(strstr(tb, "rp_test_handler.c\", line "));
    assert_non_null(strstr(tb, "in rpt_script_handler\nValueError: bad seed\n"));
    assert_json(cap.progress, "[{\"step\":1},{\"step\":2}]");
    cJSON_Delete(report);
    cJSON_Delete(r);
    capture_free(&cap);
}

static void generator_chunks_and_aggregate(void **state)
{
    capture cap;
    const char *job = "{\"id\":\"g1\",\"input\":{\"yield\":[1,{\"a\":2},\"x\"]}}";
    cJSON *r = execute(job, true, true, &cap);
    assert_json(cap.chunks, "[{\"output\":1},{\"output\":{\"a\":2}},{\"output\":\"x\"}]");
    assert_json(r, "{\"output\":[1,{\"a\":2},\"x\"]}");
    cJSON_Delete(r);
    capture_free(&cap);
    r = execute(job, true, false, &cap);
    assert_json(cap.chunks, "[{\"output\":1},{\"output\":{\"a\":2}},{\"output\":\"x\"}]");
    assert_json(r, "{\"output\":[]}");
    cJSON_Delete(r);
    capture_free(&cap);
}

static void generator_error_chunk_ends_the_stream(void **state)
{
    capture cap;
    cJSON *r = execute("{\"id\":\"g1\",\"input\":{\"yield\":[1,{\"error\":\"bad\",\"x\":1},3]}}", true, true, &cap);
    assert_json(cap.chunks, "[{\"output\":1}]");
    assert_json(r, "{\"error\":\"bad\"}");
    cJSON_Delete(r);
    capture_free(&cap);
    r = execute("{\"id\":\"g1\",\"input\":{\"yield\":[{\"error\":{\"code\":5}}]}}", true, false, &cap);
    assert_json(cap.chunks, "[]");
    assert_json(r, "{\"error\":\"{\\\"code\\\":5}\"}");
    cJSON_Delete(r);
    capture_free(&cap);
    /* a falsy error is an ordinary value */
    r = execute("{\"id\":\"g1\",\"input\":{\"yield\":[{\"error\":\"\"}]}}", true, true, &cap);
    assert_json(cap.chunks, "[{\"output\":{\"error\":\"\"}}]");
    assert_json(r, "{\"output\":[{\"error\":\"\"}]}");
    cJSON_Delete(r);
    capture_free(&cap);
}

static void generator_that_raises(void **state)
{
    capture cap;
    cJSON *r = execute("{\"id\":\"g1\",\"input\":{\"yield\":[1,2],\"raise\":\"boom\"}}", true, true, &cap);
    assert_json(cap.chunks, "[{\"output\":1},{\"output\":2}]");
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    assert_true(cJSON_IsString(err));
    assert_true(starts_with(err->valuestring, "handler: boom \ntraceback: Traceback (most recent call last):"));
    assert_null(cJSON_GetObjectItemCaseSensitive(r, "output"));
    cJSON_Delete(r);
    capture_free(&cap);
}

static cJSON *yield_twice(rp_job *job, void *ctx)
{
    bool *results = ctx;
    results[0] = rp_job_yield(job, cJSON_CreateNumber(1));
    rp_job_cancel(job);
    results[1] = rp_job_yield(job, cJSON_CreateNumber(2));
    return NULL;
}

static void yield_after_cancel_or_outside_a_generator_is_refused(void **state)
{
    bool results[2];
    capture cap = {cJSON_CreateArray(), cJSON_CreateArray()};
    rp_job_sink sink = {.progress = cap_progress, .chunk = cap_chunk, .ctx = &cap};
    rp_config gen = {.handler = yield_twice, .ctx = results, .generator = true};
    rp_job *job = rp_job_new(cJSON_Parse("{\"id\":\"c\",\"input\":{}}"), &sink);
    cJSON *r = rp_job_execute(job, &gen, true);
    assert_true(results[0]);
    assert_false(results[1]);
    assert_json(cap.chunks, "[{\"output\":1}]");
    assert_json(r, "{\"output\":[1]}");
    cJSON_Delete(r);
    rp_job_free(job);
    rp_config plain = {.handler = yield_twice, .ctx = results};
    job = rp_job_new(cJSON_Parse("{\"id\":\"c\",\"input\":{}}"), &sink);
    r = rp_job_execute(job, &plain, false);
    assert_false(results[0]);
    assert_json(cap.chunks, "[{\"output\":1}]"); /* nothing added */
    assert_json(r, "{\"output\":null}");
    cJSON_Delete(r);
    rp_job_free(job);
    capture_free(&cap);
}

static void job_accessors(void **state)
{
    rp_job *job = rp_job_new(cJSON_Parse("{\"id\":\"x-u1\",\"input\":{\"p\":1},\"webhook\":\"w\"}"), NULL);
    assert_string_equal(rp_job_id(job), "x-u1");
    assert_json(rp_job_input(job), "{\"p\":1}");
    assert_json(rp_job_json(job), "{\"id\":\"x-u1\",\"input\":{\"p\":1},\"webhook\":\"w\"}");
    assert_false(rp_job_cancelled(job));
    rp_job_cancel(job);
    assert_true(rp_job_cancelled(job));
    rp_job_progress(job, cJSON_CreateNumber(1)); /* no sink: dropped, no leak */
    rp_job_free(job);
}

int main(void)
{
    rp_log_set_level(RP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_5_2_every_row),
        cmocka_unit_test(other_scalars_and_lists_are_the_output),
        cmocka_unit_test(dict_unpacking_edge_cases),
        cmocka_unit_test(key_order_output_error_stop_pod),
        cmocka_unit_test(config_refresh_worker_adds_stop_pod),
        cmocka_unit_test(truthiness_as_python),
        cmocka_unit_test(exception_report_has_exactly_the_six_keys),
        cmocka_unit_test(stream_final_bodies),
        cmocka_unit_test(handler_result_wrapped),
        cmocka_unit_test(handler_raise_becomes_exception_report),
        cmocka_unit_test(generator_chunks_and_aggregate),
        cmocka_unit_test(generator_error_chunk_ends_the_stream),
        cmocka_unit_test(generator_that_raises),
        cmocka_unit_test(yield_after_cancel_or_outside_a_generator_is_refused),
        cmocka_unit_test(job_accessors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
