/* Civitai specifics for the model store (see civitai.h). Sources, as read in
 * the spec (original-worker-and-civitai.md): the download route and its
 * error answers (§2.1, civitai/civitai src/pages/api/download/models/
 * [modelVersionId].ts), the API key rules (§2.2), the model-versions answer
 * (§2.3, src/pages/api/v1/model-versions/[id].ts) and civitai.red (§2.5).
 * URLs are taken apart with libcurl's URL parser. */
#include "models/civitai.h"

#include "models/download.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_FILES 1000

/* ---- URLs ----------------------------------------------------------------- */

typedef struct {
    char scheme[16];
    char host[256];
    char path[2048];
    char query[2048];
} url_parts;

static int split_url(const char *url, url_parts *p)
{
    memset(p, 0, sizeof *p);
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *path = NULL, *query = NULL;
    int rc = -1;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_QUERY, &query, 0);
        snprintf(p->scheme, sizeof p->scheme, "%s", scheme);
        snprintf(p->host, sizeof p->host, "%s", host);
        snprintf(p->path, sizeof p->path, "%s", path);
        snprintf(p->query, sizeof p->query, "%s", query ? query : "");
        for (char *c = p->scheme; *c; c++) *c = (char)tolower((unsigned char)*c);
        for (char *c = p->host; *c; c++) *c = (char)tolower((unsigned char)*c);
        rc = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

static bool is_civitai_host(const char *host)
{
    static const char *const hosts[] = {"civitai.com", "www.civitai.com", "civitai.red", "www.civitai.red"};
    for (size_t i = 0; i < sizeof hosts / sizeof *hosts; i++)
        if (strcmp(host, hosts[i]) == 0) return true;
    return false;
}

static bool is_loopback_host(const char *host)
{
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 || strcmp(host, "[::1]") == 0 ||
           strcmp(host, "::1") == 0;
}

int civitai_origin_normalize(const char *value, char *out, size_t outlen, char *err, size_t errlen)
{
    char url[600];
    bool has_scheme = strstr(value, "://") != NULL;
    snprintf(url, sizeof url, "%s%s", has_scheme ? "" : "https://", value);
    url_parts p;
    if (strlen(value) > 400 || split_url(url, &p) != 0 || !p.host[0] ||
        (strcmp(p.scheme, "https") && strcmp(p.scheme, "http")) || (strcmp(p.path, "/") && p.path[0])) {
        snprintf(err, errlen, "\"%s\" is not a host (civitai.com, civitai.red) or an http(s)://host[:port] origin",
                 value);
        return -1;
    }
    if (dl_url_origin(url, out, outlen) != 0) {
        snprintf(err, errlen, "\"%s\" is too long", value);
        return -1;
    }
    return 0;
}

bool civitai_is_civitai_url(const char *url, const char *configured_origin)
{
    url_parts p;
    char origin[512];
    if (split_url(url, &p) != 0) return false;
    if (is_civitai_host(p.host)) return true;
    return configured_origin && *configured_origin && dl_url_origin(url, origin, sizeof origin) == 0 &&
           strcmp(origin, configured_origin) == 0;
}

char *civitai_rewrite_url(const char *url, const char *configured_origin)
{
    url_parts p;
    if (!configured_origin || !*configured_origin || split_url(url, &p) != 0 || !is_civitai_host(p.host))
        return strdup(url);
    size_t n = strlen(configured_origin) + strlen(p.path) + strlen(p.query) + 3;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s%s%s%s", configured_origin, p.path, p.query[0] ? "?" : "", p.query);
    return out;
}

bool civitai_key_allowed(const char *url, const char *configured_origin)
{
    url_parts p;
    if (!civitai_is_civitai_url(url, configured_origin) || split_url(url, &p) != 0) return false;
    return strcmp(p.scheme, "https") == 0 || (strcmp(p.scheme, "http") == 0 && is_loopback_host(p.host));
}

uint64_t civitai_version_id(const char *url)
{
    static const char prefix[] = "/api/download/models/";
    url_parts p;
    if (split_url(url, &p) != 0 || strncmp(p.path, prefix, sizeof prefix - 1) != 0) return 0;
    const char *digits = p.path + sizeof prefix - 1;
    uint64_t id = 0;
    size_t n = 0;
    for (; isdigit((unsigned char)digits[n]) && n < 19; n++) id = id * 10 + (uint64_t)(digits[n] - '0');
    bool tail_ok = digits[n] == 0 || (digits[n] == '/' && digits[n + 1] == 0);
    return n && tail_ok ? id : 0;
}

char *civitai_version_api_url(const char *download_url)
{
    char origin[512];
    uint64_t id = civitai_version_id(download_url);
    if (!id || dl_url_origin(download_url, origin, sizeof origin) != 0) return NULL;
    size_t n = strlen(origin) + 64;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%s/api/v1/model-versions/%llu", origin, (unsigned long long)id);
    return out;
}

/* Value of query parameter `name` (percent- and '+'-decoded). */
static bool query_param(const char *url, const char *name, char *out, size_t outlen)
{
    url_parts p;
    if (split_url(url, &p) != 0) return false;
    size_t nl = strlen(name);
    for (char *s = p.query; *s;) {
        char *end = strchr(s, '&');
        if (!end) end = s + strlen(s);
        if ((size_t)(end - s) > nl && strncasecmp(s, name, nl) == 0 && s[nl] == '=') {
            size_t w = 0;
            for (const char *c = s + nl + 1; c < end && w + 1 < outlen; c++) {
                int hi, lo;
                if (*c == '%' && end - c > 2 && isxdigit((unsigned char)c[1]) && isxdigit((unsigned char)c[2])) {
                    hi = isdigit((unsigned char)c[1]) ? c[1] - '0' : (tolower((unsigned char)c[1]) - 'a' + 10);
                    lo = isdigit((unsigned char)c[2]) ? c[2] - '0' : (tolower((unsigned char)c[2]) - 'a' + 10);
                    out[w++] = (char)(hi * 16 + lo);
                    c += 2;
                } else {
                    out[w++] = *c == '+' ? ' ' : *c;
                }
            }
            out[w] = 0;
            return true;
        }
        s = *end ? end + 1 : end;
    }
    return false;
}

/* ---- the model-versions answer --------------------------------------------- */

static void copy_str(const cJSON *obj, const char *key, char *out, size_t outlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    snprintf(out, outlen, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

static uint64_t get_id(const cJSON *obj)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "id");
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0 ? (uint64_t)v->valuedouble : 0;
}

static void parse_file(const cJSON *f, civitai_file *out)
{
    memset(out, 0, sizeof *out);
    out->id = get_id(f);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    out->name = strdup(cJSON_IsString(name) ? name->valuestring : "");
    copy_str(f, "type", out->type, sizeof out->type);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(f, "metadata");
    if (cJSON_IsObject(meta)) {
        copy_str(meta, "format", out->format, sizeof out->format);
        copy_str(meta, "size", out->size, sizeof out->size);
        copy_str(meta, "fp", out->fp, sizeof out->fp);
    }
    const cJSON *kb = cJSON_GetObjectItemCaseSensitive(f, "sizeKB");
    if (cJSON_IsNumber(kb) && kb->valuedouble > 0 && kb->valuedouble < 1e15) out->size_kb = kb->valuedouble;
    const cJSON *hashes = cJSON_GetObjectItemCaseSensitive(f, "hashes");
    const cJSON *sha = cJSON_IsObject(hashes) ? cJSON_GetObjectItemCaseSensitive(hashes, "SHA256") : NULL;
    if (cJSON_IsString(sha) && strlen(sha->valuestring) == 64) {
        bool hex = true;
        for (int i = 0; i < 64 && hex; i++) {
            hex = isxdigit((unsigned char)sha->valuestring[i]);
            out->sha256[i] = (char)tolower((unsigned char)sha->valuestring[i]);
        }
        out->sha256[hex ? 64 : 0] = 0;
    }
    out->primary = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(f, "primary"));
}

int civitai_parse_version(const char *json, size_t len, civitai_version *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *text = malloc(len + 1); /* upstream cJSON 1.7.15 may read one byte past `len` */
    if (!text) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(text, json, len);
    text[len] = 0;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        snprintf(err, errlen, "the model-versions answer is not a JSON object");
        return -1;
    }
    out->id = get_id(root);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    size_t n = cJSON_IsArray(files) ? (size_t)cJSON_GetArraySize(files) : 0;
    if (n > MAX_FILES) n = MAX_FILES;
    out->files = calloc(n ? n : 1, sizeof *out->files);
    if (!out->files) {
        cJSON_Delete(root);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (const cJSON *f = n ? files->child : NULL; f && out->n_files < n; f = f->next)
        if (cJSON_IsObject(f)) parse_file(f, &out->files[out->n_files++]);
    cJSON_Delete(root);
    return 0;
}

void civitai_version_free(civitai_version *v)
{
    for (size_t i = 0; i < v->n_files; i++) free(v->files[i].name);
    free(v->files);
    memset(v, 0, sizeof *v);
}

/* A filter passes when absent from the query, or when the file lacks the key
 * (Civitai's consistency check only rejects a *different* value). */
static bool filter_ok(const char *url, const char *param, const char *value)
{
    char want[64];
    return !query_param(url, param, want, sizeof want) || !*value || strcasecmp(want, value) == 0;
}

const civitai_file *civitai_pick_file(const civitai_version *v, const char *url, const char *server_filename)
{
    char fid[32];
    if (query_param(url, "fileId", fid, sizeof fid)) {
        for (size_t i = 0; i < v->n_files; i++)
            if (v->files[i].id == strtoull(fid, NULL, 10)) return &v->files[i];
        return NULL;
    }
    if (server_filename && *server_filename)
        for (size_t i = 0; i < v->n_files; i++)
            if (strcmp(v->files[i].name, server_filename) == 0) return &v->files[i];
    const civitai_file *best = NULL;
    for (size_t i = 0; i < v->n_files; i++) {
        const civitai_file *f = &v->files[i];
        if (!filter_ok(url, "type", f->type) || !filter_ok(url, "format", f->format) ||
            !filter_ok(url, "size", f->size) || !filter_ok(url, "fp", f->fp))
            continue;
        if (f->primary) return f;
        if (!best) best = f;
    }
    return best;
}

/* ---- error messages ------------------------------------------------------------ */

/* A JSON string member made printable and short, or "". */
static void body_field(const cJSON *root, const char *key, char *out, size_t outlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    out[0] = 0;
    if (cJSON_IsString(v)) snprintf(out, outlen, "%s", v->valuestring);
    else if (cJSON_IsNumber(v)) snprintf(out, outlen, "%.0f", v->valuedouble);
    for (char *c = out; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = ' ';
}

void civitai_explain(long status, const char *body, const char *label, const char *url,
                     bool key_set, bool key_sent, char *out, size_t outlen)
{
    cJSON *root = body ? cJSON_Parse(body) : NULL;
    char error[200] = "", message[300] = "", deadline[100] = "", said[560] = "", filters[400], shown[600];
    if (cJSON_IsObject(root)) {
        body_field(root, "error", error, sizeof error);
        body_field(root, "message", message, sizeof message);
        body_field(root, "deadline", deadline, sizeof deadline);
    }
    cJSON_Delete(root);
    if (message[0] || error[0])
        snprintf(said, sizeof said, " (Civitai says: %s%s%s)", error, error[0] && message[0] ? ": " : "", message);
    uint64_t id = civitai_version_id(url);
    char version[48];
    if (id) snprintf(version, sizeof version, "version %llu", (unsigned long long)id);
    else snprintf(version, sizeof version, "this file");
    dl_url_for_log(url, shown, sizeof shown);
    const char *q = strchr(shown, '?');
    snprintf(filters, sizeof filters, "%s", q ? q + 1 : "none");

    switch (status) {
    case 401:
        if (strcasestr(message, "disabled downloads"))
            snprintf(out, outlen, "%s: HTTP 401 for %s: the creator has disabled downloads of this file%s", label,
                     version, said);
        else if (!key_set)
            snprintf(out, outlen, "%s: HTTP 401 for %s: Civitai requires a login for this download and "
                     "CIVITAI_API_KEY is not set; create an API key in your Civitai account settings and set "
                     "CIVITAI_API_KEY%s", label, version, said);
        else if (!key_sent)
            snprintf(out, outlen, "%s: HTTP 401 for %s: CIVITAI_API_KEY is set but was not sent, because the key "
                     "goes only to https Civitai hosts (civitai.com, civitai.red or CIVITAI_HOST)%s", label, version,
                     said);
        else
            snprintf(out, outlen, "%s: HTTP 401 for %s: Civitai did not accept CIVITAI_API_KEY (invalid, expired "
                     "or revoked key)%s", label, version, said);
        break;
    case 403:
        if (strcasecmp(error, "Early Access") == 0 || strcasestr(message, "early access"))
            snprintf(out, outlen, "%s: HTTP 403 for %s: it is in Early Access%s%s and can't be downloaded with this "
                     "account until then%s", label, version, deadline[0] ? " until " : "", deadline, said);
        else
            snprintf(out, outlen, "%s: HTTP 403 for %s: the account of CIVITAI_API_KEY has no access to this "
                     "file%s", label, version, said);
        break;
    case 404:
        snprintf(out, outlen, "%s: HTTP 404 for %s: Civitai has no published file for it that matches the URL's "
                 "filters (%s): the version may not exist or not be public, or a filter contradicts the file's "
                 "metadata; check the version id, or pin the file with fileId= from /api/v1/model-versions/%llu%s",
                 label, version, filters, (unsigned long long)id, said);
        break;
    case 410:
        snprintf(out, outlen, "%s: HTTP 410 for %s: the model is archived on Civitai and can no longer be "
                 "downloaded; use another version or give a local \"path\"%s", label, version, said);
        break;
    case 429:
        snprintf(out, outlen, "%s: HTTP 429 for %s: Civitai's download rate limit; try again later%s", label,
                 version, said);
        break;
    default:
        snprintf(out, outlen, "%s: HTTP %ld for %s%s", label, status, version, said);
    }
}
