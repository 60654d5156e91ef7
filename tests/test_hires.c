/* Hires fix (sd/hires.h) on the small model, against
 * tests/data/small/goldens_hires.json (tools/reference/make_hires_goldens.py:
 * diffusers' txt2img, F.interpolate or PIL LANCZOS, then img2img):
 *   - every upscaler ("Latent", "Latent (nearest)", "Lanczos") within
 *     2/255 per channel, at scales 1.25, 1.5 and 2, with hr_steps 0 and
 *     given, batches with one generator and with per-image seeds;
 *   - progress counts both passes; upscaler names; the second pass's size;
 *   - errors: scale, hr_steps and strength out of range, no step left. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/hires.h"
#include "small_model.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;

static int setup(void **state) { return small_model_open(&g, "goldens_hires"); }

static int teardown(void **state)
{
    small_model_close(&g);
    return 0;
}

static sd_hires_params golden_job(const cJSON *c)
{
    sd_hires_params p;
    sd_hires_params_default(&p);
    golden_prompt_settings(g.doc, &p.gen);
    p.gen.width = p.gen.height = 64;
    p.gen.steps = 4;
    p.gen.sampler = "Euler";
    p.scale = 1.5;
    if (!c) return p;
    char err[256];
    assert_int_equal(sd_hires_upscaler_parse(json_str(c, "upscaler"), &p.upscaler, err, sizeof err), 0);
    p.gen.sampler = json_str(c, "sampler");
    p.gen.schedule = json_str(c, "schedule");
    p.gen.width = json_int(c, "width");
    p.gen.height = json_int(c, "height");
    p.gen.steps = json_int(c, "steps");
    p.gen.batch = json_int(c, "batch");
    p.gen.seeding = golden_seeding(c);
    p.scale = json_num(c, "hr_scale");
    p.hr_steps = json_int(c, "hr_steps");
    p.denoising_strength = json_num(c, "denoising_strength");
    return p;
}

static void test_matches_diffusers_composition(void **state)
{
    int n = 0, worst = 0, failures = 0, per_upscaler[SD_HIRES_COUNT] = {0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        sd_hires_params p = golden_job(c);
        sd_image_out out;
        char err[512] = "";
        sd_status st = sd_hires(g.engine, &p, &out, err, sizeof err);
        if (st) fail_msg("case %d: %s: %s", json_int(c, "id"), sd_status_name(st), err);
        assert_int_equal(out.width, json_int(c, "hr_width"));
        assert_int_equal(out.height, json_int(c, "hr_height"));
        size_t size = (size_t)out.width * out.height * 3;
        int d = 0;
        for (int i = 0; i < p.gen.batch; i++) {
            const cJSON *name = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "images"), i);
            int di = u8_max_abs_diff(out.rgb + i * size, small_model_golden_u8(&g, name->valuestring, size)->data,
                                     size, NULL);
            if (di > d) d = di;
        }
        printf("  %-16s %-8s %dx%d x%.2f -> %dx%d, %d+%d steps, strength %.2f, batch %d %-9s max |diff| %d/255\n",
               sd_hires_upscaler_label(p.upscaler), p.gen.sampler, p.gen.width, p.gen.height, p.scale, out.width,
               out.height, p.gen.steps, p.hr_steps, p.denoising_strength, p.gen.batch, json_str(c, "seeding"), d);
        assert_int_equal(out.steps_done, out.steps_run);
        if (d > MAX_DIFF) failures++;
        if (d > worst) worst = d;
        per_upscaler[p.upscaler]++;
        sd_image_out_free(&out);
        n++;
    }
    printf("  %d hires cases, worst %d/255\n", n, worst);
    assert_int_equal(failures, 0);
    for (int u = 0; u < SD_HIRES_COUNT; u++) assert_true(per_upscaler[u] >= 2);
}

static void test_progress_counts_both_passes(void **state)
{
    sd_hires_params p = golden_job(NULL);
    p.hr_steps = 6;
    p.denoising_strength = 0.5;
    small_progress log = {0};
    p.gen.progress = small_progress_step, p.gen.progress_ctx = &log;
    sd_image_out out;
    char err[256];
    assert_int_equal(sd_hires(g.engine, &p, &out, err, sizeof err), SD_OK);
    assert_int_equal(log.calls, 4 + 3);
    assert_int_equal(log.total, 7);
    assert_int_equal(out.steps_run, 7);
    assert_int_equal(out.width, 96);
    sd_image_out_free(&out);
}

static void test_names_and_sizes(void **state)
{
    sd_hires_upscaler u;
    char err[256];
    assert_int_equal(sd_hires_upscaler_parse("latent (NEAREST)", &u, err, sizeof err), 0);
    assert_int_equal(u, SD_HIRES_LATENT_NEAREST);
    assert_string_equal(sd_hires_upscaler_label(SD_HIRES_LANCZOS), "Lanczos");
    assert_int_equal(sd_hires_upscaler_parse("ESRGAN_4x", &u, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown hires upscaler \"ESRGAN_4x\"; valid upscalers: \"Latent\""));
    int w2, h2;
    sd_hires_size(832, 1216, 1.5, 8, &w2, &h2);
    assert_true(w2 == 1248 && h2 == 1824);
    sd_hires_size(1024, 1024, 1.3, 8, &w2, &h2); /* int(1331.2) = 1331 -> 1328 */
    assert_true(w2 == 1328 && h2 == 1328);
    assert_int_equal(sd_hires_steps_run(10, 0, 0.7), 7);
    assert_int_equal(sd_hires_steps_run(10, 4, 0.1), 0);
}

static void expect_invalid(const sd_hires_params *p, const char *needle)
{
    sd_image_out out;
    char err[512] = "";
    sd_status st = sd_hires(g.engine, p, &out, err, sizeof err);
    small_expect_invalid(st, err, &out, needle);
}

static void test_bad_inputs_are_clear_errors(void **state)
{
    sd_hires_params p = golden_job(NULL);
    p.scale = 2.5;
    expect_invalid(&p, "hr_scale must be between 1 and 2 (got 2.5)");
    p.scale = NAN;
    expect_invalid(&p, "hr_scale must be between 1 and 2");
    p = golden_job(NULL);
    p.hr_steps = -1;
    expect_invalid(&p, "hr_steps must be between 0 and 1000 (got -1)");
    p = golden_job(NULL);
    p.denoising_strength = 0;
    expect_invalid(&p, "denoising_strength must be greater than 0 and at most 1 (got 0)");
    p.denoising_strength = 0.1;
    expect_invalid(&p, "leaves no step to run");
    p = golden_job(NULL);
    p.upscaler = SD_HIRES_COUNT;
    expect_invalid(&p, "unknown hires upscaler");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_diffusers_composition),
        cmocka_unit_test(test_progress_counts_both_passes),
        cmocka_unit_test(test_names_and_sizes),
        cmocka_unit_test(test_bad_inputs_are_clear_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
