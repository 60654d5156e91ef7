/* Downloading img2img init images from job-supplied http(s) URLs, with the
 * protections of the RunPod SDK's rp_ssrf.safe_get (runpod-protocol.md §10):
 *   - only http and https, also for redirects (at most max_redirects, each
 *     hop checked again);
 *   - every connection's address is checked right before the socket is
 *     opened (libcurl's opensocket callback), so a DNS answer cannot change
 *     between the check and the connect: loopback, RFC 1918, CGNAT,
 *     link-local (cloud metadata 169.254.169.254), multicast, reserved,
 *     documentation and IPv6 unique-local/link-local addresses are refused,
 *     also inside IPv4-mapped IPv6, unless allow_private (the SDK's
 *     RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS escape hatch) is set. An address
 *     that is refused is never connected to; a host with public and private
 *     addresses is only reached on the public ones;
 *   - environment proxies are not used (a proxy would connect on our behalf
 *     to an address we never saw);
 *   - the body is capped (Content-Length checked first, then the bytes as
 *     they arrive) and the whole transfer, redirects included, has a time
 *     limit;
 *   - a final status other than 2xx is an error.
 * Error messages name the scheme, host and port, never the path or query
 * (presigned URLs carry credentials there). The bytes are returned as they
 * came; image/decode.h sniffs and decodes them. */
#ifndef SDXL_IMAGE_FETCH_H
#define SDXL_IMAGE_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Decides whether a connection may be opened to an address; nonzero allows. */
typedef int (*img_fetch_address_fn)(const struct sockaddr *addr, void *ctx);

typedef struct {
    size_t max_bytes;          /* body cap; default 32 MiB */
    long timeout_ms;           /* the whole fetch, redirects included; default 30000 */
    long connect_timeout_ms;   /* each connection; default 10000 */
    int max_redirects;         /* default 5, as the SDK */
    bool allow_private;        /* connect to any address (RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS) */
    /* NULL: img_fetch_address_is_public (or anything with allow_private).
     * Tests narrow it to chosen loopback addresses. */
    img_fetch_address_fn address_ok;
    void *address_ctx;
} img_fetch_opts;

/* The defaults; allow_private from RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS, which
 * the SDK reads as on for 1, true or yes (trimmed, any case). */
void img_fetch_opts_default(img_fetch_opts *o);

typedef enum {
    IMG_FETCH_OK = 0,
    IMG_FETCH_EURL,      /* not an absolute http(s) URL, or a redirect to another scheme */
    IMG_FETCH_EBLOCKED,  /* the host's addresses are not public */
    IMG_FETCH_ETOOBIG,   /* the body is larger than max_bytes */
    IMG_FETCH_EHTTP,     /* the final answer was not 2xx, or too many redirects */
    IMG_FETCH_ENETWORK,  /* DNS, connection, TLS, time limit */
    IMG_FETCH_ENOMEM,
} img_fetch_status;

/* GETs url; on IMG_FETCH_OK *data (malloc'd, free it) holds *len bytes.
 * Otherwise one line in err and *data is NULL. */
img_fetch_status img_fetch(const char *url, const img_fetch_opts *o, uint8_t **data, size_t *len, char *err,
                           size_t errlen);

/* Globally routable unicast: IPv4 outside 0/8, 10/8, 100.64/10, 127/8,
 * 169.254/16, 172.16/12, 192.0.0/24, 192.0.2/24, 192.88.99/24, 192.168/16,
 * 198.18/15, 198.51.100/24, 203.0.113/24, 224/4 and 240/4; IPv6 inside
 * 2000::/3 but outside 2001::/23, 2001:db8::/32, 2002::/16 and 3fff::/20;
 * IPv4-mapped IPv6 as its IPv4 address. Other families are not public. */
bool img_fetch_address_is_public(const struct sockaddr *addr);
/* The same for a numeric address string; false when it does not parse. */
bool img_fetch_ip_is_public(const char *ip);
/* An IPv4/IPv6 address as text, for messages. */
void img_fetch_address_text(const struct sockaddr *addr, char *out, size_t n);

#endif
