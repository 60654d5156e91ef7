/* AWS Signature Version 4 query signing: the presigned GET URLs that the
 * runpod SDK's upload helper returns (botocore's S3SigV4QueryAuth, read in
 * botocore/auth.py: SigV4Auth.canonical_request / string_to_sign /
 * signature, S3SigV4QueryAuth._modify_request_before_signing). Uploads
 * themselves are signed by libcurl (CURLOPT_AWS_SIGV4, s3.c); libcurl has no
 * query signing, hence this file. Spec: AWS "Authenticating Requests: Using
 * Query Parameters (AWS Signature Version 4)".
 *
 *   canonical request = METHOD \n path \n query \n "host:" host \n \n "host" \n UNSIGNED-PAYLOAD
 *   string to sign    = AWS4-HMAC-SHA256 \n amzdate \n date/region/service/aws4_request \n hex(sha256(canonical))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign))
 *
 * The URL's query is botocore's: X-Amz-Algorithm, X-Amz-Credential,
 * X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders (that order, which is also
 * the canonical sorted order), then X-Amz-Signature. */
#ifndef SDXL_S3_SIGV4_H
#define SDXL_S3_SIGV4_H

#include <stddef.h>
#include <time.h>

#define SIGV4_MAX_EXPIRES 604800 /* 7 days: AWS's limit, and the SDK's presign time */

/* hex(SHA-256(data)), 64 lower-case digits. */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/* The signature of string_to_sign for the scope date8 (YYYYMMDD) / region /
 * service, as 64 lower-case hex digits. */
void sigv4_signature(const char *secret_key, const char *date8, const char *region, const char *service,
                     const char *string_to_sign, char out[65]);

/* RFC 3986 percent-encoding as AWS wants it: unreserved characters
 * (A-Z a-z 0-9 - _ . ~) are kept, '/' too when keep_slash, every other byte
 * becomes %XX (upper-case). Writes at most cap bytes with the NUL; returns
 * the length it needed (like snprintf). */
size_t sigv4_uri_encode(const char *s, int keep_slash, char *out, size_t cap);

typedef struct {
    const char *method;      /* "GET" */
    const char *url;         /* scheme://host[:port]/path, path already URI-encoded, no query */
    const char *access_key;
    const char *secret_key;
    const char *region;      /* "us-east-1" */
    const char *service;     /* "s3" */
    time_t now;              /* signing time (UTC) */
    long expires;            /* seconds, 1..SIGV4_MAX_EXPIRES */
} sigv4_presign_req;

/* The presigned URL (malloc'd), or NULL with a reason in err (a URL that
 * is not http(s)://host/..., a bad expiry, out of memory). */
char *sigv4_presign(const sigv4_presign_req *r, char *err, size_t errlen);

#endif
