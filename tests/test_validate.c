/* Tests of runpod/validate.c: every SDK message text (rp_validator.py
 * v1.12.0), the order of errors, defaults, the type rules (bool is not int,
 * int/float from cJSON numbers, null), our declarative constraints and their
 * messages, custom predicates, and the num_images case where the SDK skips
 * constraints and we do not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "runpod/validate.h"

/* Validates JSON text; returns the errors joined by '\n' ("" when valid)
 * and the validated object through *valid when asked for. */
static char *run(const char *json, const rp_v_rule *rules, size_t n, cJSON **valid)
{
    cJSON *input = cJSON_Parse(json);
    assert_non_null(input);
    char *before = cJSON_PrintUnformatted(input);
    cJSON *errors, *out = rp_validate(input, rules, n, &errors);
    char *after = cJSON_PrintUnformatted(input);
    assert_string_equal(before, after); /* input is never modified */
    free(before), free(after);
    cJSON_Delete(input);
    assert_true((out == NULL) != (errors == NULL));

    size_t cap = 1, len = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, errors) cap += strlen(e->valuestring) + 1;
    char *joined = calloc(1, cap);
    cJSON_ArrayForEach(e, errors) len += (size_t)sprintf(joined + len, "%s%s", len ? "\n" : "", e->valuestring);
    cJSON_Delete(errors);
    if (valid) *valid = out;
    else cJSON_Delete(out);
    return joined;
}

static void expect(const char *json, const rp_v_rule *rules, size_t n, const char *want)
{
    char *got = run(json, rules, n, NULL);
    assert_string_equal(got, want);
    free(got);
}

static char *print(const cJSON *v)
{
    char *s = cJSON_PrintUnformatted(v);
    assert_non_null(s);
    return s;
}

static const rp_v_rule basic[] = {
    {.key = "x", .type = RP_V_INTEGER, .required = true},
    {.key = "y", .type = RP_V_STRING, .default_json = "\"why\""},
    {.key = "z", .type = RP_V_NUMBER, .default_json = "1.5"},
    {.key = "w", .type = RP_V_BOOLEAN, .default_json = "false"},
};

static void test_valid_input_gets_defaults_in_order(void **state)
{
    cJSON *out;
    char *errors = run("{\"z\": 2, \"x\": 3}", basic, RP_V_COUNT(basic), &out);
    assert_string_equal(errors, "");
    char *text = print(out);
    assert_string_equal(text, "{\"z\":2,\"x\":3,\"y\":\"why\",\"w\":false}");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(out, "z"))); /* int taken as float */
    free(text), free(errors);
    cJSON_Delete(out);
}

static void test_sdk_messages(void **state)
{
    expect("{\"x\": 1, \"extra\": 1}", basic, RP_V_COUNT(basic),
           "Unexpected input. extra is not a valid input option.");
    expect("{}", basic, RP_V_COUNT(basic), "x is a required input.");
    expect("{\"x\": \"3\"}", basic, RP_V_COUNT(basic), "x should be <class 'int'> type, not <class 'str'>.");

    static const rp_v_rule no_default[] = {{.key = "prompt", .type = RP_V_STRING}};
    expect("{}", no_default, 1, "Schema error, missing default value for prompt.");
    expect("{\"prompt\": \"a cat\"}", no_default, 1, "");

    static const rp_v_rule no_type[] = {{.key = "t", .required = true}};
    expect("{\"t\": 1}", no_type, 1, "Schema error, missing type for t.");
    expect("{}", no_type, 1, "Schema error, missing type for t.\nt is a required input.");

    static const rp_v_rule bad_default[] = {{.key = "d", .type = RP_V_STRING, .default_json = "not json"}};
    expect("{}", bad_default, 1, "Schema error, invalid default value for d.");
}

static void test_python_class_names(void **state)
{
    static const rp_v_rule all[] = {
        {.key = "s", .type = RP_V_STRING, .default_json = "\"\""},
        {.key = "i", .type = RP_V_INTEGER, .default_json = "0"},
        {.key = "f", .type = RP_V_NUMBER, .default_json = "0"},
        {.key = "b", .type = RP_V_BOOLEAN, .default_json = "true"},
        {.key = "o", .type = RP_V_OBJECT, .default_json = "{}"},
        {.key = "a", .type = RP_V_ARRAY, .default_json = "[]"},
    };
    expect("{\"s\": 1, \"i\": 2.5, \"f\": true, \"b\": 1, \"o\": [], \"a\": {}}", all, RP_V_COUNT(all),
           "s should be <class 'str'> type, not <class 'int'>.\n"
           "i should be <class 'int'> type, not <class 'float'>.\n"
           "f should be <class 'float'> type, not <class 'bool'>.\n"
           "b should be <class 'bool'> type, not <class 'int'>.\n"
           "o should be <class 'dict'> type, not <class 'list'>.\n"
           "a should be <class 'list'> type, not <class 'dict'>.");
    expect("{\"s\": null, \"i\": false, \"a\": \"x\", \"o\": 0.5}", all, RP_V_COUNT(all),
           "s should be <class 'str'> type, not <class 'NoneType'>.\n"
           "i should be <class 'int'> type, not <class 'bool'>.\n" /* bool is not int here */
           "o should be <class 'dict'> type, not <class 'float'>.\n"
           "a should be <class 'list'> type, not <class 'str'>.");
    expect("{\"s\": \"\", \"i\": 5.0, \"f\": 7, \"b\": false, \"o\": {\"k\": 1}, \"a\": [1]}", all,
           RP_V_COUNT(all), "");
}

static void test_integer_range(void **state)
{
    static const rp_v_rule seed[] = {{.key = "seed", .type = RP_V_INTEGER, .required = true}};
    expect("{\"seed\": 1e300}", seed, 1,
           "seed must be an integer between -9007199254740992 and 9007199254740992 (got 1e+300).");
    expect("{\"seed\": -1e17}", seed, 1,
           "seed must be an integer between -9007199254740992 and 9007199254740992 (got -1e+17).");
    expect("{\"seed\": 2.5}", seed, 1, "seed should be <class 'int'> type, not <class 'float'>.");
    expect("{\"seed\": 9007199254740992}", seed, 1, "");
    expect("{\"seed\": -4294967295}", seed, 1, "");
    expect("{\"seed\": \"1e300\"}", seed, 1, "seed should be <class 'int'> type, not <class 'str'>.");
}

static void test_non_finite_number_built_in_code(void **state)
{
    static const rp_v_rule cfg[] = {{.key = "cfg", .type = RP_V_NUMBER, .required = true}};
    cJSON *input = cJSON_CreateObject(), *errors;
    cJSON_AddNumberToObject(input, "cfg", 1.0 / 0.0);
    assert_null(rp_validate(input, cfg, 1, &errors));
    assert_string_equal(cJSON_GetArrayItem(errors, 0)->valuestring, "cfg must be a finite number (got inf).");
    cJSON_Delete(errors);
    cJSON_Delete(input);
}

static void test_null_only_where_allowed(void **state)
{
    static const rp_v_rule rules[] = {
        {.key = "seed", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(0, 10)},
        {.key = "neg", .type = RP_V_STRING, .nullable = true, .default_json = "\"blurry\"", .min_len = 1},
        {.key = "steps", .type = RP_V_INTEGER, .default_json = "30"},
    };
    cJSON *out;
    char *errors = run("{\"neg\": null}", rules, RP_V_COUNT(rules), &out);
    assert_string_equal(errors, "");
    char *text = print(out);
    assert_string_equal(text, "{\"neg\":null,\"seed\":null,\"steps\":30}");
    free(text), free(errors);
    cJSON_Delete(out);
    expect("{\"seed\": null, \"steps\": null}", rules, RP_V_COUNT(rules),
           "steps should be <class 'int'> type, not <class 'NoneType'>.");
    expect("{\"seed\": 11}", rules, RP_V_COUNT(rules), "seed must be between 0 and 10 (got 11).");
}

/* worker-sdxl: num_images has default 1 and the constraint 0 < n < 3. The
 * SDK never runs that lambda for an int (it matches the default's type), so
 * 5 passes there; we check it. */
static bool one_or_two(const cJSON *v, char *why, size_t size) { return v->valuedouble > 0 && v->valuedouble < 3; }

static void test_num_images_constraint_is_checked(void **state)
{
    static const rp_v_rule sdk_style[] = {
        {.key = "num_images", .type = RP_V_INTEGER, .default_json = "1", .check = one_or_two},
    };
    expect("{\"num_images\": 5}", sdk_style, 1, "num_images does not meet the constraints.");
    expect("{\"num_images\": 2}", sdk_style, 1, "");
    expect("{}", sdk_style, 1, "");

    static const rp_v_rule ranged[] = {
        {.key = "num_images", .type = RP_V_INTEGER, .default_json = "1", RP_V_RANGE(1, 2)},
    };
    expect("{\"num_images\": 5}", ranged, 1, "num_images must be between 1 and 2 (got 5).");
}

static void test_range_messages(void **state)
{
    static const rp_v_rule rules[] = {
        {.key = "width", .type = RP_V_INTEGER, .default_json = "1024", RP_V_RANGE(256, 2048)},
        {.key = "strength", .type = RP_V_NUMBER, .default_json = "0.3", .has_min = true, .min = 0.1},
        {.key = "cfg", .type = RP_V_NUMBER, .default_json = "7.5", .has_max = true, .max = 30},
    };
    expect("{\"width\": 99999, \"strength\": 0.05, \"cfg\": 30.5}", rules, RP_V_COUNT(rules),
           "width must be between 256 and 2048 (got 99999).\n"
           "strength must be at least 0.1 (got 0.05).\n"
           "cfg must be at most 30 (got 30.5).");
    expect("{\"width\": 256, \"strength\": 0.1, \"cfg\": 30}", rules, RP_V_COUNT(rules), "");
}

static void test_length_messages(void **state)
{
    static const rp_v_rule rules[] = {
        {.key = "prompt", .type = RP_V_STRING, .required = true, .min_len = 1, .max_len = 5},
        {.key = "loras", .type = RP_V_ARRAY, .default_json = "[]", .max_len = 2},
    };
    expect("{\"prompt\": \"\"}", rules, RP_V_COUNT(rules), "prompt must have at least 1 characters (got 0).");
    expect("{\"prompt\": \"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}", rules, RP_V_COUNT(rules), "");
    expect("{\"prompt\": \"abcdef\", \"loras\": [1, 2, 3]}", rules, RP_V_COUNT(rules),
           "prompt must have at most 5 characters (got 6).\nloras must have at most 2 items (got 3).");
}

static void test_one_of(void **state)
{
    static const char *const schedulers[] = {"DDIM", "K_EULER", NULL};
    static const rp_v_rule strict[] = {
        {.key = "scheduler", .type = RP_V_STRING, .default_json = "\"DDIM\"", .one_of = schedulers},
    };
    expect("{\"scheduler\": \"K_EULER\"}", strict, 1, "");
    expect("{\"scheduler\": \"ddim\"}", strict, 1, "scheduler must be one of 'DDIM', 'K_EULER' (got 'ddim').");

    char long_value[200];
    memset(long_value, 0, sizeof long_value);
    strcpy(long_value, "{\"scheduler\": \"");
    memset(long_value + strlen(long_value), 'q', 100);
    strcat(long_value, "\"}");
    char want[200];
    snprintf(want, sizeof want, "scheduler must be one of 'DDIM', 'K_EULER' (got '%.64s...').", long_value + 15);
    expect(long_value, strict, 1, want);

    static const rp_v_rule loose[] = {
        {.key = "scheduler", .type = RP_V_STRING, .default_json = "\"DDIM\"", .one_of = schedulers,
         .one_of_nocase = true},
    };
    cJSON *out;
    char *errors = run("{\"scheduler\": \"k_euler\"}", loose, 1, &out);
    assert_string_equal(errors, "");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(out, "scheduler")->valuestring, "K_EULER");
    free(errors);
    cJSON_Delete(out);
}

static bool multiple_of_8(const cJSON *v, char *why, size_t size)
{
    if ((long long)v->valuedouble % 8 == 0) return true;
    snprintf(why, size, "height must be a multiple of 8 (got %lld).", (long long)v->valuedouble);
    return false;
}

static void test_custom_check_message_and_order(void **state)
{
    static const rp_v_rule rules[] = {
        {.key = "height", .type = RP_V_INTEGER, .default_json = "1024", RP_V_RANGE(256, 2048), .check = multiple_of_8},
    };
    expect("{\"height\": 1001}", rules, 1, "height must be a multiple of 8 (got 1001).");
    /* one message per key: the range fails first, the check is not run */
    expect("{\"height\": 9}", rules, 1, "height must be between 256 and 2048 (got 9).");
    /* no constraint message after a type error */
    expect("{\"height\": \"big\"}", rules, 1, "height should be <class 'int'> type, not <class 'str'>.");
}

static void test_error_order_across_steps(void **state)
{
    expect("{\"b\": 1, \"z\": \"no\", \"a\": 2}", basic, RP_V_COUNT(basic),
           "Unexpected input. b is not a valid input option.\n"
           "Unexpected input. a is not a valid input option.\n"
           "x is a required input.\n"
           "z should be <class 'float'> type, not <class 'str'>.");
}

static void test_defaults_are_checked_too(void **state)
{
    static const rp_v_rule wrong[] = {{.key = "n", .type = RP_V_INTEGER, .default_json = "\"four\""}};
    expect("{}", wrong, 1, "n should be <class 'int'> type, not <class 'str'>.");
    static const rp_v_rule empty[] = {{.key = "p", .type = RP_V_STRING, .default_json = "\"\"", .min_len = 1}};
    expect("{}", empty, 1, "p must have at least 1 characters (got 0).");
}

static void test_keys_case_sensitive_and_last_duplicate_wins(void **state)
{
    expect("{\"x\": 1, \"X\": 2}", basic, RP_V_COUNT(basic), "Unexpected input. X is not a valid input option.");
    cJSON *out;
    char *errors = run("{\"x\": \"one\", \"y\": \"a\", \"x\": 7}", basic, RP_V_COUNT(basic), &out);
    assert_string_equal(errors, "");
    char *text = print(out);
    assert_string_equal(text, "{\"x\":7,\"y\":\"a\",\"z\":1.5,\"w\":false}");
    free(text), free(errors);
    cJSON_Delete(out);
}

static void test_non_object_input(void **state)
{
    expect("[1, 2]", basic, RP_V_COUNT(basic), "Input should be <class 'dict'> type, not <class 'list'>.");
    expect("\"text\"", basic, RP_V_COUNT(basic), "Input should be <class 'dict'> type, not <class 'str'>.");
    cJSON *errors;
    assert_null(rp_validate(NULL, basic, RP_V_COUNT(basic), &errors));
    assert_string_equal(cJSON_GetArrayItem(errors, 0)->valuestring,
                        "Input should be <class 'dict'> type, not <class 'NoneType'>.");
    cJSON_Delete(errors);
}

static void test_sdk_result_shape(void **state)
{
    cJSON *input = cJSON_Parse("{\"x\": 1}");
    cJSON *ok = rp_validate_sdk(input, basic, RP_V_COUNT(basic));
    char *text = print(ok);
    assert_string_equal(text, "{\"validated_input\":{\"x\":1,\"y\":\"why\",\"z\":1.5,\"w\":false}}");
    free(text);
    cJSON_Delete(ok);
    cJSON_Delete(input);

    input = cJSON_Parse("{}");
    cJSON *bad = rp_validate_sdk(input, basic, RP_V_COUNT(basic));
    text = print(bad);
    assert_string_equal(text, "{\"errors\":[\"x is a required input.\"]}");
    free(text);
    cJSON_Delete(bad);
    cJSON_Delete(input);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_input_gets_defaults_in_order),
        cmocka_unit_test(test_sdk_messages),
        cmocka_unit_test(test_python_class_names),
        cmocka_unit_test(test_integer_range),
        cmocka_unit_test(test_non_finite_number_built_in_code),
        cmocka_unit_test(test_null_only_where_allowed),
        cmocka_unit_test(test_num_images_constraint_is_checked),
        cmocka_unit_test(test_range_messages),
        cmocka_unit_test(test_length_messages),
        cmocka_unit_test(test_one_of),
        cmocka_unit_test(test_custom_check_message_and_order),
        cmocka_unit_test(test_error_order_across_steps),
        cmocka_unit_test(test_defaults_are_checked_too),
        cmocka_unit_test(test_keys_case_sensitive_and_last_duplicate_wins),
        cmocka_unit_test(test_non_object_input),
        cmocka_unit_test(test_sdk_result_shape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
