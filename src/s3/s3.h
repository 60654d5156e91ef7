/* Uploads to an S3-compatible bucket the way the runpod SDK's
 * rp_upload.upload_image does (spec runpod-protocol.md §10; runpod-python
 * 1.12.0 runpod/serverless/utils/rp_upload.py):
 *   - credentials and endpoint from BUCKET_ENDPOINT_URL,
 *     BUCKET_ACCESS_KEY_ID, BUCKET_SECRET_ACCESS_KEY (all three, or none);
 *   - the signing region from the endpoint as extract_region_from_url does
 *     ("….s3.<region>.…", "<region>.digitaloceanspaces.com"), else
 *     botocore's default us-east-1;
 *   - bucket "MM-YY" (time.strftime("%m-%y"), local time), key
 *     "<job_id>/<8 hex digits of a random uuid4><.ext>", Content-Type
 *     "image/<ext>", path-style addressing (endpoint/bucket/key) as botocore
 *     uses for a custom endpoint;
 *   - PUT signed by libcurl (CURLOPT_AWS_SIGV4), up to 3 attempts on
 *     connection errors, 429 and 5xx (botocore's standard retry mode);
 *   - the result is a presigned GET URL valid 7 days (sigv4.h).
 * The bucket must exist: like the SDK, nothing creates it. */
#ifndef SDXL_S3_S3_H
#define SDXL_S3_S3_H

#include <stddef.h>
#include <time.h>

typedef struct {
    char endpoint[1024];   /* without a trailing '/' */
    char access_key[256];
    char secret_key[256];
    char region[64];
} s3_bucket;

/* 0 when all three BUCKET_* variables are set (and fit); -1 otherwise. */
int s3_bucket_from_env(s3_bucket *b);

/* extract_region_from_url, or "us-east-1" when it finds none. */
void s3_region_from_endpoint(const char *endpoint, char *out, size_t n);

/* The SDK's names: bucket "MM-YY" for `now`, key "<job_id>/<8 hex><.ext>"
 * (ext: "png", "jpeg", "webp"). */
void s3_runpod_names(const char *job_id, const char *ext, time_t now, char bucket[8], char *key, size_t keylen);

/* endpoint/bucket/<key, URI-encoded with '/' kept> (malloc'd). */
char *s3_object_url(const s3_bucket *b, const char *bucket, const char *key);

/* PUTs the object. 0, or -1 with a reason in err (the S3 error code and
 * message when the server sent one; never the keys). */
int s3_put_object(const s3_bucket *b, const char *bucket, const char *key, const void *data, size_t len,
                  const char *content_type, char *err, size_t errlen);

/* A presigned GET URL for the object, valid `expires` seconds from now
 * (malloc'd), or NULL with a reason. */
char *s3_presign_get(const s3_bucket *b, const char *bucket, const char *key, time_t now, long expires, char *err,
                     size_t errlen);

#endif
