/* Every supported sampler x schedule pair through the whole engine on the
 * small model (sd/engine.h), against diffusers' StableDiffusionXLPipeline
 * with the equivalent scheduler (tests/data/small/goldens_samplers.json, from
 * tools/reference/make_sampler_pipeline_goldens.py): 64x64, 6 steps, cfg 6,
 * one seed, rng cpu. Each image within 2/255 per channel; the matrix of
 * worst differences is printed. (DPM++ 2S a has no diffusers scheduler:
 * test_sampler_2s_a.c holds it to k-diffusion.)
 *   - stochastic samplers (Euler a, DPM2 a, DPM++ 2M SDE, DPM++ 3M SDE, LCM)
 *     draw their step noise from the pipeline's generator after the initial
 *     latents, in diffusers and here;
 *   - batch goldens: a list of generators seeded seed, seed+1 in diffusers is
 *     SD_BATCH_SEED_PER_IMAGE here (A1111's seeds), also with ancestral and
 *     SDE noise; one generator is SD_BATCH_ONE_GENERATOR;
 *   - seeds at the engine level: image i of a per-image batch equals a single
 *     run with seed+i for stochastic samplers, in both rng kinds, and rng
 *     cuda is the default. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "sd/engine.h"
#include "small_model.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;

static int setup(void **state) { return small_model_open(&g, "goldens_samplers"); }

static int teardown(void **state)
{
    small_model_close(&g);
    return 0;
}

static void run_ok(const sd_txt2img_params *p, sd_image_out *out) { small_model_txt2img_ok(&g, p, out); }

/* The goldens' common settings. */
static sd_txt2img_params golden_job(void)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    golden_prompt_settings(g.doc, &p);
    p.width = json_int(g.doc, "width");
    p.height = json_int(g.doc, "height");
    p.steps = json_int(g.doc, "steps");
    return p;
}

/* Worst difference over the case's images. */
static int run_case(const cJSON *c)
{
    sd_txt2img_params p = golden_job();
    p.sampler = json_str(c, "sampler");
    p.schedule = json_str(c, "schedule");
    p.batch = json_int(c, "batch");
    p.seeding = golden_seeding(c);
    sd_image_out out;
    run_ok(&p, &out);
    assert_string_equal(sd_schedule_label(out.choice.schedule), p.schedule);
    size_t n = (size_t)p.width * p.height * 3;
    int worst = 0;
    for (int i = 0; i < p.batch; i++) {
        const char *name = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "images"), i)->valuestring;
        int d = u8_max_abs_diff(out.rgb + i * n, small_model_golden_u8(&g, name, n)->data, n, NULL);
        if (d > worst) worst = d;
    }
    sd_image_out_free(&out);
    return worst;
}

#define N_SCHEDULES (SD_SCHEDULE_COUNT - 1) /* without Automatic */

static void test_every_pair_matches_diffusers(void **state)
{
    int matrix[SD_SAMPLER_COUNT][SD_SCHEDULE_COUNT];
    memset(matrix, -1, sizeof matrix);
    int n = 0, worst = 0, failures = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        if (json_int(c, "batch") != 1) continue;
        sd_sampler_choice choice;
        char err[256];
        assert_int_equal(sd_sampler_parse(json_str(c, "sampler"), json_str(c, "schedule"), &choice, err, sizeof err), 0);
        int d = run_case(c);
        matrix[choice.sampler][choice.schedule] = d;
        if (d > MAX_DIFF) {
            fprintf(stderr, "%s / %s: max diff %d/255\n", json_str(c, "sampler"), json_str(c, "schedule"), d);
            failures++;
        }
        if (d > worst) worst = d;
        n++;
    }
    printf("  max |diff| (/255) per sampler x schedule, '-' unsupported:\n  %-13s", "");
    for (int s = 1; s < SD_SCHEDULE_COUNT; s++) printf(" %-11s", sd_schedule_label(s));
    printf("\n");
    for (int id = 0; id < SD_SAMPLER_COUNT; id++) {
        if (!sd_sampler_diffusers_class(id)) continue; /* DPM++ 2S a: test_sampler_2s_a.c */
        printf("  %-13s", sd_sampler_label(id));
        for (int s = 1; s < SD_SCHEDULE_COUNT; s++) {
            /* every supported pair has a golden, and only those */
            assert_int_equal(matrix[id][s] >= 0, sd_sampler_supports(id, s));
            if (matrix[id][s] >= 0) printf(" %-11d", matrix[id][s]);
            else printf(" %-11s", "-");
        }
        printf("\n");
    }
    printf("  %d pairs, worst %d/255\n", n, worst);
    assert_int_equal(failures, 0);
    assert_true(n >= 80);
}

static void test_batches_match_diffusers_generators(void **state)
{
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        if (json_int(c, "batch") == 1) continue;
        int d = run_case(c);
        printf("  batch of %d, %s / %s, %s generator(s): max |diff| %d/255\n", json_int(c, "batch"),
               json_str(c, "sampler"), json_str(c, "schedule"), json_str(c, "seeding"), d);
        assert_true(d <= MAX_DIFF);
        n++;
    }
    assert_true(n >= 4);
}

/* ---- seeds ---------------------------------------------------------------------- */

static void test_rng_cuda_and_per_image_seeds_are_the_default(void **state)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    assert_int_equal(p.rng, SD_RNG_CUDA);
    assert_int_equal(p.seeding, SD_BATCH_SEED_PER_IMAGE);
}

/* A batch of 3 against single runs with seed+i: the initial latents and every
 * ancestral/SDE draw come from image i's own generator. */
static void check_batch_equals_single_runs(const char *sampler, const char *schedule, sd_rng_kind rng)
{
    sd_txt2img_params p = golden_job();
    p.steps = 4;
    p.sampler = sampler;
    p.schedule = schedule;
    p.rng = rng;
    p.batch = 3;
    p.seed = 1000;
    sd_image_out batch;
    run_ok(&p, &batch);
    size_t n = (size_t)p.width * p.height * 3;
    for (int i = 0; i < 3; i++) {
        assert_true(batch.seeds[i] == 1000 + (uint64_t)i);
        sd_txt2img_params one = p;
        one.batch = 1, one.seed = 1000 + (uint64_t)i;
        sd_image_out single;
        run_ok(&one, &single);
        int d = u8_max_abs_diff(batch.rgb + i * n, single.rgb, n, NULL);
        printf("  %s, rng %s: batch image %d vs seed %d alone: max |diff| %d\n", sampler,
               rng == SD_RNG_CPU ? "cpu" : "cuda", i, 1000 + i, d);
        assert_true(d <= 1); /* the same numbers through a UNet batch of 6 instead of 2 */
        if (i) assert_true(u8_max_abs_diff(batch.rgb + i * n, batch.rgb, n, NULL) > 32);
        sd_image_out_free(&single);
    }
    sd_image_out_free(&batch);
}

static void test_stochastic_batch_image_i_is_seed_plus_i(void **state)
{
    check_batch_equals_single_runs("Euler a", "Normal", SD_RNG_CUDA);
    check_batch_equals_single_runs("DPM++ 2M SDE", "Karras", SD_RNG_CPU);
    check_batch_equals_single_runs("DPM2 a", "Karras", SD_RNG_CUDA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_pair_matches_diffusers),
        cmocka_unit_test(test_batches_match_diffusers_generators),
        cmocka_unit_test(test_rng_cuda_and_per_image_seeds_are_the_default),
        cmocka_unit_test(test_stochastic_batch_image_i_is_seed_plus_i),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
