/* s3/: presigned GET URLs byte-identical to botocore's (tests/data/
 * sigv4_goldens.json from tools/reference/make_sigv4_goldens.py: the runpod
 * SDK's client settings, nine endpoints, keys that need encoding), AWS's
 * published presigned-URL example, the SDK's region rule and object names,
 * URI encoding, and refused inputs. Uploads against a real S3 server are
 * in test_handler_bucket.c. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "s3/s3.h"
#include "s3/sigv4.h"
#include "testutil.h"

static cJSON *goldens(void)
{
    static cJSON *g;
    if (!g) {
        size_t n;
        char *text = tu_read_file("tests/data/sigv4_goldens.json", &n);
        assert_non_null(text);
        g = cJSON_ParseWithLength(text, n);
        free(text);
        assert_non_null(g);
    }
    return g;
}

static void presigned_urls_equal_botocore(void **state)
{
    const cJSON *g = goldens(), *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g, "cases")) {
        s3_bucket b = {0};
        snprintf(b.endpoint, sizeof b.endpoint, "%s", cJSON_GetObjectItem(c, "endpoint")->valuestring);
        size_t len = strlen(b.endpoint);
        if (b.endpoint[len - 1] == '/') b.endpoint[len - 1] = '\0'; /* as s3_bucket_from_env */
        snprintf(b.access_key, sizeof b.access_key, "%s", cJSON_GetObjectItem(g, "access_key")->valuestring);
        snprintf(b.secret_key, sizeof b.secret_key, "%s", cJSON_GetObjectItem(g, "secret_key")->valuestring);
        s3_region_from_endpoint(b.endpoint, b.region, sizeof b.region);
        const cJSON *sdk_region = cJSON_GetObjectItem(c, "sdk_region");
        assert_string_equal(b.region, cJSON_IsString(sdk_region) ? sdk_region->valuestring : "us-east-1");
        char err[256];
        char *url = s3_presign_get(&b, cJSON_GetObjectItem(c, "bucket")->valuestring,
                                   cJSON_GetObjectItem(c, "key")->valuestring,
                                   (time_t)cJSON_GetObjectItem(c, "time")->valuedouble,
                                   (long)cJSON_GetObjectItem(g, "expires")->valuedouble, err, sizeof err);
        assert_non_null(url);
        assert_string_equal(url, cJSON_GetObjectItem(c, "url")->valuestring);
        free(url);
        n++;
    }
    assert_int_equal(n, 9);
}

/* AWS S3 API reference, "Authenticating Requests: Using Query Parameters
 * (AWS Signature Version 4)", its worked example. */
static void aws_documented_example(void **state)
{
    sigv4_presign_req r = {.method = "GET", .url = "https://examplebucket.s3.amazonaws.com/test.txt",
                           .access_key = "AKIAIOSFODNN7EXAMPLE",
                           .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", .region = "us-east-1",
                           .service = "s3", .now = 1369353600 /* 2013-05-24T00:00:00Z */, .expires = 86400};
    char err[128];
    char *url = sigv4_presign(&r, err, sizeof err);
    assert_non_null(url);
    assert_string_equal(url,
                        "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256"
                        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
                        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
                        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404");
    free(url);
}

/* The signing-key derivation on its own: AWS General Reference, "Examples
 * of how to derive a signing key for Signature Version 4" (secret
 * wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam) gives
 * kSigning f4780e2d9f65fa89...; the expected value is HMAC-SHA256 of the
 * empty string under that key (Python's hmac, after checking that its
 * kSigning equals the published one). */
static void sha256_and_signature_primitives(void **state)
{
    char hex[65];
    sigv4_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sigv4_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sigv4_signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam", "", hex);
    assert_string_equal(hex, "de9dfa831dc0cfb138762217e8afc1fd3e66df076b21d2bde5ff858bfc2e2575");
}

static void uri_encoding(void **state)
{
    char out[128];
    assert_int_equal(sigv4_uri_encode("a b/c~d_e-f.g+h%", 1, out, sizeof out), 22);
    assert_string_equal(out, "a%20b/c~d_e-f.g%2Bh%25");
    sigv4_uri_encode("a/b", 0, out, sizeof out);
    assert_string_equal(out, "a%2Fb");
    sigv4_uri_encode("\xc3\xbc", 0, out, sizeof out);
    assert_string_equal(out, "%C3%BC");
    assert_int_equal(sigv4_uri_encode("   ", 0, out, 4), 9); /* truncated, length still counted */
    assert_string_equal(out, "%20");
}

static void sdk_regions(void **state)
{
    static const char *const cases[][2] = {
        {"https://mybucket.s3.us-west-2.amazonaws.com", "us-west-2"},
        {"https://s3.us-west-004.backblazeb2.com", "us-east-1"}, /* no ".s3." */
        {"https://bucket.s3.eu-central-003.backblazeb2.com", "eu-central-003"},
        {"https://nyc3.digitaloceanspaces.com", "digitaloceanspaces"}, /* the SDK's split(".")[1] */
        {"https://mybucket.fra1.digitaloceanspaces.com", "fra1"},
        {"http://127.0.0.1:9000", "us-east-1"},
        {"https://acc.r2.cloudflarestorage.com", "us-east-1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char region[64];
        s3_region_from_endpoint(cases[i][0], region, sizeof region);
        assert_string_equal(region, cases[i][1]);
    }
}

static void runpod_object_names(void **state)
{
    char bucket[8], key[256], expect[8];
    time_t now = 1795833905;
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(expect, sizeof expect, "%m-%y", &tm);
    s3_runpod_names("sync-123-e1", "png", now, bucket, key, sizeof key);
    assert_string_equal(bucket, expect);
    regex_t re;
    assert_int_equal(regcomp(&re, "^sync-123-e1/[0-9a-f]{8}\\.png$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regexec(&re, key, 0, NULL, 0), 0);
    char key2[256];
    s3_runpod_names("sync-123-e1", "png", now, bucket, key2, sizeof key2);
    assert_string_not_equal(key, key2); /* a fresh random name per image */
    regfree(&re);
    s3_bucket b = {.endpoint = "http://h:1/p"};
    char *url = s3_object_url(&b, "11-26", "j d/x.png");
    assert_string_equal(url, "http://h:1/p/11-26/j%20d/x.png");
    free(url);
}

static void refused_inputs(void **state)
{
    char err[128];
    sigv4_presign_req r = {.method = "GET", .url = "ftp://h/x", .access_key = "A", .secret_key = "S",
                           .region = "us-east-1", .service = "s3", .now = 0, .expires = 60};
    assert_null(sigv4_presign(&r, err, sizeof err));
    assert_non_null(strstr(err, "http(s)"));
    r.url = "http://h/x?already=query";
    assert_null(sigv4_presign(&r, err, sizeof err));
    r.url = "http:///x";
    assert_null(sigv4_presign(&r, err, sizeof err));
    r.url = "http://h/x";
    r.expires = 0;
    assert_null(sigv4_presign(&r, err, sizeof err));
    assert_non_null(strstr(err, "7 days"));
    r.expires = SIGV4_MAX_EXPIRES + 1;
    assert_null(sigv4_presign(&r, err, sizeof err));
    r.expires = SIGV4_MAX_EXPIRES;
    r.url = "http://[::1]:8080/b/k";
    char *url = sigv4_presign(&r, err, sizeof err);
    assert_non_null(url);
    assert_non_null(strstr(url, "X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature="));
    free(url);
}

static void bucket_from_environment(void **state)
{
    s3_bucket b;
    unsetenv("BUCKET_ENDPOINT_URL");
    setenv("BUCKET_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("BUCKET_SECRET_ACCESS_KEY", "secret-example-key", 1);
    assert_int_equal(s3_bucket_from_env(&b), -1);
    setenv("BUCKET_ENDPOINT_URL", "https://bkt.s3.ap-south-1.amazonaws.com//", 1);
    assert_int_equal(s3_bucket_from_env(&b), 0);
    assert_string_equal(b.endpoint, "https://bkt.s3.ap-south-1.amazonaws.com");
    assert_string_equal(b.region, "ap-south-1");
    setenv("BUCKET_SECRET_ACCESS_KEY", "", 1);
    assert_int_equal(s3_bucket_from_env(&b), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presigned_urls_equal_botocore),
        cmocka_unit_test(aws_documented_example),
        cmocka_unit_test(sha256_and_signature_primitives),
        cmocka_unit_test(uri_encoding),
        cmocka_unit_test(sdk_regions),
        cmocka_unit_test(runpod_object_names),
        cmocka_unit_test(refused_inputs),
        cmocka_unit_test(bucket_from_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
