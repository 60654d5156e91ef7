/* Inpainting (sd/inpaint.h, image/mask.h) on the small model and its
 * 9-channel variant, against tests/data/small/goldens_inpaint.json
 * (tools/reference/make_inpaint_goldens.py):
 *   - A1111's mask blur equals cv2.GaussianBlur's bytes (sigma 1 to 64);
 *     "resize and fill" equals diffusers' _resize_and_fill (fill bands
 *     included); the overlay equals A1111's PIL paste and alpha_composite
 *     for the whole picture and for "only masked"; the crop regions equal
 *     diffusers' get_crop_region;
 *   - StableDiffusionXLInpaintPipeline's images within 2/255 per channel:
 *     a base UNet with every sampler (Euler and DPM++ 2M at strengths 0.6
 *     and 1), batches (one generator, per-image seeds), "only masked"
 *     (the pipeline's padding_mask_crop); the inpainting UNet at strengths
 *     0.6 and 1, a batch, "only masked"; the A1111 composition (blurred
 *     mask, A1111's overlay) for both UNet kinds and both areas;
 *   - errors: no mask, an all-black mask, blur and padding out of range; a
 *     txt2img job on the inpainting model. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "image/mask.h"
#include "image/resize.h"
#include "sd/inpaint.h"
#include "small_model.h"
#include "testutil.h"

#define MAX_DIFF 2 /* per channel, out of 255 */

static small_model g;
static sd_engine *engine9;
static img_rgb init_image;
static uint8_t *mask;
static char *tmp;

static int setup(void **state)
{
    img_rgb m = {0};
    char err[512], path[1024];
    if (small_model_open(&g, "goldens_inpaint") || small_model_read_image(SMALL "img2img_init.png", &init_image) ||
        small_model_read_image(SMALL "inpaint_mask.png", &m))
        return -1;
    mask = malloc((size_t)m.width * m.height);
    img_mask_from_rgb(m.rgb, m.width, m.height, mask);
    img_rgb_free(&m);
    tmp = tu_mkdtemp("inpaint");
    snprintf(path, sizeof path, "%s/sdxl_small_inpaint.safetensors", tmp);
    sd_engine_options opts = {.device.cpu.threads = 1};
    if (small_inpaint_model_write(path) || sd_engine_load(path, &opts, &engine9, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    small_model_close(&g);
    sd_engine_free(engine9);
    img_rgb_free(&init_image);
    free(mask);
    tu_rm_rf(tmp);
    free(tmp);
    return 0;
}

static const st_tensor *golden(const char *name, size_t numel) { return small_model_golden_u8(&g, name, numel); }

static void expect_bytes(const uint8_t *got, const char *name, size_t n)
{
    const uint8_t *want = golden(name, n)->data;
    size_t nd = 0;
    int d = u8_max_abs_diff(got, want, n, &nd);
    if (d) fail_msg("%s: %zu bytes differ (max %d)", name, nd, d);
}

/* ---- A1111's and diffusers' image operations ---------------------------------------- */

static void test_mask_blur_equals_opencv(void **state)
{
    size_t n = (size_t)init_image.width * init_image.height;
    uint8_t *m = malloc(n);
    int cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "blur")) {
        memcpy(m, mask, n);
        assert_int_equal(img_mask_blur(m, init_image.width, init_image.height, json_int(c, "sigma")), 0);
        expect_bytes(m, json_str(c, "image"), n);
        cases++;
    }
    memcpy(m, mask, n);
    assert_int_equal(img_mask_blur(m, init_image.width, init_image.height, 0), 0);
    assert_memory_equal(m, mask, n); /* blur 0: unchanged */
    free(m);
    printf("  %d blurs byte-identical to cv2.GaussianBlur\n", cases);
    assert_true(cases >= 6);
}

static void test_resize_fill_equals_diffusers(void **state)
{
    const st_tensor *src = st_find(g.goldens, "src.crop");
    assert_non_null(src);
    int sw = (int)src->shape[1], sh = (int)src->shape[0], cases = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "fill")) {
        int w = json_int(c, "width"), h = json_int(c, "height");
        uint8_t *out = malloc((size_t)w * h * 3);
        assert_int_equal(img_resize_fill(src->data, sw, sh, out, w, h), 0);
        expect_bytes(out, json_str(c, "image"), (size_t)w * h * 3);
        free(out);
        cases++;
    }
    assert_true(cases >= 4);
}

static void test_crop_regions_equal_diffusers(void **state)
{
    int w = init_image.width, h = init_image.height;
    uint8_t *m = malloc((size_t)w * h);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "crops")) {
        memcpy(m, mask, (size_t)w * h);
        assert_int_equal(img_mask_blur(m, w, h, json_int(c, "blur")), 0);
        int box[4];
        img_mask_crop_region(m, w, h, json_int(c, "padding"), json_int(c, "width"), json_int(c, "height"), box);
        const cJSON *want = cJSON_GetObjectItem(c, "crop");
        for (int i = 0; i < 4; i++) assert_int_equal(box[i], cJSON_GetArrayItem(want, i)->valueint);
    }
    free(m);
}

static void test_overlay_equals_a1111(void **state)
{
    const cJSON *o = cJSON_GetObjectItem(g.doc, "overlay");
    int w = json_int(o, "width"), h = json_int(o, "height"), iw = init_image.width, ih = init_image.height;
    const uint8_t *generated = golden(json_str(o, "generated"), (size_t)w * h * 3)->data;
    uint8_t *blurred = malloc((size_t)iw * ih), *resized = malloc((size_t)w * h * 3);
    uint8_t *small_mask = malloc((size_t)w * h), *out = malloc((size_t)iw * ih * 3);
    memcpy(blurred, mask, (size_t)iw * ih);
    assert_int_equal(img_mask_blur(blurred, iw, ih, json_int(o, "blur")), 0);
    /* the whole picture: the original and the mask resized, the mask doubled */
    assert_int_equal(img_resize_lanczos(init_image.rgb, iw, ih, resized, w, h), 0);
    assert_int_equal(img_mask_resize(img_resize_lanczos, blurred, iw, ih, small_mask, w, h), 0);
    for (int i = 0; i < w * h; i++) small_mask[i] = small_mask[i] >= 128 ? 255 : 2 * small_mask[i];
    assert_int_equal(img_overlay(generated, w, h, resized, small_mask, w, h, NULL, out), 0);
    expect_bytes(out, json_str(o, "whole"), (size_t)w * h * 3);
    /* only masked: into the crop region of the original */
    int box[4];
    img_mask_crop_region(blurred, iw, ih, json_int(o, "padding"), w, h, box);
    for (int i = 0; i < 4; i++) assert_int_equal(box[i], cJSON_GetArrayItem(cJSON_GetObjectItem(o, "crop"), i)->valueint);
    assert_int_equal(img_overlay(generated, w, h, init_image.rgb, blurred, iw, ih, box, out), 0);
    expect_bytes(out, json_str(o, "masked"), (size_t)iw * ih * 3);
    free(blurred);
    free(resized);
    free(small_mask);
    free(out);
}

/* ---- parity with the pipeline -------------------------------------------------------- */

static sd_inpaint_params golden_job(const cJSON *c)
{
    sd_inpaint_params p;
    sd_inpaint_params_default(&p);
    golden_prompt_settings(g.doc, &p.i2i.gen);
    p.i2i.init_rgb = init_image.rgb;
    p.i2i.init_width = init_image.width;
    p.i2i.init_height = init_image.height;
    p.mask = mask;
    p.i2i.gen.width = p.i2i.gen.height = 64;
    p.i2i.gen.steps = 8;
    p.i2i.gen.sampler = "Euler";
    if (!c) return p;
    p.i2i.gen.sampler = json_str(c, "sampler");
    p.i2i.gen.schedule = json_str(c, "schedule");
    p.i2i.gen.width = json_int(c, "width");
    p.i2i.gen.height = json_int(c, "height");
    p.i2i.gen.steps = json_int(c, "steps");
    p.i2i.gen.batch = json_int(c, "batch");
    p.i2i.gen.seeding = golden_seeding(c);
    p.i2i.strength = json_num(c, "strength");
    p.mask_blur = json_int(c, "mask_blur");
    p.area = strcmp(json_str(c, "area"), "masked") ? SD_INPAINT_WHOLE : SD_INPAINT_MASKED;
    p.padding = json_int(c, "padding");
    p.no_overlay = !cJSON_IsTrue(cJSON_GetObjectItem(c, "overlay"));
    return p;
}

static void test_matches_the_inpainting_pipeline(void **state)
{
    int n = 0, worst = 0, failures = 0, kinds[2] = {0, 0};
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(g.doc, "cases")) {
        sd_inpaint_params p = golden_job(c);
        int unet = json_int(c, "unet");
        sd_image_out out;
        char err[512] = "";
        sd_status st = sd_inpaint(unet == 9 ? engine9 : g.engine, &p, &out, err, sizeof err);
        if (st) fail_msg("case %d: %s: %s", json_int(c, "id"), sd_status_name(st), err);
        bool masked = p.area == SD_INPAINT_MASKED;
        assert_int_equal(out.width, masked ? init_image.width : p.i2i.gen.width);
        assert_int_equal(out.height, masked ? init_image.height : p.i2i.gen.height);
        size_t size = (size_t)out.width * out.height * 3;
        int d = 0;
        for (int i = 0; i < p.i2i.gen.batch; i++) {
            const cJSON *name = cJSON_GetArrayItem(cJSON_GetObjectItem(c, "images"), i);
            int di = u8_max_abs_diff(out.rgb + i * size, golden(name->valuestring, size)->data, size, NULL);
            if (di > d) d = di;
        }
        printf("  unet %d %-6s %-9s %-12s %3dx%-3d strength %.2f batch %d %-9s max |diff| %d/255\n", unet,
               json_str(c, "area"), json_str(c, "style"), p.i2i.gen.sampler, p.i2i.gen.width, p.i2i.gen.height,
               p.i2i.strength, p.i2i.gen.batch, json_str(c, "seeding"), d);
        if (d > MAX_DIFF) failures++;
        if (d > worst) worst = d;
        kinds[unet == 9]++;
        sd_image_out_free(&out);
        n++;
    }
    printf("  %d inpainting cases, worst %d/255\n", n, worst);
    assert_int_equal(failures, 0);
    assert_true(kinds[0] >= 15 && kinds[1] >= 5);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void expect_invalid(sd_engine *e, const sd_inpaint_params *p, const char *needle)
{
    sd_image_out out;
    char err[512] = "";
    sd_status st = sd_inpaint(e, p, &out, err, sizeof err);
    small_expect_invalid(st, err, &out, needle);
}

static void test_bad_inputs_are_clear_errors(void **state)
{
    sd_inpaint_params p = golden_job(NULL);
    p.mask = NULL;
    expect_invalid(g.engine, &p, "needs an image and a mask");
    uint8_t *black = calloc((size_t)init_image.width * init_image.height, 1);
    p = golden_job(NULL);
    p.mask = black;
    expect_invalid(g.engine, &p, "the mask is all black");
    free(black);
    p = golden_job(NULL);
    p.mask_blur = 65;
    expect_invalid(g.engine, &p, "mask_blur must be between 0 and 64 (got 65)");
    p = golden_job(NULL);
    p.padding = -1;
    expect_invalid(g.engine, &p, "inpaint_padding must be between 0 and 256 (got -1)");
    p = golden_job(NULL);
    p.i2i.strength = 0.05;
    expect_invalid(g.engine, &p, "leaves no step to run");
    /* an inpainting model runs inpainting only */
    sd_txt2img_params t;
    sd_txt2img_params_default(&t);
    golden_prompt_settings(g.doc, &t);
    t.width = t.height = 64;
    t.steps = 2;
    sd_image_out out;
    char err[512] = "";
    assert_int_equal(sd_txt2img(engine9, &t, &out, err, sizeof err), SD_EINVALID);
    assert_non_null(strstr(err, "inpainting model"));
    /* both engines still work */
    p = golden_job(NULL);
    p.i2i.gen.steps = 2;
    assert_int_equal(sd_inpaint(engine9, &p, &out, err, sizeof err), SD_OK);
    assert_int_equal(out.steps_run, 1); /* int(2 * 0.75) */
    sd_image_out_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_blur_equals_opencv),
        cmocka_unit_test(test_resize_fill_equals_diffusers),
        cmocka_unit_test(test_crop_regions_equal_diffusers),
        cmocka_unit_test(test_overlay_equals_a1111),
        cmocka_unit_test(test_matches_the_inpainting_pipeline),
        cmocka_unit_test(test_bad_inputs_are_clear_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
