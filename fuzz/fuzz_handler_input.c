/* Fuzz target for the SDXL handler's input path (handler_input.c), the
 * code that every job's bytes go through before the engine: arbitrary bytes
 * are parsed as JSON (as the runtime parses job bodies) and validated and
 * resolved against a two-LoRA stack and two VAEs (one of each unavailable),
 * with and without a bucket. Byte 0 picks the options (bit 0: a bucket is
 * configured; bits 1-2: size multiple 8, 32 or 64); the rest is the job
 * input. Aborts when the outcome is inconsistent: a failure with code OK, an
 * empty message or an error result whose message is not valid UTF-8; a
 * success whose fields break the schema's limits (inpainting and hires-fix
 * fields included), or whose validated input holds a string cut at a NUL
 * (\u0000). No engine runs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "handler.h"
#include "image/utf8.h"
#include "runpod/log.h"
#include "runpod/take.h"

static const sdxl_lora_slot STACK[] = {
    {.name = "Detail Tweaker XL", .path = "/m/loras/detail_tweaker_xl.safetensors", .scale = 1.5, .available = true},
    {.name = "Gone", .path = "/m/loras/gone.safetensors", .scale = 1, .available = false, .why = "HTTP 404"},
};

static const sdxl_vae_slot VAES[] = {
    {.name = "SDXL VAE fp16 fix", .path = "/m/vae/sdxl_vae_fp16_fix.safetensors", .index = 1, .available = true},
    {.name = "Gone VAE", .path = "/m/vae/gone.safetensors", .available = false, .why = "HTTP 404"},
};

static bool valid_utf8(const char *s)
{
    size_t len = strlen(s), i = 0;
    uint32_t cp;
    while (i < len)
        if (utf8_next(s, len, &i, &cp)) return false;
    return true;
}

static void check_success(const sdxl_job *j, const sdxl_job_limits *lim)
{
    if (j->width < SDXL_MIN_SIDE || j->width > SDXL_MAX_SIDE || j->width % lim->size_multiple) abort();
    if (j->height < SDXL_MIN_SIDE || j->height > SDXL_MAX_SIDE || j->height % lim->size_multiple) abort();
    if ((long)j->width * j->height * j->num_images > lim->max_pixels) abort();
    if ((long)j->width * j->height * j->num_images * j->steps > SDXL_DEFAULT_MAX_PIXEL_STEPS) abort();
    if (j->steps < 1 || j->steps > SDXL_MAX_STEPS || j->num_images < 1 || j->num_images > SDXL_MAX_IMAGES) abort();
    if (!(j->cfg_scale >= 0 && j->cfg_scale <= 30)) abort();
    if (!j->prompt || !j->prompt[0] || !j->negative_prompt) abort();
    if (j->return_url && !lim->bucket) abort();
    for (size_t i = 0; i < j->n_loras; i++)
        if (j->loras[i].slot >= lim->n_stack || !lim->stack[j->loras[i].slot].available) abort();
    if (j->has_image && (!j->image.rgb || j->image.width < 1 || j->image.height < 1)) abort();
    if (j->mask && (!j->has_image || j->hires || j->mask_blur < 0 || j->mask_blur > SD_INPAINT_BLUR_MAX ||
                    j->inpaint_padding < 0 || j->inpaint_padding > SD_INPAINT_PADDING_MAX ||
                    !(j->strength > 0 && j->strength <= 1)))
        abort();
    if (j->hires) {
        int w2, h2;
        sd_hires_size(j->width, j->height, j->hr_scale, lim->size_multiple, &w2, &h2);
        if (j->has_image || !(j->hr_scale >= 1 && j->hr_scale <= 2) || j->hr_steps < 0 ||
            j->hr_steps > SDXL_MAX_STEPS || !(j->denoising_strength > 0 && j->denoising_strength <= 1) ||
            (unsigned)j->hr_upscaler >= SD_HIRES_COUNT || (long)w2 * h2 * j->num_images > lim->max_pixels ||
            sd_hires_steps_run(j->steps, j->hr_steps, j->denoising_strength) < 1)
            abort();
    }
    if (j->vae >= 0 && ((size_t)j->vae >= lim->n_vaes || !lim->vaes[j->vae].available ||
                        j->vae_index != lim->vaes[j->vae].index))
        abort();
    if (j->vae < 0 && j->vae_index != 0) abort();
}

static bool has_cut_string(const cJSON *v)
{
    for (; v; v = v->next)
        if ((v->type & (RP_JSON_CUT_VALUE | RP_JSON_CUT_KEY)) || has_cut_string(v->child)) return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    rp_log_set_level(RP_LOG_NOTSET);
    sdxl_job_limits lim = {.max_pixels = SDXL_DEFAULT_MAX_PIXELS, .bucket = data[0] & 1,
                           .size_multiple = 8 << ((data[0] >> 1) % 3), .stack = STACK, .n_stack = 2,
                           .vaes = VAES, .n_vaes = 2};
    cJSON *input = rp_json_parse_exact((const char *)data + 1, size - 1);
    sdxl_job job;
    sdxl_error err;
    if (sdxl_job_parse(input, &lim, &job, &err) == 0) {
        check_success(&job, &lim);
        if (has_cut_string(job.input)) abort(); /* a cut string in an overridden duplicate key is fine */
        sdxl_job_free(&job);
    } else {
        if (err.code == SDXL_OK || !err.message[0]) abort();
        cJSON *r = sdxl_error_result(&err);
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "error"));
        if (!msg || !valid_utf8(msg)) abort();
        cJSON_Delete(r);
    }
    cJSON_Delete(input);
    return 0;
}
