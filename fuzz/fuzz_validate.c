/* Fuzz target for the two places where job bytes meet runpod/log.c and
 * runpod/validate.c: a log line built from arbitrary bytes (UTF-8 decode,
 * JSON escapes, the 4096 cut, secret masking) and schema validation of
 * arbitrary JSON. Input: byte 0 = flags (bit 0 JSON lines, bits 1-3 level),
 * then an optional job id ended by 0x1F, then the message / JSON text.
 * Aborts when a line leaks the secret, a JSON line does not parse or has
 * the wrong requestId, or the validator returns neither or both of its
 * results. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "runpod/log.h"
#include "runpod/validate.h"

#define SECRET "fuzz-SECRET-value-42"

static bool even(const cJSON *v, char *why, size_t size) { return (long long)v->valuedouble % 2 == 0; }

static const char *const names[] = {"DDIM", "K_EULER", "dpm++", NULL};
static const rp_v_rule schema[] = {
    {.key = "prompt", .type = RP_V_STRING, .required = true, .min_len = 1, .max_len = 100},
    {.key = "width", .type = RP_V_INTEGER, .default_json = "1024", RP_V_RANGE(256, 2048), .check = even},
    {.key = "cfg", .type = RP_V_NUMBER, .default_json = "7.5", .has_min = true, .min = 0},
    {.key = "seed", .type = RP_V_INTEGER, .default_json = "null"},
    {.key = "scheduler", .type = RP_V_STRING, .default_json = "\"DDIM\"", .one_of = names, .one_of_nocase = true},
    {.key = "loras", .type = RP_V_ARRAY, .default_json = "[]", .max_len = 3},
    {.key = "extra", .type = RP_V_OBJECT, .nullable = true, .default_json = "{}"},
    {.key = "hires", .type = RP_V_BOOLEAN, .default_json = "false"},
    {.key = "untyped", .default_json = "1"},
};

static void check_log_line(uint8_t flags, const char *job_id, const char *text)
{
    rp_log_set_json(flags & 1);
    size_t len;
    char *line = rp_log_format_line((rp_log_level)((flags >> 1) % 6), job_id, text, &len);
    if (!line) return;
    if (strlen(line) != len || len == 0 || line[len - 1] != '\n') abort();
    if (flags & 1) { /* judge the decoded text: "\u000f" + "uzz-..." is no leak */
        cJSON *parsed = cJSON_Parse(line);
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(parsed, "message");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(parsed, "requestId");
        if (!cJSON_IsString(msg) || strstr(msg->valuestring, SECRET)) abort();
        if (job_id ? !cJSON_IsString(id) || strstr(id->valuestring, SECRET) : !cJSON_IsNull(id)) abort();
        cJSON_Delete(parsed);
    } else if (strstr(line, SECRET)) {
        abort();
    }
    free(line);
}

static void check_validation(const char *text)
{
    cJSON *input = cJSON_Parse(text), *errors;
    cJSON *out = rp_validate(input, schema, RP_V_COUNT(schema), &errors);
    if ((out == NULL) == (errors == NULL)) abort();
    const cJSON *e;
    cJSON_ArrayForEach(e, errors) if (!cJSON_IsString(e)) abort();
    cJSON_Delete(out);
    cJSON_Delete(errors);
    cJSON_Delete(rp_validate_sdk(input, schema, RP_V_COUNT(schema)));
    cJSON_Delete(input);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        rp_log_add_secret(SECRET);
        ready = true;
    }
    if (size == 0) return 0;
    char *buf = malloc(size);
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    char *sep = memchr(buf, 0x1F, size - 1);
    const char *job_id = sep ? buf : NULL, *text = sep ? sep + 1 : buf;
    if (sep) *sep = '\0';
    check_log_line(data[0], job_id, text);
    check_validation(text);
    free(buf);
    return 0;
}
