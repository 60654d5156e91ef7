/* A small blocking HTTP client over libcurl for the platform calls. One
 * rp_http per thread (it keeps its connections alive between requests).
 * Requests can be interrupted at once by an rp_event (its fd is polled next
 * to the sockets), so long-polls never delay a shutdown. Response bodies are
 * capped; they always come back NUL-terminated. */
#ifndef SDXL_RUNPOD_HTTP_H
#define SDXL_RUNPOD_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "runpod/event.h"

typedef struct rp_http rp_http;

typedef enum {
    RP_HTTP_OK = 0,    /* a response arrived (any status) */
    RP_HTTP_TIMEOUT,   /* no complete response within timeout_ms */
    RP_HTTP_ABORTED,   /* the abort event was set */
    RP_HTTP_TOO_LARGE, /* body above max_body */
    RP_HTTP_FAILED,    /* connect error, reset, empty reply, bad URL ... */
} rp_http_status;

typedef struct {
    const char *method;          /* "GET" or "POST" */
    const char *url;
    const char *const *headers;  /* NULL-terminated "Name: value" lines, or NULL */
    const char *body;            /* POST body (may contain NULs) */
    size_t body_len;
    long timeout_ms;             /* whole request */
    size_t max_body;             /* response cap; 0 means 1 MiB */
    rp_event *abort;             /* optional */
    /* Optional: every connection's address is passed here right before its
     * socket is opened (nonzero allows; a refused address is never connected
     * to), and no proxy is used (it would connect to addresses we never see).
     * Redirects are never followed. */
    int (*address_ok)(const struct sockaddr *addr, void *ctx);
    void *address_ctx;
} rp_http_request;

typedef struct {
    rp_http_status result;
    long status;                 /* HTTP status, 0 when none */
    char reason[64];             /* reason phrase of the status line */
    char content_type[128];      /* lower-cased mime type without parameters */
    long retry_after_s;          /* Retry-After in seconds, -1 when absent */
    char *body;                  /* malloc'd, NUL-terminated, may be "" */
    size_t len;
    char error[256];             /* what went wrong when result != OK */
} rp_http_response;

rp_http *rp_http_new(void);
void rp_http_free(rp_http *h);
/* Performs the request; always fills resp (free it with rp_http_response_free). */
rp_http_status rp_http_perform(rp_http *h, const rp_http_request *req, rp_http_response *resp);
void rp_http_response_free(rp_http_response *resp);

#endif
