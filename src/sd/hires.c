/* Hires fix (see sd/hires.h): two engine runs, the latent or pixel upscale
 * in between on host arrays, the second run's starting latents through the
 * engine's img2img hooks. */
#include "sd/hires.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "image/resize.h"
#include "sd/error.h"
#include "sd/vae.h"

static const char *const LABELS[SD_HIRES_COUNT] = {
    [SD_HIRES_LATENT] = "Latent",
    [SD_HIRES_LATENT_NEAREST] = "Latent (nearest)",
    [SD_HIRES_LANCZOS] = "Lanczos",
};

void sd_hires_params_default(sd_hires_params *p)
{
    memset(p, 0, sizeof *p);
    sd_txt2img_params_default(&p->gen);
    p->scale = 2.0;
    p->upscaler = SD_HIRES_LATENT;
    p->denoising_strength = SD_HIRES_STRENGTH_DEFAULT;
}

int sd_hires_upscaler_parse(const char *name, sd_hires_upscaler *out, char *err, size_t errlen)
{
    for (int u = 0; name && u < SD_HIRES_COUNT; u++)
        if (!strcasecmp(name, LABELS[u])) {
            *out = (sd_hires_upscaler)u;
            return 0;
        }
    snprintf(err, errlen, "unknown hires upscaler \"%.64s\"; valid upscalers: \"Latent\", \"Latent (nearest)\", "
             "\"Lanczos\"", name ? name : "");
    return -1;
}

const char *sd_hires_upscaler_label(sd_hires_upscaler u)
{
    return (unsigned)u < SD_HIRES_COUNT ? LABELS[u] : "?";
}

void sd_hires_size(int width, int height, double scale, int multiple, int *w2, int *h2)
{
    *w2 = (int)(width * scale) / multiple * multiple;
    *h2 = (int)(height * scale) / multiple * multiple;
}

int sd_hires_steps_run(int steps, int hr_steps, double strength)
{
    int steps2 = hr_steps ? hr_steps : steps, run = (int)(steps2 * strength);
    return run > steps2 ? steps2 : run < 0 ? 0 : run;
}

/* ---- the upscales ------------------------------------------------------------------ */

/* torch's area_pixel_compute_source_index for bilinear, align_corners False. */
static void linear_taps(int in, int out, int i, int *i0, int *i1, float *l1)
{
    float scale = (float)in / (float)out, src = scale * ((float)i + 0.5f) - 0.5f;
    if (src < 0.0f) src = 0.0f;
    *i0 = (int)src;
    *i1 = *i0 + (*i0 < in - 1 ? 1 : 0);
    *l1 = src - (float)*i0;
}

/* F.interpolate(x, (oh, ow), mode="bilinear", align_corners=False,
 * antialias=False) of `planes` planes of ih x iw. */
static void upscale_bilinear(const float *x, int planes, int ih, int iw, float *y, int oh, int ow)
{
    for (int p = 0; p < planes; p++) {
        const float *in = x + (size_t)p * ih * iw;
        float *out = y + (size_t)p * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            int h0, h1, w0, w1;
            float hl1, wl1;
            linear_taps(ih, oh, oy, &h0, &h1, &hl1);
            for (int ox = 0; ox < ow; ox++) {
                linear_taps(iw, ow, ox, &w0, &w1, &wl1);
                float hl0 = 1.0f - hl1, wl0 = 1.0f - wl1;
                out[(size_t)oy * ow + ox] = hl0 * (wl0 * in[h0 * iw + w0] + wl1 * in[h0 * iw + w1]) +
                                            hl1 * (wl0 * in[h1 * iw + w0] + wl1 * in[h1 * iw + w1]);
            }
        }
    }
}

/* F.interpolate(mode="nearest"): source index min(floor(dst * in/out), in - 1). */
static int nearest_index(int in, int out, int i)
{
    int s = (int)floorf((float)i * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

static void upscale_nearest(const float *x, int planes, int ih, int iw, float *y, int oh, int ow)
{
    for (int p = 0; p < planes; p++)
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++)
                y[((size_t)p * oh + oy) * ow + ox] =
                    x[((size_t)p * ih + nearest_index(ih, oh, oy)) * iw + nearest_index(iw, ow, ox)];
}

/* ---- the second pass's starting latents --------------------------------------------- */

typedef struct {
    const sd_hires_params *p;
    int batch, w2, h2;
    size_t n2;             /* latent values per image of the second pass */
    float *x0;             /* Latent upscalers: batch x n2 upscaled latents */
    const uint8_t *rgb;    /* Lanczos: batch resized images, w2 x h2 RGB8 */
    /* progress over both passes */
    int steps1, total;
    sd_progress_fn progress;
    void *progress_ctx;
} hires_job;

/* StableDiffusionXLImg2ImgPipeline.prepare_latents: latents given as the
 * image are taken as they are; images are encoded, each image's posterior
 * sampled with the generators' first draw; then the noise at the first
 * timestep run. */
static sd_status second_pass_latents(void *ctx, sd_engine *e, const sd_plan *plan, int begin, sd_batch_rng *rng,
                                     float *latents, char *err, size_t errlen)
{
    hires_job *j = ctx;
    size_t n = j->n2, total = n * j->batch, px = (size_t)j->w2 * j->h2;
    float *noise = malloc(sizeof(float) * total);
    if (!noise) return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the hires latents");
    sd_status st = SD_OK;
    if (j->x0) {
        memcpy(latents, j->x0, sizeof(float) * total);
    } else {
        float *chw = malloc(sizeof(float) * px * 3), *post = malloc(sizeof(float) * 2 * total);
        st = chw && post ? SD_OK : SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the hires latents");
        for (int b = 0; st == SD_OK && b < j->batch; b++) {
            sd_vae_from_rgb8(j->rgb + (size_t)b * px * 3, j->h2, j->w2, chw);
            st = sd_engine_vae_encode(e, j->p->gen.vae, chw, j->w2, j->h2, post + 2 * n * b, post + 2 * n * b + n, err, errlen);
        }
        if (st == SD_OK) {
            sd_batch_rng_randn(rng, n, noise);
            for (int b = 0; b < j->batch; b++)
                sd_vae_posterior_sample(post + 2 * n * b, post + 2 * n * b + n, noise + n * b, n, latents + n * b);
        }
        free(chw);
        free(post);
    }
    if (st == SD_OK) {
        sd_batch_rng_randn(rng, n, noise);
        sd_sampler_add_noise(plan, begin, latents, noise, latents, total);
    }
    free(noise);
    return st;
}

/* ---- progress over both passes ----------------------------------------------------- */

static int first_pass_progress(void *ctx, int step, int total)
{
    hires_job *j = ctx;
    return j->progress ? j->progress(j->progress_ctx, step, j->total) : 0;
}

static int second_pass_progress(void *ctx, int step, int total)
{
    hires_job *j = ctx;
    return j->progress ? j->progress(j->progress_ctx, j->steps1 + step, j->total) : 0;
}

/* ---- the job -------------------------------------------------------------------------- */

static sd_status check(const sd_hires_params *p, char *err, size_t errlen)
{
    if (!isfinite(p->scale) || p->scale < SD_HIRES_SCALE_MIN || p->scale > SD_HIRES_SCALE_MAX)
        return SD_FAIL(SD_EINVALID, err, errlen, "hr_scale must be between %g and %g (got %g)", SD_HIRES_SCALE_MIN,
                    SD_HIRES_SCALE_MAX, p->scale);
    if ((unsigned)p->upscaler >= SD_HIRES_COUNT) return SD_FAIL(SD_EINVALID, err, errlen, "unknown hires upscaler");
    if (p->hr_steps < 0 || p->hr_steps > SD_MAX_STEPS)
        return SD_FAIL(SD_EINVALID, err, errlen, "hr_steps must be between 0 and %d (got %d)", SD_MAX_STEPS,
                    p->hr_steps);
    if (!isfinite(p->denoising_strength) || p->denoising_strength <= 0.0 || p->denoising_strength > 1.0)
        return SD_FAIL(SD_EINVALID, err, errlen, "denoising_strength must be greater than 0 and at most 1 (got %g)",
                    p->denoising_strength);
    if (sd_hires_steps_run(p->gen.steps, p->hr_steps, p->denoising_strength) < 1)
        return SD_FAIL(SD_EINVALID, err, errlen, "denoising_strength %g with %d hires steps leaves no step to run "
                    "(int(steps * strength) = 0); raise denoising_strength or hr_steps", p->denoising_strength,
                    p->hr_steps ? p->hr_steps : p->gen.steps);
    return SD_OK;
}

/* The first pass: latents (Latent upscalers) or images (Lanczos), upscaled
 * into j->x0 or j->rgb. */
static sd_status first_pass(sd_engine *e, hires_job *j, sd_image_out *first, char *err, size_t errlen)
{
    const sd_hires_params *p = j->p;
    sd_txt2img_params g = p->gen;
    g.progress = first_pass_progress, g.progress_ctx = j;
    int z = sd_engine_hparams(e)->vae.z_channels, lw = g.width / 8, lh = g.height / 8;
    bool latent = p->upscaler != SD_HIRES_LANCZOS;
    float *lat = latent ? malloc(sizeof(float) * z * lw * lh * j->batch) : NULL;
    sd_job_hooks hooks = {.latents_out = lat};
    sd_status st = latent && !lat ? SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the hires latents")
                                  : sd_txt2img_hooked(e, &g, latent ? &hooks : NULL, first, err, errlen);
    size_t px2 = (size_t)j->w2 * j->h2;
    if (st == SD_OK && latent) {
        j->x0 = malloc(sizeof(float) * j->n2 * j->batch);
        if (!j->x0) st = SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the hires latents");
        else if (p->upscaler == SD_HIRES_LATENT)
            upscale_bilinear(lat, z * j->batch, lh, lw, j->x0, j->h2 / 8, j->w2 / 8);
        else
            upscale_nearest(lat, z * j->batch, lh, lw, j->x0, j->h2 / 8, j->w2 / 8);
    } else if (st == SD_OK) {
        uint8_t *rgb = malloc(px2 * 3 * j->batch);
        size_t px1 = (size_t)g.width * g.height;
        for (int b = 0; rgb && b < j->batch; b++)
            if (img_resize_lanczos(first->rgb + b * px1 * 3, g.width, g.height, rgb + b * px2 * 3, j->w2, j->h2))
                free(rgb), rgb = NULL;
        j->rgb = rgb;
        if (!rgb) st = SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the hires images");
    }
    free(lat);
    return st;
}

sd_status sd_hires(sd_engine *e, const sd_hires_params *p, sd_image_out *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sd_status st = check(p, err, errlen);
    if (st) return st;
    hires_job j = {.p = p, .batch = p->gen.batch, .steps1 = p->gen.steps, .progress = p->gen.progress,
                   .progress_ctx = p->gen.progress_ctx};
    sd_hires_size(p->gen.width, p->gen.height, p->scale, sd_engine_size_multiple(e), &j.w2, &j.h2);
    j.n2 = (size_t)sd_engine_hparams(e)->vae.z_channels * (j.w2 / 8) * (j.h2 / 8);
    j.total = p->gen.steps + sd_hires_steps_run(p->gen.steps, p->hr_steps, p->denoising_strength);
    sd_image_out first = {0};
    st = first_pass(e, &j, &first, err, errlen);
    if (st == SD_OK) {
        sd_img2img_params q;
        sd_img2img_params_default(&q);
        q.gen = p->gen;
        q.gen.width = j.w2, q.gen.height = j.h2;
        q.gen.steps = p->hr_steps ? p->hr_steps : p->gen.steps;
        q.gen.progress = second_pass_progress, q.gen.progress_ctx = &j;
        q.strength = p->denoising_strength;
        sd_job_hooks hooks = {.ctx = &j, .init_latents = second_pass_latents};
        st = sd_img2img_hooked(e, &q, &hooks, out, err, errlen);
    }
    out->steps_done += first.steps_done;
    out->steps_run = j.total;
    out->t_encode += first.t_encode;
    out->t_denoise += first.t_denoise;
    out->t_decode += first.t_decode;
    out->t_total += first.t_total;
    sd_image_out_free(&first);
    free(j.x0);
    free((void *)j.rgb);
    return st;
}
