/* The job input of the SDXL handler (handler.h): the schema of issue 8's
 * table declared with the runtime's validator (runpod/validate.h), then the
 * checks that span fields or need the worker: the cfg_scale/guidance_scale
 * alias, the pixel and pixel x step budgets, the engine's size multiple, the
 * prompt chunk cap (the prompts tokenized as the engine will), exact
 * per-image seeds,
 * sampler and schedule names (sd_sampler_parse), the LoRA request against
 * the configured stack, the VAE named against the configured VAEs, the
 * img2img image, the inpainting mask and the hires-fix fields (with the
 * second pass in the pixel budget). Nothing here runs the engine,
 * so the fuzz target fuzz/fuzz_handler_input.c drives all of it. */
#include "handler.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "image/base64.h"
#include "image/fetch.h"
#include "image/mask.h"
#include "image/utf8.h"
#include "runpod/log.h"
#include "runpod/validate.h"
#include "sd/engine.h" /* SD_IMG2IMG_STRENGTH_DEFAULT */
#include "sd/prompt.h"

#define MAX_EXACT_SEED 9007199254740991.0 /* 2^53 - 1: exact as a JSON number */
#define MAX_NAME_CHARS 200
#define MAX_LORAS 32

static int fail(sdxl_error *err, sdxl_code code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(sdxl_error *err, sdxl_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err->code = code;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- per-field constraints the declarative rules cannot say ------------------ */

static bool valid_utf8(const char *s)
{
    size_t len = strlen(s), i = 0;
    uint32_t cp;
    while (i < len)
        if (utf8_next(s, len, &i, &cp)) return false;
    return true;
}

static bool text_field(const char *key, bool nonempty, const cJSON *v, char *why, size_t n)
{
    if (nonempty && !v->valuestring[0]) {
        snprintf(why, n, "%s must not be empty.", key);
        return false;
    }
    if (!valid_utf8(v->valuestring)) {
        snprintf(why, n, "%s is not valid UTF-8 text.", key);
        return false;
    }
    return true;
}

/* Multiples of 8 in SDXL_MIN_SIDE..SDXL_MAX_SIDE (the engine's own multiple
 * is checked later, with the engine known). */
static bool side_field(const char *key, const cJSON *v, char *why, size_t n)
{
    double d = v->valuedouble;
    if (d >= SDXL_MIN_SIDE && d <= SDXL_MAX_SIDE && fmod(d, 8) == 0) return true;
    snprintf(why, n, "%s must be a multiple of 8 between %d and %d (got %.0f).", key, SDXL_MIN_SIDE,
             SDXL_MAX_SIDE, d);
    return false;
}

static bool check_prompt(const cJSON *v, char *why, size_t n) { return text_field("prompt", true, v, why, n); }
static bool check_negative(const cJSON *v, char *why, size_t n) { return text_field("negative_prompt", false, v, why, n); }
static bool check_width(const cJSON *v, char *why, size_t n) { return side_field("width", v, why, n); }
static bool check_height(const cJSON *v, char *why, size_t n) { return side_field("height", v, why, n); }

static bool check_strength(const cJSON *v, char *why, size_t n)
{
    if (v->valuedouble > 0 && v->valuedouble <= 1) return true;
    snprintf(why, n, "strength must be greater than 0 and at most 1 (got %g).", v->valuedouble);
    return false;
}

static bool check_denoising_strength(const cJSON *v, char *why, size_t n)
{
    if (v->valuedouble > 0 && v->valuedouble <= 1) return true;
    snprintf(why, n, "denoising_strength must be greater than 0 and at most 1 (got %g).", v->valuedouble);
    return false;
}

/* ---- the schema ----------------------------------------------------------------- */

static const char *const RNG_NAMES[] = {"cuda", "cpu", NULL};
static const char *const FORMAT_NAMES[] = {"png", "jpeg", "webp", NULL};
static const char *const RETURN_TYPES[] = {"base64", "url", NULL};
static const char *const INPAINT_AREAS[] = {"whole", "masked", NULL};

static const rp_v_rule SCHEMA[] = {
    {.key = "prompt", .type = RP_V_STRING, .required = true, .max_len = SDXL_MAX_PROMPT_CHARS,
     .check = check_prompt},
    {.key = "negative_prompt", .type = RP_V_STRING, .default_json = "\"\"", .nullable = true,
     .max_len = SDXL_MAX_PROMPT_CHARS, .check = check_negative},
    {.key = "width", .type = RP_V_INTEGER, .default_json = "1024", .check = check_width},
    {.key = "height", .type = RP_V_INTEGER, .default_json = "1024", .check = check_height},
    {.key = "steps", .type = RP_V_INTEGER, .default_json = "24", RP_V_RANGE(1, SDXL_MAX_STEPS)},
    {.key = "cfg_scale", .type = RP_V_NUMBER, .default_json = "null", RP_V_RANGE(0, 30)},
    {.key = "guidance_scale", .type = RP_V_NUMBER, .default_json = "null", RP_V_RANGE(0, 30)},
    {.key = "guidance_rescale", .type = RP_V_NUMBER, .default_json = "0", RP_V_RANGE(0, 1)},
    {.key = "seed", .type = RP_V_INTEGER, .default_json = "-1", .nullable = true, RP_V_RANGE(-1, MAX_EXACT_SEED)},
    {.key = "sampler", .type = RP_V_STRING, .default_json = "\"DPM++ 2M Karras\"", .max_len = 64},
    {.key = "scheduler", .type = RP_V_STRING, .default_json = "null", .max_len = 64},
    {.key = "clip_skip", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(1, 12)},
    {.key = "num_images", .type = RP_V_INTEGER, .default_json = "1", RP_V_RANGE(1, SDXL_MAX_IMAGES)},
    {.key = "rng", .type = RP_V_STRING, .default_json = "\"cuda\"", .one_of = RNG_NAMES, .one_of_nocase = true},
    {.key = "loras", .type = RP_V_ARRAY, .default_json = "null", .max_len = MAX_LORAS},
    {.key = "image", .type = RP_V_STRING, .default_json = "null"},
    {.key = "strength", .type = RP_V_NUMBER, .default_json = "null", .check = check_strength},
    {.key = "mask", .type = RP_V_STRING, .default_json = "null"},
    {.key = "mask_blur", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(0, SD_INPAINT_BLUR_MAX)},
    {.key = "inpaint_area", .type = RP_V_STRING, .default_json = "null", .one_of = INPAINT_AREAS,
     .one_of_nocase = true},
    {.key = "inpaint_padding", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(0, SD_INPAINT_PADDING_MAX)},
    {.key = "hr_scale", .type = RP_V_NUMBER, .default_json = "null", RP_V_RANGE(SD_HIRES_SCALE_MIN, SD_HIRES_SCALE_MAX)},
    {.key = "hr_upscaler", .type = RP_V_STRING, .default_json = "null", .max_len = 64},
    {.key = "hr_steps", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(0, SDXL_MAX_STEPS)},
    {.key = "denoising_strength", .type = RP_V_NUMBER, .default_json = "null", .check = check_denoising_strength},
    {.key = "output_format", .type = RP_V_STRING, .default_json = "\"png\"", .one_of = FORMAT_NAMES,
     .one_of_nocase = true},
    {.key = "quality", .type = RP_V_INTEGER, .default_json = "null", RP_V_RANGE(1, 100)},
    {.key = "return_type", .type = RP_V_STRING, .default_json = "\"base64\"", .one_of = RETURN_TYPES,
     .one_of_nocase = true},
    {.key = "vae", .type = RP_V_STRING, .default_json = "null", .nullable = true, .max_len = MAX_NAME_CHARS},
};

static const rp_v_rule LORA_ITEM[] = {
    {.key = "name", .type = RP_V_STRING, .required = true, .max_len = MAX_NAME_CHARS},
    {.key = "scale", .type = RP_V_NUMBER, .default_json = "null", RP_V_RANGE(-SDXL_MAX_LORA_SCALE, SDXL_MAX_LORA_SCALE)},
};

/* The validator's messages, joined with spaces ("prefix" before each). */
static int fail_with_errors(sdxl_error *err, const char *prefix, const cJSON *errors)
{
    err->code = SDXL_INVALID_INPUT;
    size_t len = 0, cap = sizeof err->message;
    err->message[0] = '\0';
    const cJSON *e;
    cJSON_ArrayForEach(e, errors) {
        if (!cJSON_IsString(e) || len + 1 >= cap) continue;
        int n = snprintf(err->message + len, cap - len, "%s%s%s", len ? " " : "", prefix, e->valuestring);
        len = n < 0 ? len : len + (size_t)n < cap ? len + (size_t)n : cap - 1;
    }
    if (!errors) snprintf(err->message, cap, "out of memory while validating the input");
    return -1;
}

/* ---- small accessors on the validated object ----------------------------------- */

static const cJSON *field(const sdxl_job *j, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(j->input, key);
}

static bool present(const sdxl_job *j, const char *key)
{
    const cJSON *v = field(j, key);
    return v && !cJSON_IsNull(v);
}

static const char *str_or(const sdxl_job *j, const char *key, const char *fallback)
{
    const cJSON *v = field(j, key);
    return cJSON_IsString(v) ? v->valuestring : fallback;
}

static double num_or(const sdxl_job *j, const char *key, double fallback)
{
    const cJSON *v = field(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : fallback;
}

/* ---- fields that need more than one key, or the worker ------------------------- */

/* cfg_scale, or its alias guidance_scale; both given must agree. */
static int resolve_cfg(sdxl_job *j, sdxl_error *err)
{
    bool cfg = present(j, "cfg_scale"), alias = present(j, "guidance_scale");
    double a = num_or(j, "cfg_scale", 4.5), b = num_or(j, "guidance_scale", 4.5);
    if (cfg && alias && a != b)
        return fail(err, SDXL_INVALID_INPUT,
                    "cfg_scale (%g) and its alias guidance_scale (%g) disagree; give one of them.", a, b);
    j->cfg_scale = cfg ? a : b;
    return 0;
}

/* A1111's random seed: randrange(4294967294). */
static uint64_t random_seed(void)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) r = (uint32_t)time(NULL) ^ (uint32_t)clock();
    return r % 4294967294u;
}

static int resolve_seed(sdxl_job *j, sdxl_error *err)
{
    double s = num_or(j, "seed", -1);
    j->seed_random = s == -1;
    j->seed = j->seed_random ? random_seed() : (uint64_t)s;
    if ((double)(j->seed + (uint64_t)(j->num_images - 1)) > MAX_EXACT_SEED)
        return fail(err, SDXL_INVALID_INPUT,
                    "seed must be at most %.0f with num_images %d, so that every image's seed (seed + i) is an "
                    "exact JSON number.", MAX_EXACT_SEED - (j->num_images - 1), j->num_images);
    return 0;
}

static int check_size(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    int m = lim->size_multiple > 8 ? lim->size_multiple : 8;
    const char *bad = j->width % m ? "width" : j->height % m ? "height" : NULL;
    if (bad)
        return fail(err, SDXL_INVALID_INPUT, "%s must be a multiple of %d for this model (got %d).", bad, m,
                    j->width % m ? j->width : j->height);
    long pixels = (long)j->width * j->height * j->num_images;
    if (pixels > lim->max_pixels)
        return fail(err, SDXL_INVALID_INPUT,
                    "width x height x num_images = %dx%dx%d = %ld pixels is over this worker's budget of %ld "
                    "pixels (SDXL_MAX_PIXELS); ask for fewer or smaller images.",
                    j->width, j->height, j->num_images, pixels, lim->max_pixels);
    long budget = lim->max_pixel_steps > 0 ? lim->max_pixel_steps : SDXL_DEFAULT_MAX_PIXEL_STEPS;
    if (pixels * j->steps > budget) /* at most 2048² x 4 x 150: no overflow */
        return fail(err, SDXL_INVALID_INPUT,
                    "width x height x num_images x steps = %dx%dx%dx%d = %ld pixel-steps is over this worker's "
                    "budget of %ld (SDXL_MAX_PIXEL_STEPS); ask for fewer steps, or fewer or smaller images.",
                    j->width, j->height, j->num_images, j->steps, pixels * j->steps, budget);
    return 0;
}

/* ---- the prompts' chunks ------------------------------------------------------- */

static sd_tokenizer *tokenizer;
static pthread_once_t tokenizer_once = PTHREAD_ONCE_INIT;
static void make_tokenizer(void) { tokenizer = sd_tokenizer_new(); } /* immutable, shared by all jobs */

/* The 75-token chunks the engine will encode for a text, read as it reads
 * them (sd/prompt.h: tags cut from the prompt only); 0 when the text cannot
 * be read (the engine then says why). */
static size_t chunks_of(const char *text, bool negative)
{
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.strip_extra_networks = !negative;
    sd_prompt p;
    char why[256];
    if (sd_prompt_prepare(tokenizer, text, strlen(text), &opts, &p, why, sizeof why)) return 0;
    size_t n = p.n_chunks;
    sd_prompt_free(&p);
    return n;
}

/* Every chunk is a text-encoder pass and 77 more context tokens in every
 * cross-attention of every step, so their number is capped. */
static int check_prompt_chunks(const sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    pthread_once(&tokenizer_once, make_tokenizer);
    if (!tokenizer) return fail(err, SDXL_OUT_OF_MEMORY, "out of memory for the tokenizer");
    long cap = lim->max_prompt_chunks > 0 ? lim->max_prompt_chunks : SDXL_DEFAULT_MAX_PROMPT_CHUNKS;
    size_t pos = chunks_of(j->prompt, false), neg = chunks_of(j->negative_prompt, true);
    if ((long)(pos + neg) <= cap) return 0;
    return fail(err, SDXL_INVALID_INPUT,
                "prompt and negative_prompt take %zu + %zu = %zu chunks of 75 tokens (each BREAK starts one), over "
                "this worker's limit of %ld chunks together (SDXL_MAX_PROMPT_CHUNKS); shorten them or use fewer "
                "BREAKs.", pos, neg, pos + neg, cap);
}

static int resolve_sampler(sdxl_job *j, sdxl_error *err)
{
    char why[1024];
    if (sd_sampler_parse(j->sampler, j->scheduler, &j->choice, why, sizeof why) == 0) return 0;
    return fail(err, SDXL_INVALID_INPUT, "sampler/scheduler: %s", why);
}

static int resolve_output(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    img_format_parse(str_or(j, "output_format", "png"), &j->format);
    j->quality = (int)num_or(j, "quality", IMG_DEFAULT_QUALITY);
    j->return_url = strcmp(str_or(j, "return_type", "base64"), "url") == 0;
    if (j->return_url && !lim->bucket)
        return fail(err, SDXL_INVALID_INPUT,
                    "return_type \"url\" needs a bucket, and this worker has none: set BUCKET_ENDPOINT_URL, "
                    "BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY on the endpoint, or use return_type "
                    "\"base64\".");
    return 0;
}

/* The bytes of the image field `key`: fetched when it is an http(s) URL
 * (public addresses only, size-capped, time-limited: image/fetch.h), else
 * decoded from base64 or a data URI. */
static int image_bytes(const char *key, const char *text, uint8_t **bytes, size_t *len, sdxl_error *err)
{
    char why[512];
    if (strncmp(text, "http://", 7) && strncmp(text, "https://", 8)) {
        if (b64_decode(text, strlen(text), SDXL_MAX_IMAGE_BYTES, bytes, len, why, sizeof why))
            return fail(err, SDXL_INVALID_INPUT, "%s is not valid base64: %s", key, why);
        return 0;
    }
    img_fetch_opts o;
    img_fetch_opts_default(&o);
    o.max_bytes = SDXL_MAX_IMAGE_BYTES;
    if (img_fetch(text, &o, bytes, len, why, sizeof why) != IMG_FETCH_OK)
        return fail(err, SDXL_INVALID_INPUT, "%s could not be fetched: %s", key, why);
    return 0;
}

/* The image field `key` (a PNG, JPEG or WebP file as base64, a data URI or
 * an http(s) URL), decoded. */
static int decode_image_field(const char *key, const char *text, img_rgb *out, sdxl_error *err)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    char why[512];
    if (image_bytes(key, text, &bytes, &len, err)) return -1;
    img_limits limits = {.max_pixels = (uint64_t)SDXL_MAX_SIDE * SDXL_MAX_SIDE, .max_side = 4 * SDXL_MAX_SIDE};
    int rc = img_decode(bytes, len, &limits, out, why, sizeof why);
    free(bytes);
    return rc ? fail(err, SDXL_INVALID_INPUT, "%s: %s", key, why) : 0;
}

/* img2img: `image`. */
static int resolve_image(sdxl_job *j, sdxl_error *err)
{
    const char *text = str_or(j, "image", NULL);
    if (!text) {
        if (present(j, "strength"))
            return fail(err, SDXL_INVALID_INPUT, "strength is for img2img and needs an image.");
        return 0;
    }
    if (decode_image_field("image", text, &j->image, err)) return -1;
    j->has_image = true;
    j->strength = num_or(j, "strength", SD_IMG2IMG_STRENGTH_DEFAULT);
    return 0;
}

/* The first of `keys` the job gives, or NULL. */
static const char *first_present(const sdxl_job *j, const char *const *keys)
{
    for (; *keys; keys++)
        if (present(j, *keys)) return *keys;
    return NULL;
}

/* Inpainting: `mask` (decoded as `image`, the image's size; its luminance
 * counts, white repaints) with `image`; strength defaults to A1111's 0.75. */
static int resolve_mask(sdxl_job *j, sdxl_error *err)
{
    static const char *const INPAINT_ONLY[] = {"mask_blur", "inpaint_area", "inpaint_padding", NULL};
    const char *text = str_or(j, "mask", NULL), *stray = first_present(j, INPAINT_ONLY);
    if (!text) return stray ? fail(err, SDXL_INVALID_INPUT, "%s is for inpainting and needs a mask.", stray) : 0;
    if (!j->has_image) return fail(err, SDXL_INVALID_INPUT, "mask needs an image (the picture to repaint).");
    img_rgb m = {0};
    if (decode_image_field("mask", text, &m, err)) return -1;
    if (m.width != j->image.width || m.height != j->image.height) {
        fail(err, SDXL_INVALID_INPUT, "mask must be the image's size (%dx%d); got %dx%d.", j->image.width,
             j->image.height, m.width, m.height);
        img_rgb_free(&m);
        return -1;
    }
    j->mask = malloc((size_t)m.width * m.height);
    if (j->mask) img_mask_from_rgb(m.rgb, m.width, m.height, j->mask);
    img_rgb_free(&m);
    if (!j->mask) return fail(err, SDXL_OUT_OF_MEMORY, "out of memory while reading the mask");
    if (!img_mask_any(j->mask, j->image.width, j->image.height))
        return fail(err, SDXL_INVALID_INPUT, "mask is all black: nothing to repaint (white marks the area to repaint).");
    j->strength = num_or(j, "strength", SD_INPAINT_STRENGTH_DEFAULT);
    j->mask_blur = (int)num_or(j, "mask_blur", SD_INPAINT_BLUR_DEFAULT);
    j->inpaint_area = !strcmp(str_or(j, "inpaint_area", "whole"), "masked") ? SD_INPAINT_MASKED : SD_INPAINT_WHOLE;
    j->inpaint_padding = (int)num_or(j, "inpaint_padding", SD_INPAINT_PADDING_DEFAULT);
    return 0;
}

/* Hires fix: hr_scale on a txt2img job; the second pass counts in the
 * pixel budget. */
static int resolve_hires(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    static const char *const HIRES_ONLY[] = {"hr_upscaler", "hr_steps", "denoising_strength", NULL};
    const char *stray = first_present(j, HIRES_ONLY);
    if (!present(j, "hr_scale"))
        return stray ? fail(err, SDXL_INVALID_INPUT, "%s is for hires fix and needs hr_scale%s.", stray,
                            strcmp(stray, "denoising_strength") ? "" : " (img2img and inpainting take strength)")
                     : 0;
    if (j->has_image)
        return fail(err, SDXL_INVALID_INPUT, "hr_scale (hires fix) is for txt2img; it cannot be used with image.");
    char why[256];
    if (sd_hires_upscaler_parse(str_or(j, "hr_upscaler", "Latent"), &j->hr_upscaler, why, sizeof why))
        return fail(err, SDXL_INVALID_INPUT, "hr_upscaler: %s.", why);
    j->hires = true;
    j->hr_scale = num_or(j, "hr_scale", 2.0);
    j->hr_steps = (int)num_or(j, "hr_steps", 0);
    j->denoising_strength = num_or(j, "denoising_strength", SD_HIRES_STRENGTH_DEFAULT);
    int m = lim->size_multiple > 8 ? lim->size_multiple : 8, w2, h2;
    sd_hires_size(j->width, j->height, j->hr_scale, m, &w2, &h2);
    long pixels = (long)w2 * h2 * j->num_images;
    if (pixels > lim->max_pixels)
        return fail(err, SDXL_INVALID_INPUT,
                    "hires fix: the second pass at %dx%d (hr_scale %g) x num_images %d = %ld pixels is over this "
                    "worker's budget of %ld pixels (SDXL_MAX_PIXELS); lower hr_scale, the size or num_images.",
                    w2, h2, j->hr_scale, j->num_images, pixels, lim->max_pixels);
    int steps2 = sd_hires_steps_run(j->steps, j->hr_steps, j->denoising_strength);
    if (steps2 < 1)
        return fail(err, SDXL_INVALID_INPUT,
                    "denoising_strength %g with %d hires steps leaves no step to run; raise denoising_strength or "
                    "hr_steps.", j->denoising_strength, j->hr_steps ? j->hr_steps : j->steps);
    long budget = lim->max_pixel_steps > 0 ? lim->max_pixel_steps : SDXL_DEFAULT_MAX_PIXEL_STEPS;
    long both = (long)j->width * j->height * j->num_images * j->steps + pixels * steps2;
    if (both > budget)
        return fail(err, SDXL_INVALID_INPUT,
                    "hires fix: both passes take %ld pixel-steps (%dx%dx%d x %d steps, then %dx%dx%d x %d), over "
                    "this worker's budget of %ld (SDXL_MAX_PIXEL_STEPS); ask for fewer steps or a smaller hr_scale.",
                    both, j->width, j->height, j->num_images, j->steps, w2, h2, j->num_images, steps2, budget);
    return 0;
}

/* ---- LoRAs --------------------------------------------------------------------- */

/* File name without folders and extension (A1111's alias of a LoRA file). */
static bool stem_equals(const char *path, const char *name)
{
    if (!path) return false;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return strlen(name) == n && strncmp(base, name, n) == 0;
}

/* The slot a job names: the config name, else the file's stem; exact and
 * case-sensitive, as A1111 looks LoRAs up (and sd_lora_find). -1 when none. */
static long find_slot(const sdxl_job_limits *lim, const char *name)
{
    for (size_t i = 0; i < lim->n_stack; i++)
        if (strcmp(lim->stack[i].name, name) == 0) return (long)i;
    for (size_t i = 0; i < lim->n_stack; i++)
        if (stem_equals(lim->stack[i].path, name)) return (long)i;
    return -1;
}

/* "'A', 'B', ..." of the configured names, or "none". */
static void configured_names(const sdxl_job_limits *lim, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    if (!lim->n_stack) snprintf(out, n, "none are configured");
    for (size_t i = 0; i < lim->n_stack && len + 8 < n; i++) {
        int w = snprintf(out + len, n - len, "%s'%s'", i ? ", " : "", lim->stack[i].name);
        len = w < 0 || len + (size_t)w >= n ? n - 1 : len + (size_t)w;
    }
}

static int unknown_lora(const sdxl_job_limits *lim, sdxl_error *err, const char *where, const char *name)
{
    char names[1024];
    configured_names(lim, names, sizeof names);
    return fail(err, SDXL_INVALID_INPUT, "%s names the LoRA '%.200s', which this worker does not have; LoRAs: %s.",
                where, name, names);
}

/* Adds or updates the use of a slot. */
static void use_lora(sdxl_job *j, size_t slot, double scale, double unet_scale)
{
    for (size_t i = 0; i < j->n_loras; i++)
        if (j->loras[i].slot == slot) {
            j->loras[i].scale = scale;
            j->loras[i].unet_scale = unet_scale;
            return;
        }
    j->loras[j->n_loras++] = (sdxl_lora_use){.slot = slot, .scale = scale, .unet_scale = unet_scale};
}

/* The `loras` field: a list of {name, scale} that replaces the stack. */
static int loras_from_field(sdxl_job *j, const cJSON *list, const sdxl_job_limits *lim, sdxl_error *err)
{
    int i = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, list) {
        char where[32];
        snprintf(where, sizeof where, "loras[%d]", i++);
        if (!cJSON_IsObject(item))
            return fail(err, SDXL_INVALID_INPUT, "%s must be an object {\"name\": ..., \"scale\": ...}.", where);
        cJSON *errors = NULL, *v = rp_validate(item, LORA_ITEM, RP_V_COUNT(LORA_ITEM), &errors);
        if (!v) {
            char prefix[40];
            snprintf(prefix, sizeof prefix, "%s: ", where);
            fail_with_errors(err, prefix, errors);
            cJSON_Delete(errors);
            return -1;
        }
        const char *name = cJSON_GetObjectItemCaseSensitive(v, "name")->valuestring;
        long slot = find_slot(lim, name);
        if (slot < 0) {
            unknown_lora(lim, err, where, name);
            cJSON_Delete(v);
            return -1;
        }
        for (size_t k = 0; k < j->n_loras; k++)
            if (j->loras[k].slot == (size_t)slot) {
                cJSON_Delete(v);
                return fail(err, SDXL_INVALID_INPUT, "%s: the LoRA '%s' is listed twice.", where,
                            lim->stack[slot].name);
            }
        const cJSON *scale = cJSON_GetObjectItemCaseSensitive(v, "scale");
        double s = cJSON_IsNumber(scale) ? scale->valuedouble : lim->stack[slot].scale;
        use_lora(j, (size_t)slot, s, s);
        cJSON_Delete(v);
    }
    return 0;
}

/* <lora:name:te[:unet]> tags in the prompt add LoRAs or set their scales
 * (A1111's extra networks); other kinds of tags are refused. */
static int loras_from_tags(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    char *stripped = NULL, why[512];
    size_t stripped_len = 0, n = 0;
    sd_extra_network *nets = NULL;
    if (sd_prompt_strip_extra_networks(j->prompt, strlen(j->prompt), &stripped, &stripped_len, &nets, &n, why,
                                       sizeof why))
        return fail(err, SDXL_INVALID_INPUT, "prompt: %s", why);
    free(stripped);
    int rc = n > MAX_LORAS ? fail(err, SDXL_INVALID_INPUT, "prompt: more than %d <lora:...> tags.", MAX_LORAS) : 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const sd_extra_network *t = &nets[i];
        if (strcmp(t->kind, "lora") && strcmp(t->kind, "lyco")) {
            rc = fail(err, SDXL_INVALID_INPUT,
                      "prompt: the tag %.200s is not supported; only <lora:name:scale> extra networks are.", t->raw);
            break;
        }
        long slot = find_slot(lim, t->name);
        if (slot < 0) {
            char where[256];
            snprintf(where, sizeof where, "the prompt's tag %.200s", t->raw);
            rc = unknown_lora(lim, err, where, t->name);
            break;
        }
        use_lora(j, (size_t)slot, t->te_multiplier, t->unet_multiplier);
    }
    sd_extra_networks_free(nets, n);
    return rc;
}

static int resolve_loras(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    j->loras = calloc(2 * MAX_LORAS + lim->n_stack, sizeof *j->loras); /* the list or the stack, plus tags */
    if (!j->loras) return fail(err, SDXL_OUT_OF_MEMORY, "out of memory while reading the LoRA list");
    const cJSON *list = field(j, "loras");
    if (cJSON_IsArray(list)) {
        if (loras_from_field(j, list, lim, err)) return -1;
    } else {
        for (size_t i = 0; i < lim->n_stack; i++) use_lora(j, i, lim->stack[i].scale, lim->stack[i].scale);
    }
    if (loras_from_tags(j, lim, err)) return -1;
    for (size_t i = 0; i < j->n_loras; i++) {
        const sdxl_lora_slot *s = &lim->stack[j->loras[i].slot];
        if (!s->available)
            return fail(err, SDXL_MODEL_UNAVAILABLE,
                        "the LoRA '%s' is not available on this worker (%s); send \"loras\" without it, or "
                        "fix the model store's problem and restart the worker.",
                        s->name, s->why ? s->why : "it failed at start-up");
    }
    return 0;
}

/* ---- the VAE --------------------------------------------------------------------- */

/* A configured VAE's file name (what the infotext's "VAE" shows, so that a
 * job copied from an image works) or file stem. */
static bool vae_file_named(const sdxl_vae_slot *v, const char *name)
{
    const char *base = v->path ? strrchr(v->path, '/') : NULL;
    base = base ? base + 1 : v->path;
    return base && (!strcmp(base, name) || stem_equals(v->path, name));
}

/* `vae`: one of the configured VAEs; absent or null: the checkpoint's own. */
static int resolve_vae(sdxl_job *j, const sdxl_job_limits *lim, sdxl_error *err)
{
    const char *name = str_or(j, "vae", NULL);
    j->vae = -1;
    if (!name) return 0;
    for (size_t i = 0; i < lim->n_vaes && j->vae < 0; i++) /* config names first, as LoRAs */
        if (!strcmp(lim->vaes[i].name, name)) j->vae = (long)i;
    for (size_t i = 0; i < lim->n_vaes && j->vae < 0; i++)
        if (vae_file_named(&lim->vaes[i], name)) j->vae = (long)i;
    if (j->vae < 0) {
        char names[1024];
        size_t len = 0;
        names[0] = '\0';
        for (size_t i = 0; i < lim->n_vaes && len + 8 < sizeof names; i++) {
            int w = snprintf(names + len, sizeof names - len, "%s'%s'", i ? ", " : "", lim->vaes[i].name);
            len = w < 0 || len + (size_t)w >= sizeof names ? sizeof names - 1 : len + (size_t)w;
        }
        return fail(err, SDXL_INVALID_INPUT,
                    "vae names the VAE '%.200s', which this worker does not have; VAEs: %s (leave vae out for the "
                    "checkpoint's own).", name, lim->n_vaes ? names : "none are configured");
    }
    const sdxl_vae_slot *v = &lim->vaes[j->vae];
    if (!v->available)
        return fail(err, SDXL_MODEL_UNAVAILABLE,
                    "the VAE '%s' is not available on this worker (%s); leave vae out for the checkpoint's own, or "
                    "fix the models config and restart the worker.", v->name, v->why ? v->why : "it failed at start-up");
    j->vae_index = v->index;
    return 0;
}

/* ---- the whole input ----------------------------------------------------------- */

static void read_plain_fields(sdxl_job *j)
{
    j->prompt = str_or(j, "prompt", "");
    j->negative_prompt = str_or(j, "negative_prompt", "");
    j->width = (int)num_or(j, "width", 1024);
    j->height = (int)num_or(j, "height", 1024);
    j->steps = (int)num_or(j, "steps", 24);
    j->num_images = (int)num_or(j, "num_images", 1);
    j->guidance_rescale = num_or(j, "guidance_rescale", 0);
    j->sampler = str_or(j, "sampler", "DPM++ 2M Karras");
    j->scheduler = str_or(j, "scheduler", NULL);
    j->clip_skip = (int)num_or(j, "clip_skip", 0);
    j->rng = strcmp(str_or(j, "rng", "cuda"), "cpu") == 0 ? SD_RNG_CPU : SD_RNG_CUDA;
}

int sdxl_job_parse(const cJSON *input, const sdxl_job_limits *lim, sdxl_job *job, sdxl_error *err)
{
    memset(job, 0, sizeof *job);
    err->code = SDXL_OK;
    err->message[0] = '\0';
    cJSON *errors = NULL;
    job->input = rp_validate(input, SCHEMA, RP_V_COUNT(SCHEMA), &errors);
    if (!job->input) {
        fail_with_errors(err, "", errors);
        cJSON_Delete(errors);
        return -1;
    }
    read_plain_fields(job);
    if (resolve_cfg(job, err) || check_size(job, lim, err) || resolve_seed(job, err) ||
        resolve_sampler(job, err) || resolve_output(job, lim, err) || resolve_loras(job, lim, err) ||
        check_prompt_chunks(job, lim, err) || resolve_vae(job, lim, err) || resolve_image(job, err) ||
        resolve_mask(job, err) || resolve_hires(job, lim, err)) {
        sdxl_job_free(job);
        return -1;
    }
    return 0;
}

void sdxl_job_free(sdxl_job *job)
{
    cJSON_Delete(job->input);
    free(job->loras);
    img_rgb_free(&job->image);
    free(job->mask);
    memset(job, 0, sizeof *job);
}

/* ---- limits from the environment ----------------------------------------------- */

static bool env_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v;
}

/* A whole number of at least `least` from the environment, else fallback
 * (with a warning when the variable is set but unusable). */
static long env_count(const char *name, long least, long fallback)
{
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!errno && !*end && n >= least) return n;
    rp_warn("%s=%s is not a whole number of at least %ld; using %ld.", name, v, least, fallback);
    return fallback;
}

void sdxl_job_limits_from_env(sdxl_job_limits *lim)
{
    memset(lim, 0, sizeof *lim);
    lim->size_multiple = 8;
    lim->max_pixels = env_count("SDXL_MAX_PIXELS", (long)SDXL_MIN_SIDE * SDXL_MIN_SIDE, SDXL_DEFAULT_MAX_PIXELS);
    lim->max_pixel_steps = env_count("SDXL_MAX_PIXEL_STEPS", (long)SDXL_MIN_SIDE * SDXL_MIN_SIDE,
                                     SDXL_DEFAULT_MAX_PIXEL_STEPS);
    lim->max_prompt_chunks = env_count("SDXL_MAX_PROMPT_CHUNKS", 2, SDXL_DEFAULT_MAX_PROMPT_CHUNKS);
    lim->bucket = env_set("BUCKET_ENDPOINT_URL") && env_set("BUCKET_ACCESS_KEY_ID") &&
                  env_set("BUCKET_SECRET_ACCESS_KEY");
}
