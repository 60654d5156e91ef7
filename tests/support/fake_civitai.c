/* The fake Civitai + storage host (see fake_civitai.h). Two libmicrohttpd
 * daemons on 127.0.0.1 with ephemeral ports, a thread per connection (the
 * storage host may be throttled, and several clients may be served at once),
 * one mutex over the state. Answers follow spec original-worker-and-civitai.md
 * §2.1 (download route: order of checks, JSON error bodies for non-browser
 * User-Agents, 307 with Cache-Control: no-store), §2.2 (storage refuses an
 * Authorization header next to a presigned URL) and §2.3 (model-versions). */
#include "fake_civitai.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MAX_VERSIONS 16
#define MAX_TOKENS 64
#define MAX_REQUESTS 512
#define BLOCK (64 * 1024)

typedef struct {
    fc_version v;       /* strings and data owned */
    char sha256[65];    /* of data */
} version_entry;

typedef struct {
    char token[40];
    int version;        /* index into versions */
    int uses;
} signed_url;

struct fake_civitai {
    pthread_mutex_t lock;
    struct MHD_Daemon *civ, *sto;
    char civ_origin[64], sto_origin[64];
    char *api_key;
    fc_script_t script;
    int fail_next;      /* index into script.download_fail */
    version_entry versions[MAX_VERSIONS];
    int n_versions;
    signed_url tokens[MAX_TOKENS];
    int n_tokens;
    unsigned token_counter;
    int transfers;      /* storage requests that started sending bytes */
    bool hold;          /* storage bodies wait while set */
    fc_request requests[MAX_REQUESTS];
    size_t n_requests;
};

/* ---- helpers ------------------------------------------------------------------ */

void fc_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char d[32];
    EVP_Digest(data, len, d, NULL, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

unsigned char *fc_make_safetensors(size_t approx, unsigned seed, size_t *len)
{
    size_t n = approx / 4 ? approx / 4 : 1;
    char header[256];
    int hl = snprintf(header, sizeof header, "{\"weight\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}",
                      n, n * 4);
    while (hl % 8) header[hl++] = ' ';
    *len = 8 + (size_t)hl + n * 4;
    unsigned char *buf = malloc(*len);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, (size_t)hl);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 8 + (size_t)hl; i < *len; i++) {
        x = x * 1664525u + 1013904223u;
        buf[i] = (unsigned char)(x >> 24);
    }
    return buf;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, const char *body,
                                 const char *h1, const char *v1)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    if (h1) MHD_add_response_header(r, h1, v1);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, const char *body)
{
    return send_text(c, status, "application/json; charset=utf-8", body, NULL, NULL);
}

typedef struct {
    const char *key;
    bool seen;
} key_search;

static enum MHD_Result look_for_key(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    key_search *ks = cls;
    if (ks->key && *ks->key && ((k && strstr(k, ks->key)) || (v && strstr(v, ks->key)))) ks->seen = true;
    return MHD_YES;
}

/* Records a request; returns its index (or -1 when the log is full). */
static int record(fake_civitai *fc, struct MHD_Connection *c, const char *server, const char *url)
{
    key_search ks = {fc->api_key, false};
    MHD_get_connection_values(c, MHD_HEADER_KIND, look_for_key, &ks);
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, look_for_key, &ks);
    if (fc->api_key && *fc->api_key && strstr(url, fc->api_key)) ks.seen = true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    pthread_mutex_lock(&fc->lock);
    int i = fc->n_requests < MAX_REQUESTS ? (int)fc->n_requests++ : -1;
    if (i >= 0) {
        fc_request *r = &fc->requests[i];
        memset(r, 0, sizeof *r);
        snprintf(r->server, sizeof r->server, "%s", server);
        snprintf(r->path, sizeof r->path, "%s", url);
        snprintf(r->range, sizeof r->range, "%s", range ? range : "");
        snprintf(r->user_agent, sizeof r->user_agent, "%s", ua ? ua : "");
        r->had_auth = auth != NULL;
        r->key_seen = ks.seen;
        /* the server takes header.split(' ')[1] (spec §2.2) */
        const char *sp = auth ? strchr(auth, ' ') : NULL;
        r->bearer_ok = sp && fc->api_key && strcmp(sp + 1, fc->api_key) == 0;
    }
    pthread_mutex_unlock(&fc->lock);
    return i;
}

static void set_status(fake_civitai *fc, int i, int status)
{
    pthread_mutex_lock(&fc->lock);
    if (i >= 0) fc->requests[i].status = status;
    pthread_mutex_unlock(&fc->lock);
}

static version_entry *find_version(fake_civitai *fc, uint64_t id)
{
    for (int i = 0; i < fc->n_versions; i++)
        if (fc->versions[i].v.version_id == id) return &fc->versions[i];
    return NULL;
}

static bool browser_ua(const char *ua)
{
    static const char *const marks[] = {"mozilla", "chrome", "safari", "firefox", "opera", "edge"};
    for (size_t i = 0; ua && i < sizeof marks / sizeof *marks; i++)
        if (strcasestr(ua, marks[i])) return true;
    return false;
}

/* ---- civitai ---------------------------------------------------------------------- */

/* §2.1 step 5: a given filter that contradicts the file's metadata is a 404. */
static bool filters_match(struct MHD_Connection *c, const version_entry *ve)
{
    const char *names[] = {"format", "size", "fp"};
    const char *have[] = {ve->v.format, ve->v.size, ve->v.fp};
    for (int i = 0; i < 3; i++) {
        const char *want = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, names[i]);
        if (want && have[i] && strcasecmp(want, have[i]) != 0) return false;
    }
    const char *type = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "type");
    const char *ftype = ve->v.type ? ve->v.type : "Model";
    if (type && strcasecmp(type, ftype) != 0) return false;
    const char *fid = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fileId");
    return !fid || strtoull(fid, NULL, 10) == ve->v.file_id;
}

static enum MHD_Result answer_download(fake_civitai *fc, struct MHD_Connection *c, int ri, uint64_t id)
{
    char buf[1024];
    pthread_mutex_lock(&fc->lock);
    int scripted = fc->fail_next < fc->script.n_download_fail ? fc->script.download_fail[fc->fail_next++] : 0;
    int retry_after = fc->script.retry_after_s;
    bool login_page = fc->script.login_page_200;
    version_entry *ve = find_version(fc, id);
    pthread_mutex_unlock(&fc->lock);
    const char *ua = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
    if (scripted) {
        set_status(fc, ri, scripted);
        if (scripted == 429) {
            snprintf(buf, sizeof buf, "%d", retry_after);
            return send_text(c, 429, "application/json",
                             "{\"error\":\"We've noticed an unusual amount of downloading from your account.\"}",
                             retry_after >= 0 ? "Retry-After" : NULL, buf);
        }
        return send_json(c, (unsigned)scripted, "{\"error\":\"Internal Server Error\"}");
    }
    int status;
    const char *body;
    if (!ve || !filters_match(c, ve)) {
        status = 404, body = "{\"error\":\"File not found\"}";
    } else if (ve->v.archived) {
        status = 410, body = "{\"error\":\"Model archived, not available for download\"}";
    } else {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        const char *token = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
        const char *sp = auth ? strchr(auth, ' ') : NULL;
        bool session = fc->api_key && ((sp && !strcmp(sp + 1, fc->api_key)) || (!auth && token && !strcmp(token, fc->api_key)));
        if (ve->v.require_auth && !session) {
            if (browser_ua(ua)) {
                snprintf(buf, sizeof buf, "/login?returnUrl=%%2Fmodel-versions%%2F%llu&reason=download-auth",
                         (unsigned long long)id);
                set_status(fc, ri, 307);
                return send_text(c, 307, "text/plain", "Redirecting", "Location", buf);
            }
            status = 401;
            body = "{\"error\":\"Unauthorized\",\"message\":\"The creator of this asset requires you to be logged "
                   "in to download it\"}";
        } else if (ve->v.early_access_deadline) {
            snprintf(buf, sizeof buf, "{\"error\":\"Early Access\",\"deadline\":\"%s\",\"message\":\"This asset is "
                     "in Early Access. You can use Buzz access it now!\"}", ve->v.early_access_deadline);
            status = 403, body = buf;
        } else if (login_page) {
            set_status(fc, ri, 200);
            return send_text(c, 200, "text/html; charset=utf-8",
                             "<!DOCTYPE html><html><head><title>Sign in | Civitai</title></head>"
                             "<body><form action=\"/api/auth/signin\">Log in to continue</form></body></html>",
                             NULL, NULL);
        } else {
            pthread_mutex_lock(&fc->lock);
            signed_url *su = fc->n_tokens < MAX_TOKENS ? &fc->tokens[fc->n_tokens++] : &fc->tokens[MAX_TOKENS - 1];
            snprintf(su->token, sizeof su->token, "t%04x%08lx", ++fc->token_counter, (unsigned long)random());
            su->version = (int)(ve - fc->versions);
            su->uses = 0;
            char name[256];
            size_t w = 0;
            for (const unsigned char *p = (const unsigned char *)ve->v.file_name; *p && w + 4 < sizeof name; p++)
                w += (size_t)(isalnum(*p) || strchr("-._~", *p) ? snprintf(name + w, 2, "%c", *p)
                                                                : snprintf(name + w, 4, "%%%02X", *p));
            name[w] = 0;
            snprintf(buf, sizeof buf, "%s/files/%s/%llu?X-Amz-Expires=86400&X-Amz-Signature=%s&"
                     "response-content-disposition=attachment%%3B%%20filename%%3D%%22%s%%22", fc->sto_origin,
                     su->token, (unsigned long long)ve->v.file_id, su->token, name);
            pthread_mutex_unlock(&fc->lock);
            set_status(fc, ri, 307);
            struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(r, "Location", buf);
            MHD_add_response_header(r, "Cache-Control", "no-store, max-age=0");
            enum MHD_Result ret = MHD_queue_response(c, 307, r);
            MHD_destroy_response(r);
            return ret;
        }
    }
    set_status(fc, ri, status);
    return send_json(c, (unsigned)status, body);
}

static cJSON *file_json(const fake_civitai *fc, const version_entry *ve)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "id", (double)ve->v.file_id);
    cJSON_AddStringToObject(f, "name", ve->v.file_name);
    cJSON_AddStringToObject(f, "type", ve->v.type ? ve->v.type : "Model");
    cJSON_AddNumberToObject(f, "sizeKB", ve->v.len / 1024.0);
    cJSON *meta = cJSON_AddObjectToObject(f, "metadata");
    if (ve->v.format) cJSON_AddStringToObject(meta, "format", ve->v.format);
    if (ve->v.size) cJSON_AddStringToObject(meta, "size", ve->v.size);
    if (ve->v.fp) cJSON_AddStringToObject(meta, "fp", ve->v.fp);
    cJSON_AddStringToObject(f, "pickleScanResult", "Success");
    cJSON_AddStringToObject(f, "virusScanResult", "Success");
    cJSON *hashes = cJSON_AddObjectToObject(f, "hashes");
    const char *sha = ve->v.published_sha256 ? ve->v.published_sha256 : ve->sha256;
    if (*sha) {
        char upper[65], autov2[11];
        for (int i = 0; i < 64 && sha[i]; i++) upper[i] = (char)toupper((unsigned char)sha[i]);
        upper[strlen(sha) < 64 ? strlen(sha) : 64] = 0;
        memcpy(autov2, upper, 10);
        autov2[10] = 0;
        cJSON_AddStringToObject(hashes, "AutoV2", autov2);
        cJSON_AddStringToObject(hashes, "SHA256", upper);
    }
    char url[256];
    snprintf(url, sizeof url, "%s/api/download/models/%llu", fc->civ_origin, (unsigned long long)ve->v.version_id);
    cJSON_AddStringToObject(f, "downloadUrl", url);
    cJSON_AddBoolToObject(f, "primary", true);
    return f;
}

static enum MHD_Result answer_version(fake_civitai *fc, struct MHD_Connection *c, int ri, uint64_t id)
{
    pthread_mutex_lock(&fc->lock);
    version_entry *ve = find_version(fc, id);
    cJSON *root = NULL;
    if (ve) {
        root = cJSON_CreateObject();
        cJSON_AddNumberToObject(root, "id", (double)id);
        cJSON_AddNumberToObject(root, "modelId", (double)(id + 100000));
        cJSON_AddStringToObject(root, "name", "v1.0");
        cJSON_AddStringToObject(root, "baseModel", "SDXL 1.0");
        cJSON_AddStringToObject(root, "status", "Published");
        cJSON *files = cJSON_AddArrayToObject(root, "files");
        if (!ve->v.archived) cJSON_AddItemToArray(files, file_json(fc, ve));
    }
    pthread_mutex_unlock(&fc->lock);
    if (!root) {
        set_status(fc, ri, 404);
        return send_json(c, 404, "{\"error\":\"Model not found\"}");
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    set_status(fc, ri, 200);
    enum MHD_Result ret = send_json(c, 200, text);
    free(text);
    return ret;
}

static enum MHD_Result on_civitai(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    fake_civitai *fc = cls;
    int ri = record(fc, c, "civitai", url);
    unsigned long long id;
    char tail;
    if (sscanf(url, "/api/download/models/%llu%c", &id, &tail) == 1) return answer_download(fc, c, ri, id);
    if (sscanf(url, "/api/v1/model-versions/%llu%c", &id, &tail) == 1) return answer_version(fc, c, ri, id);
    set_status(fc, ri, 404);
    return send_json(c, 404, "{\"error\":\"Not found\"}");
}

/* ---- storage ------------------------------------------------------------------------ */

typedef struct {
    fake_civitai *fc;
    const unsigned char *data;
    size_t start, end;   /* byte range sent: [start, end) */
    size_t cut_at;       /* drop the connection here (SIZE_MAX: never) */
    int ri;
    int throttle_ms;
} transfer;

static ssize_t read_block(void *cls, uint64_t pos, char *buf, size_t max)
{
    transfer *t = cls;
    for (;;) {
        pthread_mutex_lock(&t->fc->lock);
        bool hold = t->fc->hold;
        pthread_mutex_unlock(&t->fc->lock);
        if (!hold) break;
        usleep(2000);
    }
    size_t at = t->start + (size_t)pos;
    if (at >= t->end) return MHD_CONTENT_READER_END_OF_STREAM;
    if (at >= t->cut_at) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = t->end - at < max ? t->end - at : max;
    if (n > BLOCK) n = BLOCK;
    if (t->cut_at != SIZE_MAX && at + n > t->cut_at) n = t->cut_at - at;
    if (t->throttle_ms) usleep((useconds_t)t->throttle_ms * 1000);
    memcpy(buf, t->data + at, n);
    pthread_mutex_lock(&t->fc->lock);
    if (t->ri >= 0) t->fc->requests[t->ri].bytes_sent += n;
    pthread_mutex_unlock(&t->fc->lock);
    return (ssize_t)n;
}

static const char html_page[] =
    "<!DOCTYPE html><html><head><title>Access Denied</title></head><body>Please log in.</body></html>";

static enum MHD_Result serve_bytes(fake_civitai *fc, struct MHD_Connection *c, int ri, const version_entry *ve)
{
    const char *range = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Range");
    pthread_mutex_lock(&fc->lock);
    fc_script_t s = fc->script;
    int nth = ++fc->transfers;
    pthread_mutex_unlock(&fc->lock);
    const unsigned char *data = s.html_as_octet_stream ? (const unsigned char *)html_page : ve->v.data;
    size_t len = s.html_as_octet_stream ? sizeof html_page - 1 : ve->v.len;
    size_t start = 0;
    unsigned long long a;
    bool ranged = range && !s.ignore_range && sscanf(range, "bytes=%llu-", &a) == 1;
    if (ranged && a >= len) {
        char cr[64];
        snprintf(cr, sizeof cr, "bytes */%zu", len);
        set_status(fc, ri, 416);
        return send_text(c, 416, "application/xml", "<Error><Code>InvalidRange</Code></Error>", "Content-Range", cr);
    }
    if (ranged) start = (size_t)a;
    transfer *t = calloc(1, sizeof *t);
    *t = (transfer){fc, data, start, len, SIZE_MAX, ri, s.throttle_ms_per_64k};
    if (nth == 1 && s.cut_first_at > 0) t->cut_at = (size_t)(len * s.cut_first_at);
    struct MHD_Response *r = MHD_create_response_from_callback(s.chunked ? MHD_SIZE_UNKNOWN : len - start, BLOCK,
                                                               read_block, t, free);
    MHD_add_response_header(r, "Content-Type", "application/octet-stream");
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    char disp[300];
    snprintf(disp, sizeof disp, "attachment; filename=\"%s\"", ve->v.file_name);
    MHD_add_response_header(r, "Content-Disposition", disp);
    int status = ranged ? 206 : 200;
    if (ranged) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %zu-%zu/%zu", start, len - 1, len);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    set_status(fc, ri, status);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_storage(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state)
{
    fake_civitai *fc = cls;
    int ri = record(fc, c, "storage", url);
    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")) {
        set_status(fc, ri, 400);
        return send_text(c, 400, "application/xml",
                         "<Error><Code>InvalidRequest</Code><Message>Only one auth mechanism allowed; only the "
                         "X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization "
                         "header should be specified</Message></Error>", NULL, NULL);
    }
    char token[64];
    unsigned long long file_id;
    const version_entry *ve = NULL;
    bool valid = false;
    pthread_mutex_lock(&fc->lock);
    if (sscanf(url, "/files/%63[^/]/%llu", token, &file_id) == 2) {
        for (int i = 0; i < fc->n_tokens; i++) {
            signed_url *su = &fc->tokens[i];
            if (strcmp(su->token, token) != 0) continue;
            ve = &fc->versions[su->version];
            valid = ve->v.file_id == file_id && (fc->script.token_uses == 0 || su->uses < fc->script.token_uses);
            su->uses++;
        }
    } else if (sscanf(url, "/public/%llu", &file_id) == 1) {
        for (int i = 0; i < fc->n_versions; i++)
            if (fc->versions[i].v.file_id == file_id) ve = &fc->versions[i], valid = true;
    }
    pthread_mutex_unlock(&fc->lock);
    if (!ve || !valid) {
        set_status(fc, ri, 403);
        return send_text(c, 403, "application/xml",
                         "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", NULL, NULL);
    }
    return serve_bytes(fc, c, ri, ve);
}

/* ---- life cycle ------------------------------------------------------------------------- */

static struct MHD_Daemon *listen_loopback(MHD_AccessHandlerCallback cb, void *cls, char *origin, size_t len)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL,
                                            NULL, cb, cls, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_END);
    if (!d) return NULL;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(origin, len, "http://127.0.0.1:%u", info ? info->port : 0);
    return d;
}

fake_civitai *fc_start(const char *api_key)
{
    fake_civitai *fc = calloc(1, sizeof *fc);
    pthread_mutex_init(&fc->lock, NULL);
    fc->api_key = dup_or_null(api_key);
    fc->script.retry_after_s = -1;
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());
    fc->civ = listen_loopback(on_civitai, fc, fc->civ_origin, sizeof fc->civ_origin);
    fc->sto = listen_loopback(on_storage, fc, fc->sto_origin, sizeof fc->sto_origin);
    if (!fc->civ || !fc->sto) {
        fc_stop(fc);
        return NULL;
    }
    return fc;
}

void fc_stop(fake_civitai *fc)
{
    if (!fc) return;
    if (fc->civ) MHD_stop_daemon(fc->civ);
    if (fc->sto) MHD_stop_daemon(fc->sto);
    for (int i = 0; i < fc->n_versions; i++) {
        fc_version *v = &fc->versions[i].v;
        free((void *)v->file_name);
        free((void *)v->data);
        free((void *)v->type);
        free((void *)v->format);
        free((void *)v->size);
        free((void *)v->fp);
        free((void *)v->published_sha256);
        free((void *)v->early_access_deadline);
    }
    free(fc->api_key);
    pthread_mutex_destroy(&fc->lock);
    free(fc);
}

void fc_add_version(fake_civitai *fc, const fc_version *v)
{
    pthread_mutex_lock(&fc->lock);
    if (fc->n_versions < MAX_VERSIONS) {
        version_entry *ve = &fc->versions[fc->n_versions++];
        ve->v = *v;
        ve->v.file_name = strdup(v->file_name ? v->file_name : "model.safetensors");
        unsigned char *copy = malloc(v->len ? v->len : 1);
        memcpy(copy, v->data, v->len);
        ve->v.data = copy;
        ve->v.type = dup_or_null(v->type);
        ve->v.format = dup_or_null(v->format);
        ve->v.size = dup_or_null(v->size);
        ve->v.fp = dup_or_null(v->fp);
        ve->v.published_sha256 = dup_or_null(v->published_sha256);
        ve->v.early_access_deadline = dup_or_null(v->early_access_deadline);
        fc_sha256_hex(v->data, v->len, ve->sha256);
    }
    pthread_mutex_unlock(&fc->lock);
}

fc_script_t *fc_script(fake_civitai *fc) { return &fc->script; }

void fc_hold_storage(fake_civitai *fc, bool hold)
{
    pthread_mutex_lock(&fc->lock);
    fc->hold = hold;
    pthread_mutex_unlock(&fc->lock);
}
const char *fc_civitai_origin(const fake_civitai *fc) { return fc->civ_origin; }
const char *fc_storage_origin(const fake_civitai *fc) { return fc->sto_origin; }

size_t fc_requests(fake_civitai *fc, fc_request *out, size_t max)
{
    pthread_mutex_lock(&fc->lock);
    size_t n = fc->n_requests;
    memcpy(out, fc->requests, (n < max ? n : max) * sizeof *out);
    pthread_mutex_unlock(&fc->lock);
    return n;
}

int fc_count(fake_civitai *fc, const char *server, const char *prefix)
{
    int n = 0;
    pthread_mutex_lock(&fc->lock);
    for (size_t i = 0; i < fc->n_requests; i++)
        if (!strcmp(fc->requests[i].server, server) && !strncmp(fc->requests[i].path, prefix, strlen(prefix))) n++;
    pthread_mutex_unlock(&fc->lock);
    return n;
}

size_t fc_storage_bytes(fake_civitai *fc)
{
    size_t n = 0;
    pthread_mutex_lock(&fc->lock);
    for (size_t i = 0; i < fc->n_requests; i++)
        if (!strcmp(fc->requests[i].server, "storage")) n += fc->requests[i].bytes_sent;
    pthread_mutex_unlock(&fc->lock);
    return n;
}

bool fc_storage_never_saw_key(fake_civitai *fc)
{
    bool clean = true;
    pthread_mutex_lock(&fc->lock);
    for (size_t i = 0; i < fc->n_requests; i++)
        if (!strcmp(fc->requests[i].server, "storage") && (fc->requests[i].had_auth || fc->requests[i].key_seen))
            clean = false;
    pthread_mutex_unlock(&fc->lock);
    return clean;
}
