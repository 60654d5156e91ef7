/* libcurl-based HTTP client with event-driven abort (see http.h). The easy
 * handle runs inside a private multi handle so that curl_multi_poll() can
 * also watch the abort event's fd. */
#include "runpod/http.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runpod/runpod.h"

#define RP_USER_AGENT "sdxl-worker RunPod-C-Worker/" RP_SDK_VERSION

struct rp_http {
    CURLM *multi;
    CURL *easy;
};

typedef struct {
    rp_http_response *resp;
    size_t cap, max;
    int too_large;
} body_sink;

rp_http *rp_http_new(void)
{
    rp_http *h = calloc(1, sizeof *h);
    h->multi = curl_multi_init();
    h->easy = curl_easy_init();
    return h;
}

void rp_http_free(rp_http *h)
{
    if (!h) return;
    curl_easy_cleanup(h->easy);
    curl_multi_cleanup(h->multi);
    free(h);
}

void rp_http_response_free(rp_http_response *resp)
{
    free(resp->body);
    resp->body = NULL;
    resp->len = 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    body_sink *s = userp;
    size_t len = size * n;
    rp_http_response *r = s->resp;
    if (r->len + len > s->max) { s->too_large = 1; return 0; }
    if (r->len + len + 1 > s->cap) {
        size_t cap = s->cap;
        while (r->len + len + 1 > cap) cap *= 2;
        char *grown = realloc(r->body, cap);
        if (!grown) return 0; /* the transfer fails (CURLE_WRITE_ERROR) */
        r->body = grown, s->cap = cap;
    }
    memcpy(r->body + r->len, data, len);
    r->len += len;
    r->body[r->len] = 0;
    return len;
}

static void copy_trimmed(char *dst, size_t cap, const char *src, size_t len)
{
    while (len && isspace((unsigned char)*src)) { src++; len--; }
    while (len && isspace((unsigned char)src[len - 1])) len--;
    if (len >= cap) len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = 0;
}

/* Header lines of the last response (curl also passes those of 1xx and
 * redirect responses: a new status line resets what was seen). */
static size_t on_header(char *line, size_t size, size_t n, void *userp)
{
    rp_http_response *r = userp;
    size_t len = size * n;
    if (len > 5 && !strncmp(line, "HTTP/", 5)) {
        const char *sp = memchr(line, ' ', len);
        const char *sp2 = sp ? memchr(sp + 1, ' ', len - (size_t)(sp + 1 - line)) : NULL;
        r->reason[0] = 0;
        r->content_type[0] = 0;
        r->retry_after_s = -1;
        if (sp2) copy_trimmed(r->reason, sizeof r->reason, sp2 + 1, len - (size_t)(sp2 + 1 - line));
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon) return len;
    size_t name_len = (size_t)(colon - line);
    const char *val = colon + 1;
    size_t val_len = len - name_len - 1;
    if (name_len == 12 && !strncasecmp(line, "content-type", 12)) {
        const char *semi = memchr(val, ';', val_len);
        copy_trimmed(r->content_type, sizeof r->content_type, val, semi ? (size_t)(semi - val) : val_len);
        for (char *p = r->content_type; *p; p++) *p = (char)tolower((unsigned char)*p);
    } else if (name_len == 11 && !strncasecmp(line, "retry-after", 11)) {
        char tmp[32];
        copy_trimmed(tmp, sizeof tmp, val, val_len);
        char *end;
        long v = strtol(tmp, &end, 10);
        if (end != tmp && !*end && v >= 0) r->retry_after_s = v;
    }
    return len;
}

static struct curl_slist *build_headers(const rp_http_request *req)
{
    struct curl_slist *list = curl_slist_append(NULL, "Expect:");
    for (const char *const *h = req->headers; h && *h; h++) list = curl_slist_append(list, *h);
    return list;
}

/* CURLOPT_OPENSOCKETFUNCTION for requests with an address filter. */
static curl_socket_t open_checked_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    const rp_http_request *req = userp;
    if (purpose != CURLSOCKTYPE_IPCXN || !req->address_ok(&a->addr, req->address_ctx)) return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static void setup(CURL *c, const rp_http_request *req, struct curl_slist *headers,
                  body_sink *sink, rp_http_response *resp)
{
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, RP_USER_AGENT);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    if (req->address_ok) {
        curl_easy_setopt(c, CURLOPT_PROXY, "");
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)req);
    }
    if (!strcmp(req->method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    } else if (strcmp(req->method, "GET")) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method);
    }
}

/* Drives the transfer; returns CURLE_OK..., or -1 when aborted by the event. */
static int drive(rp_http *h, rp_event *abort)
{
    int running = 1;
    while (running) {
        if (curl_multi_perform(h->multi, &running) != CURLM_OK) return CURLE_FAILED_INIT;
        if (!running) break;
        struct curl_waitfd extra = {.fd = abort ? rp_event_fd(abort) : -1, .events = CURL_WAIT_POLLIN};
        curl_multi_poll(h->multi, abort ? &extra : NULL, abort ? 1 : 0, 1000, NULL);
        if (abort && rp_event_is_set(abort)) return -1;
    }
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(h->multi, &left)))
        if (msg->msg == CURLMSG_DONE) return (int)msg->data.result;
    return CURLE_FAILED_INIT;
}

static rp_http_status classify(int rc, const body_sink *sink)
{
    if (rc == CURLE_OK) return RP_HTTP_OK;
    if (rc == -1) return RP_HTTP_ABORTED;
    if (sink->too_large) return RP_HTTP_TOO_LARGE;
    if (rc == CURLE_OPERATION_TIMEDOUT) return RP_HTTP_TIMEOUT;
    return RP_HTTP_FAILED;
}

rp_http_status rp_http_perform(rp_http *h, const rp_http_request *req, rp_http_response *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->retry_after_s = -1;
    resp->body = calloc(1, 4096);
    if (!resp->body) {
        snprintf(resp->error, sizeof resp->error, "out of memory");
        return resp->result = RP_HTTP_FAILED;
    }
    body_sink sink = {.resp = resp, .cap = 4096, .max = req->max_body ? req->max_body : 1 << 20};
    struct curl_slist *headers = build_headers(req);
    setup(h->easy, req, headers, &sink, resp);
    curl_multi_add_handle(h->multi, h->easy);
    int rc = drive(h, req->abort);
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_multi_remove_handle(h->multi, h->easy);
    curl_slist_free_all(headers);
    resp->result = classify(rc, &sink);
    if (resp->result == RP_HTTP_ABORTED) snprintf(resp->error, sizeof resp->error, "aborted");
    else if (resp->result == RP_HTTP_TOO_LARGE)
        snprintf(resp->error, sizeof resp->error, "response body larger than %zu bytes", sink.max);
    else if (resp->result != RP_HTTP_OK)
        snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror((CURLcode)rc));
    if (resp->result != RP_HTTP_OK) resp->status = 0;
    return resp->result;
}
