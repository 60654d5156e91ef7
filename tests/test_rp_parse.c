/* Unit tests: job-take answers (every row of spec §4.4), what the take loop
 * does next, job-stop answers (§5.5), and local test jobs (§7.1). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "json_assert.h"
#include "runpod/stop.h"
#include "runpod/take.h"
#include "runpod/worker.h"

static rp_take_kind take(long status, const char *ct, const char *body, rp_take_result *r)
{
    rp_parse_take_response(status, ct, body, body ? strlen(body) : 0, r);
    return r->kind;
}

static void kind_only(long status, const char *ct, const char *body, rp_take_kind want)
{
    rp_take_result r;
    assert_int_equal(take(status, ct, body, &r), want);
    if (want != RP_TAKE_JOBS) assert_null(r.jobs);
    rp_take_result_free(&r);
}

static void status_rows(void **state)
{
    kind_only(204, "", "", RP_TAKE_NONE);
    kind_only(400, "application/json", "{\"error\":\"flashboot\"}", RP_TAKE_NONE);
    kind_only(429, "application/json", "{}", RP_TAKE_RATE_LIMITED);
    kind_only(500, "text/plain", "oops", RP_TAKE_HTTP_ERROR);
    kind_only(401, "application/json", "{\"id\":\"a\",\"input\":{}}", RP_TAKE_HTTP_ERROR);
    kind_only(404, "", "", RP_TAKE_HTTP_ERROR);
    kind_only(302, "", "", RP_TAKE_HTTP_ERROR);
    kind_only(100, "", "", RP_TAKE_HTTP_ERROR);
}

static void content_rows(void **state)
{
    /* 2xx with another mime type: no job; we count it as a failure (backoff) */
    kind_only(200, "text/html", "{\"id\":\"a\",\"input\":{}}", RP_TAKE_INVALID);
    kind_only(200, "", "{\"id\":\"a\",\"input\":{}}", RP_TAKE_INVALID);
    kind_only(200, "application/json", "", RP_TAKE_NONE);           /* Content-Length 0 */
    kind_only(200, "application/json", "{\"id\": \"a\", ", RP_TAKE_INVALID);
    kind_only(200, "application/json", "not json", RP_TAKE_INVALID);
    kind_only(200, "application/json", "{\"id\":\"a\",\"input\":{}} trailing", RP_TAKE_INVALID);
    kind_only(200, "application/json", "null", RP_TAKE_NONE);
    kind_only(200, "application/json", "\"a string\"", RP_TAKE_INVALID);
    kind_only(200, "application/json", "42", RP_TAKE_INVALID);
    kind_only(200, "application/json", "[]", RP_TAKE_NONE);
}

static void single_job_object(void **state)
{
    rp_take_result r;
    const char *job = " {\"id\":\"5e0ae067-u1\",\"input\":{\"prompt\":\"a cat\"},\"webhook\":\"https://x\",\"s3Config\":{\"a\":1}}\r\n";
    assert_int_equal(take(200, "application/json", job, &r), RP_TAKE_JOBS);
    assert_int_equal(cJSON_GetArraySize(r.jobs), 1);
    /* handed over unchanged, extra fields kept */
    assert_json(cJSON_GetArrayItem(r.jobs, 0), "{\"id\":\"5e0ae067-u1\",\"input\":{\"prompt\":\"a cat\"},"
                                               "\"webhook\":\"https://x\",\"s3Config\":{\"a\":1}}");
    rp_take_result_free(&r);
    assert_int_equal(take(201, "application/json", "{\"id\":\"b\",\"input\":null}", &r), RP_TAKE_JOBS);
    rp_take_result_free(&r);
}

static void job_without_id_or_input(void **state)
{
    const char *bad[] = {"{\"input\":{}}", "{\"id\":\"a\"}", "{}", "{\"id\":5,\"input\":{}}", "{\"id\":\"\",\"input\":{}}",
                         "{\"id\":\"a\\nX-Evil: 1\",\"input\":{}}", "{\"id\":null,\"input\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rp_take_result r;
        assert_int_equal(take(200, "application/json", bad[i], &r), RP_TAKE_INVALID);
        assert_string_equal(r.message, "Job has missing field(s): id or input.");
        assert_null(r.jobs);
    }
    char big[RP_JOB_ID_MAX + 64];
    int n = snprintf(big, sizeof big, "{\"id\":\"");
    memset(big + n, 'x', RP_JOB_ID_MAX + 1);
    strcpy(big + n + RP_JOB_ID_MAX + 1, "\",\"input\":{}}");
    kind_only(200, "application/json", big, RP_TAKE_INVALID);
}

static void batch_array(void **state)
{
    rp_take_result r;
    assert_int_equal(take(200, "application/json", "[{\"id\":\"a\",\"input\":1},{\"id\":\"b\",\"input\":{}}]", &r), RP_TAKE_JOBS);
    assert_json(r.jobs, "[{\"id\":\"a\",\"input\":1},{\"id\":\"b\",\"input\":{}}]");
    assert_int_equal(r.dropped, 0);
    rp_take_result_free(&r);
    /* invalid elements are dropped (the SDK would crash on them later) */
    assert_int_equal(take(200, "application/json", "[{\"id\":\"a\",\"input\":1},5,{\"id\":\"c\"}]", &r), RP_TAKE_JOBS);
    assert_json(r.jobs, "[{\"id\":\"a\",\"input\":1}]");
    assert_int_equal(r.dropped, 2);
    rp_take_result_free(&r);
    assert_int_equal(take(200, "application/json", "[{\"x\":1}]", &r), RP_TAKE_INVALID);
    assert_int_equal(r.dropped, 1);
    rp_take_result_free(&r);
}

static void embedded_nul_and_exact_length(void **state)
{
    rp_take_result r;
    const char body[] = "{\"id\":\"a\",\"input\":{}}\0garbage";
    rp_parse_take_response(200, "application/json", body, sizeof body - 1, &r);
    assert_int_equal(r.kind, RP_TAKE_INVALID);
    rp_parse_take_response(200, "application/json", body, strlen(body), &r);
    assert_int_equal(r.kind, RP_TAKE_JOBS);
    rp_take_result_free(&r);
    /* a length that cuts the JSON short is not read past */
    rp_parse_take_response(200, "application/json", body, 10, &r);
    assert_int_equal(r.kind, RP_TAKE_INVALID);
}

/* The body placed right before an inaccessible page: any read past `len`
 * crashes, instrumented or not (upstream cJSON 1.7.15 reads one byte past a
 * buffer that ends after a ',' in an object; found by fuzz/fuzz_job.c). */
static void never_reads_past_the_body(void **state)
{
    long page = sysconf(_SC_PAGESIZE);
    char *mem = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    assert_int_equal(mprotect(mem + page, (size_t)page, PROT_NONE), 0);
    const char *bodies[] = {"{\"id\":\"local2j\x1e\x1e\xe2\xe9\",", "{\"id\":\"abc", "[\"", "{\"id\":\"a\",\"input\":{}} ", "tru", "-1e"};
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        size_t len = strlen(bodies[i]);
        char *at = mem + page - len;
        memcpy(at, bodies[i], len);
        rp_take_result r;
        rp_parse_take_response(200, "application/json", at, len, &r);
        assert_int_equal(r.kind, i == 3 ? RP_TAKE_JOBS : RP_TAKE_INVALID);
        rp_take_result_free(&r);
        cJSON *job;
        rp_parse_local_job(at, len, &job);
        cJSON_Delete(job);
    }
    munmap(mem, (size_t)page * 2);
}

static void what_the_take_loop_does_next(void **state)
{
    assert_int_equal(rp_take_next_step(RP_HTTP_OK, RP_TAKE_JOBS), RP_NEXT_NOW);
    assert_int_equal(rp_take_next_step(RP_HTTP_OK, RP_TAKE_NONE), RP_NEXT_NOW);
    assert_int_equal(rp_take_next_step(RP_HTTP_OK, RP_TAKE_RATE_LIMITED), RP_NEXT_PAUSE);
    assert_int_equal(rp_take_next_step(RP_HTTP_OK, RP_TAKE_HTTP_ERROR), RP_NEXT_BACKOFF);
    assert_int_equal(rp_take_next_step(RP_HTTP_OK, RP_TAKE_INVALID), RP_NEXT_BACKOFF);
    assert_int_equal(rp_take_next_step(RP_HTTP_TIMEOUT, RP_TAKE_INVALID), RP_NEXT_NOW); /* §4.3 */
    assert_int_equal(rp_take_next_step(RP_HTTP_FAILED, RP_TAKE_INVALID), RP_NEXT_BACKOFF);
    assert_int_equal(rp_take_next_step(RP_HTTP_TOO_LARGE, RP_TAKE_INVALID), RP_NEXT_BACKOFF);
}

static rp_stop_kind stop(long status, const char *ct, const char *body, cJSON **ids, char *why)
{
    return rp_parse_stop_response(status, ct, body, strlen(body), ids, why, 128);
}

static void stop_channel_answers(void **state)
{
    cJSON *ids;
    char why[128];
    assert_int_equal(stop(204, "", "", &ids, why), RP_STOP_NONE);
    assert_int_equal(stop(429, "", "", &ids, why), RP_STOP_RATE_LIMITED);
    assert_int_equal(stop(503, "", "", &ids, why), RP_STOP_HTTP_ERROR);
    assert_int_equal(stop(200, "text/plain", "{\"jobsToStop\":[\"a\"]}", &ids, why), RP_STOP_INVALID);
    assert_int_equal(stop(200, "application/json", "{\"jobsToStop\":[\"a\"", &ids, why), RP_STOP_INVALID);
    assert_int_equal(stop(200, "application/json", "[\"a\"]", &ids, why), RP_STOP_INVALID);
    assert_int_equal(stop(200, "application/json", "{\"jobsToStop\":\"a\"}", &ids, why), RP_STOP_INVALID);
    assert_int_equal(stop(200, "application/json", "{}", &ids, why), RP_STOP_NONE);
    assert_int_equal(stop(200, "application/json", "{\"jobsToStop\":[]}", &ids, why), RP_STOP_NONE);
    assert_null(ids);
    assert_int_equal(stop(200, "application/json", "{\"jobsToStop\":[\"a-u1\",1,null,\"b-u1\"]}", &ids, why), RP_STOP_IDS);
    assert_json(ids, "[\"a-u1\",\"b-u1\"]");
    assert_string_equal(why, "dropped 2 non-string job ids");
    cJSON_Delete(ids);
}

static rp_local_status local(const char *text, cJSON **job)
{
    return rp_parse_local_job(text, strlen(text), job);
}

static cJSON *parse(const char *text, size_t len)
{
    cJSON *v = rp_json_parse_exact(text, len);
    assert_non_null(v);
    return v;
}

static bool cut(const cJSON *o, const char *key, int flag)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_non_null(v);
    return (v->type & flag) != 0;
}

/* A NUL inside a string (\u0000, or a raw 0 byte) used to cut it short
 * silently: "a\u0000cat" was "a". Such items are marked, and the marks
 * survive cJSON's copies (the dev API duplicates inputs, the validator
 * copies fields). */
static void nul_in_strings_is_marked(void **state)
{
    const char text[] = "{\"prompt\":\"a\\u0000cat\",\"ok\":\"a\\\\u0000cat\",\"raw\":\"x\0y\",\"neg\":\"\\u0000\","
                        "\"k\\u0000ey\":1,\"list\":[{\"name\":\"n\\u0000\"}],\"n\":1}";
    cJSON *v = parse(text, sizeof text - 1);
    assert_string_equal(cJSON_GetObjectItem(v, "prompt")->valuestring, "a");
    assert_true(cut(v, "prompt", RP_JSON_CUT_VALUE));
    assert_false(cut(v, "ok", RP_JSON_CUT_VALUE)); /* "\\u0000" is the text \u0000, no NUL */
    assert_string_equal(cJSON_GetObjectItem(v, "ok")->valuestring, "a\\u0000cat");
    assert_true(cut(v, "raw", RP_JSON_CUT_VALUE));
    assert_true(cut(v, "neg", RP_JSON_CUT_VALUE));
    assert_true(cut(v, "k", RP_JSON_CUT_KEY));
    assert_false(cut(v, "n", RP_JSON_CUT_VALUE | RP_JSON_CUT_KEY));
    const cJSON *name = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(v, "list"), 0), "name");
    assert_true(name->type & RP_JSON_CUT_VALUE);
    /* copies and moves keep the marks; the values still read as strings */
    cJSON *copy = cJSON_Duplicate(v, true), *holder = cJSON_CreateObject();
    cJSON_AddItemToObject(holder, "input", copy);
    assert_true(cut(copy, "prompt", RP_JSON_CUT_VALUE));
    assert_true(cut(copy, "k", RP_JSON_CUT_KEY));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(copy, "prompt")));
    char *printed = cJSON_PrintUnformatted(holder);
    assert_non_null(strstr(printed, "\"prompt\":\"a\""));
    free(printed);
    cJSON_Delete(holder);
    cJSON_Delete(v);
    /* a text without NULs is parsed once and marks nothing */
    v = parse("{\"prompt\":\"a cat\"}", 18);
    assert_false(cut(v, "prompt", RP_JSON_CUT_VALUE | RP_JSON_CUT_KEY));
    cJSON_Delete(v);
    /* a job id cut at a NUL would post results for another id */
    kind_only(200, "application/json", "{\"id\":\"a\\u0000b\",\"input\":{}}", RP_TAKE_INVALID);
}

static void local_test_jobs(void **state)
{
    cJSON *job;
    assert_int_equal(local("{\"input\":{\"name\":\"John Doe\"}}", &job), RP_LOCAL_OK);
    assert_json(job, "{\"input\":{\"name\":\"John Doe\"},\"id\":\"local_test\"}");
    cJSON_Delete(job);
    assert_int_equal(local("{\"id\":\"mine\",\"input\":\"text\",\"extra\":1}", &job), RP_LOCAL_OK);
    assert_json(job, "{\"id\":\"mine\",\"input\":\"text\",\"extra\":1}");
    cJSON_Delete(job);
    assert_int_equal(local("{\"id\":7,\"input\":{}}", &job), RP_LOCAL_OK);
    assert_json(job, "{\"id\":\"7\",\"input\":{}}");
    cJSON_Delete(job);
    assert_int_equal(local("{\"name\":\"x\"}", &job), RP_LOCAL_NO_INPUT);
    assert_int_equal(local("{\"input\":null}", &job), RP_LOCAL_NO_INPUT);
    assert_int_equal(local("[{\"input\":{}}]", &job), RP_LOCAL_BAD_JSON);
    assert_int_equal(local("{\"input\":", &job), RP_LOCAL_BAD_JSON);
    assert_int_equal(local("", &job), RP_LOCAL_BAD_JSON);
    assert_null(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_rows),
        cmocka_unit_test(content_rows),
        cmocka_unit_test(single_job_object),
        cmocka_unit_test(job_without_id_or_input),
        cmocka_unit_test(batch_array),
        cmocka_unit_test(embedded_nul_and_exact_length),
        cmocka_unit_test(never_reads_past_the_body),
        cmocka_unit_test(what_the_take_loop_does_next),
        cmocka_unit_test(stop_channel_answers),
        cmocka_unit_test(nul_in_strings_is_marked),
        cmocka_unit_test(local_test_jobs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
