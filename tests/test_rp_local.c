/* Integration tests: local test mode (spec §7.1) as a real process: the
 * runtime runs in a child process with its cwd in a temp dir and stdout /
 * stderr captured in files; stdout must hold the result JSON alone, exit
 * codes as the SDK (1 on a missing file, missing input or failed job, 0
 * otherwise; 2 on a malformed flag). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json_assert.h"
#include "rp_child.h"
#include "rp_test_handler.h"
#include "testutil.h"

typedef struct {
    char *dir;
    char out_path[512], err_path[512];
    const char *const *env; /* "NAME=value" for the child */
    char *out, *err;        /* captured after the run */
} local_run;

static int setup(void **state)
{
    local_run *r = calloc(1, sizeof *r);
    r->dir = tu_mkdtemp("rp-local");
    snprintf(r->out_path, sizeof r->out_path, "%s/stdout", r->dir);
    snprintf(r->err_path, sizeof r->err_path, "%s/stderr", r->dir);
    *state = r;
    return r->dir ? 0 : -1;
}

static int teardown(void **state)
{
    local_run *r = *state;
    tu_rm_rf(r->dir);
    free(r->dir);
    free(r->out);
    free(r->err);
    free(r);
    return 0;
}

static void write_in(local_run *r, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", r->dir, name);
    assert_int_equal(tu_write_file(path, text, strlen(text)), 0);
}

/* Runs the runtime with argv (NULL-terminated, after argv[0]); returns the exit code. */
static int run(local_run *r, const rp_config *cfg, const char *const *args)
{
    char *argv[16] = {"sdxl-worker"};
    int argc = 1;
    for (; args && args[argc - 1] && argc < 15; argc++) argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    const char *env[16] = {"RUNPOD_LOG_LEVEL=DEBUG"};
    for (size_t n = 1; r->env && r->env[n - 1] && n < 15; n++) env[n] = r->env[n - 1];
    rpc_spec spec = {.cfg = cfg, .argc = argc, .argv = argv, .env = env, .cwd = r->dir,
                     .stdout_path = r->out_path, .stderr_path = r->err_path};
    int rc = rpc_wait(rpc_spawn(&spec), 10000);
    free(r->out);
    free(r->err);
    r->out = tu_read_file(r->out_path, NULL);
    r->err = tu_read_file(r->err_path, NULL);
    return rc;
}

static const rp_config plain = {.handler = rpt_script_handler};

static void test_input_json_result_alone_on_stdout(void **state)
{
    local_run *r = *state;
    write_in(r, "test_input.json", "{\"input\": {\"progress\": 2, \"return\": \"Hello, John Doe!\"}}");
    assert_int_equal(run(r, &plain, NULL), 0);
    assert_string_equal(r->out, "{\"output\":\"Hello, John Doe!\"}\n");
    assert_non_null(strstr(r->err, "--- Starting Serverless Worker |  Version 1.12.0 ---"));
    assert_non_null(strstr(r->err, "Using test_input.json as job input."));
    assert_non_null(strstr(r->err, "local_test | Started."));
    assert_non_null(strstr(r->err, "Job local_test completed successfully."));
    assert_non_null(strstr(r->err, "Job result: {\"output\":\"Hello, John Doe!\"}"));
    assert_non_null(strstr(r->err, "Local testing complete, exiting."));
}

static void missing_test_input_json_exits_1(void **state)
{
    local_run *r = *state;
    assert_int_equal(run(r, &plain, NULL), 1);
    assert_string_equal(r->out, "");
    assert_non_null(strstr(r->err, "test_input.json not found, exiting."));
}

static void test_input_flag_wins_even_in_production_env(void **state)
{
    local_run *r = *state;
    static const char *env[] = {"RUNPOD_WEBHOOK_GET_JOB=http://127.0.0.1:9/v2/x/job-take/$ID", NULL};
    r->env = env;
    write_in(r, "test_input.json", "{\"input\": {\"return\": \"from file\"}}");
    const char *args[] = {"--test_input", "{\"id\": \"cli-1\", \"input\": {\"return\": {\"n\": 5}}}", NULL};
    assert_int_equal(run(r, &plain, args), 0);
    assert_string_equal(r->out, "{\"output\":{\"n\":5}}\n");
    assert_non_null(strstr(r->err, "test_input set, using test_input as job input."));
    assert_non_null(strstr(r->err, "Job cli-1 completed successfully."));
    const char *eq_form[] = {"--test_input={\"input\": {\"return\": 7}}", NULL};
    assert_int_equal(run(r, &plain, eq_form), 0);
    assert_string_equal(r->out, "{\"output\":7}\n");
}

static void positional_json_file(void **state)
{
    local_run *r = *state;
    write_in(r, "custom_input.json", "{\"input\": {\"return\": [1, 2]}}");
    const char *args[] = {"--some-flag", "custom_input.json", NULL};
    assert_int_equal(run(r, &plain, args), 0);
    assert_string_equal(r->out, "{\"output\":[1,2]}\n");
    assert_non_null(strstr(r->err, "Using custom_input.json as job input."));
    const char *missing[] = {"nope.json", NULL};
    assert_int_equal(run(r, &plain, missing), 1);
    assert_string_equal(r->out, "");
    assert_non_null(strstr(r->err, "nope.json not found, exiting."));
}

static void missing_input_or_bad_json_exits_1(void **state)
{
    local_run *r = *state;
    write_in(r, "test_input.json", "{\"name\": \"no input key\"}");
    assert_int_equal(run(r, &plain, NULL), 1);
    assert_string_equal(r->out, "");
    assert_non_null(strstr(r->err, "Job has no input parameter. Unable to run."));
    write_in(r, "test_input.json", "{\"input\": null}");
    assert_int_equal(run(r, &plain, NULL), 1);
    write_in(r, "test_input.json", "{\"input\": ");
    assert_int_equal(run(r, &plain, NULL), 1);
    assert_string_equal(r->out, "");
    const char *bad_flag[] = {"--test_input", "not json", NULL};
    assert_int_equal(run(r, &plain, bad_flag), 1);
}

static void failed_job_exits_1_with_the_error_on_stdout(void **state)
{
    local_run *r = *state;
    write_in(r, "test_input.json", "{\"input\": {\"raise\": \"bad seed\"}}");
    assert_int_equal(run(r, &plain, NULL), 1);
    cJSON *out = cJSON_Parse(r->out);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(out, "error");
    assert_true(cJSON_IsString(err));
    assert_non_null(strstr(err->valuestring, "\"error_message\": \"bad seed\""));
    cJSON_Delete(out);
    assert_non_null(strstr(r->err, "Job local_test failed with error: "));
    assert_null(strstr(r->err, "Local testing complete"));
    write_in(r, "test_input.json", "{\"input\": {\"return\": {\"error\": \"Invalid input\"}}}");
    assert_int_equal(run(r, &plain, NULL), 1);
    assert_string_equal(r->out, "{\"error\":\"Invalid input\"}\n");
    write_in(r, "test_input.json", "{\"input\": {\"return\": null}}");
    assert_int_equal(run(r, &plain, NULL), 0); /* nothing returned is a success */
    assert_string_equal(r->out, "{\"output\":null}\n");
}

static void generator_is_iterated(void **state)
{
    local_run *r = *state;
    rp_config gen = {.handler = rpt_script_handler, .generator = true};
    write_in(r, "test_input.json", "{\"input\": {\"yield\": [1, {\"b\": 2}]}}");
    assert_int_equal(run(r, &gen, NULL), 0);
    assert_string_equal(r->out, "{\"output\":[1,{\"b\":2}]}\n");
}

static void log_level_flag_and_bad_flags(void **state)
{
    local_run *r = *state;
    write_in(r, "test_input.json", "{\"input\": {\"return\": 1}}");
    const char *warn[] = {"--rp_log_level", "WARNING", NULL};
    assert_int_equal(run(r, &plain, warn), 0);
    assert_string_equal(r->out, "{\"output\":1}\n");
    assert_null(strstr(r->err, "INFO"));
    const char *bad_level[] = {"--rp_log_level=LOUD", NULL};
    assert_int_equal(run(r, &plain, bad_level), 1);
    const char *bad_port[] = {"--rp_api_port", "eighty", NULL};
    assert_int_equal(run(r, &plain, bad_port), 2);
    assert_non_null(strstr(r->err, "argument --rp_api_port: invalid int value: 'eighty'"));
    assert_string_equal(r->out, "");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_input_json_result_alone_on_stdout),
        T(missing_test_input_json_exits_1),
        T(test_input_flag_wins_even_in_production_env),
        T(positional_json_file),
        T(missing_input_or_bad_json_exits_1),
        T(failed_job_exits_1_with_the_error_on_stdout),
        T(generator_is_iterated),
        T(log_level_flag_and_bad_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
