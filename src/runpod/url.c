/* URL templating and query building for the platform endpoints (see url.h).
 * Behaviour matched: runpod-python 1.12.0 rp_job._job_get_url,
 * rp_job._job_stop_url, rp_http._handle_result, rp_ping._send_ping. */
#include "runpod/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

char *rp_url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p)) { *o++ = (char)*p; continue; }
        *o++ = '%';
        *o++ = hex[*p >> 4];
        *o++ = hex[*p & 15];
    }
    *o = 0;
    return out;
}

char *rp_str_replace(const char *s, const char *from, const char *to)
{
    size_t flen = strlen(from), tlen = strlen(to), count = 0;
    for (const char *p = s; flen && (p = strstr(p, from)); p += flen) count++;
    char *out = malloc(strlen(s) + count * tlen + 1), *o = out;
    const char *p = s, *hit;
    while (flen && (hit = strstr(p, from))) {
        memcpy(o, p, (size_t)(hit - p));
        o += hit - p;
        memcpy(o, to, tlen);
        o += tlen;
        p = hit + flen;
    }
    strcpy(o, p);
    return out;
}

char *rp_url_for_worker(const char *tmpl, const char *worker_id)
{
    char *enc = rp_url_encode(worker_id);
    char *a = rp_str_replace(tmpl, "$RUNPOD_POD_ID", enc);
    char *b = rp_str_replace(a, "$ID", enc);
    free(a);
    free(enc);
    return b;
}

char *rp_url_add_param(const char *url, const char *name, const char *value)
{
    char *enc = rp_url_encode(value), *out;
    if (asprintf(&out, "%s%c%s=%s", url, strchr(url, '?') ? '&' : '?', name, enc) < 0) out = NULL;
    free(enc);
    return out;
}

char *rp_take_url(const char *take_base, int batch_size, bool job_in_progress)
{
    char *url;
    if (batch_size > 1) {
        char *batch = rp_str_replace(take_base, "/job-take/", "/job-take-batch/");
        char n[24];
        snprintf(n, sizeof n, "%d", batch_size);
        url = rp_url_add_param(batch, "batch_size", n);
        free(batch);
    } else {
        url = strdup(take_base);
    }
    char *full = rp_url_add_param(url, "job_in_progress", job_in_progress ? "1" : "0");
    free(url);
    return full;
}

char *rp_stop_url(const char *take_base)
{
    if (!strstr(take_base, "/job-take/")) return NULL;
    return rp_str_replace(take_base, "/job-take/", "/job-stop/");
}

char *rp_result_url(const char *tmpl, const char *job_id, bool is_stream)
{
    char *enc = rp_url_encode(job_id);
    char *url = rp_str_replace(tmpl, "$ID", enc);
    char *full = rp_url_add_param(url, "isStream", is_stream ? "true" : "false");
    free(url);
    free(enc);
    return full;
}

char *rp_ping_url(const char *ping_base, const char *job_ids, const char *version)
{
    char *with_ids = (job_ids && *job_ids) ? rp_url_add_param(ping_base, "job_id", job_ids)
                                           : strdup(ping_base);
    char *full = rp_url_add_param(with_ids, "runpod_version", version);
    free(with_ids);
    return full;
}
