/* One SDXL job (handler.h): the worker must be ready (else
 * MODEL_UNAVAILABLE, with a new load attempt once SDXL_RETRY_MODELS_S have
 * passed), the input is validated (handler_input.c), the engine runs with a
 * progress update after every denoising step and the job's cancel flag (the
 * job-stop channel sets it; the engine polls it before every UNet call), and
 * the images become the result (handler_output.c). Every failure is a job
 * error {"error", "code"}; the engine and the worker stay up. */
#include "handler_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/utf8.h"
#include "runpod/job.h"
#include "runpod/log.h"

static const char *const CODE_NAMES[] = {
    [SDXL_OK] = "OK",
    [SDXL_INVALID_INPUT] = "INVALID_INPUT",
    [SDXL_MODEL_UNAVAILABLE] = "MODEL_UNAVAILABLE",
    [SDXL_LORA_MISMATCH] = "LORA_MISMATCH",
    [SDXL_OUT_OF_MEMORY] = "OUT_OF_MEMORY",
    [SDXL_CANCELLED] = "CANCELLED",
    [SDXL_UPLOAD_FAILED] = "UPLOAD_FAILED",
    [SDXL_INTERNAL] = "INTERNAL",
};

const char *sdxl_code_name(sdxl_code c)
{
    return c >= SDXL_OK && c <= SDXL_INTERNAL ? CODE_NAMES[c] : "INTERNAL";
}

/* Copies s into out (cap bytes) as valid UTF-8: each byte that does not
 * start a valid sequence becomes U+FFFD. */
static void utf8_sanitize(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s), i = 0, n = 0;
    while (i < len && n + 4 < cap) {
        size_t start = i;
        uint32_t cp;
        if (utf8_next(s, len, &i, &cp) == 0) {
            memcpy(out + n, s + start, i - start);
            n += i - start;
        } else {
            n += utf8_put(0xFFFD, out + n);
            i++;
        }
    }
    out[n] = '\0';
}

cJSON *sdxl_error_result(const sdxl_error *e)
{
    char msg[SDXL_ERROR_MAX * 2];
    utf8_sanitize(e->message[0] ? e->message : "unknown error", msg, sizeof msg);
    rp_log_redact(msg);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "error", msg);
    cJSON_AddStringToObject(r, "code", sdxl_code_name(e->code));
    return r;
}

static int fail(sdxl_error *err, sdxl_code code, const char *what, const char *why)
{
    err->code = code;
    snprintf(err->message, sizeof err->message, "%.100s%.1900s", what, why);
    return -1;
}

/* The engine loaded, or a fresh attempt when the last one is old enough. */
static int ensure_ready(sdxl_worker *w, sdxl_error *err)
{
    if (w->engine) return 0;
    if (time(NULL) - w->last_attempt >= SDXL_RETRY_MODELS_S) {
        rp_info("the models were unavailable; trying again");
        sdxl_worker_load(w);
        if (w->engine) return 0;
    }
    return fail(err, SDXL_MODEL_UNAVAILABLE, "", w->unavailable);
}

static sdxl_code code_of_status(sd_status st)
{
    switch (st) {
    case SD_EINVALID: return SDXL_INVALID_INPUT;
    case SD_ENOMEM: return SDXL_OUT_OF_MEMORY;
    case SD_ECANCELLED: return SDXL_CANCELLED;
    case SD_EMODEL: return SDXL_MODEL_UNAVAILABLE;
    default: return SDXL_INTERNAL;
    }
}

typedef struct {
    rp_job *job;
} progress_ctx;

/* {"step": 7, "steps": 24, "message": "step 7/24"} after every step. */
static int send_progress(void *ctx, int step, int total)
{
    progress_ctx *p = ctx;
    cJSON *o = cJSON_CreateObject();
    char msg[48];
    snprintf(msg, sizeof msg, "step %d/%d", step, total);
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddNumberToObject(o, "steps", total);
    cJSON_AddStringToObject(o, "message", msg);
    rp_job_progress(p->job, o);
    return 0;
}

static void fill_params(const sdxl_job *j, rp_job *job, progress_ctx *pc, sd_txt2img_params *p)
{
    sd_txt2img_params_default(p);
    p->prompt = j->prompt;
    p->negative_prompt = j->negative_prompt;
    p->width = j->width;
    p->height = j->height;
    p->steps = j->steps;
    p->cfg = (float)j->cfg_scale;
    p->guidance_rescale = (float)j->guidance_rescale;
    p->seed = j->seed;
    p->sampler = j->sampler;
    p->schedule = j->scheduler;
    p->rng = j->rng;
    p->clip_skip = j->clip_skip;
    p->batch = j->num_images;
    p->vae = j->vae_index;
    p->progress = send_progress;
    p->progress_ctx = pc;
    p->cancel = &job->cancelled;
}

/* Inpainting: the image, its mask and A1111's options. */
static sd_status inpaint(sdxl_worker *w, const sdxl_job *j, rp_job *job, progress_ctx *pc, sd_image_out *out,
                         char *why, size_t n)
{
    sd_inpaint_params p;
    sd_inpaint_params_default(&p);
    fill_params(j, job, pc, &p.i2i.gen);
    p.i2i.init_rgb = j->image.rgb;
    p.i2i.init_width = j->image.width;
    p.i2i.init_height = j->image.height;
    p.i2i.strength = j->strength;
    p.mask = j->mask;
    p.mask_blur = j->mask_blur;
    p.area = j->inpaint_area;
    p.padding = j->inpaint_padding;
    return sd_inpaint(w->engine, &p, out, why, n);
}

/* Hires fix: txt2img at the job's size, then the second pass. */
static sd_status hires(sdxl_worker *w, const sdxl_job *j, rp_job *job, progress_ctx *pc, sd_image_out *out,
                       char *why, size_t n)
{
    sd_hires_params p;
    sd_hires_params_default(&p);
    fill_params(j, job, pc, &p.gen);
    p.scale = j->hr_scale;
    p.upscaler = j->hr_upscaler;
    p.hr_steps = j->hr_steps;
    p.denoising_strength = j->denoising_strength;
    return sd_hires(w->engine, &p, out, why, n);
}

static sd_status generate(sdxl_worker *w, const sdxl_job *j, rp_job *job, sd_image_out *out, char *why,
                          size_t n)
{
    progress_ctx pc = {.job = job};
    if (j->mask) return inpaint(w, j, job, &pc, out, why, n);
    if (j->hires) return hires(w, j, job, &pc, out, why, n);
    if (!j->has_image) {
        sd_txt2img_params p;
        fill_params(j, job, &pc, &p);
        return sd_txt2img(w->engine, &p, out, why, n);
    }
    sd_img2img_params p;
    sd_img2img_params_default(&p);
    fill_params(j, job, &pc, &p.gen);
    p.init_rgb = j->image.rgb;
    p.init_width = j->image.width;
    p.init_height = j->image.height;
    p.strength = j->strength;
    return sd_img2img(w->engine, &p, out, why, n);
}

static sdxl_code code_of_lora_status(sd_lora_status st)
{
    switch (st) {
    case SD_LORA_EMISMATCH: return SDXL_LORA_MISMATCH;
    case SD_LORA_EFILE: return SDXL_MODEL_UNAVAILABLE;
    case SD_LORA_ENOMEM: return SDXL_OUT_OF_MEMORY;
    default: return SDXL_INTERNAL;
    }
}

#define SDXL_UNMATCHED_LISTED 32 /* keys of a partial match named in the result */

/* The keys of a LoRA that landed nowhere, for the result's metadata. */
static cJSON *unmatched_keys(const sd_lora_info *info)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t k = 0; k < info->n_unmatched && k < SDXL_UNMATCHED_LISTED; k++)
        cJSON_AddItemToArray(a, cJSON_CreateString(info->unmatched[k]));
    if (info->n_unmatched > SDXL_UNMATCHED_LISTED)
        cJSON_AddItemToArray(a, cJSON_CreateString("..."));
    return a;
}

/* Makes the job's LoRAs the engine's active set (an unchanged set costs
 * nothing; [] restores the checkpoint) and records, per job LoRA, how many
 * checkpoint tensors it landed on and which of its keys landed nowhere
 * (the stack logs partial matches once, when a LoRA is loaded). */
static int apply_loras(sdxl_worker *w, const sdxl_job *j, int *tensors_applied, cJSON *unmatched, sdxl_error *err)
{
    sd_lora_spec *specs = calloc(j->n_loras + 1, sizeof *specs);
    if (!specs) return fail(err, SDXL_OUT_OF_MEMORY, "", "out of memory for the LoRA set");
    for (size_t i = 0; i < j->n_loras; i++) {
        const sdxl_lora_slot *slot = &w->stack[j->loras[i].slot];
        specs[i] = (sd_lora_spec){.path = slot->path, .name = slot->name,
                                  .te_multiplier = (float)j->loras[i].scale,
                                  .unet_multiplier = (float)j->loras[i].unet_scale};
    }
    sd_lora_report report = {0};
    char why[SDXL_ERROR_MAX] = "";
    sd_lora_status st = sd_engine_set_loras(w->engine, specs, j->n_loras, &report, why, sizeof why);
    free(specs);
    for (size_t i = 0; st == SD_LORA_OK && i < j->n_loras; i++) {
        const char *path = w->stack[j->loras[i].slot].path;
        const sd_lora_info *info = NULL;
        for (size_t k = 0; k < report.n; k++)
            if (report.loras[k].path && !strcmp(report.loras[k].path, path)) info = &report.loras[k];
        tensors_applied[i] = info ? (int)info->tensors : 0;
        cJSON_AddItemToArray(unmatched, info ? unmatched_keys(info) : cJSON_CreateArray());
    }
    sd_lora_report_free(&report);
    return st == SD_LORA_OK ? 0 : fail(err, code_of_lora_status(st), "", why);
}

static void log_done(const sdxl_job *j, const char *job_id, const sd_image_out *out)
{
    rp_log(RP_LOG_INFO, job_id,
           "%d image%s %dx%d, %d steps, %s %s, seed %llu: encode %.2f s, denoise %.2f s, decode %.2f s",
           out->batch, out->batch == 1 ? "" : "s", out->width, out->height, j->steps,
           sd_sampler_label(out->choice.sampler), sd_schedule_label(out->choice.schedule),
           (unsigned long long)out->seeds[0], out->t_encode, out->t_denoise, out->t_decode);
}

static cJSON *run_job(sdxl_worker *w, rp_job *job, double t_start, sdxl_error *err)
{
    if (ensure_ready(w, err)) return NULL;
    sdxl_job j;
    if (sdxl_job_parse(rp_job_input(job), &w->limits, &j, err)) return NULL;
    int *tensors_applied = calloc(j.n_loras + 1, sizeof *tensors_applied);
    cJSON *unmatched = cJSON_CreateArray();
    if (!tensors_applied || !unmatched || apply_loras(w, &j, tensors_applied, unmatched, err)) {
        if (!tensors_applied || !unmatched) fail(err, SDXL_OUT_OF_MEMORY, "", "out of memory");
        free(tensors_applied);
        cJSON_Delete(unmatched);
        sdxl_job_free(&j);
        return NULL;
    }
    sdxl_ti_use ti;
    if (sdxl_ti_use_of(w, &j, &ti, err)) {
        free(tensors_applied);
        cJSON_Delete(unmatched);
        sdxl_job_free(&j);
        return NULL;
    }
    sd_image_out out;
    char why[SDXL_ERROR_MAX];
    sd_status st = generate(w, &j, job, &out, why, sizeof why);
    cJSON *result = NULL;
    if (st == SD_ECANCELLED) {
        snprintf(why, sizeof why, "the job was cancelled after %d of %d steps", out.steps_done,
                 out.steps_run ? out.steps_run : j.steps);
        fail(err, SDXL_CANCELLED, "", why);
    } else if (st != SD_OK) {
        fail(err, code_of_status(st), "", why);
    } else {
        log_done(&j, rp_job_id(job), &out);
        sdxl_result_in in = {.w = w, .job = &j, .job_id = rp_job_id(job), .out = &out,
                             .tensors_applied = tensors_applied, .lora_unmatched = unmatched, .ti = &ti,
                             .t_start = t_start};
        result = sdxl_result_build(&in, err);
        sd_image_out_free(&out);
    }
    sdxl_ti_use_free(&ti);
    free(tensors_applied);
    cJSON_Delete(unmatched);
    sdxl_job_free(&j);
    return result;
}

cJSON *sdxl_handle_job(rp_job *job, void *ctx)
{
    sdxl_worker *w = ctx;
    double t_start = sd_now_seconds();
    sdxl_error err = {.code = SDXL_OK};
    pthread_mutex_lock(&w->lock);
    cJSON *result = run_job(w, job, t_start, &err);
    pthread_mutex_unlock(&w->lock);
    if (result) return result;
    if (err.code == SDXL_OK) err.code = SDXL_INTERNAL;
    result = sdxl_error_result(&err);
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(result, "error");
    rp_log(err.code == SDXL_INVALID_INPUT || err.code == SDXL_CANCELLED ? RP_LOG_WARN : RP_LOG_ERROR,
           rp_job_id(job), "job failed (%s): %s", sdxl_code_name(err.code), msg ? msg->valuestring : "");
    return result;
}
