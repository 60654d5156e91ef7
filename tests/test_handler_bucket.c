/* Bucket uploads against a real S3-compatible server: moto's server mode
 * (PyPI moto[server], installed once into $SDXL_BUILD_DIR/s3-venv by
 * scripts/s3-test-venv.sh; the test fails, never skips, when that cannot be
 * done). moto runs with IAM authentication on (INITIAL_NO_AUTH_ACTION_COUNT),
 * so it checks the SigV4 signature libcurl puts on every PUT against an IAM
 * access key made for the test:
 *   - s3_put_object lands the bytes (read back with a signed GET); a wrong
 *     secret gets SignatureDoesNotMatch, a missing bucket NoSuchBucket, a
 *     closed port the connection error after 3 attempts; no error names the
 *     secret;
 *   - the handler with BUCKET_* set and return_type "url": images[i].url are
 *     presigned GET URLs (7 days) to <endpoint>/<MM-YY>/<job id>/<8 hex>.png
 *     and the objects are the PNGs with their infotext; a refused upload is
 *     the job error UPLOAD_FAILED.
 * (moto cannot check presigned query signatures in this mode; test_s3.c
 * checks them against botocore byte for byte.) */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <netinet/in.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handler.h"
#include "image/decode.h"
#include "rp_child.h"
#include "runpod/job.h"
#include "runpod/log.h"
#include "s3/s3.h"
#include "s3/sigv4.h"
#include "testutil.h"

static char *tmp;
static pid_t moto;
static char endpoint[64], access_key[128], secret_key[128], bucket_name[8];

/* ---- HTTP with libcurl, signed or not -------------------------------------------- */

/* A request signed with SigV4 for `service` (any credentials). */
static long signed_request(const char *method, const char *url, const char *service, const char *key,
                           const char *secret, const char *body, tu_buf *out)
{
    CURL *c = curl_easy_init();
    char sigv4[64];
    snprintf(sigv4, sizeof sigv4, "aws:amz:us-east-1:%s", service);
    char hash[65], payload[96];
    sigv4_sha256_hex(body ? body : "", body ? strlen(body) : 0, hash);
    snprintf(payload, sizeof payload, "x-amz-content-sha256: %s", hash);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    h = curl_slist_append(h, payload);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(c, CURLOPT_USERNAME, key);
    curl_easy_setopt(c, CURLOPT_PASSWORD, secret);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* The text of <tag> in an XML answer (malloc'd). */
static char *xml(const char *doc, const char *tag)
{
    char open[64], close[64];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    const char *s = doc ? strstr(doc, open) : NULL, *e = s ? strstr(s, close) : NULL;
    assert_non_null(e);
    return strndup(s + strlen(open), (size_t)(e - s - strlen(open)));
}

/* GET of an object with a signed request (moto answers 500 to presigned
 * URLs when IAM checks are on, so the test reads objects this way). */
static tu_buf get_object(const char *url_with_query)
{
    char *url = strndup(url_with_query, strcspn(url_with_query, "?"));
    tu_buf b = {0};
    assert_int_equal(signed_request("GET", url, "s3", access_key, secret_key, NULL, &b), 200);
    free(url);
    return b;
}

/* ---- moto ------------------------------------------------------------------------- */

static bool port_open(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(s, (struct sockaddr *)&a, sizeof a) == 0;
    close(s);
    return ok;
}

static void start_moto(const char *venv, int port)
{
    char bin[4200], port_arg[16], log[4200];
    snprintf(bin, sizeof bin, "%s/bin/moto_server", venv);
    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(log, sizeof log, "%s/moto.log", tmp);
    const char *env[] = {"INITIAL_NO_AUTH_ACTION_COUNT=3", NULL}; /* the three IAM calls below */
    char *argv[] = {"moto_server", "-H", "127.0.0.1", "-p", port_arg, NULL};
    tu_spawn_spec spec = {.path = bin, .argv = argv, .env = env, .stdout_path = log, .stderr_path = log};
    moto = tu_spawn(&spec);
    assert_true(moto > 0);
    for (int i = 0; i < 600 && !port_open(port); i++) usleep(50000);
    assert_true(port_open(port));
}

/* An IAM user with an access key and an allow-all policy: these calls are
 * the unauthenticated ones; everything after them is checked. */
static void make_credentials(void)
{
    tu_buf b = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/", endpoint);
    assert_int_equal(signed_request("POST", url, "iam", "AKIDBOOT", "boot", "Action=CreateUser&UserName=worker&Version=2010-05-08", &b), 200);
    free(b.data);
    b = (tu_buf){0};
    assert_int_equal(signed_request("POST", url, "iam", "AKIDBOOT", "boot", "Action=CreateAccessKey&UserName=worker&Version=2010-05-08", &b), 200);
    char *id = xml(b.data, "AccessKeyId"), *secret = xml(b.data, "SecretAccessKey");
    snprintf(access_key, sizeof access_key, "%s", id);
    snprintf(secret_key, sizeof secret_key, "%s", secret);
    free(id);
    free(secret);
    free(b.data);
    b = (tu_buf){0};
    assert_int_equal(signed_request("POST", url, "iam", "AKIDBOOT", "boot",
                                    "Action=PutUserPolicy&UserName=worker&PolicyName=all&Version=2010-05-08&"
                                    "PolicyDocument=%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B"
                                    "%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D",
                                    &b), 200);
    free(b.data);
}

static int setup(void **state)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    rp_log_set_level(RP_LOG_WARN);
    tmp = tu_mkdtemp("bucket");
    const char *build = getenv("SDXL_BUILD_DIR");
    char venv[4096], cmd[8400];
    snprintf(venv, sizeof venv, "%s/s3-venv", build ? build : "build");
    snprintf(cmd, sizeof cmd, "scripts/s3-test-venv.sh '%s'", venv);
    if (system(cmd) != 0)
        fail_msg("scripts/s3-test-venv.sh could not create %s with moto[server] (see its message above); the "
                 "bucket upload test needs it", venv);
    int port = tu_free_port();
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", port);
    start_moto(venv, port);
    make_credentials();
    char key[256];
    s3_runpod_names("x", "png", time(NULL), bucket_name, key, sizeof key);
    char url[128];
    snprintf(url, sizeof url, "%s/%s", endpoint, bucket_name);
    tu_buf b = {0};
    assert_int_equal(signed_request("PUT", url, "s3", access_key, secret_key, NULL, &b), 200);
    free(b.data);
    return 0;
}

static int teardown(void **state)
{
    if (moto > 0) {
        kill(moto, SIGTERM);
        if (rpc_wait(moto, 5000) == -1) fprintf(stderr, "moto_server had to be killed\n");
    }
    tu_rm_rf(tmp);
    free(tmp);
    return 0;
}

static s3_bucket bucket_with(const char *secret)
{
    s3_bucket b = {0};
    snprintf(b.endpoint, sizeof b.endpoint, "%s", endpoint);
    snprintf(b.access_key, sizeof b.access_key, "%s", access_key);
    snprintf(b.secret_key, sizeof b.secret_key, "%s", secret);
    s3_region_from_endpoint(b.endpoint, b.region, sizeof b.region);
    return b;
}

/* ---- s3_put_object ------------------------------------------------------------------ */

static void signed_put_lands_the_bytes(void **state)
{
    s3_bucket b = bucket_with(secret_key);
    char err[512];
    const char data[] = "\x89PNG not really, but bytes";
    assert_int_equal(s3_put_object(&b, bucket_name, "job 1/probe.png", data, sizeof data - 1, "image/png", err,
                                   sizeof err), 0);
    char url[256];
    snprintf(url, sizeof url, "%s/%s/job%%201/probe.png", endpoint, bucket_name);
    tu_buf got = get_object(url);
    assert_int_equal(got.len, sizeof data - 1);
    assert_memory_equal(got.data, data, got.len);
    free(got.data);
    /* 3 MB, the size of a noisy 1024² PNG: libcurl adds Expect: 100-continue
     * above 1 MB, which must not break the signature */
    size_t big = 3u << 20;
    char *bytes = malloc(big);
    for (size_t i = 0; i < big; i++) bytes[i] = (char)(i * 2654435761u >> 24);
    assert_int_equal(s3_put_object(&b, bucket_name, "job 1/big.png", bytes, big, "image/png", err, sizeof err), 0);
    snprintf(url, sizeof url, "%s/%s/job%%201/big.png", endpoint, bucket_name);
    got = get_object(url);
    assert_int_equal(got.len, big);
    assert_memory_equal(got.data, bytes, big);
    free(got.data);
    free(bytes);
}

static void refused_puts_say_why(void **state)
{
    char err[512];
    s3_bucket b = bucket_with("wrong-secret-value-123");
    assert_int_equal(s3_put_object(&b, bucket_name, "j/x.png", "x", 1, "image/png", err, sizeof err), -1);
    assert_non_null(strstr(err, "HTTP 403 SignatureDoesNotMatch"));
    assert_null(strstr(err, "wrong-secret-value-123"));
    assert_null(strstr(err, secret_key));
    b = bucket_with(secret_key);
    assert_int_equal(s3_put_object(&b, "00-00", "j/x.png", "x", 1, "image/png", err, sizeof err), -1);
    assert_non_null(strstr(err, "HTTP 404 NoSuchBucket"));
    assert_non_null(strstr(err, "upload of 00-00/j/x.png to http://127.0.0.1:"));
    int closed = tu_free_port();
    snprintf(b.endpoint, sizeof b.endpoint, "http://127.0.0.1:%d", closed);
    assert_int_equal(s3_put_object(&b, "00-00", "j/x.png", "x", 1, "image/png", err, sizeof err), -1);
    assert_non_null(strstr(err, "Couldn't connect"));
}

/* ---- the handler with a bucket --------------------------------------------------------- */

static sdxl_worker *start_worker(const char *secret)
{
    char config[4200], cwd[2048], text[8192];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(config, sizeof config, "%s/models.json", tmp);
    snprintf(text, sizeof text, "{\"checkpoint\": {\"name\": \"small\", \"path\": \"%s/tests/data/small/sdxl_small.safetensors\"}}",
             cwd);
    assert_int_equal(tu_write_file(config, text, strlen(text)), 0);
    setenv("MODELS_CONFIG", config, 1);
    setenv("MODELS_DIR", tmp, 1);
    setenv("BUCKET_ENDPOINT_URL", endpoint, 1);
    setenv("BUCKET_ACCESS_KEY_ID", access_key, 1);
    setenv("BUCKET_SECRET_ACCESS_KEY", secret, 1);
    rp_log_add_secret(secret);
    sdxl_worker *w = sdxl_worker_start();
    assert_true(sdxl_worker_ready(w));
    return w;
}

static cJSON *run_job(sdxl_worker *w, const char *input)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", "sync-e2e-1");
    cJSON_AddItemToObject(json, "input", cJSON_Parse(input));
    rp_job *job = rp_job_new(json, NULL);
    cJSON *r = sdxl_handle_job(job, w);
    rp_job_free(job);
    return r;
}

static void handler_returns_presigned_urls(void **state)
{
    sdxl_worker *w = start_worker(secret_key);
    cJSON *r = run_job(w, "{\"prompt\":\"a boat\",\"width\":256,\"height\":256,\"steps\":2,\"num_images\":2,"
                          "\"seed\":8,\"return_type\":\"url\"}");
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_null(cJSON_GetObjectItem(r, "image")); /* no base64 in url mode */
    const cJSON *images = cJSON_GetObjectItem(r, "images");
    assert_int_equal(cJSON_GetArraySize(images), 2);
    char pattern[512];
    snprintf(pattern, sizeof pattern,
             "^%s/%s/sync-e2e-1/[0-9a-f]{8}\\.png\\?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s%%2F[0-9]{8}"
             "%%2Fus-east-1%%2Fs3%%2Faws4_request&X-Amz-Date=[0-9]{8}T[0-9]{6}Z&X-Amz-Expires=604800"
             "&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}$",
             endpoint, bucket_name, access_key);
    regex_t re;
    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(images, i);
        const char *url = cJSON_GetObjectItem(e, "url")->valuestring;
        assert_null(cJSON_GetObjectItem(e, "image"));
        assert_int_equal(regexec(&re, url, 0, NULL, 0), 0);
        assert_int_equal(cJSON_GetObjectItem(e, "seed")->valueint, 8 + i);
        tu_buf png = get_object(url);
        img_limits lim = {.max_pixels = 1u << 20, .max_side = 1024};
        img_rgb im = {0};
        char err[128], *params = NULL, seed[16];
        assert_int_equal(img_decode((const uint8_t *)png.data, png.len, &lim, &im, err, sizeof err), 0);
        assert_int_equal(im.width, 256);
        assert_int_equal(img_read_parameters((const uint8_t *)png.data, png.len, &params), 0);
        snprintf(seed, sizeof seed, "Seed: %d,", 8 + i);
        assert_non_null(strstr(params, seed));
        free(params);
        img_rgb_free(&im);
        free(png.data);
    }
    regfree(&re);
    cJSON_Delete(r);
    sdxl_worker_free(w);
}

static void refused_upload_is_a_job_error(void **state)
{
    sdxl_worker *w = start_worker("not-the-secret-4567");
    cJSON *r = run_job(w, "{\"prompt\":\"a boat\",\"width\":256,\"height\":256,\"steps\":1,\"return_type\":\"url\"}");
    assert_string_equal(cJSON_GetObjectItem(r, "code")->valuestring, "UPLOAD_FAILED");
    const char *msg = cJSON_GetObjectItem(r, "error")->valuestring;
    assert_non_null(strstr(msg, "SignatureDoesNotMatch"));
    assert_null(strstr(msg, "not-the-secret-4567"));
    cJSON_Delete(r);
    r = run_job(w, "{\"prompt\":\"a boat\",\"width\":256,\"height\":256,\"steps\":1}"); /* base64 still works */
    assert_non_null(cJSON_GetObjectItem(r, "image"));
    cJSON_Delete(r);
    sdxl_worker_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signed_put_lands_the_bytes),
        cmocka_unit_test(refused_puts_say_why),
        cmocka_unit_test(handler_returns_presigned_urls),
        cmocka_unit_test(refused_upload_is_a_job_error),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
