/* The demo model against diffusers (tests/data/demo/goldens.json,
 * tools/reference/make_demo_goldens.py): the engine draws
 *   - the demo job of demo_input.json (256x256, txt2img): the picture
 *     `make demo` writes and the README shows, as StableDiffusionXLPipeline
 *     draws it from the same file;
 *   - one img2img job on tests/data/demo/img2img_init.png, as
 *     StableDiffusionXLImg2ImgPipeline does;
 * within 2/255 per channel. The random small model proves the arithmetic on
 * every path; this proves it holds on weights that learnt something (larger,
 * structured activations). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "demo_model.h"
#include "json_assert.h"
#include "small_model.h"
#include "testutil.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static struct {
    sd_engine *engine;
    cJSON *doc;
} g;

static int setup(void **state)
{
    (void)state;
    g.engine = demo_engine_open();
    g.doc = tu_read_json(DEMO "goldens.json");
    return g.engine && g.doc ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sd_engine_free(g.engine);
    cJSON_Delete(g.doc);
    return 0;
}

/* The engine's picture against the golden PNG named in case c. */
static void assert_matches(const cJSON *c, const sd_image_out *out, const char *what)
{
    img_rgb want = {0};
    assert_int_equal(demo_picture(json_str(c, "image"), &want), 0);
    assert_int_equal(want.width, out->width);
    assert_int_equal(want.height, out->height);
    size_t n_diff;
    int worst = u8_max_abs_diff(out->rgb, want.rgb, (size_t)want.width * want.height * 3, &n_diff);
    printf("  %s %dx%d: max |diff| %d/255, %zu of %d bytes differ\n", what, want.width, want.height, worst, n_diff,
           want.width * want.height * 3);
    assert_true(worst <= MAX_DIFF);
    img_rgb_free(&want);
}

static void test_demo_job_equals_diffusers(void **state)
{
    (void)state;
    const cJSON *c = cJSON_GetObjectItem(g.doc, "txt2img");
    sd_txt2img_params p;
    demo_job(&p, json_str(c, "prompt"), json_int(c, "width"), (uint64_t)json_num(c, "seed"));
    assert_int_equal(json_int(c, "height"), p.height);
    p.negative_prompt = json_str_or_null(c, "negative_prompt");
    char err[512] = "";
    sd_image_out out;
    sd_status st = sd_txt2img(g.engine, &p, &out, err, sizeof err);
    if (st) fail_msg("%s: %s", sd_status_name(st), err);
    assert_matches(c, &out, "txt2img (the demo job)");
    sd_image_out_free(&out);
}

static void test_img2img_equals_diffusers(void **state)
{
    (void)state;
    const cJSON *c = cJSON_GetObjectItem(g.doc, "img2img");
    img_rgb init = {0};
    assert_int_equal(demo_picture(json_str(c, "init_image"), &init), 0);
    sd_img2img_params p;
    sd_img2img_params_default(&p);
    demo_job(&p.gen, json_str(c, "prompt"), json_int(c, "width"), (uint64_t)json_num(c, "seed"));
    p.gen.steps = json_int(c, "steps");
    p.init_rgb = init.rgb;
    p.init_width = init.width;
    p.init_height = init.height;
    p.strength = json_num(c, "strength");
    char err[512] = "";
    sd_image_out out;
    sd_status st = sd_img2img(g.engine, &p, &out, err, sizeof err);
    if (st) fail_msg("%s: %s", sd_status_name(st), err);
    assert_matches(c, &out, "img2img");
    sd_image_out_free(&out);
    img_rgb_free(&init);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demo_job_equals_diffusers),
        cmocka_unit_test(test_img2img_equals_diffusers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
