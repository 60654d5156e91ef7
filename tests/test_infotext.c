/* image/infotext against real A1111 infotexts (copied from the metadata of
 * public example images, quoted in tutorials, READMEs and other projects'
 * parser tests) and CPython goldens (tests/data/image_goldens.json:
 * json.dumps, repr(float), str.isspace, os.path.splitext), plus parser
 * round trips. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/infotext.h"
#include "image/utf8.h"
#include "sd/unicode.h"
#include "testutil.h"

static cJSON *goldens;

/* ---- real infotexts ---------------------------------------------------------- */

/* A1111 1.5.1, SDXL + LoRA, hires and ADetailer (a kohya SDXL training
 * tutorial's "used prompts"): multi-line prompt with an empty line. */
static const char R_SDXL_ADETAILER[] =
    "photo ohwx man dressage riding a saber-toothed tiger , sunny day, 35mm photograph,film,professional,4k,highly detailed\n"
    "\n"
    "<lora:12gb_settings-000007:1>\n"
    "Negative prompt: drawing,painting,crayon,sketch,graphite,impressionist,noisy,blurry,soft,deformed,ugly\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1935425320, Size: 1280x720, Model hash: 31e35c80fc, "
    "Model: sd_xl_base_1.0, Denoising strength: 0.5, ADetailer model: face_yolov8n.pt, ADetailer prompt: "
    "\"face photo of ohwx man <lora:12gb_settings-000007:1>\", ADetailer confidence: 0.3, ADetailer dilate/erode: 4, "
    "ADetailer mask blur: 4, ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer "
    "inpaint padding: 32, ADetailer version: 23.7.11, Hires upscale: 1.6, Hires upscaler: Latent, Lora hashes: "
    "\"12gb_settings-000007: f9b455fdd697\", Version: v1.5.1";

/* Same source: Dynamic Prompts appends Template lines after the parameters. */
static const char R_SDXL_TEMPLATE[] =
    "breathtaking closeshot photo of ohwx man riding a dinosaur <lora:24gb_settings-000007:1> . award-winning, "
    "professional, highly detailed\n"
    "Negative prompt: deformed, ugly, deformed, noisy, blurry, distorted, grainy\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 4007836056, Size: 1280x720, Model hash: 31e35c80fc, "
    "Model: sd_xl_base_1.0, Denoising strength: 0.5, ADetailer model: face_yolov8n.pt, ADetailer prompt: "
    "\"ohwx man <lora:24gb_settings-000007:1>\", ADetailer confidence: 0.3, ADetailer dilate/erode: 4, ADetailer "
    "mask blur: 4, ADetailer denoising strength: 0.4, ADetailer inpaint only masked: True, ADetailer inpaint "
    "padding: 32, ADetailer version: 23.7.11, Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "
    "\"24gb_settings-000007: f99b38a8f85d\", Version: v1.5.1\n"
    "Template: closeshot photo of ohwx man riding a dinosaur <lora:24gb_settings-000007:1>\n"
    "Negative Template: deformed";

/* A1111 1.5.1, SDXL base (a project README crediting its artwork). */
static const char R_SDXL_ROBOT[] =
    "a robot surfing on the sea, The Great Wave off Kanagawa, Katsushika Hokusai Art, Japanese Ukiyo-e, "
    "Woodblock print, App background\n"
    "Negative prompt: ugly, text, logo, monochrome, bad art\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 3837218968, Size: 1024x1024, Model hash: 31e35c80fc, "
    "Model: sd_xl_base_1.0, Clip skip: 2, Version: v1.5.1";

static const char NEG_LONG[] =
    "lowres,bad anatomy,bad hands,text,error,missing fingers,extra digit,fewer digits,cropped,worst quality,low "
    "quality,jpeg artifacts,signature,watermark,username,blurry,nsfw,painting,drawing,illustration,cartoon,anime,sketch";

/* A1111 1.10.1 SDXL JPEGs (another project's EXIF parser test resources). */
static const char R_SDXL_CAT[] =
    "cat portrait, \n"
    "Negative prompt: lowres,bad anatomy,bad hands,text,error,missing fingers,extra digit,fewer digits,cropped,"
    "worst quality,low quality,jpeg artifacts,signature,watermark,username,blurry,nsfw,painting,drawing,"
    "illustration,cartoon,anime,sketch\n"
    "Steps: 13, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4, Seed: 2535254266, Face restoration: "
    "CodeFormer, Size: 1216x832, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, FP8 weight: Enable for SDXL, "
    "Cache FP16 weight for LoRA: True, Version: v1.10.1";

static const char R_SDXL_REFINER[] =
    "She is dressed in blue.,dressed,drone shot,minimalist,desaturated\n"
    "Negative prompt: lowres,bad anatomy,bad hands,text,error,missing fingers,extra digit,fewer digits,cropped,"
    "worst quality,low quality,jpeg artifacts,signature,watermark,username,blurry,nsfw,painting,drawing,"
    "illustration,cartoon,anime,sketch,\n"
    "Steps: 24, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4.0, Seed: -353763303, Face restoration: "
    "CodeFormer, Size: 1216x832, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, RNG: NV, Refiner: "
    "sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.7, Version: v1.10.1";

static const char CN_NONE[] =
    "Module: none, Model: None, Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, "
    "Threshold B: 0.5, Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: False, Control Mode: Balanced";

/* A1111 1.9.3, SD1.5 + LoRA + three ControlNet units (a LoRA experiment log). */
static char R_LORA_CONTROLNET[2048];

/* A1111 1.10.1 SDXL, empty prompt (a LoRA author's notes): no prompt lines. */
static const char R_SDXL_NO_PROMPT[] =
    "Steps: 48, Sampler: DDIM CFG++, Schedule type: Automatic, CFG scale: 6, Seed: 3581144351, Size: 1024x1024, "
    "Model hash: a22204df31, Model: last, VAE hash: 235745af8d, VAE: sdxl-vae-fp16-fix.vae.safetensors, Clip skip: 2, "
    "SEG Active: True, SEG Blur Sigma: 11, SEG Start Step: 0, SEG End Step: 2048, PAG Active: True, PAG SANF: True, "
    "PAG Scale: 1, PAG Start Step: 0, PAG End Step: 2048, Version: v1.10.1";

/* A1111 1.9.4 SDXL + two LoRAs, with the Civitai extension's appended
 * Hashes (another image viewer's parser test). */
static const char R_SDXL_CIVITAI_HASHES[] =
    "back through time to get more rum, shipwrecked having no fun, but, heavy metal pirates we must be, so give all "
    "your beer and your rum to me!,  novuschroma38, eerie, intricate, clean, <lora:- SDXL - AI-Breaker_V3.5:.5>, "
    "<lora:CBS_novuschroma38 style:0.8>\n"
    "Negative prompt: 3d\n"
    "Steps: 15, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 3, Seed: 980493476, Size: 816x1232, "
    "Model hash: 36fab8f31a, Model: SDXL - T - haveallsdxl_v10, CFG Rescale phi: 0, Lora hashes: "
    "\"- SDXL - AI-Breaker_V3.5: 62064ee0c3ba, CBS_novuschroma38 style: 29179d2a6166\", VAE Decoder: TAESD, "
    "Version: v1.9.4, Hashes: {\"lora:- SDXL - AI-Breaker_V3.5\": \"458cc11561\", \"lora:CBS_novuschroma38 style\": "
    "\"a1c6e6cad2\", \"model\": \"36fab8f31a\"}";

/* A1111 1.9.3 img2img/inpaint parameter lines (an Italian SD guide). */
static const char R_INPAINT_QR[] =
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1535177732, Size: 512x512, "
    "Model hash: ec6a1ba636, Model: epicrealism_v10-inpainting, Denoising strength: 0.7, Conditional mask weight: 1, "
    "ControlNet 0: \"Module: invert (from white bg & black line), Model: control_v1p_sd15_qrcode_monster [a6e58995], "
    "Weight: 1.0, Resize Mode: Crop and Resize, Processor Res: 0, Threshold A: 0.5, Threshold B: 0.5, Guidance Start: "
    "0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced\", Hires upscale: 2, Hires steps: 25, "
    "Hires upscaler: R-ESRGAN 4x+, Version: v1.9.3";

static const char R_IMG2IMG_TILE[] =
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1186643098, Size: 512x512, "
    "Model hash: 4199bcdd14, Model: rev-animated-v1-2-2, Denoising strength: 1, ControlNet 0: \"Module: "
    "inpaint_global_harmonious, Model: control_v11f1e_sd15_tile [a371b31b], Weight: 1.0, Resize Mode: Crop and "
    "Resize, Processor Res: 0, Threshold A: 0.5, Threshold B: 0.5, Guidance Start: 0.45, Guidance End: 0.61, Pixel "
    "Perfect: True, Control Mode: Balanced\", ControlNet 1: \"Module: none, Model: control_v1p_sd15_brightness "
    "[5f6aa6ed], Weight: 0.35, Resize Mode: Crop and Resize, Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, "
    "Guidance Start: 0.0, Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced\", Version: v1.9.3";

static const char *REAL[] = {R_SDXL_ADETAILER, R_SDXL_TEMPLATE, R_SDXL_ROBOT, R_SDXL_CAT, R_SDXL_REFINER,
                             R_LORA_CONTROLNET, R_SDXL_NO_PROMPT, R_SDXL_CIVITAI_HASHES, R_INPAINT_QR, R_IMG2IMG_TILE};
#define N_REAL (sizeof REAL / sizeof REAL[0])

static void build_equals(const a1111_infotext *t, const char *want)
{
    char *got = infotext_build(t);
    assert_non_null(got);
    if (strcmp(got, want)) fail_msg("built:\n%s\nwanted:\n%s", got, want);
    free(got);
}

/* ---- the builder, from the settings of each real picture --------------------- */

static void test_builder_writes_the_real_sdxl_texts(void **state)
{
    a1111_infotext t;
    infotext_init(&t);
    t.prompt = "a robot surfing on the sea, The Great Wave off Kanagawa, Katsushika Hokusai Art, Japanese Ukiyo-e, "
               "Woodblock print, App background";
    t.negative_prompt = "ugly, text, logo, monochrome, bad art";
    t.steps = 20;
    t.sampler = "Euler a";
    t.cfg_scale = 7;
    t.seed = 3837218968;
    t.width = t.height = 1024;
    t.model_hash = "31e35c80fc";
    t.model = "sd_xl_base_1.0";
    t.clip_skip = 2;
    t.version = "v1.5.1";
    build_equals(&t, R_SDXL_ROBOT);

    infotext_init(&t);
    t.prompt = "cat portrait, ";
    t.negative_prompt = NEG_LONG;
    t.steps = 13;
    t.sampler = "DPM++ 2M";
    t.schedule_type = "Karras";
    t.cfg_scale = 4;
    t.seed = 2535254266;
    t.width = 1216;
    t.height = 832;
    t.model_hash = "31e35c80fc";
    t.model = "sd_xl_base_1.0";
    t.clip_skip = 1; /* A1111 writes Clip skip only above 1 */
    t.version = "v1.10.1";
    /* extras named like fixed keys land in their fixed place */
    infotext_param extra[] = {{"FP8 weight", "Enable for SDXL", false}, {"Cache FP16 weight for LoRA", "True", false},
                              {"Face restoration", "CodeFormer", false}};
    t.extra = extra;
    t.n_extra = 3;
    build_equals(&t, R_SDXL_CAT);
}

static void test_builder_writes_lora_hashes_and_appended_hashes(void **state)
{
    const char *aliases[] = {"- SDXL - AI-Breaker_V3.5", "CBS_novuschroma38 style"};
    const char *hashes[] = {"62064ee0c3ba", "29179d2a6166"};
    char *lora = infotext_lora_hashes(aliases, hashes, 2);
    a1111_infotext t;
    infotext_init(&t);
    t.prompt = "back through time to get more rum, shipwrecked having no fun, but, heavy metal pirates we must be, so "
               "give all your beer and your rum to me!,  novuschroma38, eerie, intricate, clean, <lora:- SDXL - "
               "AI-Breaker_V3.5:.5>, <lora:CBS_novuschroma38 style:0.8>";
    t.negative_prompt = "3d";
    t.steps = 15;
    t.sampler = "DPM++ SDE";
    t.schedule_type = "Karras";
    t.cfg_scale = 3.0;
    t.seed = 980493476;
    t.width = 816;
    t.height = 1232;
    t.model_hash = "36fab8f31a";
    t.model = "SDXL - T - haveallsdxl_v10";
    infotext_param extra[] = {{"CFG Rescale phi", "0", false}, {"Lora hashes", lora, false}, {"VAE Decoder", "TAESD", false}};
    t.extra = extra;
    t.n_extra = 3;
    t.version = "v1.9.4";
    infotext_param appended[] = {{"Hashes", "{\"lora:- SDXL - AI-Breaker_V3.5\": \"458cc11561\", \"lora:CBS_novuschroma38 "
                                            "style\": \"a1c6e6cad2\", \"model\": \"36fab8f31a\"}", true}};
    t.appended = appended;
    t.n_appended = 1;
    build_equals(&t, R_SDXL_CIVITAI_HASHES);
    free(lora);
}

/* "TI hashes": each encoder pass writes its embeddings before what the passes
 * before it wrote; SDXL has two encoders and encodes the negative first. */
static void test_ti_hashes_as_a1111_writes_them(void **state)
{
    const char *neg[] = {"EasyNegative", "bad,hands:v5"}, *neg_h[] = {"c74b4e810b03", "aa7651be154c"};
    const char *pos[] = {"style"}, *pos_h[] = {"0123456789ab"};
    const infotext_ti_pass n = {neg, neg_h, 2}, p = {pos, pos_h, 1}, none = {NULL, NULL, 0};
    char *text = infotext_ti_hashes((const infotext_ti_pass[]){n, n, p, p}, 4);
    assert_string_equal(text, "style: 0123456789ab, style: 0123456789ab, EasyNegative: c74b4e810b03, "
                              "badhandsv5: aa7651be154c, EasyNegative: c74b4e810b03, badhandsv5: aa7651be154c");
    free(text);
    text = infotext_ti_hashes((const infotext_ti_pass[]){none, none, p, p}, 4);
    assert_string_equal(text, "style: 0123456789ab, style: 0123456789ab");
    free(text);
    assert_null(infotext_ti_hashes((const infotext_ti_pass[]){none, none}, 2));
    /* in the parameters line it is quoted, after Lora hashes */
    a1111_infotext t;
    infotext_init(&t);
    t.prompt = "style, a cat";
    t.steps = 20;
    text = infotext_ti_hashes((const infotext_ti_pass[]){p, p}, 2);
    infotext_param extra[] = {{"Lora hashes", "x: 0123456789ab", false}, {"TI hashes", text, false}};
    t.extra = extra;
    t.n_extra = 2;
    char *built = infotext_build(&t);
    assert_string_equal(built, "style, a cat\nSteps: 20, Lora hashes: \"x: 0123456789ab\", "
                               "TI hashes: \"style: 0123456789ab, style: 0123456789ab\"");
    free(built);
    free(text);
}

static void test_builder_writes_controlnet_and_img2img_texts(void **state)
{
    const char *alias[] = {"207"}, *hash[] = {"fd0e0d7d115e"};
    char *lora = infotext_lora_hashes(alias, hash, 1);
    assert_string_equal(lora, "207: fd0e0d7d115e");
    a1111_infotext t;
    infotext_init(&t);
    t.prompt = "cpc explosion, <lora:207:1>";
    t.negative_prompt = "";
    t.steps = 20;
    t.sampler = "DPM++ 2M";
    t.schedule_type = "Karras";
    t.cfg_scale = 7;
    t.seed = 966911465;
    t.width = t.height = 512;
    t.model_hash = "15012c538f";
    t.model = "realisticVisionV51_v51VAE";
    t.clip_skip = 2;
    infotext_param extra[] = {{"ControlNet 0", CN_NONE, false}, {"ControlNet 1", CN_NONE, false},
                              {"ControlNet 2", CN_NONE, false}, {"Lora hashes", lora, false}};
    t.extra = extra;
    t.n_extra = 4;
    t.version = "v1.9.3";
    build_equals(&t, R_LORA_CONTROLNET);
    free(lora);

    infotext_init(&t);
    t.steps = 20;
    t.sampler = "DPM++ 2M";
    t.schedule_type = "Karras";
    t.cfg_scale = 7;
    t.seed = 1186643098;
    t.width = t.height = 512;
    t.model_hash = "4199bcdd14";
    t.model = "rev-animated-v1-2-2";
    t.denoising_strength = 1.0;
    infotext_param cn[] = {
        {"ControlNet 0", "Module: inpaint_global_harmonious, Model: control_v11f1e_sd15_tile [a371b31b], Weight: 1.0, "
                         "Resize Mode: Crop and Resize, Processor Res: 0, Threshold A: 0.5, Threshold B: 0.5, Guidance "
                         "Start: 0.45, Guidance End: 0.61, Pixel Perfect: True, Control Mode: Balanced", false},
        {"ControlNet 1", "Module: none, Model: control_v1p_sd15_brightness [5f6aa6ed], Weight: 0.35, Resize Mode: Crop "
                         "and Resize, Processor Res: 512, Threshold A: 0.5, Threshold B: 0.5, Guidance Start: 0.0, "
                         "Guidance End: 1.0, Pixel Perfect: True, Control Mode: Balanced", false}};
    t.extra = cn;
    t.n_extra = 2;
    t.version = "v1.9.3";
    build_equals(&t, R_IMG2IMG_TILE); /* empty prompt: the text starts at Steps */
}

/* ---- the parser: every real text rebuilds to itself --------------------------- */

static void test_every_real_text_parses_and_rebuilds_identically(void **state)
{
    for (size_t i = 0; i < N_REAL; i++) {
        a1111_infotext t;
        char err[256];
        if (infotext_parse(REAL[i], &t, err, sizeof err) != 0) fail_msg("text %zu: %s", i, err);
        build_equals(&t, REAL[i]);
        assert_true(t.steps > 0);
        assert_non_null(t.sampler);
        assert_false(isnan(t.cfg_scale) && t.n_extra == 0);
        infotext_free(&t);
    }
}

static void test_parser_fills_typed_fields(void **state)
{
    a1111_infotext t;
    char err[256];
    assert_int_equal(infotext_parse(R_SDXL_ADETAILER, &t, err, sizeof err), 0);
    assert_string_equal(t.prompt, "photo ohwx man dressage riding a saber-toothed tiger , sunny day, 35mm photograph,"
                                  "film,professional,4k,highly detailed\n\n<lora:12gb_settings-000007:1>");
    assert_string_equal(t.negative_prompt, "drawing,painting,crayon,sketch,graphite,impressionist,noisy,blurry,soft,deformed,ugly");
    assert_int_equal(t.steps, 20);
    assert_string_equal(t.sampler, "Euler a");
    assert_null(t.schedule_type);
    assert_true(t.cfg_scale == 7.0);
    assert_int_equal(t.seed, 1935425320);
    assert_int_equal(t.width, 1280);
    assert_int_equal(t.height, 720);
    assert_string_equal(t.model_hash, "31e35c80fc");
    assert_string_equal(t.model, "sd_xl_base_1.0");
    assert_true(t.denoising_strength == 0.5);
    assert_string_equal(t.version, "v1.5.1");
    assert_int_equal(t.n_extra, 12);
    assert_string_equal(t.extra[1].key, "ADetailer prompt");
    assert_string_equal(t.extra[1].value, "face photo of ohwx man <lora:12gb_settings-000007:1>"); /* JSON-decoded */
    assert_string_equal(t.extra[11].key, "Lora hashes");
    infotext_lora *l;
    size_t n;
    assert_int_equal(infotext_lora_hashes_parse(t.extra[11].value, &l, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(l[0].alias, "12gb_settings-000007");
    assert_string_equal(l[0].hash, "f9b455fdd697");
    infotext_loras_free(l, n);
    assert_null(t.trailing);
    infotext_free(&t);

    assert_int_equal(infotext_parse(R_SDXL_REFINER, &t, err, sizeof err), 0);
    assert_true(isnan(t.cfg_scale)); /* "4.0" is not how the builder writes 4: kept as written */
    assert_string_equal(t.extra[0].key, "CFG scale");
    assert_string_equal(t.extra[0].value, "4.0");
    assert_int_equal(t.seed, -353763303);
    assert_string_equal(t.rng, "NV");
    infotext_free(&t);

    assert_int_equal(infotext_parse(R_SDXL_TEMPLATE, &t, err, sizeof err), 0);
    assert_string_equal(t.trailing, "Template: closeshot photo of ohwx man riding a dinosaur "
                                    "<lora:24gb_settings-000007:1>\nNegative Template: deformed");
    infotext_free(&t);

    assert_int_equal(infotext_parse(R_SDXL_CIVITAI_HASHES, &t, err, sizeof err), 0);
    assert_int_equal(t.n_appended, 1);
    assert_string_equal(t.appended[0].key, "Hashes");
    assert_true(t.appended[0].verbatim);
    assert_int_equal(infotext_lora_hashes_parse(t.extra[1].value, &l, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(l[0].alias, "- SDXL - AI-Breaker_V3.5");
    assert_string_equal(l[1].alias, "CBS_novuschroma38 style");
    assert_string_equal(l[1].hash, "29179d2a6166");
    infotext_loras_free(l, n);
    infotext_free(&t);

    assert_int_equal(infotext_parse(R_SDXL_NO_PROMPT, &t, err, sizeof err), 0);
    assert_null(t.prompt);
    assert_null(t.negative_prompt);
    assert_int_equal(t.clip_skip, 2);
    assert_string_equal(t.vae, "sdxl-vae-fp16-fix.vae.safetensors");
    infotext_free(&t);
}

/* ---- what the worker writes: struct -> text -> struct ------------------------- */

static void assert_same_str(const char *a, const char *b)
{
    if (!a || !b) assert_true((!a || !*a) && (!b || !*b));
    else assert_string_equal(a, b);
}

static void assert_same(const a1111_infotext *a, const a1111_infotext *b)
{
    assert_same_str(a->prompt, b->prompt);
    assert_same_str(a->negative_prompt, b->negative_prompt);
    assert_int_equal(a->steps, b->steps);
    assert_same_str(a->sampler, b->sampler);
    assert_same_str(a->schedule_type, b->schedule_type);
    assert_true(a->cfg_scale == b->cfg_scale || (isnan(a->cfg_scale) && isnan(b->cfg_scale)));
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->width, b->width);
    assert_int_equal(a->height, b->height);
    assert_same_str(a->model_hash, b->model_hash);
    assert_same_str(a->model, b->model);
    assert_same_str(a->vae_hash, b->vae_hash);
    assert_same_str(a->vae, b->vae);
    assert_true(a->denoising_strength == b->denoising_strength ||
                (isnan(a->denoising_strength) && isnan(b->denoising_strength)));
    assert_int_equal(a->clip_skip > 1 ? a->clip_skip : 0, b->clip_skip > 1 ? b->clip_skip : 0);
    assert_same_str(a->rng, b->rng);
    assert_int_equal(a->n_extra, b->n_extra);
    for (size_t i = 0; i < a->n_extra; i++) {
        assert_string_equal(a->extra[i].key, b->extra[i].key);
        assert_string_equal(a->extra[i].value, b->extra[i].value);
    }
    assert_same_str(a->version, b->version);
}

static void round_trip(const a1111_infotext *x)
{
    char *text = infotext_build(x), err[256];
    a1111_infotext y;
    if (infotext_parse(text, &y, err, sizeof err) != 0) fail_msg("%s\n%s", err, text);
    assert_same(x, &y);
    char *again = infotext_build(&y);
    assert_string_equal(again, text);
    free(again);
    free(text);
    infotext_free(&y);
}

static void test_worker_settings_round_trip(void **state)
{
    const char *aliases[] = {"detail: slider", "style,x", "detail slider"};
    const char *hashes[] = {"0123456789ab", "ba9876543210", "ffffffffffff"};
    char *lora = infotext_lora_hashes(aliases, hashes, 3);
    /* ':' and ',' go from aliases; "detail slider" repeats the first alias:
     * it keeps the first place and takes the later hash (a Python dict). */
    assert_string_equal(lora, "detail slider: ffffffffffff, stylex: ba9876543210");
    infotext_param extra[] = {{"Lora hashes", lora, false}};
    a1111_infotext x;
    infotext_init(&x);
    x.prompt = "a cat, <lora:detail: slider:0.8> (masterpiece:1.2)\nsecond line, \"quoted\"";
    x.negative_prompt = "blurry, lowres";
    x.steps = 24;
    x.sampler = "DPM++ 2M";
    x.schedule_type = "Karras";
    x.cfg_scale = 4.5;
    x.seed = 797935397;
    x.width = 832;
    x.height = 1216;
    x.model_hash = "1a2b3c4d5e";
    x.model = "jibMixIllustrious_v20";
    x.clip_skip = 2;
    x.rng = "CPU";
    x.extra = extra;
    x.n_extra = 1;
    x.version = "sdxl-worker 0.1";
    char *text = infotext_build(&x);
    assert_string_equal(text,
        "a cat, <lora:detail: slider:0.8> (masterpiece:1.2)\nsecond line, \"quoted\"\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 24, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 4.5, Seed: 797935397, Size: 832x1216, "
        "Model hash: 1a2b3c4d5e, Model: jibMixIllustrious_v20, Clip skip: 2, RNG: CPU, Lora hashes: "
        "\"detail slider: ffffffffffff, stylex: ba9876543210\", Version: sdxl-worker 0.1");
    free(text);
    round_trip(&x);

    /* img2img, values that need quoting, non-ASCII, empty prompt */
    infotext_param odd[] = {{"Tiling", "Tiling", false}, {"Note", "line one\nline \"two\"\t\\", false},
                            {"Colon", "a: b", false}, {"Plain \"q\"", "x\"y", false},
                            {"Unicode", "\xe7\x8c\xab, \xf0\x9f\x90\xb1", false}};
    infotext_init(&x);
    x.negative_prompt = "\xe2\x80\x94 only a negative";
    x.steps = 1;
    x.sampler = "Euler";
    x.schedule_type = "Automatic";
    x.cfg_scale = 0.1 + 0.2;
    x.seed = 0;
    x.width = 256;
    x.height = 2048;
    x.model = "model, with: punctuation";
    x.denoising_strength = 0.35;
    x.extra = odd;
    x.n_extra = 5;
    text = infotext_build(&x);
    assert_string_equal(text,
        "Negative prompt: \xe2\x80\x94 only a negative\n"
        "Steps: 1, Sampler: Euler, Schedule type: Automatic, CFG scale: 0.30000000000000004, Seed: 0, Size: 256x2048, "
        "Model: \"model, with: punctuation\", Denoising strength: 0.35, Tiling, Note: \"line one\\nline \\\"two\\\"\\t\\\\\", "
        "Colon: \"a: b\", Plain \"q\": x\"y, Unicode: \"\xe7\x8c\xab, \xf0\x9f\x90\xb1\"");
    free(text);
    round_trip(&x);
    free(lora);
}

static void test_builder_strips_like_python(void **state)
{
    a1111_infotext x;
    infotext_init(&x);
    x.prompt = "\xe3\x80\x80 \t\xc2\xa0leading spaces go";
    x.steps = 2;
    x.version = "v\xe2\x80\x83"; /* ends with U+2003 EM SPACE */
    char *text = infotext_build(&x);
    assert_string_equal(text, "leading spaces go\nSteps: 2, Version: v");
    free(text);
    infotext_init(&x);
    x.prompt = "\xe2\x80\x8b zero width space is not whitespace";
    x.steps = 2;
    text = infotext_build(&x);
    assert_string_equal(text, "\xe2\x80\x8b zero width space is not whitespace\nSteps: 2");
    free(text);
}

static void test_parser_rejects_texts_without_parameters(void **state)
{
    const char *bad[] = {"", "just a prompt", "prompt\nSteps: 20, Sampler: Euler", "prompt\nNegative prompt: x",
                         "a\nSteps: 1, : no key, c: d"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        a1111_infotext t;
        char err[256] = "";
        assert_int_equal(infotext_parse(bad[i], &t, err, sizeof err), -1);
        assert_non_null(strstr(err, "not an A1111 infotext"));
        assert_null(t.owned);
    }
    infotext_lora *l;
    size_t n;
    assert_int_equal(infotext_lora_hashes_parse("a: 1, no colon", &l, &n), -1);
    assert_null(l);
    assert_null(infotext_lora_hashes(NULL, NULL, 0));
}

/* ---- CPython goldens --------------------------------------------------------- */

static void test_quote_is_json_dumps_without_ascii_escapes(void **state)
{
    const cJSON *e;
    int count = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "json_dumps")) {
        const char *s = cJSON_GetObjectItem(e, "s")->valuestring, *dumped = cJSON_GetObjectItem(e, "dumped")->valuestring;
        char *q = infotext_quote(s);
        if (strpbrk(s, ",:\n")) assert_string_equal(q, dumped);
        else assert_string_equal(q, s);
        free(q);
        /* and through the parser: a pair whose value needs every escape */
        if (*s && strpbrk(s, ",:\n")) {
            char text[512];
            snprintf(text, sizeof text, "Steps: 1, Sampler: a, Key: %s", dumped);
            a1111_infotext t;
            char err[128];
            assert_int_equal(infotext_parse(text, &t, err, sizeof err), 0);
            assert_string_equal(t.extra[0].value, s);
            infotext_free(&t);
        }
        count++;
    }
    assert_true(count >= 10);
}

static void test_numbers_are_python_repr(void **state)
{
    const cJSON *e;
    int count = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "float_repr")) {
        double v = strtod(cJSON_GetObjectItem(e, "hex")->valuestring, NULL);
        char buf[32];
        assert_string_equal(infotext_number(v, buf), cJSON_GetObjectItem(e, "repr")->valuestring);
        count++;
    }
    assert_true(count > 500);
    char buf[32];
    assert_string_equal(infotext_number(7.0, buf), "7"); /* the web UI sends integral numbers as ints */
    assert_string_equal(infotext_number(-3.0, buf), "-3");
    assert_string_equal(infotext_number(4.5, buf), "4.5");
}

static void test_isspace_is_python(void **state)
{
    const cJSON *list = cJSON_GetObjectItem(goldens, "isspace"), *e;
    bool want[0x3001] = {false};
    int n = 0;
    cJSON_ArrayForEach(e, list) {
        assert_true(e->valueint <= 0x3000);
        want[e->valueint] = true;
        n++;
    }
    assert_int_equal(n, 29);
    for (uint32_t c = 0; c < 0x110000; c++)
        if (uni_py_is_space(c) != (c <= 0x3000 && want[c])) fail_msg("U+%04X", c);
}

static void test_model_name_is_splitext_of_basename(void **state)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(goldens, "splitext_basename")) {
        char out[256];
        assert_string_equal(infotext_model_name(cJSON_GetObjectItem(e, "path")->valuestring, out, sizeof out),
                            cJSON_GetObjectItem(e, "root")->valuestring);
    }
}

static int setup(void **state)
{
    snprintf(R_LORA_CONTROLNET, sizeof R_LORA_CONTROLNET,
             "cpc explosion, <lora:207:1>\n"
             "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 966911465, Size: 512x512, "
             "Model hash: 15012c538f, Model: realisticVisionV51_v51VAE, Clip skip: 2, ControlNet 0: \"%s\", "
             "ControlNet 1: \"%s\", ControlNet 2: \"%s\", Lora hashes: \"207: fd0e0d7d115e\", Version: v1.9.3",
             CN_NONE, CN_NONE, CN_NONE);
    goldens = tu_read_json("tests/data/image_goldens.json");
    assert_non_null(goldens);
    return 0;
}

static int teardown(void **state)
{
    cJSON_Delete(goldens);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_writes_the_real_sdxl_texts),
        cmocka_unit_test(test_builder_writes_lora_hashes_and_appended_hashes),
        cmocka_unit_test(test_ti_hashes_as_a1111_writes_them),
        cmocka_unit_test(test_builder_writes_controlnet_and_img2img_texts),
        cmocka_unit_test(test_every_real_text_parses_and_rebuilds_identically),
        cmocka_unit_test(test_parser_fills_typed_fields),
        cmocka_unit_test(test_worker_settings_round_trip),
        cmocka_unit_test(test_builder_strips_like_python),
        cmocka_unit_test(test_parser_rejects_texts_without_parameters),
        cmocka_unit_test(test_quote_is_json_dumps_without_ascii_escapes),
        cmocka_unit_test(test_numbers_are_python_repr),
        cmocka_unit_test(test_isspace_is_python),
        cmocka_unit_test(test_model_name_is_splitext_of_basename),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
