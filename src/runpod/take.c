/* Job-take response and local job parsing (see take.h). */
#include "runpod/take.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Upstream cJSON 1.7.15 reads one byte past `length` when the buffer ends
 * right after a ',' in an object (found by fuzz/fuzz_job.c built with cJSON
 * from source; Debian's patched 1.7.15 does not), so cJSON always gets a
 * NUL-terminated copy, whatever version the build links. */
static cJSON *parse_copy(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, text, len);
    copy[len] = 0;
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
    for (const char *p = end; v && p && p < copy + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(v);
            v = NULL;
        }
    }
    free(copy);
    return v;
}

/* The text with every NUL a string can hold (a raw 0 byte, the escape
 * \u0000) turned into U+0001, so that its strings keep their full length. */
static char *without_nuls(const char *text, size_t len)
{
    char *t = malloc(len);
    if (!t) return NULL;
    memcpy(t, text, len);
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (t[i] == 0) t[i] = 1;
        else if (in_string && t[i] == '\\' && i + 5 < len && !memcmp(t + i + 1, "u0000", 5)) t[i + 5] = '1', i += 5;
        else if (in_string && t[i] == '\\') i++;
        else if (t[i] == '"') in_string = !in_string;
    }
    return t;
}

/* Marks the items of `cut` whose key or string value is shorter than in
 * `full` (the same document parsed without NULs). */
static void mark_cut(cJSON *cut, const cJSON *full)
{
    for (; cut && full; cut = cut->next, full = full->next) {
        if (cut->string && full->string && strlen(cut->string) != strlen(full->string)) cut->type |= RP_JSON_CUT_KEY;
        if (cJSON_IsString(cut) && cJSON_IsString(full) && strlen(cut->valuestring) != strlen(full->valuestring))
            cut->type |= RP_JSON_CUT_VALUE;
        mark_cut(cut->child, full->child);
    }
}

cJSON *rp_json_parse_exact(const char *text, size_t len)
{
    if (!text || !len) return NULL;
    cJSON *v = parse_copy(text, len);
    if (!v || (!memchr(text, 0, len) && !memmem(text, len, "\\u0000", 6))) return v;
    char *plain = without_nuls(text, len);
    cJSON *full = plain ? parse_copy(plain, len) : NULL;
    free(plain);
    if (!full) { /* out of memory: no job runs on text it cannot check */
        cJSON_Delete(v);
        return NULL;
    }
    mark_cut(v, full);
    cJSON_Delete(full);
    return v;
}

static bool id_is_safe(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > RP_JOB_ID_MAX) return false;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return false;
    return true;
}

bool rp_job_object_valid(const cJSON *job)
{
    if (!cJSON_IsObject(job)) return false;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(job, "id");
    if (!cJSON_IsString(id) || (id->type & RP_JSON_CUT_VALUE) || !id_is_safe(id->valuestring)) return false;
    return cJSON_GetObjectItemCaseSensitive(job, "input") != NULL;
}

static void set_kind(rp_take_result *out, rp_take_kind kind, const char *msg)
{
    out->kind = kind;
    snprintf(out->message, sizeof out->message, "%s", msg);
}

/* A JSON array: a batch; invalid elements are dropped. */
static void take_batch(cJSON *arr, rp_take_result *out)
{
    cJSON *jobs = cJSON_CreateArray();
    while (arr->child) {
        cJSON *item = cJSON_DetachItemViaPointer(arr, arr->child);
        if (rp_job_object_valid(item)) cJSON_AddItemToArray(jobs, item);
        else { cJSON_Delete(item); out->dropped++; }
    }
    cJSON_Delete(arr);
    if (jobs->child) {
        out->jobs = jobs;
        set_kind(out, RP_TAKE_JOBS, "batch");
    } else {
        cJSON_Delete(jobs);
        if (out->dropped) set_kind(out, RP_TAKE_INVALID, "Job has missing field(s): id or input.");
        else set_kind(out, RP_TAKE_NONE, "empty batch");
    }
}

void rp_parse_take_response(long status, const char *content_type, const char *body,
                            size_t len, rp_take_result *out)
{
    memset(out, 0, sizeof *out);
    if (status == 204) return set_kind(out, RP_TAKE_NONE, "Received 204 status, no jobs.");
    if (status == 400) return set_kind(out, RP_TAKE_NONE, "Received 400 status, expected when FlashBoot is enabled.");
    if (status == 429) return set_kind(out, RP_TAKE_RATE_LIMITED, "Too many requests.");
    if (status < 200 || status > 299) {
        char msg[64];
        snprintf(msg, sizeof msg, "HTTP status %ld", status);
        return set_kind(out, RP_TAKE_HTTP_ERROR, msg);
    }
    if (!content_type || strcmp(content_type, "application/json"))
        return set_kind(out, RP_TAKE_INVALID, "Unexpected content type.");
    if (len == 0) return set_kind(out, RP_TAKE_NONE, "No content to parse.");
    cJSON *v = rp_json_parse_exact(body, len);
    if (!v) return set_kind(out, RP_TAKE_INVALID, "Response content is not valid JSON.");
    if (cJSON_IsArray(v)) return take_batch(v, out);
    if (cJSON_IsObject(v)) {
        if (!rp_job_object_valid(v)) {
            cJSON_Delete(v);
            return set_kind(out, RP_TAKE_INVALID, "Job has missing field(s): id or input.");
        }
        out->jobs = cJSON_CreateArray();
        cJSON_AddItemToArray(out->jobs, v);
        return set_kind(out, RP_TAKE_JOBS, "job");
    }
    bool is_null = cJSON_IsNull(v);
    cJSON_Delete(v);
    if (is_null) return set_kind(out, RP_TAKE_NONE, "null job.");
    set_kind(out, RP_TAKE_INVALID, "Response is neither a job nor a list of jobs.");
}

void rp_take_result_free(rp_take_result *r)
{
    cJSON_Delete(r->jobs);
    r->jobs = NULL;
}

rp_local_status rp_parse_local_job(const char *text, size_t len, cJSON **job)
{
    *job = NULL;
    cJSON *v = rp_json_parse_exact(text, len);
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return RP_LOCAL_BAD_JSON;
    }
    const cJSON *input = cJSON_GetObjectItemCaseSensitive(v, "input");
    if (!input || cJSON_IsNull(input)) {
        cJSON_Delete(v);
        return RP_LOCAL_NO_INPUT;
    }
    cJSON *id = cJSON_GetObjectItemCaseSensitive(v, "id");
    if (!id) {
        cJSON_AddStringToObject(v, "id", "local_test");
    } else if (!cJSON_IsString(id)) {
        char *text_id = cJSON_PrintUnformatted(id);
        cJSON_ReplaceItemInObjectCaseSensitive(v, "id", cJSON_CreateString(text_id ? text_id : "local_test"));
        free(text_id);
    }
    *job = v;
    return RP_LOCAL_OK;
}
