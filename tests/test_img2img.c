/* img2img (sd_img2img in sd/engine.h, image/resize.h, and the sampler layer's
 * sd_plan_strength_begin / sd_sampler_add_noise / sd_sampler_run_from) on the
 * small model, against tests/data/small/goldens_img2img.json
 * (tools/reference/make_img2img_goldens.py):
 *   - the LANCZOS resize and diffusers' cover-and-crop equal PIL's bytes
 *     exactly: down and up, wider and taller than the source, one axis only,
 *     and the identity;
 *   - StableDiffusionXLImg2ImgPipeline's images within 2/255 per channel:
 *     Euler and DPM++ 2M Karras at strengths 0.3, 0.6 and 1.0 (64x64 and
 *     128x96), every other sampler at 0.6, a 16-step DPM++ 3M SDE, strength
 *     0.7 of 10 steps, and batches (per-image generators, one generator);
 *   - the timestep a strength starts from (orders 1 and 2, rounding);
 *   - progress counts the steps that run; cancellation; errors for a
 *     missing or oversized init image and bad strengths;
 *   - image i of a per-image batch equals a single run with seed+i, with an
 *     ancestral sampler. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "image/resize.h"
#include "sd/engine.h"
#include "small_model.h"
#include "testutil.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;
static img_rgb init_image;

static int setup(void **state) { return small_model_open(&g, "goldens_img2img") || small_model_read_image(SMALL "img2img_init.png", &init_image) ? -1 : 0; }

static int teardown(void **state)
{
    small_model_close(&g);
    img_rgb_free(&init_image);
    return 0;
}

static const st_tensor *golden(const char *name, size_t numel) { return small_model_golden_u8(&g, name, numel); }

/* ---- resizing ------------------------------------------------------------------- */

static void test_resize_equals_pil(void **state)
{
    const st_tensor *tall = st_find(g.goldens, "src.tall");
    assert_non_null(tall);
    assert_int_equal(tall->ndim, 3);
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "resize")) {
        int w = json_int(c, "width"), h = json_int(c, "height");
        int is_init = !strcmp(json_str(c, "source"), "init");
        const uint8_t *src = is_init ? init_image.rgb : tall->data;
        int sw = is_init ? init_image.width : (int)tall->shape[1], sh = is_init ? init_image.height : (int)tall->shape[0];
        uint8_t *out = malloc((size_t)w * h * 3);
        int rc = !strcmp(json_str(c, "kind"), "cover") ? img_resize_cover(src, sw, sh, out, w, h)
                                                      : img_resize_lanczos(src, sw, sh, out, w, h);
        assert_int_equal(rc, 0);
        const st_tensor *ref = golden(json_str(c, "image"), (size_t)w * h * 3);
        if (memcmp(out, ref->data, (size_t)w * h * 3))
            fail_msg("%s differs from PIL (max %d)", json_str(c, "image"), u8_max_abs_diff(out, ref->data, (size_t)w * h * 3, NULL));
        free(out);
        n++;
    }
    printf("  %d resizes byte-identical to PIL\n", n);
    assert_true(n >= 20);
}

static void test_cover_size_and_window_rules(void **state)
{
    int64_t cw, ch;
    img_cover_size(100, 75, 64, 64, &cw, &ch); /* wider source: height fits, width = 100*64//75 */
    assert_true(cw == 85 && ch == 64);
    img_cover_size(37, 120, 64, 64, &cw, &ch); /* taller: width fits */
    assert_true(cw == 64 && ch == 207);
    img_cover_size(16384, 1, 32, 32, &cw, &ch); /* only the window is computed */
    assert_true(cw == 524288 && ch == 32);
    uint8_t strip[16384 * 3], out[32 * 32 * 3];
    for (int i = 0; i < 16384 * 3; i++) strip[i] = (uint8_t)(i * 7);
    assert_int_equal(img_resize_cover(strip, 16384, 1, out, 32, 32), 0);
    uint8_t px[3];
    assert_int_equal(img_resize_lanczos(strip, 1, 1, px, 1, 1), 0); /* 1x1 identity */
    assert_memory_equal(px, strip, 3);
    /* bad sizes and windows */
    assert_int_equal(img_resize_cover(strip, 0, 1, out, 32, 32), -1);
    assert_int_equal(img_resize_cover(strip, 1, 1, out, 0, 32), -1);
    assert_int_equal(img_resize_lanczos_window(strip, 1, 1, 10, 10, 5, 0, 6, 1, out), -1);
    assert_int_equal(img_resize_lanczos_window(strip, 1, 1, 10, 10, -1, 0, 1, 1, out), -1);
}

/* ---- the strength's first timestep --------------------------------------------- */

static void plan(const char *sampler, const char *schedule, int steps, sd_plan *p)
{
    sd_sampler_choice c;
    char err[256];
    assert_int_equal(sd_sampler_parse(sampler, schedule, &c, err, sizeof err), 0);
    assert_int_equal(sd_plan_make(&c, steps, p, err, sizeof err), 0);
}

static void test_strength_begin(void **state)
{
    static const struct {
        const char *sampler;
        int steps;
        double strength;
        int begin, run;
    } cases[] = {
        {"Euler", 10, 0.7, 3, 7},    /* 10 * 0.7 = 7.000000000000001 in doubles */
        {"Euler", 10, 0.3, 7, 3},    /* 3.0000000000000004 */
        {"Euler", 8, 0.6, 4, 4},
        {"Euler", 8, 1.0, 0, 8},
        {"Euler", 8, 0.1, 8, 0},     /* nothing to run */
        {"Heun", 8, 0.6, 8, 4},      /* order 2: begin = 4 * 2 */
        {"DPM2 a", 6, 0.5, 6, 3},
        {"DPM++ 2M", 20, 0.75, 5, 15},
        {"LCM", 4, 0.5, 2, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sd_plan p;
        plan(cases[i].sampler, NULL, cases[i].steps, &p);
        int run = -1, begin = sd_plan_strength_begin(&p, cases[i].strength, &run);
        if (begin != cases[i].begin || run != cases[i].run)
            fail_msg("%s %d steps strength %g: begin %d run %d, expected %d %d", cases[i].sampler,
                     cases[i].steps, cases[i].strength, begin, run, cases[i].begin, cases[i].run);
        sd_plan_free(&p);
    }
}

/* add_noise's three forms at the first timestep run. */
static void test_add_noise_forms(void **state)
{
    float x0[2] = {0.5f, -1.0f}, z[2] = {1.0f, 2.0f}, x[2];
    sd_plan p;
    plan("Euler", NULL, 8, &p); /* x0 + sigma z */
    sd_sampler_add_noise(&p, 4, x0, z, x, 2);
    assert_true(x[0] == x0[0] + z[0] * p.sigmas[4] && x[1] == x0[1] + z[1] * p.sigmas[4]);
    sd_plan_free(&p);
    plan("DPM++ 2M", "Karras", 8, &p); /* alpha x0 + sigma alpha z */
    sd_sampler_add_noise(&p, 3, x0, z, x, 2);
    float a = 1.0f / sqrtf(p.sigmas[3] * p.sigmas[3] + 1.0f);
    assert_true(x[1] == a * x0[1] + p.sigmas[3] * a * z[1]);
    sd_plan_free(&p);
    plan("DDIM", NULL, 8, &p); /* sqrt(acp) x0 + sqrt(1 - acp) z at timesteps[begin] */
    sd_sampler_add_noise(&p, 2, x0, z, x, 2);
    float acp = 1.0f / (p.sigmas[2] * p.sigmas[2] + 1.0f); /* sigma^2 = (1 - acp)/acp */
    assert_float_equal(x[0], sqrtf(acp) * x0[0] + sqrtf(1.0f - acp) * z[0], 1e-5);
    sd_plan_free(&p);
}

/* ---- parity with diffusers -------------------------------------------------------- */

static sd_img2img_params golden_job(const cJSON *c)
{
    sd_img2img_params p;
    sd_img2img_params_default(&p);
    golden_prompt_settings(g.doc, &p.gen);
    p.init_rgb = init_image.rgb;
    p.init_width = init_image.width;
    p.init_height = init_image.height;
    if (!c) {
        p.gen.width = p.gen.height = 64;
        p.gen.steps = 8;
        p.gen.sampler = "Euler";
        p.strength = 0.6;
        return p;
    }
    p.gen.sampler = json_str(c, "sampler");
    p.gen.schedule = json_str(c, "schedule");
    p.gen.width = json_int(c, "width");
    p.gen.height = json_int(c, "height");
    p.gen.steps = json_int(c, "steps");
    p.gen.batch = json_int(c, "batch");
    p.gen.seeding = golden_seeding(c);
    p.strength = json_num(c, "strength");
    return p;
}

static void run_ok(const sd_img2img_params *p, sd_image_out *out)
{
    char err[512] = "";
    sd_status st = sd_img2img(g.engine, p, out, err, sizeof err);
    if (st) fail_msg("sd_img2img (%s, strength %g): %s: %s", p->gen.sampler, p->strength, sd_status_name(st), err);
    assert_int_equal(out->batch, p->gen.batch);
}

static void test_matches_diffusers_img2img(void **state)
{
    int n = 0, worst = 0, failures = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        sd_img2img_params p = golden_job(c);
        sd_image_out out;
        run_ok(&p, &out);
        size_t size = (size_t)p.gen.width * p.gen.height * 3;
        int d = 0;
        for (int i = 0; i < p.gen.batch; i++) {
            const cJSON *name = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "images"), i);
            int di = u8_max_abs_diff(out.rgb + i * size, golden(name->valuestring, size)->data, size, NULL);
            if (di > d) d = di;
        }
        printf("  %-13s %-12s %3dx%-3d %2d steps strength %.1f (%d run) batch %d %-9s max |diff| %d/255\n",
               p.gen.sampler, p.gen.schedule, p.gen.width, p.gen.height, p.gen.steps, p.strength, out.steps_run,
               p.gen.batch, json_str(c, "seeding"), d);
        assert_int_equal(out.steps_done, out.steps_run);
        if (d > MAX_DIFF) failures++;
        if (d > worst) worst = d;
        sd_image_out_free(&out);
        n++;
    }
    printf("  %d img2img cases, worst %d/255\n", n, worst);
    assert_int_equal(failures, 0);
    assert_true(n >= 26);
}

/* ---- progress, cancellation, errors ------------------------------------------------ */

static void test_progress_counts_the_steps_run(void **state)
{
    const char *samplers[] = {"Euler", "Heun", "DPM2 a"};
    for (int i = 0; i < 3; i++) {
        sd_img2img_params p = golden_job(NULL);
        p.gen.sampler = samplers[i];
        p.gen.steps = 6;
        p.strength = 0.5;
        small_progress log = {0};
        p.gen.progress = small_progress_step, p.gen.progress_ctx = &log;
        sd_image_out out;
        run_ok(&p, &out);
        assert_int_equal(out.steps_run, 3);
        assert_int_equal(log.calls, 3);
        assert_int_equal(log.total, 3);
        assert_true(out.t_image_encode > 0.0 && out.t_total >= out.t_image_encode);
        sd_image_out_free(&out);
    }
}

static void test_cancelled_before_encoding(void **state)
{
    sd_img2img_params p = golden_job(NULL);
    atomic_bool cancel = true;
    p.gen.cancel = &cancel;
    sd_image_out out;
    char err[256];
    assert_int_equal(sd_img2img(g.engine, &p, &out, err, sizeof err), SD_ECANCELLED);
    assert_null(out.rgb);
    assert_int_equal(out.steps_done, 0);
}

static void expect_invalid(const sd_img2img_params *p, const char *needle)
{
    sd_image_out out;
    char err[512] = "";
    sd_status st = sd_img2img(g.engine, p, &out, err, sizeof err);
    small_expect_invalid(st, err, &out, needle);
}

static void test_bad_inputs_are_clear_errors(void **state)
{
    sd_img2img_params p = golden_job(NULL);
    p.init_rgb = NULL;
    expect_invalid(&p, "init image");
    p = golden_job(NULL);
    p.init_width = 0;
    expect_invalid(&p, "1 to 16384 pixels per side (got 0x75)");
    p.init_width = 20000;
    expect_invalid(&p, "(got 20000x75)");
    const double bad[] = {-0.1, 1.5, NAN, INFINITY};
    for (int i = 0; i < 4; i++) {
        p = golden_job(NULL);
        p.strength = bad[i];
        expect_invalid(&p, "strength must be between 0 and 1");
    }
    p = golden_job(NULL);
    p.strength = 0.1; /* int(8 * 0.1) = 0 */
    expect_invalid(&p, "strength 0.1 with 8 steps leaves no step to run");
    p.strength = 0.0;
    expect_invalid(&p, "leaves no step to run");
    p = golden_job(NULL);
    p.gen.width = 36; /* the txt2img checks apply */
    expect_invalid(&p, "multiples of 8");
    /* the engine is still usable, and strength 0.125 of 8 steps runs one */
    p = golden_job(NULL);
    p.strength = 0.125;
    sd_image_out out;
    run_ok(&p, &out);
    assert_int_equal(out.steps_run, 1);
    sd_image_out_free(&out);
}

/* ---- seeds --------------------------------------------------------------------------- */

static void test_batch_image_i_is_seed_plus_i(void **state)
{
    sd_img2img_params p = golden_job(NULL);
    p.gen.sampler = "Euler a";
    p.gen.rng = SD_RNG_CUDA;
    p.gen.batch = 2;
    p.gen.seed = 5;
    sd_image_out batch;
    run_ok(&p, &batch);
    size_t n = 64 * 64 * 3;
    for (int i = 0; i < 2; i++) {
        sd_img2img_params one = p;
        one.gen.batch = 1, one.gen.seed = 5 + (uint64_t)i;
        sd_image_out single;
        run_ok(&one, &single);
        int d = u8_max_abs_diff(batch.rgb + i * n, single.rgb, n, NULL);
        printf("  img2img batch image %d vs seed %d alone: max |diff| %d\n", i, 5 + i, d);
        assert_true(d <= 1);
        sd_image_out_free(&single);
    }
    assert_true(u8_max_abs_diff(batch.rgb, batch.rgb + n, n, NULL) > 8);
    sd_image_out_free(&batch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resize_equals_pil),
        cmocka_unit_test(test_cover_size_and_window_rules),
        cmocka_unit_test(test_strength_begin),
        cmocka_unit_test(test_add_noise_forms),
        cmocka_unit_test(test_matches_diffusers_img2img),
        cmocka_unit_test(test_progress_counts_the_steps_run),
        cmocka_unit_test(test_cancelled_before_encoding),
        cmocka_unit_test(test_bad_inputs_are_clear_errors),
        cmocka_unit_test(test_batch_image_i_is_seed_plus_i),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
