/* SigV4 query signing (see sigv4.h), matched against botocore 1.x
 * auth.py (S3SigV4QueryAuth, _host_from_url) and AWS's published example. */
#include "s3/sigv4.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(data, len, md, &n, EVP_sha256(), NULL);
    to_hex(md, 32, out);
}

static void hmac(const unsigned char *key, size_t keylen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, strlen(msg), out, &n);
}

void sigv4_signature(const char *secret_key, const char *date8, const char *region, const char *service,
                     const char *string_to_sign, char out[65])
{
    size_t klen = strlen(secret_key) + 4;
    unsigned char *k = malloc(klen + 1), a[32], b[32];
    if (!k) {
        out[0] = '\0';
        return;
    }
    memcpy(k, "AWS4", 4);
    memcpy(k + 4, secret_key, klen - 4);
    hmac(k, klen, date8, a);      /* kDate */
    hmac(a, 32, region, b);       /* kRegion */
    hmac(b, 32, service, a);      /* kService */
    hmac(a, 32, "aws4_request", b); /* kSigning */
    hmac(b, 32, string_to_sign, a);
    to_hex(a, 32, out);
    OPENSSL_cleanse(k, klen);
    free(k);
}

size_t sigv4_uri_encode(const char *s, int keep_slash, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' || (keep_slash && *p == '/');
        char enc[4] = {(char)*p, 0, 0, 0};
        if (!keep) enc[0] = '%', enc[1] = digits[*p >> 4], enc[2] = digits[*p & 15];
        for (int i = 0; i < (keep ? 1 : 3); i++, n++)
            if (n + 1 < cap) out[n] = enc[i];
    }
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

/* The parts of an http(s) URL that signing needs: botocore's host value
 * (lower case, no userinfo, port only when not the scheme's default) and the
 * path ("/" when empty). */
typedef struct {
    char host[512];
    const char *path;
    size_t prefix_len; /* scheme://authority */
} url_parts;

static int split_url(const char *url, url_parts *u)
{
    int https = strncmp(url, "https://", 8) == 0;
    if (!https && strncmp(url, "http://", 7)) return -1;
    const char *auth = url + (https ? 8 : 7), *end = auth + strcspn(auth, "/?#");
    if (strpbrk(end, "?#")) return -1; /* the query is ours */
    const char *at = memchr(auth, '@', (size_t)(end - auth));
    if (at) auth = at + 1;
    const char *colon = NULL;
    if (auth[0] == '[') { /* [IPv6]:port */
        const char *rb = memchr(auth, ']', (size_t)(end - auth));
        if (!rb || (rb + 1 != end && rb[1] != ':')) return -1;
        if (rb + 1 != end) colon = rb + 1;
    } else {
        colon = memchr(auth, ':', (size_t)(end - auth));
    }
    size_t hlen = (size_t)((colon ? colon : end) - auth);
    if (!hlen || hlen >= sizeof u->host - 8) return -1;
    for (size_t i = 0; i < hlen; i++) u->host[i] = (char)tolower((unsigned char)auth[i]);
    u->host[hlen] = '\0';
    if (colon) {
        long port = strtol(colon + 1, NULL, 10);
        if (port != (https ? 443 : 80)) snprintf(u->host + hlen, sizeof u->host - hlen, ":%ld", port);
    }
    u->path = *end ? end : "/";
    u->prefix_len = (size_t)(end - url);
    return 0;
}

static int fail(char *err, size_t errlen, const char *msg)
{
    snprintf(err, errlen, "%s", msg);
    return -1;
}

char *sigv4_presign(const sigv4_presign_req *r, char *err, size_t errlen)
{
    url_parts u;
    if (split_url(r->url, &u)) return fail(err, errlen, "the URL must be http(s)://host[:port]/path"), NULL;
    if (r->expires < 1 || r->expires > SIGV4_MAX_EXPIRES)
        return fail(err, errlen, "a presigned URL expires after 1 s to 7 days"), NULL;
    struct tm tm;
    gmtime_r(&r->now, &tm);
    char amzdate[17], date8[9];
    strftime(amzdate, sizeof amzdate, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(date8, amzdate, 8);
    date8[8] = '\0';

    char *credential = NULL, *query = NULL, *canonical = NULL, *sts = NULL, *url = NULL;
    if (asprintf(&credential, "%s/%s/%s/%s/aws4_request", r->access_key, date8, r->region, r->service) < 0)
        credential = NULL;
    size_t need = credential ? sigv4_uri_encode(credential, 0, NULL, 0) + 1 : 0;
    char *cred_enc = need ? malloc(need) : NULL;
    if (cred_enc) sigv4_uri_encode(credential, 0, cred_enc, need);
    if (cred_enc &&
        asprintf(&query, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s&X-Amz-Expires=%ld"
                         "&X-Amz-SignedHeaders=host", cred_enc, amzdate, r->expires) < 0)
        query = NULL;
    if (query && asprintf(&canonical, "%s\n%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD", r->method, u.path, query,
                          u.host) < 0)
        canonical = NULL;
    char hash[65], sig[65];
    if (canonical) {
        sigv4_sha256_hex(canonical, strlen(canonical), hash);
        if (asprintf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", amzdate, date8, r->region,
                     r->service, hash) < 0)
            sts = NULL;
    }
    if (sts) {
        sigv4_signature(r->secret_key, date8, r->region, r->service, sts, sig);
        if (asprintf(&url, "%s?%s&X-Amz-Signature=%s", r->url, query, sig) < 0) url = NULL;
    }
    if (!url) fail(err, errlen, "out of memory while presigning a URL");
    free(credential);
    free(cred_enc);
    free(query);
    free(canonical);
    free(sts);
    return url;
}
