/* Unit tests: the SDK's flags (both spellings, unknown ones left alone,
 * malformed values) and the mode choice of spec §2 / §7.2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "runpod/args.h"

static int parse(rp_args *a, char *err, int argc, char **argv)
{
    return rp_args_parse(argc, argv, a, err, 256);
}

#define PARSE(a, err, ...) parse((a), (err), (int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)), (char *[]){__VA_ARGS__})

static void defaults(void **state)
{
    rp_args a;
    char err[256];
    assert_int_equal(PARSE(&a, err, "worker"), 0);
    assert_false(a.serve_api);
    assert_false(a.debugger);
    assert_string_equal(a.api_host, "127.0.0.1");
    assert_int_equal(a.api_port, 8000);
    assert_int_equal(a.api_concurrency, 0);
    assert_null(a.log_level);
    assert_null(a.test_input);
    assert_null(a.input_file);
}

static void both_spellings(void **state)
{
    rp_args a;
    char err[256];
    assert_int_equal(PARSE(&a, err, "w", "--rp_serve_api", "--rp_api_host", "0.0.0.0", "--rp_api_port=9001",
                           "--rp_log_level=WARNING", "--rp_api_concurrency", "2", "--test_input={\"input\":{\"a\":1}}",
                           "--rp_debugger"), 0);
    assert_true(a.serve_api);
    assert_true(a.debugger);
    assert_string_equal(a.api_host, "0.0.0.0");
    assert_int_equal(a.api_port, 9001);
    assert_int_equal(a.api_concurrency, 2);
    assert_string_equal(a.log_level, "WARNING");
    assert_string_equal(a.test_input, "{\"input\":{\"a\":1}}");
    assert_int_equal(PARSE(&a, err, "w", "--test_input", "{\"input\": 1}", "--rp_log_level", "INFO"), 0);
    assert_string_equal(a.test_input, "{\"input\": 1}");
    assert_string_equal(a.log_level, "INFO");
}

static void unknown_arguments_are_left_alone(void **state)
{
    rp_args a;
    char err[256];
    assert_int_equal(PARSE(&a, err, "w", "--foo", "bar", "-x", "--rp_serve_apix", "--rp_api", "fetch-models"), 0);
    assert_false(a.serve_api); /* no prefix / suffix matching */
    assert_null(a.input_file);
    assert_int_equal(a.api_port, 8000);
}

static void positional_json_file(void **state)
{
    rp_args a;
    char err[256];
    assert_int_equal(PARSE(&a, err, "w", "custom_input.json"), 0);
    assert_string_equal(a.input_file, "custom_input.json");
    assert_int_equal(PARSE(&a, err, "w", "--rp_log_level", "x.json", "dir/Job.JSON", "second.json"), 0);
    assert_string_equal(a.log_level, "x.json"); /* a flag's value is not positional */
    assert_string_equal(a.input_file, "dir/Job.JSON");
    assert_int_equal(PARSE(&a, err, "w", ".json", "notes.txt", "--x.json"), 0);
    assert_null(a.input_file);
}

static void malformed_flags(void **state)
{
    rp_args a;
    char err[256];
    assert_int_equal(PARSE(&a, err, "w", "--rp_api_port", "abc"), -1);
    assert_string_equal(err, "argument --rp_api_port: invalid int value: 'abc'");
    assert_int_equal(PARSE(&a, err, "w", "--rp_api_port=70000"), -1);
    assert_int_equal(PARSE(&a, err, "w", "--test_input"), -1);
    assert_string_equal(err, "argument --test_input: expected one argument");
    assert_int_equal(PARSE(&a, err, "w", "--rp_serve_api=yes"), -1);
    assert_string_equal(err, "argument --rp_serve_api: ignored explicit argument 'yes'");
}

static void mode_precedence(void **state)
{
    rp_args a;
    char err[256];
    PARSE(&a, err, "w");
    assert_int_equal(rp_select_mode(&a, false, 0), RP_MODE_LOCAL);      /* ./test_input.json */
    assert_int_equal(rp_select_mode(&a, true, 0), RP_MODE_PRODUCTION);  /* RUNPOD_WEBHOOK_GET_JOB */
    assert_int_equal(rp_select_mode(&a, true, 8080), RP_MODE_REALTIME);
    PARSE(&a, err, "w", "--test_input", "{}");
    assert_int_equal(rp_select_mode(&a, true, 0), RP_MODE_LOCAL);
    assert_int_equal(rp_select_mode(&a, true, 8080), RP_MODE_REALTIME);
    PARSE(&a, err, "w", "job.json");
    assert_int_equal(rp_select_mode(&a, true, 0), RP_MODE_LOCAL);
    PARSE(&a, err, "w", "--rp_serve_api", "--test_input", "{}");
    assert_int_equal(rp_select_mode(&a, true, 8080), RP_MODE_DEV_API);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(both_spellings),
        cmocka_unit_test(unknown_arguments_are_left_alone),
        cmocka_unit_test(positional_json_file),
        cmocka_unit_test(malformed_flags),
        cmocka_unit_test(mode_precedence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
