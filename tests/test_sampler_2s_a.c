/* DPM++ 2S a (sd/samplers/dpmpp_2s_a.c), which diffusers lacks, against
 * k-diffusion's sample_dpmpp_2s_ancestral as A1111 runs it
 * (tests/data/small/goldens_dpmpp_2s_a.json, from
 * tools/reference/make_dpmpp_2s_a_goldens.py; the fake-model cases are in
 * test_samplers.c):
 *   - the whole engine on the small model, rng cpu, within 2/255 per
 *     channel: every schedule type (64x64, 6 steps, cfg 6), batches of 2
 *     with per-image generators and with one generator, and img2img at
 *     strengths 0.6 and 1.0;
 *   - the plan: two model evaluations per step but the last, the start at
 *     sigma_0 (A1111), timesteps from the sigmas the model sees;
 *   - img2img's begin and noise sigma, the number of noise draws, and
 *     progress in steps. */
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
#include "sd/engine.h"
#include "sd/schedule.h"
#include "small_model.h"
#include "testutil.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;
static img_rgb init_image;

static int load_init_image(void)
{
    char err[512];
    size_t len;
    const char *path = json_str(cJSON_GetObjectItem(g.doc, "img2img"), "init_image");
    char *png = tu_read_file(path, &len);
    img_limits lim;
    img_limits_default(&lim);
    int rc = !png || img_decode((const uint8_t *)png, len, &lim, &init_image, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", path, png ? err : "cannot read");
    free(png);
    return rc ? -1 : 0;
}

static int setup(void **state)
{
    return small_model_open(&g, "goldens_dpmpp_2s_a") || load_init_image() ? -1 : 0;
}

static int teardown(void **state)
{
    small_model_close(&g);
    img_rgb_free(&init_image);
    return 0;
}

/* Worst difference over the images of a case, out holding them. */
static int worst_diff(const cJSON *c, const sd_image_out *out, int width, int height)
{
    size_t n = (size_t)width * height * 3;
    int worst = 0;
    for (int i = 0; i < out->batch; i++) {
        const char *name = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "images"), i)->valuestring;
        int d = u8_max_abs_diff(out->rgb + i * n, small_model_golden_u8(&g, name, n)->data, n, NULL);
        if (d > worst) worst = d;
    }
    return worst;
}

/* ---- txt2img -------------------------------------------------------------------- */

static int run_txt2img_case(const cJSON *c)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    golden_prompt_settings(g.doc, &p);
    p.width = json_int(g.doc, "width");
    p.height = json_int(g.doc, "height");
    p.steps = json_int(g.doc, "steps");
    p.sampler = json_str(c, "sampler");
    p.schedule = json_str(c, "schedule");
    p.batch = json_int(c, "batch");
    p.seeding = golden_seeding(c);
    sd_image_out out;
    small_model_txt2img_ok(&g, &p, &out);
    assert_int_equal(out.choice.sampler, SD_SAMPLER_DPMPP_2S_A);
    assert_string_equal(sd_schedule_label(out.choice.schedule), p.schedule);
    assert_int_equal(out.steps_done, p.steps);
    int d = worst_diff(c, &out, p.width, p.height);
    printf("  %-12s batch %d %-9s max |diff| %d/255\n", p.schedule, p.batch, json_str(c, "seeding"), d);
    sd_image_out_free(&out);
    return d;
}

static void test_txt2img_matches_k_diffusion(void **state)
{
    int seen[SD_SCHEDULE_COUNT] = {0}, n = 0, batches = 0, worst = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        sd_sampler_choice choice;
        char err[256];
        assert_int_equal(sd_sampler_parse(json_str(c, "sampler"), json_str(c, "schedule"), &choice, err, sizeof err), 0);
        int d = run_txt2img_case(c);
        if (d > worst) worst = d;
        if (d > MAX_DIFF) fail_msg("%s: max diff %d/255", json_str(c, "schedule"), d);
        seen[choice.schedule] = 1;
        batches += json_int(c, "batch") > 1;
        n++;
    }
    for (int s = SD_SCHEDULE_LEADING; s < SD_SCHEDULE_COUNT; s++)
        if (!seen[s]) fail_msg("no golden for the %s schedule", sd_schedule_label(s));
    assert_true(batches >= 2);
    printf("  %d txt2img cases, worst %d/255\n", n, worst);
}

/* ---- img2img -------------------------------------------------------------------- */

static void test_img2img_matches_k_diffusion(void **state)
{
    const cJSON *i2i = cJSON_GetObjectItem(g.doc, "img2img"), *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(i2i, "cases")) {
        sd_img2img_params p;
        sd_img2img_params_default(&p);
        golden_prompt_settings(g.doc, &p.gen);
        p.gen.seed = strtoull(json_str(i2i, "seed"), NULL, 10);
        p.gen.sampler = json_str(c, "sampler");
        p.gen.schedule = json_str(c, "schedule");
        p.gen.width = json_int(c, "width");
        p.gen.height = json_int(c, "height");
        p.gen.steps = json_int(c, "steps");
        p.strength = json_num(c, "strength");
        p.init_rgb = init_image.rgb;
        p.init_width = init_image.width;
        p.init_height = init_image.height;
        sd_image_out out;
        char err[512] = "";
        sd_status st = sd_img2img(g.engine, &p, &out, err, sizeof err);
        if (st) fail_msg("sd_img2img: %s: %s", sd_status_name(st), err);
        assert_int_equal(out.steps_run, json_int(c, "steps_run"));
        assert_int_equal(out.steps_done, out.steps_run);
        int d = worst_diff(c, &out, p.gen.width, p.gen.height);
        printf("  img2img %-8s strength %.1f (%d of %d steps) max |diff| %d/255\n", p.gen.schedule, p.strength,
               out.steps_run, p.gen.steps, d);
        assert_true(d <= MAX_DIFF);
        sd_image_out_free(&out);
        n++;
    }
    assert_true(n >= 2);
}

/* Progress counts steps, not model evaluations (2 per step but the last). */
static void test_progress_counts_steps(void **state)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    golden_prompt_settings(g.doc, &p);
    p.width = p.height = 64;
    p.steps = 5;
    p.sampler = "DPM++ 2S a";
    small_progress log = {0};
    p.progress = small_progress_step, p.progress_ctx = &log;
    sd_image_out out;
    small_model_txt2img_ok(&g, &p, &out);
    assert_int_equal(out.choice.schedule, SD_SCHEDULE_KARRAS); /* Automatic */
    assert_int_equal(log.calls, 5);
    assert_int_equal(log.total, 5);
    assert_int_equal(out.steps_done, 5);
    sd_image_out_free(&out);
}

/* ---- the plan ------------------------------------------------------------------- */

static void plan(const char *schedule, int steps, sd_plan *p)
{
    sd_sampler_choice c;
    char err[256];
    assert_int_equal(sd_sampler_parse("DPM++ 2S a", schedule, &c, err, sizeof err), 0);
    assert_int_equal(sd_plan_make(&c, steps, p, err, sizeof err), 0);
}

/* Step i evaluates at sigma_i (evaluation 2i) and at the midpoint
 * exp(-(t + h/2)) = sqrt(sigma_i sigma_down) (2i + 1); with eta 1,
 * sigma_down = sigma_{i+1}^2 / sigma_i, so the midpoint is sigma_{i+1} up
 * to fp32 rounding. The last step (to 0) evaluates once. */
static void test_plan_evaluates_twice_per_step_but_the_last(void **state)
{
    static const struct {
        const char *schedule;
        int steps, sigmas;
    } cases[] = {{"Karras", 6, 7}, {"Normal", 1, 2}, {"Exponential", 20, 21}, {"Trailing", 61, 63}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sd_plan p;
        plan(cases[k].schedule, cases[k].steps, &p);
        int n = p.n_sigmas - 1;
        assert_int_equal(p.n_sigmas, cases[k].sigmas); /* numpy's arange: 62 trailing timesteps of 61 */
        assert_int_equal(p.n_evals, 2 * n - 1);
        assert_true(p.sigmas[n] == 0.0f);
        assert_true(p.init_noise_sigma == p.sigmas[0]); /* A1111: x = z * sigmas[0] */
        for (int i = 0; i < n; i++) {
            assert_float_equal(p.timesteps[2 * i], sd_sigma_to_t(p.sigmas[i]), 1e-4);
            if (i + 1 < n) assert_float_equal(p.timesteps[2 * i + 1], sd_sigma_to_t(p.sigmas[i + 1]), 1e-3);
        }
        sd_plan_free(&p);
    }
}

/* img2img: begin is the first evaluation of step steps - int(steps * strength),
 * and the noise is scaled by that step's sigma. */
static void test_img2img_begin_and_noise_sigma(void **state)
{
    sd_plan p;
    plan("Karras", 8, &p);
    int run = -1, begin = sd_plan_strength_begin(&p, 0.6, &run);
    assert_int_equal(run, 4);
    assert_int_equal(begin, 8);
    assert_int_equal(sd_plan_strength_begin(&p, 1.0, &run), 0);
    assert_int_equal(run, 8);
    float x0[2] = {0.5f, -1.0f}, z[2] = {1.0f, 2.0f}, x[2];
    sd_sampler_add_noise(&p, begin, x0, z, x, 2);
    assert_true(x[0] == x0[0] + z[0] * p.sigmas[4] && x[1] == x0[1] + z[1] * p.sigmas[4]);
    sd_plan_free(&p);
}

/* ---- noise draws ---------------------------------------------------------------- */

typedef struct {
    int evals, draws;
} counts;

static int count_eval(void *ctx, const float *x_in, float t, float *eps)
{
    ((counts *)ctx)->evals++;
    for (int i = 0; i < 8; i++) eps[i] = 0.1f * x_in[i];
    return 0;
}

static int count_draw(void *ctx, float *out, size_t n)
{
    ((counts *)ctx)->draws++;
    for (size_t i = 0; i < n; i++) out[i] = (float)i * 0.01f - 0.03f;
    return 0;
}

/* One draw per step but the last (k-diffusion draws only while
 * sigmas[i+1] > 0); from an img2img begin, one per remaining step but the last. */
static void test_one_draw_per_step_but_the_last(void **state)
{
    sd_plan p;
    plan("Karras", 6, &p);
    counts c = {0, 0};
    sd_sample_io io = {.n = 8, .eps = count_eval, .eps_ctx = &c, .noise = count_draw, .noise_ctx = &c};
    float x[8] = {0.3f, -0.2f, 1.0f, 0.0f, 0.5f, -1.5f, 0.25f, 0.75f};
    assert_int_equal(sd_sampler_run(&p, &io, x), 0);
    assert_int_equal(c.evals, 11);
    assert_int_equal(c.draws, 5);
    for (int i = 0; i < 8; i++) assert_true(isfinite(x[i]));
    c = (counts){0, 0};
    assert_int_equal(sd_sampler_run_from(&p, 6, &io, x), 0); /* steps 3, 4, 5 */
    assert_int_equal(c.evals, 5);
    assert_int_equal(c.draws, 2);
    io.noise = NULL;
    assert_int_equal(sd_sampler_run(&p, &io, x), SD_SAMPLE_ENONOISE);
    sd_plan_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt2img_matches_k_diffusion),
        cmocka_unit_test(test_img2img_matches_k_diffusion),
        cmocka_unit_test(test_progress_counts_steps),
        cmocka_unit_test(test_plan_evaluates_twice_per_step_but_the_last),
        cmocka_unit_test(test_img2img_begin_and_noise_sigma),
        cmocka_unit_test(test_one_draw_per_step_but_the_last),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
