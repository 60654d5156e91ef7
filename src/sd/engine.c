/* The SDXL engine and its txt2img and img2img jobs (see sd/engine.h):
 * loading the checkpoint once, then per job the pipeline of diffusers'
 * StableDiffusionXLPipeline.__call__ (pipeline_stable_diffusion_xl.py,
 * diffusers 0.42): encode_prompt, prepare_latents, the denoising loop with
 * CFG, vae.decode and VaeImageProcessor.postprocess; for img2img
 * StableDiffusionXLImg2ImgPipeline's (pipeline_stable_diffusion_xl_img2img.py)
 * preprocess, get_timesteps and prepare_latents in place of the noise. */
#include "sd/engine.h"
#include "sd/clock.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image/resize.h"
#include "sd/guidance.h"
#include "sd/prompt.h"
#include "sd/text_encoder.h"
#include "sd/tokenizer.h"
#include "sd/unet.h"
#include "sd/vae.h"
#include "sd/vae_file.h"

struct sd_engine {
    char *path;
    st_file *file;
    sdxl_hparams hp;
    sd_tokenizer *tok;
    sd_text_encoders te;
    bool te_bound;
    sd_unet *unet;
    sd_vae *vae;
    sd_backend *be;
    sd_lora_stack *loras; /* created on the first sd_engine_set_loras */
    bool keep_weights_resident;
    char device[1280];    /* sd_backend_open's line */
    sd_embedding_db *embeddings; /* textual inversions prompts may name */
    sd_vae_file *vae_files;      /* VAEs of the user's choice (sd_engine_add_vae) */
    sd_vae **vaes;
    int n_vaes;
};

const char *sd_status_name(sd_status s)
{
    switch (s) {
    case SD_OK: return "ok";
    case SD_EINVALID: return "invalid";
    case SD_ENOMEM: return "out of memory";
    case SD_ECANCELLED: return "cancelled";
    case SD_EMODEL: return "model unavailable";
    case SD_EINTERNAL: return "internal";
    case SD_EDEVICE: return "device unavailable";
    }
    return "unknown";
}

static sd_status fail(sd_status s, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return s;
}

/* Out-of-memory messages of the backend and the modules all say so. */
static sd_status status_of_message(const char *msg, sd_status otherwise)
{
    return msg && strstr(msg, "out of memory") ? SD_ENOMEM : otherwise;
}

/* ---- loading ---------------------------------------------------------------- */

sd_status sd_engine_load(const char *path, const sd_engine_options *opts, sd_engine **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    sd_engine *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(path))) {
        free(e);
        return fail(SD_ENOMEM, err, errlen, "engine: out of memory");
    }
    sd_status st = SD_EMODEL;
    if (sdxl_checkpoint_open(path, &e->file, &e->hp, err, errlen)) goto failed;
    int z = e->hp.vae.z_channels, c_in = e->hp.unet.in_channels;
    if ((c_in != z && c_in != 2 * z + 1) || e->hp.unet.out_channels != z) {
        fail(st, err, errlen, "%s: the UNet takes %d latent channels and gives %d, the VAE has %d "
             "(an instruct model?); only base models (%d) and inpainting models (%d) run", path,
             c_in, e->hp.unet.out_channels, z, z, 2 * z + 1);
        goto failed;
    }
    if (sd_text_encoders_bind(&e->te, e->file, &e->hp, err, errlen)) goto failed;
    e->te_bound = true;
    if (sd_unet_bind(&e->unet, e->file, &e->hp.unet, err, errlen)) goto failed;
    if (sd_vae_bind(&e->vae, e->file, &e->hp.vae, err, errlen)) goto failed;
    st = SD_ENOMEM;
    e->tok = sd_tokenizer_new();
    e->keep_weights_resident = opts && opts->keep_weights_resident;
    e->embeddings = e->tok ? sd_embeddings_new(e->tok, e->hp.te1.width, e->hp.te2.width) : NULL;
    if (!e->tok || !e->embeddings) {
        fail(st, err, errlen, "engine: out of memory");
        goto failed;
    }
    e->be = sd_backend_open(opts ? &opts->device : NULL, sd_unet_weight_dtype(e->unet), e->device,
                            sizeof e->device, err, errlen);
    if (!e->be) {
        st = strstr(err, "out of memory") ? SD_ENOMEM : SD_EDEVICE;
        goto failed;
    }
    *out = e;
    return SD_OK;
failed:
    sd_engine_free(e);
    return status_of_message(err, st);
}

static void free_chosen_vaes(sd_engine *e)
{
    for (int i = 0; i < e->n_vaes; i++) {
        sd_vae_free(e->vaes[i]);
        sd_vae_file_close(&e->vae_files[i]);
    }
    free(e->vaes);
    free(e->vae_files);
}

void sd_engine_free(sd_engine *e)
{
    if (!e) return;
    sd_backend_free(e->be);
    sd_embeddings_free(e->embeddings);
    sd_tokenizer_free(e->tok);
    free_chosen_vaes(e);
    sd_vae_free(e->vae);
    sd_unet_free(e->unet);
    if (e->te_bound) sd_text_encoders_release(&e->te);
    sd_lora_stack_free(e->loras);
    st_close(e->file);
    free(e->path);
    free(e);
}

const sdxl_hparams *sd_engine_hparams(const sd_engine *e) { return &e->hp; }
sd_backend *sd_engine_backend(sd_engine *e) { return e->be; }
const char *sd_engine_device(const sd_engine *e) { return e->device; }
const char *sd_engine_model_path(const sd_engine *e) { return e->path; }

/* The VAE's downsampling factor: the UNet takes any latent size (odd sides
 * follow diffusers' forward_upsample_size path). */
int sd_engine_size_multiple(const sd_engine *e)
{
    return 1 << (e->hp.vae.num_levels - 1);
}

int sd_engine_extra_channels(const sd_engine *e)
{
    return e->hp.unet.in_channels - e->hp.vae.z_channels;
}

/* ---- LoRAs ------------------------------------------------------------------ */

/* The networks read their weights through the stack's overlay when they are
 * bound, so a changed set means binding them again (name lookups only). */
static int rebind_networks(sd_engine *e, char *err, size_t errlen)
{
    sd_unet_free(e->unet);
    e->unet = NULL;
    if (e->te_bound) sd_text_encoders_release(&e->te);
    e->te_bound = sd_text_encoders_bind(&e->te, e->file, &e->hp, err, errlen) == 0;
    return e->te_bound ? sd_unet_bind(&e->unet, e->file, &e->hp.unet, err, errlen) : -1;
}

/* sd_lora_change_fn: the backend's copies of rebuilt or freed LoRA-merged
 * weights are stale. */
static void forget_weights(void *be, const void *data, size_t bytes) { sd_backend_forget_weights(be, data, bytes); }

sd_lora_status sd_engine_set_loras(sd_engine *e, const sd_lora_spec *specs, size_t n, sd_lora_report *report,
                                   char *err, size_t errlen)
{
    if (!e->loras) {
        if (!(e->loras = sd_lora_stack_new(e->file, &e->hp, err, errlen))) return SD_LORA_ENOMEM;
        sd_lora_stack_on_change(e->loras, forget_weights, e->be);
    }
    uint64_t before = sd_lora_stack_generation(e->loras);
    sd_lora_status st = sd_lora_stack_apply(e->loras, specs, n, report, err, errlen);
    if (sd_lora_stack_generation(e->loras) != before && rebind_networks(e, err, errlen)) return SD_LORA_ENOMEM;
    return st;
}

/* ---- embeddings and VAEs of the user's choice ----------------------------------- */

sd_embedding_db *sd_engine_embeddings(sd_engine *e) { return e->embeddings; }

/* sd_prompt_prepare with the engine's tokenizer and embeddings; the
 * negative prompt keeps its tags (A1111 strips them from the prompt only). */
static sd_status prepare_text(const sd_engine *e, const char *text, bool negative, sd_prompt *out, char *err,
                              size_t errlen)
{
    sd_prompt_options opts = SD_PROMPT_OPTIONS_DEFAULT;
    opts.strip_extra_networks = !negative;
    opts.embeddings = e->embeddings;
    char why[1536];
    int rc = sd_prompt_prepare(e->tok, text, strlen(text), &opts, out, why, sizeof why);
    if (rc == SD_PROMPT_EUNAVAILABLE)
        return fail(SD_EMODEL, err, errlen, "the %s %s", negative ? "negative prompt" : "prompt", why);
    if (rc) return fail(status_of_message(why, SD_EINVALID), err, errlen, "%s", why);
    return SD_OK;
}

sd_status sd_engine_embeddings_used(sd_engine *e, const char *text, bool negative, size_t **used, size_t *n,
                                    char *err, size_t errlen)
{
    sd_prompt p;
    *used = NULL, *n = 0;
    sd_status st = prepare_text(e, text ? text : "", negative, &p, err, errlen);
    if (st) return st;
    *used = p.used, *n = p.n_used;
    p.used = NULL;
    sd_prompt_free(&p);
    return SD_OK;
}

sd_status sd_engine_add_vae(sd_engine *e, const char *path, int *index, char *err, size_t errlen)
{
    sd_vae_file *files = realloc(e->vae_files, (size_t)(e->n_vaes + 1) * sizeof *files);
    if (files) e->vae_files = files;
    sd_vae **vaes = realloc(e->vaes, (size_t)(e->n_vaes + 1) * sizeof *vaes);
    if (vaes) e->vaes = vaes;
    if (!files || !vaes) return fail(SD_ENOMEM, err, errlen, "VAE %s: out of memory", path);
    sd_vae_file *f = &e->vae_files[e->n_vaes];
    if (sd_vae_file_open(path, f, err, errlen)) return status_of_message(err, SD_EMODEL);
    if (sd_vae_file_fits(f, &e->hp, err, errlen) ||
        sd_vae_bind_prefix(&e->vaes[e->n_vaes], f->view, "", &f->hp, err, errlen)) {
        sd_vae_file_close(f);
        return status_of_message(err, SD_EMODEL);
    }
    *index = ++e->n_vaes;
    return SD_OK;
}

/* ---- parameters -------------------------------------------------------------- */

void sd_txt2img_params_default(sd_txt2img_params *p)
{
    memset(p, 0, sizeof *p);
    p->width = p->height = 1024;
    p->steps = 24;
    p->cfg = 4.5f;
    p->sampler = "DPM++ 2M";
    p->rng = SD_RNG_CUDA;
    p->seeding = SD_BATCH_SEED_PER_IMAGE;
    p->batch = 1;
}

static sd_status check_params(const sd_engine *e, const sd_txt2img_params *p, char *err, size_t errlen)
{
    int m = sd_engine_size_multiple(e), max_skip = sd_clip_skip_max(&e->te);
    if (!e->unet || !e->te_bound)
        return fail(SD_EMODEL, err, errlen, "the model's networks are not bound (a LoRA change ran out of memory)");
    if (!p->prompt) return fail(SD_EINVALID, err, errlen, "prompt is required");
    if (p->width < m || p->height < m || p->width > SD_MAX_SIDE || p->height > SD_MAX_SIDE ||
        p->width % m || p->height % m)
        return fail(SD_EINVALID, err, errlen,
                    "width and height must be multiples of %d between %d and %d (got %dx%d)", m, m,
                    SD_MAX_SIDE, p->width, p->height);
    if (p->steps < 1 || p->steps > SD_MAX_STEPS)
        return fail(SD_EINVALID, err, errlen, "steps must be between 1 and %d (got %d)", SD_MAX_STEPS, p->steps);
    if (!isfinite(p->cfg))
        return fail(SD_EINVALID, err, errlen, "cfg must be a finite number");
    if (!isfinite(p->guidance_rescale) || p->guidance_rescale < 0.0f)
        return fail(SD_EINVALID, err, errlen, "guidance_rescale must be a finite number >= 0");
    if (p->batch < 1 || p->batch > SD_MAX_BATCH)
        return fail(SD_EINVALID, err, errlen, "the number of images must be between 1 and %d (got %d)",
                    SD_MAX_BATCH, p->batch);
    if (p->clip_skip < 0 || p->clip_skip > max_skip)
        return fail(SD_EINVALID, err, errlen, "clip_skip must be between 1 and %d (got %d)", max_skip,
                    p->clip_skip);
    if (p->rng != SD_RNG_CPU && p->rng != SD_RNG_CUDA)
        return fail(SD_EINVALID, err, errlen, "rng must be cpu or cuda");
    if (p->seeding != SD_BATCH_SEED_PER_IMAGE && p->seeding != SD_BATCH_ONE_GENERATOR)
        return fail(SD_EINVALID, err, errlen, "unknown batch seeding mode");
    if (p->vae < 0 || p->vae > e->n_vaes)
        return fail(SD_EINVALID, err, errlen, "vae %d is not loaded (%d VAEs of choice)", p->vae, e->n_vaes);
    return SD_OK;
}

void sd_img2img_params_default(sd_img2img_params *p)
{
    memset(p, 0, sizeof *p);
    sd_txt2img_params_default(&p->gen);
    p->strength = SD_IMG2IMG_STRENGTH_DEFAULT;
}

/* diffusers' check_inputs (strength in [0, 1]) and get_timesteps (at least
 * one step left); the init image's size. */
static sd_status check_img2img(const sd_img2img_params *p, bool own_latents, const sd_plan *plan, int *begin,
                               int *steps_run, char *err, size_t errlen)
{
    if (!p->init_rgb && !own_latents) return fail(SD_EINVALID, err, errlen, "img2img needs an init image");
    if (!own_latents && (p->init_width < 1 || p->init_height < 1 || p->init_width > SD_MAX_INIT_SIDE ||
        p->init_height > SD_MAX_INIT_SIDE))
        return fail(SD_EINVALID, err, errlen, "the init image must be 1 to %d pixels per side (got %dx%d)",
                    SD_MAX_INIT_SIDE, p->init_width, p->init_height);
    if (!isfinite(p->strength) || p->strength < 0.0 || p->strength > 1.0)
        return fail(SD_EINVALID, err, errlen, "strength must be between 0 and 1 (got %g)", p->strength);
    *begin = sd_plan_strength_begin(plan, p->strength, steps_run);
    if (*steps_run < 1)
        return fail(SD_EINVALID, err, errlen,
                    "strength %g with %d steps leaves no step to run (int(steps * strength) = 0); "
                    "raise strength or steps", p->strength, plan->steps);
    return SD_OK;
}

/* ---- one job ------------------------------------------------------------------ */

/* The conditioning of one UNet call on the backend: context [rows, n, width]
 * and y [rows, adm]. */
typedef struct {
    sd_tensor *context, *y;
} unet_cond;

typedef struct {
    sd_engine *e;
    const sd_txt2img_params *p;
    const sd_img2img_params *i2i; /* NULL for txt2img */
    const sd_job_hooks *hooks;  /* NULL for a plain job */
    const sd_plan *plan;
    const sd_vae *vae;          /* the checkpoint's or the one the job chose */
    int begin;                  /* the plan's first model evaluation (img2img) */
    int steps_total;            /* the steps this job runs and reports */
    int batch, lh, lw;          /* latent height and width */
    size_t n_per_image;         /* z_channels * lh * lw */
    sd_conditioning cond, uncond;
    size_t cond_tokens, uncond_tokens;
    bool guided;
    /* guided with equal token counts: `both` ([uncond x B; cond x B]);
     * guided otherwise: `uncond` and `cond` apart; unguided: `cond` alone. */
    unet_cond c_both, c_cond, c_uncond;
    sd_cfg_denoiser denoiser;
    sd_batch_rng noise;
    int evals, n_evals, steps_reported;
    sd_status status;           /* why a callback stopped the sampler */
    char *err;
    size_t errlen;
} gen_job;

enum { STOP = 1 }; /* what the callbacks return to the sampler; the cause is in job->status */

static int stop(gen_job *j, sd_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
    j->status = s;
    return STOP;
}

static bool cancel_requested(const gen_job *j)
{
    return j->p->cancel && atomic_load(j->p->cancel);
}

static int prepare_prompt(gen_job *j, const char *text, bool negative, sd_prompt *out)
{
    j->status = prepare_text(j->e, text, negative, out, j->err, j->errlen);
    return j->status == SD_OK ? 0 : -1;
}

/* The prompt (and with CFG the negative, zeroed when empty) through the text
 * encoders as one batch: j->cond and j->uncond. */
static int encode_prompts(gen_job *j)
{
    const char *neg = j->p->negative_prompt ? j->p->negative_prompt : "";
    int n = j->guided ? 2 : 1;
    sd_prompt prompts[2];
    sd_conditioning out[2];
    const bool zero_if_empty[2] = {false, true};
    if (prepare_prompt(j, j->p->prompt, false, &prompts[0])) return -1;
    if (n == 2 && prepare_prompt(j, neg, true, &prompts[1])) {
        sd_prompt_free(&prompts[0]);
        return -1;
    }
    int rc = sd_encode_prompts(j->e->be, &j->e->te, prompts, n, j->p->clip_skip, zero_if_empty, out, j->err,
                               j->errlen);
    if (rc) j->status = status_of_message(j->err, SD_EINTERNAL);
    j->cond_tokens = prompts[0].token_count;
    if (!rc) j->cond = out[0];
    if (n == 2) {
        j->uncond_tokens = prompts[1].token_count;
        if (!rc) j->uncond = out[1];
        sd_prompt_free(&prompts[1]);
    }
    sd_prompt_free(&prompts[0]);
    return rc;
}

/* Rows of host conditioning for `rows` images: `first` for rows [0, split),
 * `second` for [split, rows). The added vector of each row is the pooled
 * text embedding and the micro-conditioning (H, W, 0, 0, H, W). */
static int upload_cond(gen_job *j, unet_cond *c, const sd_conditioning *first, const sd_conditioning *second,
                       int split, int rows)
{
    sd_backend *be = j->e->be;
    const sdxl_unet_hparams *hp = &j->e->hp.unet;
    size_t ctx_row = (size_t)first->n_tokens * first->width;
    float *ctx = malloc(sizeof(float) * ctx_row * rows), *y = malloc(sizeof(float) * hp->adm_in_channels * rows);
    const float values[SDXL_ADM_VALUES] = {(float)j->p->height, (float)j->p->width, 0.0f, 0.0f,
                                           (float)j->p->height, (float)j->p->width};
    if (ctx && y) {
        for (int r = 0; r < rows; r++) {
            const sd_conditioning *src = r < split ? first : second;
            memcpy(ctx + ctx_row * r, src->context, sizeof(float) * ctx_row);
            sd_unet_adm_vector(hp, src->pooled, values, y + (size_t)hp->adm_in_channels * r);
        }
        sd_backend_set_stage(be, SD_STAGE_UNET);
        c->context = sd_new3(be, rows, first->n_tokens, first->width);
        c->y = sd_new2(be, rows, hp->adm_in_channels);
    }
    int rc = !ctx || !y || sd_tensor_upload(be, c->context, ctx) || sd_tensor_upload(be, c->y, y) ? -1 : 0;
    free(ctx);
    free(y);
    if (!rc) return 0;
    const char *why = sd_backend_error(be) ? sd_backend_error(be) : "out of memory";
    stop(j, status_of_message(why, SD_EINTERNAL), "conditioning: %s", why);
    return -1;
}

static void free_cond(sd_backend *be, unet_cond *c)
{
    sd_tensor_free(be, c->context);
    sd_tensor_free(be, c->y);
    c->context = c->y = NULL;
}

/* Prompt and negative -> the UNet conditioning of the whole job. */
static int prepare_conditioning(gen_job *j)
{
    int b = j->batch;
    if (encode_prompts(j)) return -1;
    if (!j->guided) return upload_cond(j, &j->c_cond, &j->cond, &j->cond, b, b);
    if (j->uncond.n_tokens == j->cond.n_tokens) return upload_cond(j, &j->c_both, &j->uncond, &j->cond, b, 2 * b);
    return upload_cond(j, &j->c_uncond, &j->uncond, &j->uncond, b, b) ||
           upload_cond(j, &j->c_cond, &j->cond, &j->cond, b, b) ? -1 : 0;
}

/* The UNet's input for `rows` latents: the latents, then (an inpainting
 * UNet) the hooks' extra channels of each row's image, torch.cat on dim 1
 * as StableDiffusionXLInpaintPipeline does. NULL on failure. */
static sd_tensor *unet_input(gen_job *j, const float *x_in, int rows)
{
    sd_backend *be = j->e->be;
    int z = j->e->hp.vae.z_channels, ec = sd_engine_extra_channels(j->e);
    sd_tensor *x = sd_new4(be, rows, z + ec, j->lh, j->lw);
    if (!ec) {
        if (sd_tensor_upload(be, x, x_in)) sd_tensor_free(be, x), x = NULL;
        return x;
    }
    size_t per_image = (size_t)ec * j->lh * j->lw;
    float *extra = malloc(sizeof(float) * per_image * rows);
    sd_tensor *lat = sd_new4(be, rows, z, j->lh, j->lw), *ext = sd_new4(be, rows, ec, j->lh, j->lw);
    for (int r = 0; extra && r < rows; r++)
        memcpy(extra + per_image * r, j->hooks->extra + per_image * (r % j->batch), sizeof(float) * per_image);
    int rc = !extra || sd_tensor_upload(be, lat, x_in) || sd_tensor_upload(be, ext, extra) ||
             sd_concat(be, x, lat, ext, 1);
    free(extra);
    sd_tensor_free(be, lat);
    sd_tensor_free(be, ext);
    if (rc) sd_tensor_free(be, x), x = NULL;
    return x;
}

/* eps for `rows` latents under one conditioning. */
static int unet_pass(gen_job *j, const float *x_in, int rows, const unet_cond *c, float t, float *eps)
{
    sd_engine *e = j->e;
    int c_out = e->hp.unet.out_channels;
    sd_backend_set_stage(e->be, SD_STAGE_UNET); /* the UNet's own activation dtype for its input and output */
    sd_tensor *x = unet_input(j, x_in, rows);
    sd_tensor *out = sd_new4(e->be, rows, c_out, j->lh, j->lw);
    char msg[512] = "";
    int rc = x ? 0 : -1;
    if (!rc) rc = sd_unet_forward(e->be, e->unet, x, t, c->context, c->y, out, msg, sizeof msg);
    if (!rc) rc = sd_tensor_download(e->be, out, eps);
    sd_tensor_free(e->be, x);
    sd_tensor_free(e->be, out);
    if (!rc) return 0;
    const char *why = msg[0] ? msg : sd_backend_error(e->be) ? sd_backend_error(e->be) : "failed";
    return stop(j, status_of_message(why, SD_EINTERNAL), "UNet: %s", why);
}

/* sd_model_fn for the CFG denoiser. */
static int run_model(void *ctx, const float *x_in, int rows, int with_uncond, float t, float *eps)
{
    gen_job *j = ctx;
    if (cancel_requested(j)) return stop(j, SD_ECANCELLED, "cancelled");
    if (!with_uncond) return unet_pass(j, x_in, rows, &j->c_cond, t, eps);
    if (j->c_both.context) return unet_pass(j, x_in, rows, &j->c_both, t, eps);
    size_t half = (size_t)(rows / 2) * j->n_per_image;
    int rc = unet_pass(j, x_in, rows / 2, &j->c_uncond, t, eps);
    if (!rc && cancel_requested(j)) rc = stop(j, SD_ECANCELLED, "cancelled");
    return rc ? rc : unet_pass(j, x_in + half, rows / 2, &j->c_cond, t, eps + half);
}

/* Reports every step completed up to `done`. */
static int report_steps(gen_job *j, int done)
{
    const sd_txt2img_params *p = j->p;
    while (j->steps_reported < done) {
        j->steps_reported++;
        if (p->progress && p->progress(p->progress_ctx, j->steps_reported, j->steps_total))
            return stop(j, SD_ECANCELLED, "cancelled by the progress callback at step %d/%d", j->steps_reported,
                        j->steps_total);
    }
    return 0;
}

/* sd_eps_fn given to the sampler. Model evaluation k (of the n_evals this
 * job runs) starts when floor(k * steps / n_evals) steps are complete: exact
 * for one evaluation per step, and for Heun/DPM2's 2N-1 it lands after each
 * step's second. */
static int eps_with_progress(void *ctx, const float *x_in, float t, float *eps)
{
    gen_job *j = ctx;
    int rc = report_steps(j, (int)((long)j->evals * j->steps_total / j->n_evals));
    if (!rc) rc = sd_cfg_eps(&j->denoiser, x_in, t, eps);
    j->evals++;
    return rc;
}

/* sd_noise_fn: the sampler's noise continues each image's generator. */
static int draw_noise(void *ctx, float *out, size_t n)
{
    gen_job *j = ctx;
    sd_batch_rng_randn(&j->noise, n / (size_t)j->batch, out);
    return 0;
}

/* ---- img2img: the init latents ------------------------------------------------- */

/* The VAE a job's `vae` index names (0: the checkpoint's own). */
static const sd_vae *job_vae(const sd_engine *e, int vae) { return vae > 0 ? e->vaes[vae - 1] : e->vae; }

sd_status sd_engine_vae_encode(sd_engine *e, int vae, const float *chw, int width, int height, float *mean,
                               float *logvar, char *err, size_t errlen)
{
    int z = e->hp.vae.z_channels, m = sd_engine_size_multiple(e);
    if (vae < 0 || vae > e->n_vaes)
        return fail(SD_EINVALID, err, errlen, "vae %d is not loaded (%d VAEs of choice)", vae, e->n_vaes);
    if (width < m || height < m || width % m || height % m)
        return fail(SD_EINVALID, err, errlen, "VAE encode: %dx%d is not a multiple of %d", width, height, m);
    sd_backend_set_stage(e->be, SD_STAGE_VAE);
    sd_tensor *image = sd_new4(e->be, 1, 3, height, width);
    sd_tensor *t_mean = sd_new4(e->be, 1, z, height / 8, width / 8);
    sd_tensor *t_logvar = sd_new4(e->be, 1, z, height / 8, width / 8);
    char msg[512] = "";
    int rc = sd_tensor_upload(e->be, image, chw);
    if (!rc) rc = sd_vae_encode(e->be, job_vae(e, vae), image, t_mean, t_logvar, msg, sizeof msg);
    if (!rc) rc = sd_tensor_download(e->be, t_mean, mean);
    if (!rc) rc = sd_tensor_download(e->be, t_logvar, logvar);
    sd_tensor_free(e->be, image);
    sd_tensor_free(e->be, t_mean);
    sd_tensor_free(e->be, t_logvar);
    if (!rc) return SD_OK;
    const char *why = msg[0] ? msg : sd_backend_error(e->be) ? sd_backend_error(e->be) : "failed";
    return fail(status_of_message(why, SD_EINTERNAL), err, errlen, "VAE encode: %s", why);
}

/* The init image, resized to cover the job's size and centre-cropped,
 * through the VAE encoder: the posterior's mean and logvar (n_per_image
 * values each) of one image. */
static sd_status encode_init_image(gen_job *j, float *mean, float *logvar)
{
    const sd_img2img_params *q = j->i2i;
    int w = j->p->width, h = j->p->height;
    size_t pixels = (size_t)w * h;
    uint8_t *rgb = malloc(pixels * 3);
    float *chw = malloc(sizeof(float) * pixels * 3);
    sd_status st = !rgb || !chw || img_resize_cover(q->init_rgb, q->init_width, q->init_height, rgb, w, h)
                       ? fail(SD_ENOMEM, j->err, j->errlen, "VAE encode: out of memory")
                       : SD_OK;
    if (st == SD_OK) {
        sd_vae_from_rgb8(rgb, h, w, chw);
        st = sd_engine_vae_encode(j->e, j->p->vae, chw, w, h, mean, logvar, j->err, j->errlen);
    }
    free(rgb);
    free(chw);
    return st;
}

/* StableDiffusionXLImg2ImgPipeline.prepare_latents: per image
 * x0 = 0.13025 * (mean + exp(0.5 * clamp(logvar, -30, 20)) * z1)
 * (DiagonalGaussianDistribution.sample), then the scheduler's add_noise of
 * the second draw z2 at the first timestep run. */
static sd_status img2img_latents(gen_job *j, const sd_plan *plan, float *latents)
{
    size_t n = j->n_per_image, total = (size_t)j->batch * n;
    float *posterior = malloc(sizeof(float) * 2 * n), *z = malloc(sizeof(float) * total);
    sd_status st = posterior && z ? encode_init_image(j, posterior, posterior + n)
                                  : fail(SD_ENOMEM, j->err, j->errlen, "out of memory for the init latents");
    if (st == SD_OK) {
        /* the generators' first draw, the posterior sample's noise */
        sd_batch_rng_randn_shared(&j->noise, n, z);
        for (int b = 0; b < j->batch; b++)
            sd_vae_posterior_sample(posterior, posterior + n, z + b * n, n, latents + b * n);
        sd_batch_rng_randn(&j->noise, n, z);
        sd_sampler_add_noise(plan, j->begin, latents, z, latents, total);
    }
    free(posterior);
    free(z);
    return st;
}

/* sd_step_fn: the hooks see every update. */
static void step_done(void *ctx, int next_eval, float *x)
{
    gen_job *j = ctx;
    j->hooks->after_step(j->hooks->ctx, j->plan, next_eval, x);
}

/* txt2img: from the generator's first draw; img2img: from the noised init
 * latents already in `latents`. */
static sd_status sample(gen_job *j, const sd_plan *plan, float *latents)
{
    size_t n = (size_t)j->batch * j->n_per_image;
    j->n_evals = plan->n_evals - j->begin;
    sd_sample_io io = {.n = n, .eps = eps_with_progress, .eps_ctx = j, .noise = draw_noise, .noise_ctx = j};
    if (j->hooks && j->hooks->after_step) io.after_step = step_done, io.step_ctx = j;
    int rc;
    if (j->i2i) {
        rc = sd_sampler_run_from(plan, j->begin, &io, latents);
    } else {
        sd_batch_rng_randn(&j->noise, j->n_per_image, latents);
        rc = sd_sampler_run(plan, &io, latents);
    }
    if (rc == 0) rc = report_steps(j, j->steps_total);
    if (rc == 0) return SD_OK;
    if (rc > 0) return j->status;
    if (rc == SD_SAMPLE_ENOMEM) return fail(SD_ENOMEM, j->err, j->errlen, "sampler: out of memory");
    return fail(SD_EINTERNAL, j->err, j->errlen, "sampler: no noise source");
}

/* latents / scaling factor -> VAE -> RGB8, one image at a time (the decoder
 * has no cross-image op, and this bounds memory by one image). */
static sd_status decode(gen_job *j, const float *latents, uint8_t *rgb)
{
    sd_engine *e = j->e;
    const sd_txt2img_params *p = j->p;
    long pixels = (long)p->width * p->height;
    long tile_above = p->vae_tile_above ? p->vae_tile_above : SD_VAE_TILE_ABOVE_DEFAULT;
    bool tiled = tile_above > 0 && pixels > tile_above;
    size_t image_floats = 3 * (size_t)pixels;
    float *z_host = malloc(sizeof(float) * j->n_per_image), *chw = malloc(sizeof(float) * image_floats);
    sd_backend_set_stage(e->be, SD_STAGE_VAE); /* the VAE's own activation dtype for its input and output */
    sd_tensor *z = sd_new4(e->be, 1, e->hp.vae.z_channels, j->lh, j->lw);
    sd_tensor *image = sd_new4(e->be, 1, e->hp.vae.out_channels, p->height, p->width);
    char msg[512] = "";
    int rc = !z_host || !chw || !z || !image ? -1 : 0;
    if (rc) snprintf(msg, sizeof msg, "out of memory");
    for (int b = 0; b < j->batch && !rc; b++) {
        if (cancel_requested(j)) {
            rc = stop(j, SD_ECANCELLED, "cancelled");
            break;
        }
        const float *src = latents + (size_t)b * j->n_per_image;
        for (size_t i = 0; i < j->n_per_image; i++) z_host[i] = src[i] / SD_VAE_SCALING_FACTOR;
        rc = sd_tensor_upload(e->be, z, z_host);
        if (!rc) rc = tiled ? sd_vae_decode_tiled(e->be, j->vae, z, image, p->vae_tile_latent, msg, sizeof msg)
                            : sd_vae_decode(e->be, j->vae, z, image, msg, sizeof msg);
        if (!rc) rc = sd_tensor_download(e->be, image, chw);
        if (!rc) sd_vae_to_rgb8(chw, p->height, p->width, rgb + (size_t)b * image_floats);
    }
    free(z_host);
    free(chw);
    sd_tensor_free(e->be, z);
    sd_tensor_free(e->be, image);
    if (!rc) return SD_OK;
    if (rc == STOP) return j->status;
    const char *why = msg[0] ? msg : sd_backend_error(e->be) ? sd_backend_error(e->be) : "failed";
    return fail(status_of_message(why, SD_EINTERNAL), j->err, j->errlen, "VAE: %s", why);
}

static void free_images(sd_image_out *o)
{
    free(o->rgb);
    free(o->seeds);
    o->rgb = NULL, o->seeds = NULL;
}

void sd_image_out_free(sd_image_out *o)
{
    free_images(o);
    memset(o, 0, sizeof *o);
}

static sd_status alloc_output(const sd_txt2img_params *p, sd_image_out *out, char *err, size_t errlen)
{
    out->batch = p->batch, out->width = p->width, out->height = p->height;
    out->rgb = malloc((size_t)p->batch * p->width * p->height * 3);
    out->seeds = malloc(sizeof(uint64_t) * p->batch);
    if (!out->rgb || !out->seeds) return fail(SD_ENOMEM, err, errlen, "out of memory for the images");
    for (int i = 0; i < p->batch; i++)
        out->seeds[i] = p->seeding == SD_BATCH_SEED_PER_IMAGE ? sd_rng_image_seed(p->seed, i) : p->seed;
    return SD_OK;
}

static void job_release(gen_job *j)
{
    sd_backend *be = j->e->be;
    free_cond(be, &j->c_both);
    free_cond(be, &j->c_cond);
    free_cond(be, &j->c_uncond);
    sd_conditioning_free(&j->cond);
    sd_conditioning_free(&j->uncond);
    sd_cfg_denoiser_free(&j->denoiser);
    sd_batch_rng_free(&j->noise);
    if (sd_backend_error(be)) sd_backend_trim(be); /* give back scratch after a failure (OOM) */
    sd_backend_clear_error(be);
}

/* img2img's latents in place of the noise; the time it takes. */
static sd_status prepare_init_latents(gen_job *j, const sd_plan *plan, float *latents, sd_image_out *out)
{
    double t0 = sd_now_seconds();
    const sd_job_hooks *h = j->hooks;
    sd_status st = cancel_requested(j) ? fail(SD_ECANCELLED, j->err, j->errlen, "cancelled")
                   : h && h->init_latents ? h->init_latents(h->ctx, j->e, plan, j->begin, &j->noise, latents, j->err,
                                                            j->errlen)
                                          : img2img_latents(j, plan, latents);
    out->t_image_encode = sd_now_seconds() - t0;
    return st;
}

/* The weights under `prefix` leave the resident set until next touched
 * (sd_engine_options.keep_weights_resident). */
static void release_weights(const sd_engine *e, const char *prefix)
{
    if (!e->keep_weights_resident) st_release_pages(e->file, prefix);
}

static sd_status run_job(gen_job *j, const sd_plan *plan, sd_image_out *out)
{
    const sd_txt2img_params *p = j->p;
    double t0 = sd_now_seconds();
    if (prepare_conditioning(j)) return j->status;
    release_weights(j->e, SDXL_TEXT_ENCODERS_PREFIX);
    out->prompt_tokens = j->cond_tokens, out->negative_tokens = j->uncond_tokens;
    out->unet_calls_per_eval = j->guided && !j->c_both.context ? 2 : 1;
    out->t_encode = sd_now_seconds() - t0;

    size_t n = (size_t)j->batch * j->n_per_image;
    float *latents = malloc(sizeof(float) * n);
    if (!latents || sd_batch_rng_init(&j->noise, p->rng, p->seed, p->seeding, j->batch) ||
        sd_cfg_denoiser_init(&j->denoiser, run_model, j, j->batch, j->n_per_image, p->cfg, p->guidance_rescale)) {
        free(latents);
        return fail(SD_ENOMEM, j->err, j->errlen, "out of memory for the latents");
    }
    sd_status st = j->i2i ? prepare_init_latents(j, plan, latents, out) : SD_OK;
    double t1 = sd_now_seconds();
    if (st == SD_OK) st = sample(j, plan, latents);
    out->steps_done = j->steps_reported;
    double t2 = sd_now_seconds();
    out->t_denoise = t2 - t1;
    release_weights(j->e, SDXL_UNET_PREFIX);
    float *keep = j->hooks ? j->hooks->latents_out : NULL;
    if (st == SD_OK && keep) memcpy(keep, latents, sizeof(float) * n);
    else if (st == SD_OK) st = decode(j, latents, out->rgb);
    free(latents);
    out->t_decode = sd_now_seconds() - t2;
    out->t_total = sd_now_seconds() - t0;
    return st;
}

/* The job's peak backend memory: on a GPU what the device had in use at
 * its fullest (context and library workspaces included), else the
 * backend's tensors and scratch. */
static void note_memory(sd_backend *be, sd_image_out *out)
{
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    out->device = sd_backend_name(be);
    out->peak_memory_bytes = m.device_used_peak ? m.device_used_peak : m.peak_bytes;
}

/* One job of either kind; i2i is NULL for txt2img, h for a plain job. */
static sd_status generate(sd_engine *e, const sd_txt2img_params *p, const sd_img2img_params *i2i,
                          const sd_job_hooks *h, sd_image_out *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sd_status st = check_params(e, p, err, errlen);
    if (st == SD_OK && sd_engine_extra_channels(e) && (!h || h->extra_channels != sd_engine_extra_channels(e) ||
                                                       !h->extra))
        st = fail(SD_EINVALID, err, errlen, "this checkpoint is an inpainting model (its UNet takes %d channels): "
                  "it runs inpainting jobs only (an image and a mask)", e->hp.unet.in_channels);
    if (st) return st;
    sd_sampler_choice choice;
    if (sd_sampler_parse(p->sampler ? p->sampler : "DPM++ 2M", p->schedule, &choice, err, errlen))
        return SD_EINVALID;
    sd_plan plan;
    if (sd_plan_make(&choice, p->steps, &plan, err, errlen)) return status_of_message(err, SD_EINVALID);
    gen_job j = {.e = e, .p = p, .i2i = i2i, .hooks = h, .plan = &plan, .steps_total = p->steps, .batch = p->batch,
                 .lh = p->height / 8, .lw = p->width / 8, .guided = p->cfg > 1.0f, .err = err, .errlen = errlen};
    j.vae = job_vae(e, p->vae);
    j.n_per_image = (size_t)e->hp.vae.z_channels * j.lh * j.lw;
    if (i2i) st = check_img2img(i2i, h && h->init_latents, &plan, &j.begin, &j.steps_total, err, errlen);
    if (st == SD_OK) st = alloc_output(p, out, err, errlen);
    out->choice = choice;
    out->steps_run = j.steps_total;
    sd_backend_clear_error(e->be);
    sd_backend_reset_peak(e->be);
    if (st == SD_OK) st = run_job(&j, &plan, out);
    note_memory(e->be, out);
    job_release(&j);
    sd_plan_free(&plan);
    if (st != SD_OK) free_images(out);
    return st;
}

sd_status sd_txt2img(sd_engine *e, const sd_txt2img_params *p, sd_image_out *out, char *err, size_t errlen)
{
    return generate(e, p, NULL, NULL, out, err, errlen);
}

sd_status sd_img2img(sd_engine *e, const sd_img2img_params *p, sd_image_out *out, char *err, size_t errlen)
{
    return generate(e, &p->gen, p, NULL, out, err, errlen);
}

sd_status sd_txt2img_hooked(sd_engine *e, const sd_txt2img_params *p, const sd_job_hooks *h, sd_image_out *out,
                            char *err, size_t errlen)
{
    return generate(e, p, NULL, h, out, err, errlen);
}

sd_status sd_img2img_hooked(sd_engine *e, const sd_img2img_params *p, const sd_job_hooks *h, sd_image_out *out,
                            char *err, size_t errlen)
{
    return generate(e, &p->gen, p, h, out, err, errlen);
}

sd_status sd_engine_warm_up(sd_engine *e, char *err, size_t errlen)
{
    if (!strcmp(sd_backend_name(e->be), "cpu")) return SD_OK;
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    p.prompt = "warm-up";
    p.width = p.height = 64 > sd_engine_size_multiple(e) ? 64 : sd_engine_size_multiple(e);
    p.steps = 1;
    sd_image_out out;
    sd_status st = sd_txt2img(e, &p, &out, err, errlen);
    if (st == SD_OK) sd_image_out_free(&out);
    return st;
}
