/* The result of a finished job (handler.h's shape): each image encoded as
 * PNG/JPEG/WebP with A1111's `parameters` infotext (image/infotext.h:
 * sampler + schedule type, Model hash AutoV2, Model, VAE hash and VAE of a
 * chosen VAE, Lora hashes AutoV3, TI hashes, Version), returned as base64 or uploaded to the bucket with a presigned
 * URL (s3/s3.h), plus the original worker's `image` and `metadata` and the
 * stage timings. Results over RunPod's payload limits are logged with a
 * pointer to return_type "url". With SDXL_OUTPUT_DIR set, every image is also
 * written there (local testing, `make demo`). */
#include "handler_impl.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/base64.h"
#include "image/infotext.h"
#include "models/download.h" /* SDXL_WORKER_VERSION */
#include "runpod/log.h"
#include "s3/sigv4.h"

#define RUN_LIMIT_BYTES (10UL * 1000 * 1000)     /* /run results (RunPod docs) */
#define RUNSYNC_LIMIT_BYTES (20UL * 1000 * 1000) /* /runsync results */

static int fail(sdxl_error *err, sdxl_code code, const char *fmt, const char *what)
{
    err->code = code;
    snprintf(err->message, sizeof err->message, fmt, what);
    return -1;
}

/* ---- infotext ------------------------------------------------------------------- */

/* "Lora hashes" of the LoRAs the job applied (malloc'd, NULL when none). */
static char *lora_hashes(const sdxl_result_in *in)
{
    const sdxl_job *j = in->job;
    const char **aliases = calloc(j->n_loras + 1, sizeof *aliases), **hashes = calloc(j->n_loras + 1, sizeof *hashes);
    size_t n = 0;
    for (size_t i = 0; aliases && hashes && i < j->n_loras; i++) {
        size_t slot = j->loras[i].slot;
        if (!in->w->lora_hash[slot][0]) continue;
        aliases[n] = in->w->stack[slot].name;
        hashes[n++] = in->w->lora_hash[slot];
    }
    char *text = n ? infotext_lora_hashes(aliases, hashes, n) : NULL;
    free(aliases);
    free(hashes);
    return text;
}

/* A1111's extra_generation_params of inpainting ("Mask blur" when
 * blurred, "Inpaint area" and "Masked area padding" for only masked) and of
 * hires fix ("Hires upscale", "Hires steps" when given, "Hires upscaler"),
 * in A1111's order; nums holds their numbers. Returns how many. */
static size_t edit_params(const sdxl_job *j, infotext_param *extra, char nums[3][32])
{
    size_t n = 0;
    if (j->mask && j->mask_blur > 0)
        extra[n++] = (infotext_param){.key = "Mask blur", .value = infotext_number(j->mask_blur, nums[0])};
    if (j->mask && j->inpaint_area == SD_INPAINT_MASKED) {
        extra[n++] = (infotext_param){.key = "Inpaint area", .value = "Only masked"};
        extra[n++] = (infotext_param){.key = "Masked area padding", .value = infotext_number(j->inpaint_padding, nums[1])};
    }
    if (j->hires) {
        extra[n++] = (infotext_param){.key = "Hires upscale", .value = infotext_number(j->hr_scale, nums[0])};
        if (j->hr_steps) extra[n++] = (infotext_param){.key = "Hires steps", .value = infotext_number(j->hr_steps, nums[1])};
        extra[n++] = (infotext_param){.key = "Hires upscaler", .value = sd_hires_upscaler_label(j->hr_upscaler)};
    }
    return n;
}

/* A1111's "VAE hash" and "VAE" (modules/sd_vae.py: AutoV2 and the file's
 * base name) of the VAE the job chose; NULL for the checkpoint's own. */
static void chosen_vae(const sdxl_result_in *in, a1111_infotext *t)
{
    if (in->job->vae < 0) return;
    const char *path = in->w->vaes[in->job->vae].path, *base = strrchr(path, '/');
    t->vae = base ? base + 1 : path;
    t->vae_hash = in->w->vae_hash[in->job->vae][0] ? in->w->vae_hash[in->job->vae] : NULL;
}

static char *infotext_of(const sdxl_result_in *in, int i, const char *lora_text)
{
    const sdxl_job *j = in->job;
    char *ti_text = in->ti ? sdxl_ti_hashes(in->w, in->ti) : NULL;
    a1111_infotext t;
    infotext_init(&t);
    char model[256], phi[32], nums[3][32];
    infotext_param extra[6];
    size_t n_extra = edit_params(j, extra, nums);
    if (lora_text) extra[n_extra++] = (infotext_param){.key = "Lora hashes", .value = lora_text};
    if (ti_text) extra[n_extra++] = (infotext_param){.key = "TI hashes", .value = ti_text};
    if (j->guidance_rescale > 0)
        extra[n_extra++] = (infotext_param){.key = "CFG Rescale phi", .value = infotext_number(j->guidance_rescale, phi)};
    t.prompt = j->prompt;
    t.negative_prompt = j->negative_prompt;
    t.steps = j->steps;
    t.sampler = sd_sampler_label(in->out->choice.sampler);
    t.schedule_type = sd_schedule_label(in->out->choice.schedule);
    t.cfg_scale = j->cfg_scale;
    t.seed = (int64_t)in->out->seeds[i];
    t.width = j->width; /* A1111: the size the model ran at (a hires fix's first pass) */
    t.height = j->height;
    t.model_hash = in->w->model_hash[0] ? in->w->model_hash : NULL;
    t.model = infotext_model_name(in->w->paths.checkpoint.path, model, sizeof model);
    chosen_vae(in, &t);
    t.denoising_strength = j->has_image ? j->strength : j->hires ? j->denoising_strength : NAN;
    t.clip_skip = j->clip_skip;
    t.rng = j->rng == SD_RNG_CPU ? "CPU" : NULL;
    t.extra = extra;
    t.n_extra = n_extra;
    t.version = "sdxl-worker " SDXL_WORKER_VERSION;
    char *text = infotext_build(&t);
    free(ti_text);
    return text;
}

/* ---- one image ------------------------------------------------------------------ */

static int encode_image(const sdxl_result_in *in, int i, const char *lora_text, img_buf *out, sdxl_error *err)
{
    const sd_image_out *o = in->out;
    char *params = infotext_of(in, i, lora_text);
    if (!params) return fail(err, SDXL_OUT_OF_MEMORY, "%s", "out of memory while writing the infotext");
    img_encode_opts opts;
    img_encode_opts_default(&opts, in->job->format);
    opts.quality = in->job->quality;
    opts.parameters = params;
    size_t stride = (size_t)o->width * 3;
    char why[512];
    int rc = img_encode(o->rgb + (size_t)i * stride * o->height, o->width, o->height, stride, &opts, out, why,
                        sizeof why);
    free(params);
    return rc ? fail(err, SDXL_INTERNAL, "image encoding failed: %s", why) : 0;
}

/* SDXL_OUTPUT_DIR/<job id>_<i>.<ext>; a failure is only logged. */
static void save_local_copy(const sdxl_result_in *in, int i, const img_buf *b)
{
    if (!in->w->output_dir[0]) return;
    char path[1400];
    snprintf(path, sizeof path, "%s/%s_%d.%s", in->w->output_dir, in->job_id, i, img_format_name(in->job->format));
    for (char *p = path + strlen(in->w->output_dir) + 1; *p; p++)
        if (*p == '/') *p = '_'; /* a job id never makes a folder */
    FILE *f = fopen(path, "wb");
    int ok = f && fwrite(b->data, 1, b->len, f) == b->len;
    if (f && fclose(f)) ok = 0;
    if (ok) rp_log(RP_LOG_INFO, in->job_id, "wrote %s", path);
    else rp_log(RP_LOG_WARN, in->job_id, "could not write %s: %s", path, strerror(errno));
}

/* Uploads one image; its presigned URL (malloc'd) or NULL with err. */
static char *upload_image(const sdxl_result_in *in, const img_buf *b, sdxl_error *err)
{
    const s3_bucket *bk = &in->w->bucket;
    const char *ext = img_format_name(in->job->format);
    char bucket[8], key[1200], why[1024];
    time_t now = time(NULL);
    s3_runpod_names(in->job_id, ext, now, bucket, key, sizeof key);
    if (s3_put_object(bk, bucket, key, b->data, b->len, img_format_mime(in->job->format), why, sizeof why)) {
        fail(err, SDXL_UPLOAD_FAILED, "%s", why);
        return NULL;
    }
    char *url = s3_presign_get(bk, bucket, key, now, SIGV4_MAX_EXPIRES, why, sizeof why);
    if (!url) fail(err, SDXL_UPLOAD_FAILED, "%s", why);
    return url;
}

/* {"image" | "url", "seed", "format"}; *b64 gets the base64 when returned. */
static cJSON *image_entry(const sdxl_result_in *in, int i, const char *lora_text, char **b64, sdxl_error *err)
{
    img_buf b = {0};
    if (encode_image(in, i, lora_text, &b, err)) return NULL;
    save_local_copy(in, i, &b);
    char *url = NULL;
    if (in->job->return_url) url = upload_image(in, &b, err);
    else if (!(*b64 = b64_encode(b.data, b.len, NULL))) fail(err, SDXL_OUT_OF_MEMORY, "%s", "out of memory in base64");
    img_buf_free(&b);
    if (!url && !*b64) return NULL;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, url ? "url" : "image", url ? url : *b64);
    cJSON_AddNumberToObject(e, "seed", (double)in->out->seeds[i]);
    cJSON_AddStringToObject(e, "format", img_format_name(in->job->format));
    free(url);
    return e;
}

/* ---- metadata and timings -------------------------------------------------------- */

static cJSON *loras_json(const sdxl_result_in *in)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < in->job->n_loras; i++) {
        const sdxl_lora_use *u = &in->job->loras[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", in->w->stack[u->slot].name);
        cJSON_AddNumberToObject(o, "scale", u->scale);
        if (u->unet_scale != u->scale) cJSON_AddNumberToObject(o, "unet_scale", u->unet_scale);
        cJSON_AddNumberToObject(o, "tensors_applied", in->tensors_applied ? in->tensors_applied[i] : 0);
        const cJSON *unmatched = in->lora_unmatched ? cJSON_GetArrayItem(in->lora_unmatched, (int)i) : NULL;
        if (cJSON_GetArraySize(unmatched) > 0)
            cJSON_AddItemToObject(o, "unmatched_keys", cJSON_Duplicate(unmatched, 1));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

static cJSON *metadata_json(const sdxl_result_in *in)
{
    const sdxl_job *j = in->job;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "prompt", j->prompt);
    cJSON_AddStringToObject(m, "negative_prompt", j->negative_prompt);
    cJSON_AddNumberToObject(m, "steps", j->steps);
    cJSON_AddNumberToObject(m, "cfg_scale", j->cfg_scale);
    cJSON_AddStringToObject(m, "sampler", sd_sampler_label(in->out->choice.sampler));
    cJSON_AddStringToObject(m, "scheduler", sd_schedule_label(in->out->choice.schedule));
    cJSON_AddNumberToObject(m, "seed", (double)in->out->seeds[0]);
    cJSON_AddNumberToObject(m, "width", in->out->width);
    cJSON_AddNumberToObject(m, "height", in->out->height);
    cJSON_AddNumberToObject(m, "clip_skip", j->clip_skip ? j->clip_skip : 2);
    cJSON_AddStringToObject(m, "rng", j->rng == SD_RNG_CPU ? "cpu" : "cuda");
    if (j->guidance_rescale > 0) cJSON_AddNumberToObject(m, "guidance_rescale", j->guidance_rescale);
    if (j->has_image) cJSON_AddNumberToObject(m, "strength", j->strength);
    if (j->mask) {
        cJSON_AddNumberToObject(m, "mask_blur", j->mask_blur);
        cJSON_AddStringToObject(m, "inpaint_area", j->inpaint_area == SD_INPAINT_MASKED ? "masked" : "whole");
        if (j->inpaint_area == SD_INPAINT_MASKED) cJSON_AddNumberToObject(m, "inpaint_padding", j->inpaint_padding);
    }
    if (j->hires) {
        cJSON_AddNumberToObject(m, "hr_scale", j->hr_scale);
        cJSON_AddStringToObject(m, "hr_upscaler", sd_hires_upscaler_label(j->hr_upscaler));
        cJSON_AddNumberToObject(m, "hr_steps", j->hr_steps ? j->hr_steps : j->steps);
        cJSON_AddNumberToObject(m, "denoising_strength", j->denoising_strength);
    }
    cJSON_AddStringToObject(m, "model", in->w->model_name);
    cJSON_AddItemToObject(m, "loras", loras_json(in));
    if (j->vae >= 0) cJSON_AddStringToObject(m, "vae", in->w->vaes[j->vae].name);
    cJSON *embeddings = in->ti ? sdxl_ti_json(in->w, in->ti) : NULL;
    if (embeddings) cJSON_AddItemToObject(m, "embeddings", embeddings);
    cJSON_AddStringToObject(m, "device", in->out->device ? in->out->device : "cpu");
    cJSON_AddNumberToObject(m, "peak_memory_mb", round(in->out->peak_memory_bytes / 1048576.0 * 10) / 10);
    return m;
}

static double ms(double seconds) { return round(seconds * 1000) / 1000; }

static cJSON *timings_json(const sdxl_result_in *in)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "encode", ms(in->out->t_encode));
    cJSON_AddNumberToObject(t, "denoise", ms(in->out->t_denoise));
    cJSON_AddNumberToObject(t, "decode", ms(in->out->t_decode));
    cJSON_AddNumberToObject(t, "total", ms(sd_now_seconds() - in->t_start));
    return t;
}

bool sdxl_result_size_warning(size_t bytes, char *out, size_t n)
{
    if (bytes <= RUN_LIMIT_BYTES) return false;
    snprintf(out, n,
             "the result is %.1f MB, over RunPod's limit for %s results (10 MB for /run, 20 MB for /runsync); "
             "ask for return_type \"url\" (with a bucket configured), fewer images or jpeg/webp",
             bytes / 1e6, bytes > RUNSYNC_LIMIT_BYTES ? "/run and /runsync" : "/run");
    return true;
}

static void warn_if_large(const sdxl_result_in *in, const cJSON *result)
{
    char *text = cJSON_PrintUnformatted(result), msg[256];
    size_t len = text ? strlen(text) : 0;
    free(text);
    if (sdxl_result_size_warning(len, msg, sizeof msg)) rp_log(RP_LOG_WARN, in->job_id, "%s", msg);
}

cJSON *sdxl_result_build(const sdxl_result_in *in, sdxl_error *err)
{
    cJSON *result = cJSON_CreateObject(), *images = cJSON_CreateArray();
    char *lora_text = lora_hashes(in), *first = NULL;
    for (int i = 0; i < in->out->batch; i++) {
        char *b64 = NULL;
        cJSON *e = image_entry(in, i, lora_text, &b64, err);
        if (!e) {
            free(lora_text);
            free(first);
            cJSON_Delete(images);
            cJSON_Delete(result);
            return NULL;
        }
        if (i == 0) first = b64;
        else free(b64);
        cJSON_AddItemToArray(images, e);
    }
    free(lora_text);
    if (first) cJSON_AddStringToObject(result, "image", first);
    free(first);
    cJSON_AddItemToObject(result, "images", images);
    cJSON_AddItemToObject(result, "metadata", metadata_json(in));
    cJSON_AddItemToObject(result, "timings", timings_json(in));
    warn_if_large(in, result);
    return result;
}
