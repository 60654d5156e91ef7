/* End to end: the real sdxl-worker binary (worker mode,
 * tests/data/small/models.json: the small model) against the fake RunPod
 * queue, and in --rp_serve_api mode against HTTP requests:
 *   - one production run: a valid job, an invalid one, num_images 2, a job
 *     stopped through job-stop mid-sampling, then a valid job again; each
 *     gets the right result (the stopped one none), progress updates
 *     {"step","steps","message"} in order, heartbeats naming the running
 *     job; SIGTERM while idle exits 0;
 *   - SIGTERM during a job: its result is posted, then exit 0;
 *   - a job whose body is not JSON (NaN): the worker logs it and serves the
 *     next job;
 *   - /runsync returns an image; a bad input returns FAILED with the error.
 * The LoRA override job waits for the engine's LoRA support (see README). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fake_queue.h"
#include "image/base64.h"
#include "image/decode.h"
#include "rp_child.h"
#include "testutil.h"

#define POD "pod-e2e"
#define KEY "rpa_E2E_SECRET_KEY_9876"
#define JOB(id, input) "{\"id\":\"" id "\",\"input\":" input "}"
#define SMALL "\"prompt\":\"a lighthouse\",\"width\":256,\"height\":256"

typedef struct {
    fake_queue *q;
    pid_t pid;
    char *dir;
    char log_path[1024];
    char port_arg[16];
    int port;
} e2e;

static int setup(void **state)
{
    e2e *t = calloc(1, sizeof *t);
    t->q = fq_start();
    t->dir = tu_mkdtemp("e2e");
    snprintf(t->log_path, sizeof t->log_path, "%s/worker.log", t->dir);
    *state = t;
    return t->q && t->dir ? 0 : -1;
}

static void print_log(const e2e *t)
{
    char *log = tu_read_file(t->log_path, NULL);
    size_t n = log ? strlen(log) : 0;
    fprintf(stderr, "---- worker log (tail) ----\n%s\n----\n", log ? log + (n > 8000 ? n - 8000 : 0) : "(none)");
    free(log);
}

static int teardown(void **state)
{
    e2e *t = *state;
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        rpc_wait(t->pid, 5000);
        print_log(t);
    }
    fq_stop(t->q);
    tu_rm_rf(t->dir);
    free(t->dir);
    free(t);
    return 0;
}

/* Starts the binary: production mode against the fake queue, or the dev
 * API when serve_api. */
static void spawn(e2e *t, bool serve_api)
{
    t->pid = fork();
    assert_true(t->pid >= 0);
    if (t->pid) return;
    rpc_clear_runpod_env();
    if (!serve_api) fq_export_env(t->q, POD, KEY);
    setenv("MODELS_CONFIG", "tests/data/small/models.json", 1);
    setenv("MODELS_DIR", t->dir, 1);
    setenv("RUNPOD_LOG_LEVEL", "DEBUG", 1);
    setenv("RUNPOD_PING_INTERVAL", "1000", 1);
    setenv("OMP_NUM_THREADS", "2", 1);
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    unsetenv("BUCKET_ENDPOINT_URL");
    int fd = open(t->log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    dup2(fd, 1);
    if (serve_api)
        execl(tu_worker_bin(), "sdxl-worker", "--rp_serve_api", "--rp_api_port", t->port_arg, (char *)NULL);
    else
        execl(tu_worker_bin(), "sdxl-worker", (char *)NULL);
    _exit(127);
}

static int wait_exit(e2e *t, int timeout_ms)
{
    int rc = rpc_wait(t->pid, timeout_ms);
    if (rc != 0) print_log(t);
    t->pid = 0;
    return rc;
}

/* The final result posted for a job (not a progress update), or NULL. */
static cJSON *final_result(fake_queue *q, const char *id)
{
    for (int i = 0; i < fq_count(q, FQ_DONE); i++) {
        const fq_request *r = fq_get(q, FQ_DONE, i);
        if (strcmp(r->job_id, id) || strstr(r->body, "\"IN_PROGRESS\"")) continue;
        return fq_body_json(r);
    }
    return NULL;
}

static cJSON *wait_final(e2e *t, const char *id, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 50) {
        cJSON *r = final_result(t->q, id);
        if (r) return r;
        usleep(50000);
    }
    print_log(t);
    fail_msg("no result for %s", id);
    return NULL;
}

/* Progress updates posted for a job, in order. */
static int progress_steps(fake_queue *q, const char *id, int *steps, int cap)
{
    int n = 0;
    for (int i = 0; i < fq_count(q, FQ_DONE); i++) {
        const fq_request *r = fq_get(q, FQ_DONE, i);
        if (strcmp(r->job_id, id) || !strstr(r->body, "\"IN_PROGRESS\"")) continue;
        cJSON *b = fq_body_json(r);
        const cJSON *o = cJSON_GetObjectItem(b, "output");
        char msg[48];
        snprintf(msg, sizeof msg, "step %d/%d", cJSON_GetObjectItem(o, "step")->valueint,
                 cJSON_GetObjectItem(o, "steps")->valueint);
        assert_string_equal(cJSON_GetObjectItem(o, "message")->valuestring, msg);
        if (n < cap) steps[n] = cJSON_GetObjectItem(o, "step")->valueint;
        n++;
        cJSON_Delete(b);
    }
    return n;
}

static void assert_png(const char *b64, int width, int height)
{
    uint8_t *bytes;
    size_t len;
    char err[256];
    assert_int_equal(b64_decode(b64, strlen(b64), 0, &bytes, &len, err, sizeof err), 0);
    img_limits lim = {.max_pixels = 1u << 24, .max_side = 4096};
    img_rgb im = {0};
    assert_int_equal(img_decode(bytes, len, &lim, &im, err, sizeof err), 0);
    assert_int_equal(im.format, IMG_PNG);
    assert_int_equal(im.width, width);
    assert_int_equal(im.height, height);
    char *params = NULL;
    assert_int_equal(img_read_parameters(bytes, len, &params), 0);
    assert_non_null(strstr(params, "Model: sdxl_small"));
    free(params);
    img_rgb_free(&im);
    free(bytes);
}

/* Pings while a job ran named it. */
static int pings_naming(fake_queue *q, const char *id)
{
    int n = 0;
    for (int i = 0; i < fq_count(q, FQ_PING); i++) {
        char ids[256];
        if (fq_query_param(fq_get(q, FQ_PING, i), "job_id", ids, sizeof ids) && strstr(ids, id)) n++;
    }
    return n;
}

static bool log_has(const e2e *t, const char *text)
{
    char *log = tu_read_file(t->log_path, NULL);
    bool found = log && strstr(log, text);
    free(log);
    return found;
}

static void jobs_through_the_queue(void **state)
{
    e2e *t = *state;
    fq_push(t->q, FQ_TAKE, fq_json(JOB("ok-1", "{" SMALL ",\"steps\":4,\"seed\":11}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("bad-1", "{" SMALL ",\"width\":13,\"steps\":\"many\"}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("two-1", "{" SMALL ",\"steps\":3,\"num_images\":2,\"seed\":20,"
                                              "\"loras\":[{\"name\":\"Small kohya LoRA (random)\",\"scale\":1.2}]}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("stop-1", "{" SMALL ",\"steps\":150}")));
    spawn(t, false);

    cJSON *r = wait_final(t, "ok-1", 60000);
    const cJSON *out = cJSON_GetObjectItem(r, "output");
    assert_non_null(out);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_png(cJSON_GetObjectItem(out, "image")->valuestring, 256, 256);
    const cJSON *m = cJSON_GetObjectItem(out, "metadata");
    assert_int_equal(cJSON_GetObjectItem(m, "seed")->valueint, 11);
    assert_string_equal(cJSON_GetObjectItem(m, "model")->valuestring, "SDXL small (random weights)");
    assert_non_null(cJSON_GetObjectItem(out, "timings"));
    int steps[8];
    assert_int_equal(progress_steps(t->q, "ok-1", steps, 8), 4);
    for (int i = 0; i < 4; i++) assert_int_equal(steps[i], i + 1);
    cJSON_Delete(r);

    r = wait_final(t, "bad-1", 10000);
    assert_string_equal(cJSON_GetObjectItem(r, "error")->valuestring,
                        "width must be a multiple of 8 between 256 and 2048 (got 13). "
                        "steps should be <class 'int'> type, not <class 'str'>.");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "code")->valuestring, "INVALID_INPUT");
    cJSON_Delete(r);

    r = wait_final(t, "two-1", 60000);
    const cJSON *lora = cJSON_GetArrayItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "metadata"), "loras"), 0);
    assert_non_null(lora); /* the override, applied to the checkpoint's tensors */
    assert_string_equal(cJSON_GetObjectItem(lora, "name")->valuestring, "Small kohya LoRA (random)");
    assert_true(cJSON_GetObjectItem(lora, "scale")->valuedouble == 1.2);
    assert_true(cJSON_GetObjectItem(lora, "tensors_applied")->valueint > 0);
    const cJSON *images = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "images");
    assert_int_equal(cJSON_GetArraySize(images), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(images, i);
        assert_int_equal(cJSON_GetObjectItem(e, "seed")->valueint, 20 + i);
        assert_png(cJSON_GetObjectItem(e, "image")->valuestring, 256, 256);
    }
    cJSON_Delete(r);

    /* stop-1 runs (150 steps, about 15 s here): heartbeats name it; stop it
     * then, and the worker is free at once */
    int tries = 0;
    while ((progress_steps(t->q, "stop-1", steps, 8) < 2 || pings_naming(t->q, "stop-1") < 1) && tries++ < 400)
        usleep(50000);
    assert_true(pings_naming(t->q, "stop-1") >= 1);
    double t_stop = fq_now(t->q);
    int takes = fq_count(t->q, FQ_TAKE);
    fq_push(t->q, FQ_STOP, fq_json("{\"jobsToStop\":[\"stop-1\"]}"));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("after-1", "{" SMALL ",\"steps\":2,\"seed\":5}")));
    assert_true(fq_wait(t->q, FQ_TAKE, takes + 1, 10000));
    r = wait_final(t, "after-1", 60000);
    assert_non_null(cJSON_GetObjectItem(r, "output"));
    cJSON_Delete(r);
    int stopped_at = progress_steps(t->q, "stop-1", steps, 8);
    assert_true(stopped_at < 150);
    assert_null(final_result(t->q, "stop-1")); /* a stopped job gets no result */
    assert_true(log_has(t, "stop-1 | Stopping job."));
    /* the stop took effect within a step or two (about 0.1 s each here) */
    for (int i = 0; i < fq_count(t->q, FQ_TAKE); i++)
        if (fq_get(t->q, FQ_TAKE, i)->t > t_stop) {
            assert_true(fq_get(t->q, FQ_TAKE, i)->t - t_stop < 3.0);
            break;
        }

    assert_true(fq_count(t->q, FQ_PING) >= 2);
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 15000), 0);
    assert_false(log_has(t, KEY));
}

static void sigterm_during_a_job_posts_its_result(void **state)
{
    e2e *t = *state;
    fq_push(t->q, FQ_TAKE, fq_json(JOB("term-1", "{" SMALL ",\"steps\":12,\"seed\":3}")));
    spawn(t, false);
    int steps[16], tries = 0;
    while (progress_steps(t->q, "term-1", steps, 16) < 1 && tries++ < 1200) usleep(50000);
    assert_true(progress_steps(t->q, "term-1", steps, 16) >= 1);
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 60000), 0);
    cJSON *r = final_result(t->q, "term-1");
    assert_non_null(r);
    assert_png(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "image")->valuestring, 256, 256);
    assert_int_equal(progress_steps(t->q, "term-1", steps, 16), 12);
    assert_int_equal(fq_count(t->q, FQ_TAKE), 1); /* nothing taken after the signal */
    cJSON_Delete(r);
}

static void unparsable_job_then_a_valid_one(void **state)
{
    e2e *t = *state;
    fq_push(t->q, FQ_TAKE, fq_json("{\"id\":\"nan-1\",\"input\":{\"prompt\":\"x\",\"cfg_scale\":NaN}}"));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("ok-2", "{" SMALL ",\"steps\":2,\"cfg_scale\":1e999}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("ok-3", "{" SMALL ",\"steps\":2}")));
    spawn(t, false);
    cJSON *r = wait_final(t, "ok-2", 60000);
    assert_string_equal(cJSON_GetObjectItem(r, "error")->valuestring, "cfg_scale must be a finite number (got inf).");
    cJSON_Delete(r);
    r = wait_final(t, "ok-3", 60000);
    assert_non_null(cJSON_GetObjectItem(r, "output"));
    cJSON_Delete(r);
    assert_null(final_result(t->q, "nan-1"));
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 15000), 0);
}

/* ---- the dev API ---------------------------------------------------------------------- */

static long http(const e2e *t, const char *method, const char *path, const char *body, cJSON **json)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", t->port, path);
    tu_buf b = {0};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, tu_curl_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (json) *json = b.data ? cJSON_Parse(b.data) : NULL;
    free(b.data);
    return status;
}

static void runsync_returns_an_image(void **state)
{
    e2e *t = *state;
    t->port = tu_free_port();
    snprintf(t->port_arg, sizeof t->port_arg, "%d", t->port);
    spawn(t, true);
    int tries = 0;
    while (http(t, "GET", "/health", NULL, NULL) != 200 && tries++ < 400) usleep(50000);
    cJSON *r = NULL;
    assert_int_equal(http(t, "POST", "/runsync", "{\"input\":{" SMALL ",\"steps\":3,\"seed\":77}}", &r), 200);
    assert_non_null(r);
    assert_string_equal(cJSON_GetObjectItem(r, "status")->valuestring, "COMPLETED");
    const cJSON *out = cJSON_GetObjectItem(r, "output");
    assert_png(cJSON_GetObjectItem(out, "image")->valuestring, 256, 256);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(out, "metadata"), "seed")->valueint, 77);
    cJSON_Delete(r);
    assert_int_equal(http(t, "POST", "/runsync", "{\"input\":{\"prompt\":\"x\",\"num_images\":9}}", &r), 200);
    assert_string_equal(cJSON_GetObjectItem(r, "status")->valuestring, "FAILED");
    assert_string_equal(cJSON_GetObjectItem(r, "error")->valuestring, "num_images must be between 1 and 4 (got 9).");
    cJSON_Delete(r);
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 15000), 0);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        T(jobs_through_the_queue),
        T(sigterm_during_a_job_posts_its_result),
        T(unparsable_job_then_a_valid_one),
        T(runsync_returns_an_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
