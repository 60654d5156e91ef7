/* The txt2img engine (sd/engine.h) on the small model:
 *   - every case of tests/data/small/goldens_txt2img.json, i.e. diffusers'
 *     StableDiffusionXLPipeline over sizes 64x64 / 128x96, 4 / 8 steps,
 *     Euler / DPM++ 2M Karras, cfg 1 / 6, seeds 0 / 42 / 2^32+7, with and
 *     without a negative prompt (96 cases), plus A1111-conditioned prompts
 *     (long, weighted, BREAK) whose halves run as separate UNet calls: each
 *     image within 2/255 per channel, also when the VAE decodes in tiles;
 *   - the progress callback runs once per step, for one- and two-call samplers;
 *   - the cancel flag and the progress callback stop a job within one step,
 *     and the engine then still gives the golden image;
 *   - clear errors for bad sizes, unknown samplers and other bad parameters;
 *   - rng cuda and cpu give different noise; per-image seeds make a batch of 2
 *     equal to single runs with seed and seed+1; one generator makes image 0
 *     equal to the single run;
 *   - `sdxl-worker generate` writes the engine's images as PNGs with A1111's
 *     parameters text, and fails cleanly on bad flags and bad sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "sd/engine.h"
#include "small_model.h"
#include "testutil.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;

static int setup(void **state) { return small_model_open(&g, "goldens_txt2img"); }

static int teardown(void **state)
{
    small_model_close(&g);
    return 0;
}

/* A small job with the test's usual settings (rng cpu as the goldens). */
static sd_txt2img_params small_job(int steps)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    p.prompt = "a red apple on a wooden table";
    p.negative_prompt = "blurry";
    p.width = p.height = 64;
    p.steps = steps;
    p.cfg = 6.0f;
    p.seed = 42;
    p.sampler = "Euler";
    p.rng = SD_RNG_CPU;
    return p;
}

static void run_ok(const sd_txt2img_params *p, sd_image_out *out) { small_model_txt2img_ok(&g, p, out); }

/* ---- parity with diffusers ------------------------------------------------------ */

/* tile_latent > 0: decode in tiles of that many latent pixels. */
static void run_golden_case(const cJSON *c, int tile_latent, int *worst_seen, size_t *differing, size_t *total)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    golden_job_settings(c, &p); /* diffusers' generator (the same as per-image for one image) */
    if (tile_latent) p.vae_tile_above = 1, p.vae_tile_latent = tile_latent;
    sd_image_out out;
    run_ok(&p, &out);

    size_t n = (size_t)p.width * p.height * 3, n_diff;
    const st_tensor *ref = small_model_golden_u8(&g, json_str(c, "image"), n);
    int worst = u8_max_abs_diff(out.rgb, ref->data, n, &n_diff);
    if (worst > MAX_DIFF)
        fprintf(stderr, "case %d (%s %dx%d %d steps cfg %g seed %s neg %s): max diff %d\n",
                json_int(c, "id"), p.sampler, p.width, p.height, p.steps, p.cfg, json_str(c, "seed"),
                p.negative_prompt ? "yes" : "no", worst);
    assert_true(worst <= MAX_DIFF);
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "a1111"))) {
        int separate = json_num(c, "cond_tokens") != json_num(c, "uncond_tokens");
        assert_int_equal(out.unet_calls_per_eval, separate ? 2 : 1);
    }
    if (worst > *worst_seen) *worst_seen = worst;
    *differing += n_diff;
    *total += n;
    sd_image_out_free(&out);
}

static void test_matches_diffusers_pipeline(void **state)
{
    const cJSON *c;
    int n = 0, n_a1111 = 0, worst = 0;
    size_t differing = 0, total = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        run_golden_case(c, 0, &worst, &differing, &total);
        n++;
        n_a1111 += cJSON_IsTrue(cJSON_GetObjectItem(c, "a1111"));
    }
    printf("  %d cases (%d A1111-conditioned): max |diff| %d/255, %zu of %zu channel values differ\n", n,
           n_a1111, worst, differing, total);
    assert_true(n - n_a1111 >= 96);
    assert_true(n_a1111 >= 4);
}

/* ---- progress and cancellation ------------------------------------------------- */

typedef struct {
    int calls, last_step, total;
    int set_cancel_at, stop_at; /* step numbers; 0: never */
    atomic_bool *cancel;
} progress_log;

static int on_progress(void *ctx, int step, int total)
{
    progress_log *log = ctx;
    log->calls++;
    assert_int_equal(step, log->last_step + 1);
    log->last_step = step;
    log->total = total;
    if (log->set_cancel_at == step) atomic_store(log->cancel, true);
    return log->stop_at == step;
}

static void check_progress(const char *sampler, int steps)
{
    progress_log log = {0};
    sd_txt2img_params p = small_job(steps);
    p.sampler = sampler;
    p.progress = on_progress;
    p.progress_ctx = &log;
    sd_image_out out;
    run_ok(&p, &out);
    assert_int_equal(log.calls, steps);
    assert_int_equal(log.last_step, steps);
    assert_int_equal(log.total, steps);
    assert_int_equal(out.steps_done, steps);
    sd_image_out_free(&out);
}

static void test_progress_once_per_step(void **state)
{
    check_progress("Euler", 5);
    check_progress("DPM++ 2M Karras", 3);
    check_progress("Heun", 4); /* two model calls per step but the last */
    check_progress("DPM2", 1);
}

/* The engine still makes the golden image after a failed or stopped job. */
static void assert_engine_still_matches(void)
{
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(g.doc, "cases"), 0);
    int worst = 0;
    size_t differing = 0, total = 0;
    run_golden_case(first, 0, &worst, &differing, &total);
}

/* Above the threshold the VAE decodes in tiles; the image stays within the bound. */
static void test_tiled_decode_matches_diffusers(void **state)
{
    const cJSON *c;
    int n = 0, worst = 0;
    size_t differing = 0, total = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        if (json_num(c, "width") != 128 || json_num(c, "cfg") <= 1 || n >= 4) continue;
        run_golden_case(c, 4, &worst, &differing, &total); /* 16x12 latents in 4x4 tiles */
        n++;
    }
    printf("  tiled decode, %d cases: max |diff| %d/255, %zu of %zu values differ\n", n, worst, differing, total);
    assert_int_equal(n, 4);
}

static void expect_cancelled(sd_txt2img_params *p, int steps_done)
{
    char err[512] = "";
    sd_image_out out;
    assert_int_equal(sd_txt2img(g.engine, p, &out, err, sizeof err), SD_ECANCELLED);
    assert_non_null(strstr(err, "cancelled"));
    assert_null(out.rgb);
    assert_int_equal(out.steps_done, steps_done);
}

static void test_cancel_flag_stops_within_one_step(void **state)
{
    atomic_bool cancel = false;
    progress_log log = {.set_cancel_at = 2, .cancel = &cancel};
    sd_txt2img_params p = small_job(6);
    p.progress = on_progress;
    p.progress_ctx = &log;
    p.cancel = &cancel;
    expect_cancelled(&p, 2);
    assert_int_equal(log.calls, 2); /* no step after the one during which it was set */

    atomic_store(&cancel, true); /* set before the job: nothing runs */
    log = (progress_log){.cancel = &cancel};
    expect_cancelled(&p, 0);
    assert_int_equal(log.calls, 0);
    assert_engine_still_matches();
}

static void test_progress_callback_can_stop(void **state)
{
    progress_log log = {.stop_at = 3};
    sd_txt2img_params p = small_job(8);
    p.sampler = "DPM++ 2M";
    p.progress = on_progress;
    p.progress_ctx = &log;
    expect_cancelled(&p, 3);
    assert_int_equal(log.calls, 3);
    assert_engine_still_matches();
}

/* ---- errors -------------------------------------------------------------------- */

static void expect_invalid(const sd_txt2img_params *p, const char *needle)
{
    char err[1024] = "";
    sd_image_out out;
    assert_int_equal(sd_txt2img(g.engine, p, &out, err, sizeof err), SD_EINVALID);
    if (!strstr(err, needle)) fprintf(stderr, "error \"%s\" lacks \"%s\"\n", err, needle);
    assert_non_null(strstr(err, needle));
    assert_null(out.rgb);
}

/* Sides that are multiples of 8 but not of 32 (latent 9x13): the UNet's odd
 * path (parity with diffusers in test_unet) through the whole engine. */
static void test_sizes_need_only_be_multiples_of_8(void **state)
{
    sd_txt2img_params p = small_job(2);
    p.width = 72, p.height = 104;
    sd_image_out out;
    run_ok(&p, &out);
    assert_int_equal(out.width, 72);
    assert_int_equal(out.height, 104);
    sd_image_out_free(&out);
}

static void test_bad_parameters_are_clear_errors(void **state)
{
    assert_int_equal(sd_engine_size_multiple(g.engine), 8); /* the VAE's 2^(4 levels - 1) */
    const int bad_sizes[][2] = {{0, 64}, {64, -8}, {100, 64}, {64, 44}, {13, 13}, {4, 8}, {99999, 64}};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        sd_txt2img_params p = small_job(2);
        p.width = bad_sizes[i][0], p.height = bad_sizes[i][1];
        expect_invalid(&p, "width and height must be multiples of 8");
    }
    sd_txt2img_params p = small_job(2);
    p.sampler = "Euler b";
    expect_invalid(&p, "DPM++ 2M"); /* the message lists the valid names */
    p = small_job(2);
    p.sampler = "DPM++ SDE";
    expect_invalid(&p, "DPM++ SDE");
    p = small_job(2);
    p.sampler = "Euler a", p.schedule = "Karras";
    expect_invalid(&p, "Karras");
    p = small_job(0);
    expect_invalid(&p, "steps must be between 1 and");
    p = small_job(2);
    p.batch = 0;
    expect_invalid(&p, "number of images");
    p.batch = SD_MAX_BATCH + 1;
    expect_invalid(&p, "number of images");
    p = small_job(2);
    p.clip_skip = 99;
    expect_invalid(&p, "clip_skip must be between 1 and");
    p.clip_skip = -1;
    expect_invalid(&p, "clip_skip must be between 1 and");
    p = small_job(2);
    p.cfg = NAN;
    expect_invalid(&p, "cfg must be a finite number");
    p = small_job(2);
    p.guidance_rescale = -0.5f;
    expect_invalid(&p, "guidance_rescale");
    p = small_job(2);
    p.prompt = NULL;
    expect_invalid(&p, "prompt is required");
    p = small_job(2);
    p.prompt = "a cat <lora:x:abc>"; /* a malformed tag multiplier (sd/prompt.h) */
    expect_invalid(&p, "lora");
    p = small_job(2);
    p.rng = (sd_rng_kind)7;
    expect_invalid(&p, "rng");
    assert_engine_still_matches();
}

static void test_load_errors(void **state)
{
    char err[512] = "";
    sd_engine *e = (sd_engine *)1;
    assert_int_equal(sd_engine_load(SMALL "no_such_model.safetensors", NULL, &e, err, sizeof err), SD_EMODEL);
    assert_null(e);
    assert_non_null(strstr(err, "no_such_model"));
    assert_int_equal(sd_engine_load(SMALL "goldens_txt2img.safetensors", NULL, &e, err, sizeof err), SD_EMODEL);
    assert_null(e);
}

/* ---- seeds and noise ----------------------------------------------------------- */

static void test_cuda_and_cpu_noise_differ(void **state)
{
    sd_txt2img_params p = small_job(2);
    sd_image_out cpu, cuda;
    run_ok(&p, &cpu);
    p.rng = SD_RNG_CUDA;
    run_ok(&p, &cuda);
    size_t n = 64 * 64 * 3, n_diff;
    int worst = u8_max_abs_diff(cpu.rgb, cuda.rgb, n, &n_diff);
    assert_true(worst > 32);
    assert_true(n_diff > n / 2);
    sd_image_out_free(&cpu);
    sd_image_out_free(&cuda);
}

/* Image i of a batch against a single run with `seed`. */
static void assert_image_equals_single(const sd_image_out *batch, int i, sd_txt2img_params p, uint64_t seed)
{
    p.batch = 1, p.seed = seed;
    sd_image_out one;
    run_ok(&p, &one);
    size_t n = (size_t)p.width * p.height * 3, n_diff;
    int worst = u8_max_abs_diff(batch->rgb + i * n, one.rgb, n, &n_diff);
    printf("  batch image %d vs single seed %llu: max |diff| %d, %zu values differ\n", i,
           (unsigned long long)seed, worst, n_diff);
    assert_true(worst <= 1); /* the same numbers through a UNet batch of 4 instead of 2 */
    sd_image_out_free(&one);
}

static void test_batch_uses_seed_plus_i(void **state)
{
    for (int r = 0; r < 2; r++) {
        sd_txt2img_params p = small_job(3);
        p.rng = r ? SD_RNG_CUDA : SD_RNG_CPU;
        p.batch = 2;
        p.seed = (uint64_t)-1; /* torch's mapping of seed -1; +1 wraps to 0 */
        sd_image_out out;
        run_ok(&p, &out);
        assert_true(out.seeds[0] == UINT64_MAX && out.seeds[1] == 0);
        assert_image_equals_single(&out, 0, p, UINT64_MAX);
        assert_image_equals_single(&out, 1, p, 0);
        sd_image_out_free(&out);
    }
}

static void test_batch_with_one_generator(void **state)
{
    sd_txt2img_params p = small_job(3);
    p.batch = 2;
    p.seeding = SD_BATCH_ONE_GENERATOR;
    sd_image_out out;
    run_ok(&p, &out);
    assert_true(out.seeds[0] == 42 && out.seeds[1] == 42);
    assert_image_equals_single(&out, 0, p, 42);
    size_t n = 64 * 64 * 3, n_diff;
    assert_true(u8_max_abs_diff(out.rgb, out.rgb + n, n, &n_diff) > 32); /* image 1 continues the stream */
    sd_image_out_free(&out);
}

/* ---- the developer CLI ---------------------------------------------------------- */

/* Runs `sdxl-worker generate ARGS...` (NULL-terminated) with stderr into
 * dir/stderr; returns the exit code, *stderr_text malloc'd. */
static int run_generate(const char *dir, char **stderr_text, ...)
{
    char *argv[64] = {"sdxl-worker", "generate"};
    int argc = 2;
    va_list ap;
    va_start(ap, stderr_text);
    for (const char *a; (a = va_arg(ap, const char *)) && argc < 63;) argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    char err_path[4200];
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644), null = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(null, 1);
        execv(tu_worker_bin(), argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    *stderr_text = tu_read_file(err_path, NULL);
    assert_non_null(*stderr_text);
    return WEXITSTATUS(status);
}

/* The PNG at dir/name decodes to `expected` and its parameters hold `needles`. */
static void check_png(const char *dir, const char *name, const uint8_t *expected, const char *const *needles)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    uint8_t *png = (uint8_t *)tu_read_file(path, &len);
    assert_non_null(png);
    img_limits lim;
    img_limits_default(&lim);
    img_rgb im;
    char err[256], *params = NULL;
    assert_int_equal(img_decode(png, len, &lim, &im, err, sizeof err), 0);
    assert_int_equal(im.width, 64);
    assert_int_equal(im.height, 64);
    assert_memory_equal(im.rgb, expected, 64 * 64 * 3);
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    assert_non_null(params);
    for (; *needles; needles++) {
        if (!strstr(params, *needles)) fprintf(stderr, "parameters \"%s\" lack \"%s\"\n", params, *needles);
        assert_non_null(strstr(params, *needles));
    }
    free(params);
    img_rgb_free(&im);
    free(png);
}

static void test_generate_cli_writes_pngs(void **state)
{
    char *dir = tu_mkdtemp("txt2img-cli"), out[4200], *text;
    snprintf(out, sizeof out, "%s/cat.png", dir);
    int rc = run_generate(dir, &text, "--model", SMALL "sdxl_small.safetensors", "--prompt",
                          "a cat <lora:paws:0.5>", "-N", "blurry", "-W", "64", "-H", "64", "--steps", "3",
                          "--cfg", "6", "--seed", "42", "--sampler", "Euler", "--rng", "cpu", "-n", "2",
                          "--threads", "1", "-o", out, NULL);
    if (rc) fprintf(stderr, "%s", text);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(text, "step 3/3"));
    free(text);

    sd_txt2img_params p = small_job(3);
    p.prompt = "a cat <lora:paws:0.5>";
    p.batch = 2;
    sd_image_out img;
    run_ok(&p, &img);
    const char *first[] = {"a cat <lora:paws:0.5>\nNegative prompt: blurry\n", "Steps: 3, Sampler: Euler",
                           "CFG scale: 6, Seed: 42, Size: 64x64", "Model: sdxl_small", "RNG: CPU", NULL};
    const char *second[] = {"Seed: 43,", NULL};
    check_png(dir, "cat.png", img.rgb, first);
    check_png(dir, "cat_2.png", img.rgb + 64 * 64 * 3, second);
    sd_image_out_free(&img);

    assert_int_equal(run_generate(dir, &text, "--prompt", "x", NULL), 2); /* no --model */
    assert_non_null(strstr(text, "--model and --prompt are required"));
    free(text);
    assert_int_equal(run_generate(dir, &text, "-m", "m", "-p", "x", "--rng", "gpu2", NULL), 2);
    assert_non_null(strstr(text, "bad value for --rng"));
    free(text);
    assert_int_equal(run_generate(dir, &text, "-m", SMALL "sdxl_small.safetensors", "-p", "x", "-W", "100",
                                  "-o", out, NULL), 1);
    assert_non_null(strstr(text, "width and height must be multiples of 8"));
    free(text);
    tu_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_diffusers_pipeline),
        cmocka_unit_test(test_tiled_decode_matches_diffusers),
        cmocka_unit_test(test_progress_once_per_step),
        cmocka_unit_test(test_cancel_flag_stops_within_one_step),
        cmocka_unit_test(test_progress_callback_can_stop),
        cmocka_unit_test(test_sizes_need_only_be_multiples_of_8),
        cmocka_unit_test(test_bad_parameters_are_clear_errors),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_cuda_and_cpu_noise_differ),
        cmocka_unit_test(test_batch_uses_seed_plus_i),
        cmocka_unit_test(test_batch_with_one_generator),
        cmocka_unit_test(test_generate_cli_writes_pngs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
