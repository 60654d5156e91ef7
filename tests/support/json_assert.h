/* JSON for cmocka tests: compares a cJSON value with the JSON text it should
 * equal (objects compared key by key, any order), printing both on a
 * mismatch; typed member getters that fail the test on a wrong type. */
#ifndef SDXL_JSON_ASSERT_H
#define SDXL_JSON_ASSERT_H

#include <stdbool.h>
#include <cjson/cJSON.h>

/* True when got equals the JSON in want; prints both otherwise. */
bool ja_equal(const cJSON *got, const char *want);
/* Same for JSON text (NULL counts as a mismatch). */
bool ja_text_equal(const char *got, const char *want);

/* Members of a JSON object (keys compared case-sensitively) that fail the
 * test when the member is missing or has another type; json_str_or_null
 * also takes a missing or null member (NULL). */
const char *json_str(const cJSON *o, const char *key);
const char *json_str_or_null(const cJSON *o, const char *key);
double json_num(const cJSON *o, const char *key);
int json_int(const cJSON *o, const char *key);

#define assert_json(got, want) assert_true(ja_equal((got), (want)))
#define assert_json_text(got, want) assert_true(ja_text_equal((got), (want)))

#endif
