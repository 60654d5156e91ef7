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
 *   - /runsync returns an image; a bad input returns FAILED with the error;
 *   - inpainting and hires fix (issue 17) through the queue and in local-test
 *     mode (--test_input), inpainting on the base model and on its
 *     9-channel inpainting variant (written from the small model).
 *   - with a config of a VAE, embeddings and a LoRA saved by diffusers'
 *     training script, a job using all three through the queue and in
 *     local-test mode (--test_input), an unknown VAE and an unavailable
 *     embedding as job errors.
 * The LoRA override job waits for the engine's LoRA support (see README). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
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
#include "small_model.h"
#include "testutil.h"

#define POD "pod-e2e"
#define KEY "rpa_E2E_SECRET_KEY_9876"
#define JOB(id, input) "{\"id\":\"" id "\",\"input\":" input "}"
#undef SMALL /* small_model.h's folder; here the small job */
#define SMALL "\"prompt\":\"a lighthouse\",\"width\":256,\"height\":256"

typedef struct {
    fake_queue *q;
    pid_t pid;
    char *dir;
    char log_path[1024];
    char port_arg[16];
    int port;
    char config[1200];    /* MODELS_CONFIG: tests/data/small/models.json unless a test writes its own */
    const char *test_input; /* local-test mode (--test_input) instead of the queue */
} e2e;

static int setup(void **state)
{
    e2e *t = calloc(1, sizeof *t);
    t->q = fq_start();
    t->dir = tu_mkdtemp("e2e");
    snprintf(t->log_path, sizeof t->log_path, "%s/worker.log", t->dir);
    snprintf(t->config, sizeof t->config, "tests/data/small/models.json");
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
    char queue[FQ_ENV_LINES][256], dir[1100], config[1300], result[1100];
    fq_env(t->q, POD, KEY, queue);
    snprintf(dir, sizeof dir, "MODELS_DIR=%s", t->dir);
    snprintf(config, sizeof config, "MODELS_CONFIG=%s", t->config);
    snprintf(result, sizeof result, "%s/result.json", t->dir);
    const char *env[FQ_ENV_LINES + 8] = {config, dir, "RUNPOD_LOG_LEVEL=DEBUG", "RUNPOD_PING_INTERVAL=1000",
                                          "OMP_NUM_THREADS=2", "OMP_WAIT_POLICY=PASSIVE", "BUCKET_ENDPOINT_URL"};
    for (size_t i = 0; !serve_api && !t->test_input && i < FQ_ENV_LINES; i++) env[7 + i] = queue[i];
    char *api[] = {"sdxl-worker", "--rp_serve_api", "--rp_api_port", t->port_arg, NULL}, *worker[] = {"sdxl-worker", NULL};
    char *local[] = {"sdxl-worker", "--test_input", (char *)t->test_input, NULL};
    tu_spawn_spec spec = {.path = tu_worker_bin(), .argv = t->test_input ? local : serve_api ? api : worker,
                          .env = env, .clear_runpod = 1,
                          .stdout_path = t->test_input ? result : t->log_path, /* local test: the result alone */
                          .stderr_path = t->log_path};
    t->pid = tu_spawn(&spec);
    assert_true(t->pid > 0);
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

/* Progress updates of a job that arrived by time t. */
static int progress_by(fake_queue *q, const char *id, double t)
{
    int n = 0;
    for (int i = 0; i < fq_count(q, FQ_DONE); i++) {
        const fq_request *r = fq_get(q, FQ_DONE, i);
        n += !strcmp(r->job_id, id) && strstr(r->body, "\"IN_PROGRESS\"") && r->t <= t;
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
    /* the stop took effect within a step or two of reaching the worker:
     * counted in steps, not seconds (a sanitizer build on a loaded machine
     * runs a step many times slower); the first job-stop poll after the push
     * carried it */
    double t_recv = -1;
    for (int i = 0; i < fq_count(t->q, FQ_STOP) && t_recv < 0; i++)
        if (fq_get(t->q, FQ_STOP, i)->t > t_stop) t_recv = fq_get(t->q, FQ_STOP, i)->t;
    assert_true(t_recv >= 0);
    assert_true(stopped_at - progress_by(t->q, "stop-1", t_recv) <= 3);

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

/* ---- VAEs, embeddings and LoRAs saved by diffusers ---------------------------------------- */

/* A config with the small model, the LoRA of diffusers' training-script
 * layout, the small test VAE (LDM names as "vae", diffusers names in "vaes")
 * and the two small embeddings. */
static void write_extras_config(e2e *t)
{
    char cwd[1024], text[8192];
    assert_non_null(getcwd(cwd, sizeof cwd));
#define SMALLDIR "%1$s/tests/data/small/"
    snprintf(text, sizeof text,
             "{\"checkpoint\": {\"name\": \"Small\", \"path\": \"" SMALLDIR "sdxl_small.safetensors\"},"
             " \"loras\": [{\"name\": \"Dreambooth\", \"path\": \"" SMALLDIR "loras/dreambooth.safetensors\", \"scale\": 0.7}],"
             " \"vae\": {\"name\": \"Small VAE\", \"path\": \"" SMALLDIR "vae/vae_ldm.safetensors\"},"
             " \"vaes\": [{\"name\": \"Small VAE (diffusers)\", \"path\": \"" SMALLDIR "vae/vae_diffusers.safetensors\"}],"
             " \"embeddings\": [{\"name\": \"sks_style\", \"path\": \"" SMALLDIR "embeddings/sks_style.safetensors\"},"
             "  {\"name\": \"lowq_neg\", \"path\": \"" SMALLDIR "embeddings/lowq_neg.safetensors\"},"
             "  {\"name\": \"goneneg\", \"path\": \"%2$s/goneneg.safetensors\"}]}", cwd, t->dir);
#undef SMALLDIR
    snprintf(t->config, sizeof t->config, "%s/models.json", t->dir);
    assert_int_equal(tu_write_file(t->config, text, strlen(text)), 0);
}

#define EXTRAS "\"prompt\":\"a photo of sks_style lighthouse\",\"negative_prompt\":\"lowq_neg\",\"width\":256," \
               "\"height\":256,\"steps\":3,\"seed\":9,\"vae\":\"Small VAE (diffusers)\""

/* The output of a job that used the VAE, both embeddings and the LoRA. */
static void assert_extras_output(const cJSON *out)
{
    assert_non_null(out);
    const cJSON *m = cJSON_GetObjectItem(out, "metadata");
    assert_string_equal(cJSON_GetObjectItem(m, "vae")->valuestring, "Small VAE (diffusers)");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "embeddings")), 2);
    const cJSON *lora = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "loras"), 0);
    assert_string_equal(cJSON_GetObjectItem(lora, "name")->valuestring, "Dreambooth");
    assert_int_equal(cJSON_GetObjectItem(lora, "tensors_applied")->valueint, 9);
    const char *b64 = cJSON_GetObjectItem(out, "image")->valuestring;
    assert_png(b64, 256, 256);
    uint8_t *bytes;
    size_t len;
    char err[128], *params = NULL;
    assert_int_equal(b64_decode(b64, strlen(b64), 0, &bytes, &len, err, sizeof err), 0);
    assert_int_equal(img_read_parameters(bytes, len, &params), 0);
    assert_non_null(strstr(params, ", VAE: vae_diffusers.safetensors, "));
    assert_non_null(strstr(params, ", Lora hashes: \"Dreambooth: "));
    assert_non_null(strstr(params, ", TI hashes: \"sks_style: "));
    free(params);
    free(bytes);
}

static void extras_through_the_queue(void **state)
{
    e2e *t = *state;
    write_extras_config(t);
    fq_push(t->q, FQ_TAKE, fq_json(JOB("extras-1", "{" EXTRAS "}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("extras-2", "{" EXTRAS ",\"vae\":\"Nope\"}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("extras-3", "{" EXTRAS ",\"negative_prompt\":\"goneneg, blurry\"}")));
    spawn(t, false);
    cJSON *r = wait_final(t, "extras-1", 60000);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_extras_output(cJSON_GetObjectItem(r, "output"));
    cJSON_Delete(r);
    r = wait_final(t, "extras-2", 10000);
    assert_non_null(strstr(cJSON_GetObjectItem(r, "error")->valuestring, "vae names the VAE 'Nope'"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "code")->valuestring, "INVALID_INPUT");
    cJSON_Delete(r);
    r = wait_final(t, "extras-3", 10000);
    assert_non_null(strstr(cJSON_GetObjectItem(r, "error")->valuestring,
                           "the negative prompt names the embedding 'goneneg', which is unavailable"));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "output"), "code")->valuestring, "MODEL_UNAVAILABLE");
    cJSON_Delete(r);
    assert_true(log_has(t, "goneneg: local file"));
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 15000), 0);
}

static void extras_in_local_test_mode(void **state)
{
    e2e *t = *state;
    write_extras_config(t);
    t->test_input = "{\"input\":{" EXTRAS "}}";
    spawn(t, false);
    assert_int_equal(wait_exit(t, 120000), 0);
    char path[1100];
    snprintf(path, sizeof path, "%s/result.json", t->dir);
    cJSON *r = tu_read_json(path);
    assert_non_null(r);
    const cJSON *out = cJSON_GetObjectItem(r, "output");
    assert_extras_output(out ? out : r);
    cJSON_Delete(r);
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

/* ---- inpainting and hires fix ----------------------------------------------------------- */

/* The input {SMALL extra} with the small init image and its mask when
 * inpaint, as JSON text (malloc'd). */
static char *edit_input(const char *extra, bool inpaint)
{
    char *text = NULL;
    assert_true(asprintf(&text, "{" SMALL "%s}", extra) > 0);
    cJSON *in = cJSON_Parse(text);
    free(text);
    assert_non_null(in);
    const char *files[2] = {"tests/data/small/img2img_init.png", "tests/data/small/inpaint_mask.png"};
    const char *keys[2] = {"image", "mask"};
    for (int i = 0; inpaint && i < 2; i++) {
        size_t len;
        char *bytes = tu_read_file(files[i], &len);
        assert_non_null(bytes);
        char *b64 = b64_encode(bytes, len, NULL);
        cJSON_AddStringToObject(in, keys[i], b64);
        free(b64);
        free(bytes);
    }
    text = cJSON_PrintUnformatted(in);
    cJSON_Delete(in);
    return text;
}

static void assert_params_have(const char *b64, const char *part)
{
    uint8_t *bytes;
    size_t len;
    char err[256], *params = NULL;
    assert_int_equal(b64_decode(b64, strlen(b64), 0, &bytes, &len, err, sizeof err), 0);
    assert_int_equal(img_read_parameters(bytes, len, &params), 0);
    if (!strstr(params, part)) fail_msg("\"%s\" lacks \"%s\"", params, part);
    free(params);
    free(bytes);
}

static const char *output_image(const cJSON *r)
{
    const cJSON *out = cJSON_GetObjectItem(r, "output");
    if (!out || !cJSON_IsString(cJSON_GetObjectItem(out, "image"))) {
        char *t = cJSON_PrintUnformatted(r);
        fail_msg("no image in %.400s", t ? t : "(null)");
    }
    return cJSON_GetObjectItem(out, "image")->valuestring;
}

static void inpaint_and_hires_through_the_queue(void **state)
{
    e2e *t = *state;
    char *inpaint = edit_input(",\"steps\":4,\"seed\":8,\"inpaint_area\":\"masked\"", true);
    char *job = NULL;
    assert_true(asprintf(&job, "{\"id\":\"inp-1\",\"input\":%s}", inpaint) > 0);
    fq_push(t->q, FQ_TAKE, fq_json(job));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("hr-1", "{" SMALL ",\"steps\":3,\"seed\":4,\"hr_scale\":1.25,"
                                              "\"hr_upscaler\":\"Lanczos\",\"hr_steps\":4}")));
    fq_push(t->q, FQ_TAKE, fq_json(JOB("hr-bad", "{" SMALL ",\"hr_scale\":3}")));
    spawn(t, false);

    cJSON *r = wait_final(t, "inp-1", 60000);
    const char *png = output_image(r);
    assert_png(png, 100, 75); /* only masked: the image's size */
    assert_params_have(png, ", Denoising strength: 0.75, Mask blur: 4, Inpaint area: Only masked, Masked area padding: 32, ");
    int steps[16];
    assert_int_equal(progress_steps(t->q, "inp-1", steps, 16), 3); /* int(4 * 0.75) */
    cJSON_Delete(r);

    r = wait_final(t, "hr-1", 60000);
    png = output_image(r);
    assert_png(png, 320, 320);
    assert_params_have(png, ", Size: 256x256, ");
    assert_params_have(png, ", Denoising strength: 0.7, Hires upscale: 1.25, Hires steps: 4, Hires upscaler: Lanczos, ");
    assert_int_equal(progress_steps(t->q, "hr-1", steps, 16), 3 + 2); /* 3, then int(4 * 0.7) */
    cJSON_Delete(r);

    r = wait_final(t, "hr-bad", 10000);
    assert_string_equal(cJSON_GetObjectItem(r, "error")->valuestring, "hr_scale must be between 1 and 2 (got 3).");
    cJSON_Delete(r);
    kill(t->pid, SIGTERM);
    assert_int_equal(wait_exit(t, 15000), 0);
    free(job);
    free(inpaint);
}

/* sdxl-worker --test_input <input> with the models config `config`, which
 * must exit with `exit_code` (1 for a failed job, as the runpod SDK's local
 * test): the result JSON it prints on stdout. */
static cJSON *local_test(e2e *t, const char *config, const char *input, int exit_code)
{
    char out_path[1100], *arg = NULL;
    snprintf(out_path, sizeof out_path, "%s/stdout.json", t->dir);
    assert_true(asprintf(&arg, "{\"id\":\"local-1\",\"input\":%s}", input) > 0);
    char config_env[1100], dir_env[1100];
    snprintf(config_env, sizeof config_env, "MODELS_CONFIG=%s", config);
    snprintf(dir_env, sizeof dir_env, "MODELS_DIR=%s", t->dir);
    const char *env[] = {config_env, dir_env, "OMP_NUM_THREADS=2", "OMP_WAIT_POLICY=PASSIVE", NULL};
    char *argv[] = {"sdxl-worker", "--test_input", arg, NULL};
    tu_spawn_spec spec = {.path = tu_worker_bin(), .argv = argv, .env = env, .clear_runpod = 1,
                          .stdout_path = out_path, .stderr_path = t->log_path};
    pid_t pid = tu_spawn(&spec);
    assert_true(pid > 0);
    free(arg);
    int rc = rpc_wait(pid, 120000);
    if (rc != exit_code) print_log(t);
    assert_int_equal(rc, exit_code);
    char *text = tu_read_file(out_path, NULL);
    assert_non_null(text);
    cJSON *r = cJSON_Parse(text);
    free(text);
    assert_non_null(r);
    return r;
}

static void local_test_mode_inpaint_and_hires(void **state)
{
    e2e *t = *state;
    /* the base model: inpainting the whole picture, then a hires fix */
    char *input = edit_input(",\"steps\":2,\"seed\":1", true);
    cJSON *r = local_test(t, "tests/data/small/models.json", input, 0);
    assert_png(output_image(r), 256, 256);
    assert_params_have(output_image(r), ", Denoising strength: 0.75, Mask blur: 4, ");
    cJSON_Delete(r);
    free(input);
    input = edit_input(",\"steps\":2,\"seed\":1,\"hr_scale\":1.5,\"hr_upscaler\":\"Latent (nearest)\"", false);
    r = local_test(t, "tests/data/small/models.json", input, 0);
    assert_png(output_image(r), 384, 384);
    assert_params_have(output_image(r), ", Hires upscale: 1.5, Hires upscaler: Latent (nearest), ");
    cJSON_Delete(r);
    free(input);

    /* the 9-channel inpainting model: inpainting runs, txt2img is refused */
    char model[1100], config[1100], text[2400];
    snprintf(model, sizeof model, "%s/sdxl_small_inpaint.safetensors", t->dir);
    snprintf(config, sizeof config, "%s/inpaint.json", t->dir);
    assert_int_equal(small_inpaint_model_write(model), 0);
    snprintf(text, sizeof text, "{\"checkpoint\": {\"name\": \"SDXL small inpainting\", \"path\": \"%s\"}}", model);
    assert_int_equal(tu_write_file(config, text, strlen(text)), 0);
    input = edit_input(",\"steps\":2,\"seed\":1,\"strength\":1,\"mask_blur\":8", true);
    r = local_test(t, config, input, 0);
    assert_png(output_image(r), 256, 256);
    assert_params_have(output_image(r), "Model: sdxl_small_inpaint, Denoising strength: 1, Mask blur: 8, ");
    cJSON_Delete(r);
    free(input);
    r = local_test(t, config, "{" SMALL ",\"steps\":2}", 1);
    const cJSON *error = cJSON_GetObjectItem(r, "error");
    assert_true(cJSON_IsString(error));
    assert_non_null(strstr(error->valuestring, "this checkpoint is an inpainting model"));
    cJSON_Delete(r);
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
        T(inpaint_and_hires_through_the_queue),
        T(local_test_mode_inpaint_and_hires),
        T(extras_through_the_queue),
        T(extras_in_local_test_mode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
