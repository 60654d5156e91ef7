/* S3 uploads as the runpod SDK's upload helper makes them (see s3.h).
 * Matched: runpod-python 1.12.0 rp_upload.py (upload_image,
 * extract_region_from_url, get_boto_client), botocore's path-style URLs. */
#include "s3/s3.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "s3/sigv4.h"

#define DEFAULT_REGION "us-east-1" /* botocore's signing region when none is given */
#define PUT_ATTEMPTS 3
#define MAX_ERROR_BODY 8192

static int copy_env(const char *name, char *out, size_t n)
{
    const char *v = getenv(name);
    if (!v || !*v || strlen(v) >= n) return -1;
    snprintf(out, n, "%s", v);
    return 0;
}

int s3_bucket_from_env(s3_bucket *b)
{
    memset(b, 0, sizeof *b);
    if (copy_env("BUCKET_ENDPOINT_URL", b->endpoint, sizeof b->endpoint) ||
        copy_env("BUCKET_ACCESS_KEY_ID", b->access_key, sizeof b->access_key) ||
        copy_env("BUCKET_SECRET_ACCESS_KEY", b->secret_key, sizeof b->secret_key))
        return -1;
    size_t n = strlen(b->endpoint);
    while (n && b->endpoint[n - 1] == '/') b->endpoint[--n] = '\0';
    s3_region_from_endpoint(b->endpoint, b->region, sizeof b->region);
    return 0;
}

/* extract_region_from_url: the text between ".s3." and the next '.' of the
 * whole URL; or, for a host ending in .digitaloceanspaces.com, the URL's
 * text between its first and second '.'. */
void s3_region_from_endpoint(const char *endpoint, char *out, size_t n)
{
    snprintf(out, n, "%s", DEFAULT_REGION);
    const char *s3 = strstr(endpoint, ".s3.");
    if (s3) {
        const char *r = s3 + 4;
        size_t len = strcspn(r, ".");
        if (len) snprintf(out, n, "%.*s", (int)len, r);
        return;
    }
    const char *scheme = strstr(endpoint, "://");
    const char *host = scheme ? scheme + 3 : endpoint;
    size_t hlen = strcspn(host, "/?#");
    static const char spaces[] = ".digitaloceanspaces.com";
    size_t slen = sizeof spaces - 1;
    if (hlen < slen || strncmp(host + hlen - slen, spaces, slen)) return;
    const char *first = strchr(endpoint, '.');
    size_t len = first ? strcspn(first + 1, ".") : 0;
    if (len) snprintf(out, n, "%.*s", (int)len, first + 1);
}

void s3_runpod_names(const char *job_id, const char *ext, time_t now, char bucket[8], char *key, size_t keylen)
{
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(bucket, 8, "%m-%y", &tm);
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint32_t)now ^ (uint32_t)getpid();
    snprintf(key, keylen, "%s/%08x.%s", job_id, r, ext);
}

char *s3_object_url(const s3_bucket *b, const char *bucket, const char *key)
{
    size_t need = sigv4_uri_encode(key, 1, NULL, 0) + 1;
    char *enc = malloc(need), *url = NULL;
    if (!enc) return NULL;
    sigv4_uri_encode(key, 1, enc, need);
    if (asprintf(&url, "%s/%s/%s", b->endpoint, bucket, enc) < 0) url = NULL;
    free(enc);
    return url;
}

typedef struct {
    char *data;
    size_t len;
} body_buf;

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
    body_buf *b = ctx;
    size_t add = size * n, keep = b->len + add > MAX_ERROR_BODY ? MAX_ERROR_BODY - b->len : add;
    if (keep) {
        char *d = realloc(b->data, b->len + keep + 1);
        if (!d) return 0;
        memcpy(d + b->len, p, keep);
        b->data = d;
        b->len += keep;
        b->data[b->len] = '\0';
    }
    return add;
}

/* The text of <tag>...</tag> in an S3 error document, into out. */
static void xml_text(const char *xml, const char *tag, char *out, size_t n)
{
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    out[0] = '\0';
    const char *s = xml ? strstr(xml, open) : NULL, *e = s ? strstr(s, close) : NULL;
    if (s && e) snprintf(out, n, "%.*s", (int)(e - s - strlen(open)), s + strlen(open));
}

/* One PUT. Returns the HTTP status (0 when no answer), with the curl error
 * or the S3 error document's Code and Message in why. */
static long put_once(const s3_bucket *b, const char *url, const void *data, size_t len, const char *content_type,
                     char *why, size_t n)
{
    CURL *c = curl_easy_init();
    if (!c) return snprintf(why, n, "libcurl could not start"), 0;
    char sigv4[128], ctype[160], hash[65], payload[96];
    snprintf(sigv4, sizeof sigv4, "aws:amz:%s:s3", b->region);
    snprintf(ctype, sizeof ctype, "Content-Type: %s", content_type);
    /* S3 wants the payload hash as a header; libcurl signs with its value */
    sigv4_sha256_hex(data, len, hash);
    snprintf(payload, sizeof payload, "x-amz-content-sha256: %s", hash);
    struct curl_slist *h = curl_slist_append(NULL, ctype);
    h = curl_slist_append(h, payload); /* (no "Expect:" line: libcurl 7.88 would sign the removed header) */
    body_buf body = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, b->access_key);
    curl_easy_setopt(c, CURLOPT_PASSWORD, b->secret_key);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) {
        snprintf(why, n, "%s", curl_easy_strerror(rc));
    } else if (status < 200 || status > 299) {
        char code[128], msg[512];
        xml_text(body.data, "Code", code, sizeof code);
        xml_text(body.data, "Message", msg, sizeof msg);
        snprintf(why, n, "HTTP %ld%s%s%s%s", status, code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
    }
    free(body.data);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

int s3_put_object(const s3_bucket *b, const char *bucket, const char *key, const void *data, size_t len,
                  const char *content_type, char *err, size_t errlen)
{
    char *url = s3_object_url(b, bucket, key);
    if (!url) return snprintf(err, errlen, "out of memory"), -1;
    char why[768] = "";
    long status = 0;
    for (int attempt = 1; attempt <= PUT_ATTEMPTS; attempt++) {
        status = put_once(b, url, data, len, content_type, why, sizeof why);
        bool retry = status == 0 || status == 429 || status >= 500;
        if ((status >= 200 && status <= 299) || !retry) break;
        if (attempt < PUT_ATTEMPTS) sleep((unsigned)attempt);
    }
    int ok = status >= 200 && status <= 299;
    if (!ok)
        snprintf(err, errlen, "upload of %s/%s to %s failed: %s", bucket, key, b->endpoint, why);
    free(url);
    return ok ? 0 : -1;
}

char *s3_presign_get(const s3_bucket *b, const char *bucket, const char *key, time_t now, long expires, char *err,
                     size_t errlen)
{
    char *url = s3_object_url(b, bucket, key);
    if (!url) return snprintf(err, errlen, "out of memory"), NULL;
    sigv4_presign_req r = {.method = "GET", .url = url, .access_key = b->access_key, .secret_key = b->secret_key,
                           .region = b->region, .service = "s3", .now = now, .expires = expires};
    char *signed_url = sigv4_presign(&r, err, errlen);
    free(url);
    return signed_url;
}
