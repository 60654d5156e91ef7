/* SSRF-safe download of init images (see image/fetch.h). The policy follows
 * the RunPod SDK's runpod/serverless/utils/rp_ssrf.py (scheme allowlist,
 * public addresses only unless RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS, redirects
 * re-checked, at most 5, a size cap); the address check sits in libcurl's
 * opensocket callback, which sees the very address a connection will use. */
#include "image/fetch.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FETCH_USER_AGENT "sdxl-worker"
#define ALLOW_PRIVATE_ENV "RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"

/* The SDK: os.environ.get(...).strip().lower() in ("1", "true", "yes"). */
static bool env_flag_on(const char *v)
{
    if (!v) return false;
    while (isspace((unsigned char)*v)) v++;
    size_t n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1])) n--;
    static const char *const on[] = {"1", "true", "yes"};
    for (size_t i = 0; i < sizeof on / sizeof on[0]; i++)
        if (strlen(on[i]) == n && !strncasecmp(v, on[i], n)) return true;
    return false;
}

void img_fetch_opts_default(img_fetch_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_bytes = (size_t)32 << 20;
    o->timeout_ms = 30000;
    o->connect_timeout_ms = 10000;
    o->max_redirects = 5;
    o->allow_private = env_flag_on(getenv(ALLOW_PRIVATE_ENV));
}

/* ---- which addresses are public --------------------------------------------- */

static bool ipv4_is_public(uint32_t a)
{
    static const struct {
        uint32_t net;
        int bits;
    } special[] = {
        {0x00000000u, 8},  /* "this network" */
        {0x0A000000u, 8},  /* RFC 1918 */
        {0x64400000u, 10}, /* CGNAT, RFC 6598 */
        {0x7F000000u, 8},  /* loopback */
        {0xA9FE0000u, 16}, /* link-local, cloud metadata */
        {0xAC100000u, 12}, /* RFC 1918 */
        {0xC0000000u, 24}, /* IETF protocol assignments */
        {0xC0000200u, 24}, /* TEST-NET-1 */
        {0xC0586300u, 24}, /* 6to4 relay anycast */
        {0xC0A80000u, 16}, /* RFC 1918 */
        {0xC6120000u, 15}, /* benchmarking */
        {0xC6336400u, 24}, /* TEST-NET-2 */
        {0xCB007100u, 24}, /* TEST-NET-3 */
        {0xE0000000u, 4},  /* multicast */
        {0xF0000000u, 4},  /* reserved, broadcast */
    };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if ((a & (0xFFFFFFFFu << (32 - special[i].bits))) == special[i].net) return false;
    return true;
}

static bool ipv6_is_public(const uint8_t b[16])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(b, v4_mapped, sizeof v4_mapped))
        return ipv4_is_public((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | (uint32_t)b[14] << 8 | b[15]);
    unsigned w0 = (unsigned)b[0] << 8 | b[1], w1 = (unsigned)b[2] << 8 | b[3];
    if ((w0 & 0xE000) != 0x2000) return false;          /* outside global unicast 2000::/3 */
    if (w0 == 0x2001 && w1 < 0x0200) return false;      /* 2001::/23 IETF protocol assignments, Teredo */
    if (w0 == 0x2001 && w1 == 0x0DB8) return false;     /* documentation */
    if (w0 == 0x2002) return false;                     /* 6to4 */
    if (w0 == 0x3FFF && (w1 & 0xF000) == 0) return false; /* documentation, RFC 9637 */
    return true;
}

bool img_fetch_address_is_public(const struct sockaddr *addr)
{
    if (addr->sa_family == AF_INET)
        return ipv4_is_public(ntohl(((const struct sockaddr_in *)addr)->sin_addr.s_addr));
    if (addr->sa_family == AF_INET6) return ipv6_is_public(((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr);
    return false;
}

bool img_fetch_ip_is_public(const char *ip)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, ip, &v4.sin_addr) == 1) return img_fetch_address_is_public((struct sockaddr *)&v4);
    if (inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1) return img_fetch_address_is_public((struct sockaddr *)&v6);
    return false;
}

void img_fetch_address_text(const struct sockaddr *addr, char *out, size_t n)
{
    const void *a = addr->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)addr)->sin6_addr
                                                : (const void *)&((const struct sockaddr_in *)addr)->sin_addr;
    if (!inet_ntop(addr->sa_family, a, out, (socklen_t)n)) snprintf(out, n, "(family %d)", addr->sa_family);
}

/* ---- the transfer ---------------------------------------------------------------- */

typedef struct {
    const img_fetch_opts *o;
    uint8_t *buf;
    size_t len, cap;
    bool too_big, no_memory;
    char blocked[INET6_ADDRSTRLEN + 16]; /* the first address refused */
} fetch_ctx;

static bool address_allowed(const fetch_ctx *c, const struct sockaddr *addr)
{
    if (c->o->address_ok) return c->o->address_ok(addr, c->o->address_ctx) != 0;
    return c->o->allow_private || img_fetch_address_is_public(addr);
}

/* CURLOPT_OPENSOCKETFUNCTION: refusing means the connection is never made. */
static curl_socket_t open_checked_socket(void *userp, curlsocktype purpose, struct curl_sockaddr *a)
{
    fetch_ctx *c = userp;
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD; /* only plain connections are made */
    if (!address_allowed(c, &a->addr)) {
        if (!c->blocked[0]) img_fetch_address_text(&a->addr, c->blocked, sizeof c->blocked);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *userp)
{
    fetch_ctx *c = userp;
    size_t n = size * nmemb;
    if (n > c->o->max_bytes - c->len) {
        c->too_big = true;
        return 0;
    }
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 64 * 1024;
        while (cap < c->len + n) cap *= 2;
        if (cap > c->o->max_bytes) cap = c->o->max_bytes;
        uint8_t *grown = realloc(c->buf, cap);
        if (!grown) {
            c->no_memory = true;
            return 0;
        }
        c->buf = grown, c->cap = cap;
    }
    memcpy(c->buf + c->len, p, n);
    c->len += n;
    return n;
}

/* "scheme://host:port" of an absolute http(s) URL. */
static img_fetch_status url_origin(const char *url, char *origin, size_t n, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    img_fetch_status st = IMG_FETCH_EURL;
    if (!u) {
        st = IMG_FETCH_ENOMEM;
        snprintf(err, errlen, "out of memory");
    } else if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) ||
               curl_url_get(u, CURLUPART_SCHEME, &scheme, 0)) {
        snprintf(err, errlen, "the image URL is not an absolute URL");
    } else if (strcasecmp(scheme, "http") && strcasecmp(scheme, "https")) {
        snprintf(err, errlen, "only http and https image URLs are fetched");
    } else if (curl_url_get(u, CURLUPART_HOST, &host, 0) || !host[0] ||
               curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT)) {
        snprintf(err, errlen, "the image URL has no host");
    } else {
        snprintf(origin, n, "%s://%s:%s", scheme, host, port);
        st = IMG_FETCH_OK;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return st;
}

static img_fetch_status failure(const fetch_ctx *c, CURL *h, CURLcode rc, const char *origin, char *err,
                                size_t errlen)
{
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (c->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errlen, "the image at %s is larger than %zu bytes", origin, c->o->max_bytes);
        return IMG_FETCH_ETOOBIG;
    }
    if (c->no_memory || rc == CURLE_OUT_OF_MEMORY) {
        snprintf(err, errlen, "out of memory fetching the image from %s", origin);
        return IMG_FETCH_ENOMEM;
    }
    if (c->blocked[0] && rc == CURLE_COULDNT_CONNECT) {
        snprintf(err, errlen, "the image host %s resolves to the non-public address %s (set %s=1 to allow)",
                 origin, c->blocked, ALLOW_PRIVATE_ENV);
        return IMG_FETCH_EBLOCKED;
    }
    switch (rc) {
    case CURLE_OK:
    case CURLE_HTTP_RETURNED_ERROR:
        snprintf(err, errlen, "the image host %s answered HTTP %ld", origin, code);
        return IMG_FETCH_EHTTP;
    case CURLE_TOO_MANY_REDIRECTS:
        snprintf(err, errlen, "the image URL redirects more than %d times (last at %s)", c->o->max_redirects, origin);
        return IMG_FETCH_EHTTP;
    case CURLE_UNSUPPORTED_PROTOCOL:
        snprintf(err, errlen, "the image URL redirects from %s to a scheme other than http or https", origin);
        return IMG_FETCH_EURL;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(err, errlen, "fetching the image from %s timed out (%ld ms)", origin, c->o->timeout_ms);
        return IMG_FETCH_ENETWORK;
    default:
        snprintf(err, errlen, "fetching the image from %s failed: %s", origin, curl_easy_strerror(rc));
        return IMG_FETCH_ENETWORK;
    }
}

static void set_options(CURL *h, const char *url, fetch_ctx *c)
{
    const img_fetch_opts *o = c->o;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, (long)o->max_redirects);
    curl_easy_setopt(h, CURLOPT_PROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_bytes);
    curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, FETCH_USER_AGENT);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_checked_socket);
    curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, c);
}

img_fetch_status img_fetch(const char *url, const img_fetch_opts *o, uint8_t **data, size_t *len, char *err,
                           size_t errlen)
{
    *data = NULL, *len = 0;
    char origin[512];
    img_fetch_status st = url_origin(url, origin, sizeof origin, err, errlen);
    if (st) return st;
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return IMG_FETCH_ENOMEM;
    }
    fetch_ctx c = {.o = o};
    set_options(h, url, &c);
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    if (rc == CURLE_OK && code >= 200 && code < 300 && !c.too_big) {
        *data = c.buf ? c.buf : malloc(1);
        *len = c.len;
        st = *data ? IMG_FETCH_OK : IMG_FETCH_ENOMEM;
        if (st) snprintf(err, errlen, "out of memory");
    } else {
        char *last = NULL, where[512], why[16];
        curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &last);
        if (!last || url_origin(last, where, sizeof where, why, sizeof why)) snprintf(where, sizeof where, "%s", origin);
        st = failure(&c, h, rc, where, err, errlen);
        free(c.buf);
    }
    curl_easy_cleanup(h);
    return st;
}
