/* Final-result bodies of spec §5.2/§5.3 (see wrap.h). */
#include "runpod/wrap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runpod/runpod.h"

bool rp_json_truthy(const cJSON *v)
{
    if (!v || cJSON_IsNull(v) || cJSON_IsFalse(v) || cJSON_IsInvalid(v)) return false;
    if (cJSON_IsTrue(v) || cJSON_IsRaw(v)) return true;
    if (cJSON_IsNumber(v)) return v->valuedouble != 0;
    if (cJSON_IsString(v)) return v->valuestring && v->valuestring[0];
    return v->child != NULL; /* array / object: non-empty */
}

char *rp_json_str(const cJSON *v)
{
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    char *s = v ? cJSON_PrintUnformatted(v) : NULL;
    return s ? s : strdup("None");
}

/* One "key": "value" pair, value JSON-escaped by cJSON. */
static void append_pair(char **out, size_t *len, const char *key, const char *value)
{
    cJSON *s = cJSON_CreateString(value ? value : "");
    char *quoted = cJSON_PrintUnformatted(s);
    cJSON_Delete(s);
    size_t add = strlen(key) + strlen(quoted) + 8;
    *out = realloc(*out, *len + add);
    *len += (size_t)sprintf(*out + *len, "%s\"%s\": %s", *len > 1 ? ", " : "", key, quoted);
    free(quoted);
}

static const char *env_or_unknown(const char *name)
{
    const char *v = getenv(name);
    return v ? v : "unknown";
}

char *rp_exception_report(const rp_exception *exc)
{
    char type[512];
    snprintf(type, sizeof type, "<class '%s'>", exc->type ? exc->type : "Exception");
    size_t len = 1;
    char *out = strdup("{");
    append_pair(&out, &len, "error_type", type);
    append_pair(&out, &len, "error_message", exc->message);
    append_pair(&out, &len, "error_traceback", exc->traceback);
    append_pair(&out, &len, "hostname", env_or_unknown("RUNPOD_POD_HOSTNAME"));
    append_pair(&out, &len, "worker_id", env_or_unknown("RUNPOD_POD_ID"));
    append_pair(&out, &len, "runpod_version", RP_SDK_VERSION);
    out = realloc(out, len + 2);
    strcpy(out + len, "}");
    return out;
}

static cJSON *wrap_exception(const rp_exception *exc)
{
    cJSON *r = cJSON_CreateObject();
    char *report = rp_exception_report(exc);
    cJSON_AddStringToObject(r, "error", report);
    free(report);
    return r;
}

/* A returned dict: pop "error" and "refresh_worker"; the rest is the output,
 * dropped when empty; a truthy error is kept (stringified, our deviation),
 * a truthy refresh_worker becomes stopPod. */
static cJSON *wrap_dict(cJSON *ret)
{
    cJSON *err = cJSON_DetachItemFromObjectCaseSensitive(ret, "error");
    cJSON *refresh = cJSON_DetachItemFromObjectCaseSensitive(ret, "refresh_worker");
    cJSON *r = cJSON_CreateObject();
    if (ret->child) cJSON_AddItemToObject(r, "output", ret);
    else cJSON_Delete(ret);
    if (rp_json_truthy(err)) {
        char *text = rp_json_str(err);
        cJSON_AddStringToObject(r, "error", text);
        free(text);
    }
    if (rp_json_truthy(refresh)) cJSON_AddTrueToObject(r, "stopPod");
    cJSON_Delete(err);
    cJSON_Delete(refresh);
    return r;
}

cJSON *rp_wrap_result(cJSON *ret, const rp_exception *exc)
{
    if (exc) {
        cJSON_Delete(ret);
        return wrap_exception(exc);
    }
    if (cJSON_IsObject(ret)) return wrap_dict(ret);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "output", ret ? ret : cJSON_CreateNull());
    return r;
}

cJSON *rp_wrap_stream_final(cJSON *outputs, const char *error)
{
    cJSON *r = cJSON_CreateObject();
    if (error) {
        cJSON_Delete(outputs);
        cJSON_AddStringToObject(r, "error", error);
    } else {
        cJSON_AddItemToObject(r, "output", outputs ? outputs : cJSON_CreateArray());
    }
    return r;
}

char *rp_stream_exception_text(const rp_exception *exc)
{
    char *text;
    if (asprintf(&text, "handler: %s \ntraceback: %s", exc->message ? exc->message : "",
                 exc->traceback ? exc->traceback : "") < 0)
        return NULL;
    return text;
}

void rp_add_stop_pod(cJSON *result)
{
    cJSON_DeleteItemFromObjectCaseSensitive(result, "stopPod");
    cJSON_AddTrueToObject(result, "stopPod");
}
