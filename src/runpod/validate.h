/* Input validation with the semantics of the SDK's rp_validator.validate
 * (spec runpod-protocol.md §9; runpod-python v1.12.0
 * runpod/serverless/utils/rp_validator.py): unknown keys, required keys,
 * defaults, types and constraints, with the SDK's error texts. A handler
 * declares its schema as a static table of rules:
 *
 *   static const char *const samplers[] = {"DDIM", "K_EULER", NULL};
 *   static const rp_v_rule schema[] = {
 *       {.key = "prompt", .type = RP_V_STRING, .required = true, .min_len = 1},
 *       {.key = "width", .type = RP_V_INTEGER, .default_json = "1024", RP_V_RANGE(256, 2048)},
 *       {.key = "seed", .type = RP_V_INTEGER, .default_json = "null"},
 *       {.key = "scheduler", .type = RP_V_STRING, .default_json = "\"DDIM\"", .one_of = samplers},
 *   };
 *   cJSON *errors;
 *   cJSON *in = rp_validate(rp_job_input(job), schema, RP_V_COUNT(schema), &errors);
 *
 * Differences from the SDK, on purpose:
 * - Every present value is type- and constraint-checked; the SDK skips both
 *   when the value has the same Python type as the default (so worker-sdxl's
 *   num_images 5 passes its 0 < n < 3 lambda there; here it is refused).
 * - Booleans are not integers (Python's bool subclasses int; JSON true for
 *   "width" is a mistake, not 1).
 * - cJSON keeps no int/float distinction: an integral number (5 or 5.0) is an
 *   integer; a fractional one is reported as <class 'float'>; integers must
 *   be exact in a double (|n| <= 2^53). Number fields take any finite number
 *   (the SDK's int -> float promotion is implicit, all cJSON numbers are
 *   doubles).
 * - null is accepted only where the rule is nullable or its default is null
 *   (the SDK accepts null exactly when the default is None).
 * - Constraints are not run on absent values, on null, or after a type error
 *   (the SDK would call the lambda and usually crash).
 * - "required" always exists in C, so the SDK's error for a schema without a
 *   required key cannot happen; a rule without a type gives the SDK's
 *   "Schema error, missing type for <key>.".
 * - Keys are compared case-sensitively (as Python); a key given twice keeps
 *   the last value (as Python's json). */
#ifndef SDXL_RUNPOD_VALIDATE_H
#define SDXL_RUNPOD_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

typedef enum {
    RP_V_UNSET = 0, /* a zero-initialized rule: "Schema error, missing type" */
    RP_V_STRING,    /* <class 'str'> */
    RP_V_INTEGER,   /* <class 'int'> */
    RP_V_NUMBER,    /* <class 'float'> */
    RP_V_BOOLEAN,   /* <class 'bool'> */
    RP_V_OBJECT,    /* <class 'dict'> */
    RP_V_ARRAY,     /* <class 'list'> */
} rp_v_type;

/* A custom constraint. Returns true when value is acceptable. On false it may
 * write a full message into why (e.g. "width must be a multiple of 8 (got
 * 1001)."); if it leaves why empty the SDK's "<key> does not meet the
 * constraints." is reported. Called only for present, non-null values of the
 * right type. */
typedef bool (*rp_v_check_fn)(const cJSON *value, char *why, size_t why_size);

typedef struct {
    const char *key;
    rp_v_type type;
    bool required;
    /* JSON text inserted when the key is absent and not required, e.g. "1",
     * "null", "\"DDIM\"", "[]". NULL: no default ("Schema error, missing
     * default value for <key>." when the key is absent). */
    const char *default_json;
    bool nullable;            /* null accepted (also implied by default "null") */
    bool has_min, has_max;    /* numeric bounds, inclusive */
    double min, max;
    size_t min_len, max_len;  /* string length in characters; max 0: none */
    const char *const *one_of;/* NULL-terminated allowed strings */
    bool one_of_nocase;       /* compare case-insensitively; output the listed spelling */
    rp_v_check_fn check;
} rp_v_rule;

#define RP_V_RANGE(lo, hi) .has_min = true, .min = (lo), .has_max = true, .max = (hi)
#define RP_V_COUNT(rules) (sizeof(rules) / sizeof((rules)[0]))

/* Validates input (a JSON object) against the rules. On success returns a new
 * object: the input's keys in input order, then the defaults of absent keys
 * in rule order; *errors is set to NULL. On failure returns NULL and *errors
 * is a new array of message strings in the SDK's order (unknown keys, then
 * per rule required/default errors, then per rule type/constraint errors).
 * Non-object input gives the single error "Input should be <class 'dict'>
 * type, not <class 'list'>." (or the class of what was given). The caller
 * frees what is returned. Out of memory: NULL and *errors NULL. */
cJSON *rp_validate(const cJSON *input, const rp_v_rule *rules, size_t n_rules, cJSON **errors);

/* The SDK's wrapper shape: {"validated_input": {...}} or {"errors": [...]}. */
cJSON *rp_validate_sdk(const cJSON *input, const rp_v_rule *rules, size_t n_rules);

#endif
