/* JSON comparison helpers for tests (see json_assert.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "json_assert.h"

#include <stdio.h>
#include <stdlib.h>

bool ja_equal(const cJSON *got, const char *want)
{
    cJSON *w = cJSON_Parse(want);
    bool ok = w && got && cJSON_Compare(got, w, true);
    if (!ok) {
        char *g = got ? cJSON_PrintUnformatted(got) : NULL;
        fprintf(stderr, "JSON mismatch:\n  got:  %s\n  want: %s%s\n", g ? g : "(null)", want,
                w ? "" : " (unparsable)");
        free(g);
    }
    cJSON_Delete(w);
    return ok;
}

bool ja_text_equal(const char *got, const char *want)
{
    cJSON *g = got ? cJSON_Parse(got) : NULL;
    bool ok = g && ja_equal(g, want);
    if (!g) fprintf(stderr, "not JSON: %s\n", got ? got : "(null)");
    cJSON_Delete(g);
    return ok;
}

const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v)) fail_msg("JSON member %s is missing or not a string", key);
    return v->valuestring;
}

const char *json_str_or_null(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return NULL;
    return json_str(o, key);
}

double json_num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) fail_msg("JSON member %s is missing or not a number", key);
    return v->valuedouble;
}

int json_int(const cJSON *o, const char *key) { return (int)json_num(o, key); }
