/* Schema validation of job input (see validate.h), following the steps of
 * runpod-python v1.12.0 runpod/serverless/utils/rp_validator.py: unknown
 * keys, then required keys and defaults, then types and constraints, with
 * the SDK's message texts; plus clear messages for our declarative
 * constraints (range, length, allowed values). */
#include "runpod/validate.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runpod/take.h" /* RP_JSON_CUT_* */

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: integers exact in a double */
#define ECHO_MAX 64                      /* bytes of a bad string quoted back */

static void add_error(cJSON *errors, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add_error(cJSON *errors, const char *fmt, ...)
{
    va_list ap, copy;
    va_start(ap, fmt);
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *msg = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (msg) {
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
        cJSON_AddItemToArray(errors, cJSON_CreateString(msg));
        free(msg);
    }
    va_end(ap);
}

/* A number as we quote it in messages: whole numbers below 1e16 in full,
 * others as the shortest "%g" text that reads back as the same double. */
static const char *num_text(double d, char buf[32])
{
    if (isfinite(d) && floor(d) == d && fabs(d) < 1e16) {
        snprintf(buf, 32, "%.0f", d);
        return buf;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) break;
    }
    return buf;
}

static bool is_integral(double d) { return isfinite(d) && floor(d) == d; }
static bool is_exact_int(double d) { return is_integral(d) && fabs(d) <= MAX_EXACT_INT; }

/* Python's repr of the class a json.loads() of this value would have. */
static const char *class_of_value(const cJSON *v)
{
    if (!v || cJSON_IsNull(v)) return "<class 'NoneType'>";
    if (cJSON_IsBool(v)) return "<class 'bool'>";
    if (cJSON_IsNumber(v)) return is_exact_int(v->valuedouble) ? "<class 'int'>" : "<class 'float'>";
    if (cJSON_IsString(v)) return "<class 'str'>";
    if (cJSON_IsArray(v)) return "<class 'list'>";
    if (cJSON_IsObject(v)) return "<class 'dict'>";
    return "<class 'object'>";
}

static const char *class_of_type(rp_v_type t)
{
    static const char *const names[] = {
        [RP_V_STRING] = "<class 'str'>",   [RP_V_INTEGER] = "<class 'int'>",
        [RP_V_NUMBER] = "<class 'float'>", [RP_V_BOOLEAN] = "<class 'bool'>",
        [RP_V_OBJECT] = "<class 'dict'>",  [RP_V_ARRAY] = "<class 'list'>",
    };
    return t > RP_V_UNSET && t <= RP_V_ARRAY ? names[t] : "<class 'object'>";
}

static bool type_matches(rp_v_type t, const cJSON *v)
{
    switch (t) {
    case RP_V_STRING: return cJSON_IsString(v);
    case RP_V_INTEGER: return cJSON_IsNumber(v) && is_integral(v->valuedouble);
    case RP_V_NUMBER: return cJSON_IsNumber(v);
    case RP_V_BOOLEAN: return cJSON_IsBool(v);
    case RP_V_OBJECT: return cJSON_IsObject(v);
    case RP_V_ARRAY: return cJSON_IsArray(v);
    default: return false;
    }
}

static const rp_v_rule *find_rule(const rp_v_rule *rules, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (rules[i].key && strcmp(rules[i].key, key) == 0) return &rules[i];
    return NULL;
}

/* Python's json keeps the last of repeated keys; cJSON keeps them all. */
static const cJSON *find_last(const cJSON *obj, const char *key)
{
    const cJSON *found = NULL, *item;
    cJSON_ArrayForEach(item, obj)
        if (item->string && strcmp(item->string, key) == 0) found = item;
    return found;
}

/* Characters of a UTF-8 string (bytes that do not continue a sequence). */
static size_t utf8_length(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Step 1 + copy: every input key unknown to the schema is an error; known
 * keys are copied to out in input order (last value of a repeated key). */
static void copy_known_keys(const cJSON *input, const rp_v_rule *rules, size_t n, cJSON *out, cJSON *errors)
{
    const cJSON *item;
    cJSON_ArrayForEach(item, input) {
        const char *key = item->string ? item->string : "";
        if (item->type & RP_JSON_CUT_KEY)
            add_error(errors, "The input key that starts \"%.64s\" contains the NUL character (\\u0000), which keys "
                      "must not contain.", key);
        else if (!find_rule(rules, n, key))
            add_error(errors, "Unexpected input. %s is not a valid input option.", key);
        else if (!cJSON_GetObjectItemCaseSensitive(out, key))
            cJSON_AddItemToObject(out, key, cJSON_Duplicate(find_last(input, key), true));
    }
}

/* Step 2: schema sanity, required keys and defaults of absent keys. */
static void apply_required_and_defaults(const rp_v_rule *r, cJSON *out, cJSON *errors)
{
    if (!r->key) return;
    if (r->type == RP_V_UNSET) add_error(errors, "Schema error, missing type for %s.", r->key);
    if (cJSON_GetObjectItemCaseSensitive(out, r->key)) return;
    if (r->required) {
        add_error(errors, "%s is a required input.", r->key);
    } else if (!r->default_json) {
        add_error(errors, "Schema error, missing default value for %s.", r->key);
    } else {
        cJSON *def = cJSON_Parse(r->default_json);
        if (def) cJSON_AddItemToObject(out, r->key, def);
        else add_error(errors, "Schema error, invalid default value for %s.", r->key);
    }
}

/* Step 3a: the type. Returns true when constraints should be checked. */
static bool check_type(const rp_v_rule *r, const cJSON *v, cJSON *errors)
{
    char num[32];
    if (cJSON_IsNull(v)) {
        if (r->nullable || (r->default_json && strcmp(r->default_json, "null") == 0)) return false;
    } else if (type_matches(r->type, v)) {
        double d = v->valuedouble;
        if (r->type == RP_V_STRING && (v->type & RP_JSON_CUT_VALUE)) {
            add_error(errors, "%s must not contain the NUL character (\\u0000).", r->key);
            return false;
        }
        if (r->type == RP_V_INTEGER && !is_exact_int(d)) {
            add_error(errors, "%s must be an integer between -%.0f and %.0f (got %s).", r->key,
                      MAX_EXACT_INT, MAX_EXACT_INT, num_text(d, num));
            return false;
        }
        if (r->type == RP_V_NUMBER && !isfinite(d)) {
            add_error(errors, "%s must be a finite number (got %s).", r->key, num_text(d, num));
            return false;
        }
        return true;
    }
    add_error(errors, "%s should be %s type, not %s.", r->key, class_of_type(r->type), class_of_value(v));
    return false;
}

static void check_range(const rp_v_rule *r, double d, cJSON *errors)
{
    char lo[32], hi[32], got[32];
    if ((!r->has_min || d >= r->min) && (!r->has_max || d <= r->max)) return;
    num_text(d, got);
    if (r->has_min && r->has_max)
        add_error(errors, "%s must be between %s and %s (got %s).", r->key, num_text(r->min, lo),
                  num_text(r->max, hi), got);
    else if (r->has_min)
        add_error(errors, "%s must be at least %s (got %s).", r->key, num_text(r->min, lo), got);
    else
        add_error(errors, "%s must be at most %s (got %s).", r->key, num_text(r->max, hi), got);
}

/* Length of a string (characters) or array (items) against min_len/max_len. */
static void check_length(const rp_v_rule *r, const cJSON *v, cJSON *errors)
{
    bool is_str = cJSON_IsString(v);
    size_t len = is_str ? utf8_length(v->valuestring) : (size_t)cJSON_GetArraySize(v);
    const char *unit = is_str ? "characters" : "items";
    if (len < r->min_len)
        add_error(errors, "%s must have at least %zu %s (got %zu).", r->key, r->min_len, unit, len);
    else if (r->max_len && len > r->max_len)
        add_error(errors, "%s must have at most %zu %s (got %zu).", r->key, r->max_len, unit, len);
}

/* The allowed strings; a case-insensitive match is rewritten to the listed
 * spelling in out. */
static void check_one_of(const rp_v_rule *r, cJSON *v, cJSON *errors)
{
    for (const char *const *o = r->one_of; *o; o++) {
        if (strcmp(*o, v->valuestring) == 0) return;
        if (r->one_of_nocase && strcasecmp(*o, v->valuestring) == 0) {
            cJSON_SetValuestring(v, *o);
            return;
        }
    }
    size_t cap = 64, len = 0;
    for (const char *const *o = r->one_of; *o; o++) cap += strlen(*o) + 4;
    char *list = malloc(cap);
    if (!list) return;
    list[0] = '\0';
    for (const char *const *o = r->one_of; *o; o++)
        len += (size_t)snprintf(list + len, cap - len, "%s'%s'", o == r->one_of ? "" : ", ", *o);
    size_t shown = strlen(v->valuestring);
    if (shown > ECHO_MAX) {
        shown = ECHO_MAX;
        while (shown > 0 && ((unsigned char)v->valuestring[shown] & 0xC0) == 0x80) shown--;
    }
    add_error(errors, "%s must be one of %s (got '%.*s%s').", r->key, list, (int)shown, v->valuestring,
              shown < strlen(v->valuestring) ? "..." : "");
    free(list);
}

/* Step 3b: constraints, first failure only (one message per key). */
static void check_constraints(const rp_v_rule *r, cJSON *v, cJSON *errors)
{
    int before = cJSON_GetArraySize(errors);
    if (cJSON_IsNumber(v)) check_range(r, v->valuedouble, errors);
    if (cJSON_IsString(v) || cJSON_IsArray(v)) check_length(r, v, errors);
    if (cJSON_GetArraySize(errors) == before && cJSON_IsString(v) && r->one_of) check_one_of(r, v, errors);
    if (cJSON_GetArraySize(errors) == before && r->check) {
        char why[512] = "";
        if (!r->check(v, why, sizeof why)) {
            if (why[0]) add_error(errors, "%s", why);
            else add_error(errors, "%s does not meet the constraints.", r->key);
        }
    }
}

cJSON *rp_validate(const cJSON *input, const rp_v_rule *rules, size_t n_rules, cJSON **errors_out)
{
    cJSON *unused, **errors = errors_out ? errors_out : &unused;
    cJSON *out = cJSON_CreateObject(), *errs = cJSON_CreateArray();
    if (!out || !errs) goto oom;
    if (!cJSON_IsObject(input)) {
        add_error(errs, "Input should be <class 'dict'> type, not %s.", class_of_value(input));
    } else {
        copy_known_keys(input, rules, n_rules, out, errs);
        for (size_t i = 0; i < n_rules; i++) apply_required_and_defaults(&rules[i], out, errs);
        for (size_t i = 0; i < n_rules; i++) {
            cJSON *v = cJSON_GetObjectItemCaseSensitive(out, rules[i].key);
            if (v && rules[i].key && rules[i].type != RP_V_UNSET && check_type(&rules[i], v, errs))
                check_constraints(&rules[i], v, errs);
        }
    }
    if (cJSON_GetArraySize(errs) == 0) {
        cJSON_Delete(errs);
        *errors = NULL;
        return out;
    }
    cJSON_Delete(out);
    *errors = errs;
    if (!errors_out) cJSON_Delete(errs);
    return NULL;
oom:
    cJSON_Delete(out);
    cJSON_Delete(errs);
    *errors = NULL;
    return NULL;
}

cJSON *rp_validate_sdk(const cJSON *input, const rp_v_rule *rules, size_t n_rules)
{
    cJSON *errors, *valid = rp_validate(input, rules, n_rules, &errors);
    cJSON *result = cJSON_CreateObject();
    if (result && (valid || errors)) {
        cJSON_AddItemToObject(result, valid ? "validated_input" : "errors", valid ? valid : errors);
        return result;
    }
    cJSON_Delete(valid);
    cJSON_Delete(errors);
    cJSON_Delete(result);
    return NULL;
}
