/* Tests of runpod/log.c: level names and threshold, environment precedence,
 * the exact plain and JSON line formats, the 4096-character cut, secret
 * masking (also across the cut and in JSON) and whole lines under threads.
 * stderr is captured by pointing fd 2 at a temp file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "runpod/log.h"
#include "testutil.h"

static char capture_path[4096];
static int saved_stderr = -1;

static void capture_start(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(capture_path, sizeof capture_path, "%s/test_log-XXXXXX", base && *base ? base : "/tmp");
    int fd = mkstemp(capture_path);
    assert_true(fd >= 0);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

/* Restores stderr and returns what was written to it (caller frees). */
static char *capture_end(void)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    char *text = tu_read_file(capture_path, NULL);
    unlink(capture_path);
    assert_non_null(text);
    return text;
}

static void clear_env(void)
{
    static const char *const vars[] = {"RUNPOD_LOG_LEVEL", "RUNPOD_DEBUG_LEVEL", "RUNPOD_ENDPOINT_ID",
                                       "RUNPOD_AI_API_KEY", "CIVITAI_API_KEY", "BUCKET_ACCESS_KEY_ID",
                                       "BUCKET_SECRET_ACCESS_KEY"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

static int fresh_logger(void **state)
{
    clear_env();
    rp_log_reset();
    return 0;
}

static void test_parse_levels(void **state)
{
    static const struct { const char *name; rp_log_level level; } cases[] = {
        {"NOTSET", RP_LOG_NOTSET}, {"trace", RP_LOG_TRACE}, {"Debug", RP_LOG_DEBUG},
        {"INFO", RP_LOG_INFO},     {"warn", RP_LOG_WARN},   {"WARNING", RP_LOG_WARN},
        {"warning", RP_LOG_WARN},  {"ERROR", RP_LOG_ERROR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rp_log_level got = RP_LOG_NOTSET;
        assert_int_equal(rp_log_parse_level(cases[i].name, &got), 0);
        assert_int_equal(got, cases[i].level);
    }
    rp_log_level got = RP_LOG_INFO;
    assert_int_equal(rp_log_parse_level("VERBOSE", &got), -1);
    assert_int_equal(rp_log_parse_level("", &got), -1);
    assert_int_equal(rp_log_parse_level("WARN ", &got), -1);
    assert_int_equal(rp_log_parse_level(NULL, &got), -1);
    assert_int_equal(got, RP_LOG_INFO);
    assert_string_equal(rp_log_level_name(RP_LOG_WARN), "WARN");
    assert_string_equal(rp_log_level_name(RP_LOG_TRACE), "TRACE");
}

static void test_threshold(void **state)
{
    assert_int_equal(rp_log_get_level(), RP_LOG_DEBUG);
    capture_start();
    rp_trace("t0");
    rp_debug("d0");
    rp_log_set_level(RP_LOG_WARN);
    rp_info("i1");
    rp_warn("w1");
    rp_error("e1");
    rp_log_set_level(RP_LOG_TRACE);
    rp_trace("t2");
    rp_log(RP_LOG_NOTSET, NULL, "never: a NOTSET message");
    rp_log_set_level(RP_LOG_NOTSET);
    rp_error("never: threshold NOTSET");
    char *out = capture_end();
    assert_string_equal(out, "DEBUG  | d0\nWARN   | w1\nERROR  | e1\nTRACE  | t2\n");
    free(out);
}

static void test_env_precedence(void **state)
{
    setenv("RUNPOD_LOG_LEVEL", "error", 1);
    setenv("RUNPOD_DEBUG_LEVEL", "INFO", 1);
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_ERROR);

    unsetenv("RUNPOD_LOG_LEVEL");
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_INFO);

    setenv("RUNPOD_LOG_LEVEL", "", 1); /* empty counts as unset */
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_INFO);

    setenv("RUNPOD_LOG_LEVEL", "WARNING", 1);
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_WARN);

    unsetenv("RUNPOD_LOG_LEVEL");
    unsetenv("RUNPOD_DEBUG_LEVEL");
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_DEBUG);

    /* --rp_log_level (rp_log_set_level) wins, before or after the env. */
    setenv("RUNPOD_LOG_LEVEL", "ERROR", 1);
    rp_log_set_level(RP_LOG_TRACE);
    rp_log_init_from_env();
    assert_int_equal(rp_log_get_level(), RP_LOG_TRACE);
    rp_log_set_level(RP_LOG_INFO);
    assert_int_equal(rp_log_get_level(), RP_LOG_INFO);
}

static void test_invalid_env_level_warns_and_keeps_debug(void **state)
{
    setenv("RUNPOD_LOG_LEVEL", "ERROR", 1);
    rp_log_init_from_env(); /* a stricter level from before must not hide the warning */
    setenv("RUNPOD_LOG_LEVEL", "LOUD", 1);
    setenv("RUNPOD_DEBUG_LEVEL", "ERROR", 1);
    capture_start();
    rp_log_init_from_env();
    rp_debug("still here");
    char *out = capture_end();
    assert_int_equal(rp_log_get_level(), RP_LOG_DEBUG);
    assert_string_equal(out, "WARN   | Invalid RUNPOD_LOG_LEVEL 'LOUD'; using DEBUG.\n"
                             "DEBUG  | still here\n");
    free(out);
}

static void test_plain_format(void **state)
{
    capture_start();
    rp_info("Started.");
    rp_log(RP_LOG_ERROR, "abc-u1", "Failed to return job results. | %d", 500);
    rp_log(RP_LOG_WARN, "", "empty job id is left out");
    rp_log(RP_LOG_TRACE, "j", "%s", "");
    rp_log(RP_LOG_INFO, NULL, "multi\nline");
    char *out = capture_end();
    assert_string_equal(out, "INFO   | Started.\n"
                             "ERROR  | abc-u1 | Failed to return job results. | 500\n"
                             "WARN   | empty job id is left out\n"
                             "INFO   | multi\nline\n");
    free(out);
}

static void test_json_lines(void **state)
{
    setenv("RUNPOD_ENDPOINT_ID", "ep123", 1);
    rp_log_init_from_env();
    capture_start();
    rp_log(RP_LOG_INFO, "job-1", "say \"hi\"\\ \n\t\x01\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 bad\xff");
    rp_warn("no job");
    char *out = capture_end();
    const char *first = "{\"requestId\": \"job-1\", \"message\": \"say \\\"hi\\\"\\\\ \\n\\t\\u0001\\u007f"
                        " caf\\u00e9 \\ud83d\\ude00 bad\\ufffd\", \"level\": \"INFO\"}\n";
    const char *second = "{\"requestId\": null, \"message\": \"no job\", \"level\": \"WARN\"}\n";
    size_t n1 = strlen(first);
    assert_true(strncmp(out, first, n1) == 0);
    assert_string_equal(out + n1, second);

    cJSON *line = cJSON_Parse(first); /* valid JSON with the three keys in order */
    assert_non_null(line);
    assert_string_equal(line->child->string, "requestId");
    assert_string_equal(line->child->next->string, "message");
    assert_string_equal(line->child->next->next->string, "level");
    assert_string_equal(cJSON_GetObjectItem(line, "message")->valuestring,
                        "say \"hi\"\\ \n\t\x01\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 bad\xef\xbf\xbd");
    cJSON_Delete(line);
    free(out);

    unsetenv("RUNPOD_ENDPOINT_ID");
    rp_log_init_from_env();
    capture_start();
    rp_info("plain again");
    out = capture_end();
    assert_string_equal(out, "INFO   | plain again\n");
    free(out);
}

static char *repeat(const char *unit, size_t times)
{
    size_t n = strlen(unit);
    char *s = malloc(n * times + 1);
    for (size_t i = 0; i < times; i++) memcpy(s + i * n, unit, n);
    s[n * times] = '\0';
    return s;
}

static void test_truncation_exact_text(void **state)
{
    char *head = repeat("A", 2048), *mid = repeat("M", 904), *tail = repeat("Z", 2048);
    char *exact = repeat("e", 4096), *over = repeat("o", 4097);
    char *wide = repeat("\xc3\xa9", 5000); /* 5000 characters, 10000 bytes */
    capture_start();
    rp_info("%s%s%s", head, mid, tail);
    rp_info("%s", exact);
    rp_info("%s", over);
    rp_info("%s", wide);
    char *out = capture_end();

    char *wide_half = repeat("\xc3\xa9", 2048), *o_half = repeat("o", 2048);
    size_t cap = 40000;
    char *want = malloc(cap);
    snprintf(want, cap,
             "INFO   | %s\n...TRUNCATED 904 CHARACTERS...\n%s\n"
             "INFO   | %s\n"
             "INFO   | %s\n...TRUNCATED 1 CHARACTERS...\n%s\n"
             "INFO   | %s\n...TRUNCATED 904 CHARACTERS...\n%s\n",
             head, tail, exact, o_half, o_half, wide_half, wide_half);
    assert_string_equal(out, want);
    free(want), free(out), free(head), free(mid), free(tail), free(exact), free(over);
    free(wide), free(wide_half), free(o_half);
}

static void test_secrets_masked(void **state)
{
    rp_log_add_secret("sk-abcdefghijklmnop"); /* long: first+last char shown */
    rp_log_add_secret("pw1234");              /* short: nothing shown */
    rp_log_add_secret("abc");                 /* too short to register */
    capture_start();
    rp_log(RP_LOG_INFO, "job-sk-abcdefghijklmnop", "key=sk-abcdefghijklmnop pw=pw1234 x=abc");
    rp_info("twice: sk-abcdefghijklmnopsk-abcdefghijklmnop");
    rp_log_secret("RUNPOD_AI_API_KEY", "sk-abcdefghijklmnop");
    rp_log_secret("SHORT", "pw1234");
    char *out = capture_end();
    assert_string_equal(out, "INFO   | job-s****p | key=s****p pw=**** x=abc\n"
                             "INFO   | twice: s****ps****p\n"
                             "INFO   | RUNPOD_AI_API_KEY: s****p\n"
                             "INFO   | SHORT: ****\n");
    free(out);

    char buf[] = "error: bad key sk-abcdefghijklmnop (pw1234)";
    rp_log_redact(buf);
    assert_string_equal(buf, "error: bad key s****p (****)");
}

static void test_overlapping_secrets_longest_first(void **state)
{
    rp_log_add_secret("defg");
    rp_log_add_secret("abcdefghijklmnopq");
    char buf[] = "abcdefghijklmnopq defg";
    rp_log_redact(buf);
    assert_string_equal(buf, "a****q ****");
}

static void test_env_secrets_masked_in_json(void **state)
{
    setenv("RUNPOD_AI_API_KEY", "rpa_SECRETSECRETSECRET", 1);
    setenv("CIVITAI_API_KEY", "civ-0123456789abcdef", 1);
    setenv("BUCKET_ACCESS_KEY_ID", "AKIAEXAMPLE", 1);
    setenv("BUCKET_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG", 1);
    setenv("RUNPOD_ENDPOINT_ID", "ep", 1);
    rp_log_init_from_env();
    capture_start();
    rp_log(RP_LOG_ERROR, "j1", "rpa_SECRETSECRETSECRET civ-0123456789abcdef AKIAEXAMPLE wJalrXUtnFEMI/K7MDENG");
    char *out = capture_end();
    assert_string_equal(out, "{\"requestId\": \"j1\", \"message\": \"r****T c****f **** w****G\", \"level\": \"ERROR\"}\n");
    free(out);
}

/* The secret sits across character 2048, where the cut happens: masking
 * first means neither half can leak. */
static void test_secret_at_the_cut(void **state)
{
    const char *secret = "sk-0123456789ABCDEFGH";
    rp_log_add_secret(secret);
    char *before = repeat("x", 2040), *after = repeat("y", 3000);
    capture_start();
    rp_info("%s%s%s", before, secret, after);
    rp_log_set_json(true);
    rp_info("%s%s%s", before, secret, after);
    char *out = capture_end();
    assert_null(strstr(out, "sk-0123"));
    assert_null(strstr(out, "89ABCDEFGH"));
    assert_null(strstr(out, "456789"));
    /* masked text: 2040 + 6 + 3000 = 5046 characters, 950 cut */
    assert_non_null(strstr(out, "xxs****H"));
    assert_non_null(strstr(out, "\n...TRUNCATED 950 CHARACTERS...\n"));
    assert_non_null(strstr(out, "\\n...TRUNCATED 950 CHARACTERS...\\n"));
    free(out), free(before), free(after);
}

#define THREADS 8
#define LINES 200

static void *log_many(void *arg)
{
    int id = (int)(intptr_t)arg;
    for (int i = 0; i < LINES; i++) {
        rp_log(RP_LOG_INFO, "job", "thread %d line %03d %0200d", id, i, 0);
        if (id == 0 && i % 20 == 0) rp_log_add_secret(i == 0 ? "never-printed-0" : "never-printed-x");
    }
    return NULL;
}

static void test_threads_write_whole_lines(void **state)
{
    pthread_t t[THREADS];
    capture_start();
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, log_many, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    char *out = capture_end();

    int count[THREADS] = {0}, lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), lines++) {
        int id, n, end = 0;
        assert_int_equal(sscanf(line, "INFO   | job | thread %d line %d %*[0]%n", &id, &n, &end), 2);
        assert_int_equal(strlen(line), strlen("INFO   | job | thread 0 line 000 ") + 200);
        assert_int_equal((size_t)end, strlen(line));
        assert_true(id >= 0 && id < THREADS);
        assert_int_equal(n, count[id]++); /* each thread's lines stay in order */
    }
    assert_int_equal(lines, THREADS * LINES);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parse_levels, fresh_logger),
        cmocka_unit_test_setup(test_threshold, fresh_logger),
        cmocka_unit_test_setup(test_env_precedence, fresh_logger),
        cmocka_unit_test_setup(test_invalid_env_level_warns_and_keeps_debug, fresh_logger),
        cmocka_unit_test_setup(test_plain_format, fresh_logger),
        cmocka_unit_test_setup(test_json_lines, fresh_logger),
        cmocka_unit_test_setup(test_truncation_exact_text, fresh_logger),
        cmocka_unit_test_setup(test_secrets_masked, fresh_logger),
        cmocka_unit_test_setup(test_overlapping_secrets_longest_first, fresh_logger),
        cmocka_unit_test_setup(test_env_secrets_masked_in_json, fresh_logger),
        cmocka_unit_test_setup(test_secret_at_the_cut, fresh_logger),
        cmocka_unit_test_setup(test_threads_write_whole_lines, fresh_logger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
