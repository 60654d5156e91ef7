/* Inpainting jobs (see sd/inpaint.h): A1111's mask and image preparation,
 * the engine's img2img run with hooks for the pipeline's starting latents
 * (prepare_latents, prepare_mask_latents), its per-step blend or extra UNet
 * channels, then A1111's overlay. */
#include "sd/inpaint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/mask.h"
#include "image/resize.h"
#include "sd/error.h"
#include "sd/vae.h"

typedef struct {
    const sd_inpaint_params *p;
    int w, h, lw, lh, batch;
    size_t n;              /* latent values per image */
    int box[4];            /* "only masked": the crop region of the init image */
    uint8_t *blurred;      /* the blurred mask, init image size */
    uint8_t *image;        /* what the model works on, w x h RGB8 */
    uint8_t *mask;         /* its mask, w x h */
    float *latent_mask;    /* the binarised mask at latent size (1: repaint) */
    float *image_latents;  /* batch x n: the image's VAE sample (base UNets) */
    float *noise;          /* batch x n: the noise of prepare_latents */
    float *proper;         /* n: scratch of the blend (base UNets) */
    float *extra;          /* batch x (1 + 4) x lh x lw: mask, masked-image latents (inpainting UNets) */
} inpaint_job;

void sd_inpaint_params_default(sd_inpaint_params *p)
{
    memset(p, 0, sizeof *p);
    sd_img2img_params_default(&p->i2i);
    p->i2i.strength = SD_INPAINT_STRENGTH_DEFAULT;
    p->mask_blur = SD_INPAINT_BLUR_DEFAULT;
    p->area = SD_INPAINT_WHOLE;
    p->padding = SD_INPAINT_PADDING_DEFAULT;
}

static sd_status check(const sd_inpaint_params *p, char *err, size_t errlen)
{
    const sd_img2img_params *q = &p->i2i;
    if (!q->init_rgb || !p->mask) return SD_FAIL(SD_EINVALID, err, errlen, "inpainting needs an image and a mask");
    if (q->init_width < 1 || q->init_height < 1 || q->init_width > SD_MAX_INIT_SIDE ||
        q->init_height > SD_MAX_INIT_SIDE)
        return SD_FAIL(SD_EINVALID, err, errlen, "the init image must be 1 to %d pixels per side (got %dx%d)",
                    SD_MAX_INIT_SIDE, q->init_width, q->init_height);
    if (p->mask_blur < 0 || p->mask_blur > SD_INPAINT_BLUR_MAX)
        return SD_FAIL(SD_EINVALID, err, errlen, "mask_blur must be between 0 and %d (got %d)", SD_INPAINT_BLUR_MAX,
                    p->mask_blur);
    if (p->padding < 0 || p->padding > SD_INPAINT_PADDING_MAX)
        return SD_FAIL(SD_EINVALID, err, errlen, "inpaint_padding must be between 0 and %d (got %d)",
                    SD_INPAINT_PADDING_MAX, p->padding);
    if (p->area != SD_INPAINT_WHOLE && p->area != SD_INPAINT_MASKED)
        return SD_FAIL(SD_EINVALID, err, errlen, "unknown inpaint area");
    if (!img_mask_any(p->mask, q->init_width, q->init_height))
        return SD_FAIL(SD_EINVALID, err, errlen, "the mask is all black: nothing to repaint (white marks the area "
                    "to repaint)");
    return SD_OK;
}

/* ---- preparation: A1111's blur, then the whole picture or the crop -------------- */

static int prepare_pixels(inpaint_job *j)
{
    const sd_inpaint_params *p = j->p;
    const sd_img2img_params *q = &p->i2i;
    int iw = q->init_width, ih = q->init_height;
    size_t init_px = (size_t)iw * ih, px = (size_t)j->w * j->h;
    j->blurred = malloc(init_px);
    j->image = malloc(px * 3);
    j->mask = malloc(px);
    if (!j->blurred || !j->image || !j->mask) return -1;
    memcpy(j->blurred, p->mask, init_px);
    if (img_mask_blur(j->blurred, iw, ih, p->mask_blur)) return -1;
    if (p->area == SD_INPAINT_WHOLE)
        return img_resize_lanczos(q->init_rgb, iw, ih, j->image, j->w, j->h) ||
                       img_mask_resize(img_resize_lanczos, j->blurred, iw, ih, j->mask, j->w, j->h)
                   ? -1
                   : 0;
    img_mask_crop_region(j->blurred, iw, ih, p->padding, j->w, j->h, j->box);
    int cw = j->box[2] - j->box[0], ch = j->box[3] - j->box[1];
    uint8_t *crop = malloc((size_t)cw * ch * 3);
    int rc = crop ? 0 : -1;
    if (!rc) {
        img_crop(q->init_rgb, iw, 3, j->box[0], j->box[1], cw, ch, crop);
        rc = img_resize_fill(crop, cw, ch, j->image, j->w, j->h);
    }
    if (!rc) {
        img_crop(j->blurred, iw, 1, j->box[0], j->box[1], cw, ch, crop);
        rc = img_mask_resize(img_resize_fill, crop, cw, ch, j->mask, j->w, j->h);
    }
    free(crop);
    return rc;
}

/* mask_processor's binarize (>= 0.5 repaints), then F.interpolate(nearest)
 * to the latents: latent pixel (y, x) reads pixel (8y, 8x). */
static void latent_mask(inpaint_job *j)
{
    for (int y = 0; y < j->lh; y++)
        for (int x = 0; x < j->lw; x++)
            j->latent_mask[y * j->lw + x] = j->mask[(size_t)8 * y * j->w + 8 * x] >= 128 ? 1.0f : 0.0f;
}

/* ---- the engine hooks ------------------------------------------------------------ */

/* _encode_vae_image: the VAE sample (times the scaling factor) of one
 * image for each of the batch, the draw shared or per image. */
static sd_status vae_sample(inpaint_job *j, sd_engine *e, const float *chw, sd_batch_rng *rng, float *out,
                            char *err, size_t errlen)
{
    size_t n = j->n;
    float *post = malloc(sizeof(float) * 2 * n), *z = malloc(sizeof(float) * n * j->batch);
    sd_status st = post && z ? sd_engine_vae_encode(e, j->p->i2i.gen.vae, chw, j->w, j->h, post, post + n, err, errlen)
                             : SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the inpainting latents");
    if (st == SD_OK) {
        sd_batch_rng_randn_shared(rng, n, z);
        for (int b = 0; b < j->batch; b++) sd_vae_posterior_sample(post, post + n, z + b * n, n, out + b * n);
    }
    free(post);
    free(z);
    return st;
}

/* The masked image (zero, mid grey, where the binarised mask repaints):
 * for an inpainting UNet its VAE sample joins the mask as the extra
 * channels; for a base UNet only its draw is taken, as the pipeline encodes
 * it either way. */
static sd_status masked_image_latents(inpaint_job *j, sd_engine *e, float *chw, sd_batch_rng *rng, char *err,
                                      size_t errlen)
{
    size_t px = (size_t)j->w * j->h, n = j->n, lpx = (size_t)j->lw * j->lh;
    for (size_t i = 0; i < px; i++)
        if (j->mask[i] >= 128) chw[i] = chw[px + i] = chw[2 * px + i] = 0.0f;
    float *lat = malloc(sizeof(float) * n * j->batch);
    if (!lat) return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the inpainting latents");
    sd_status st = SD_OK;
    if (j->extra) {
        st = vae_sample(j, e, chw, rng, lat, err, errlen);
        for (int b = 0; st == SD_OK && b < j->batch; b++) {
            float *dst = j->extra + (size_t)b * (lpx + n);
            memcpy(dst, j->latent_mask, sizeof(float) * lpx);
            memcpy(dst + lpx, lat + (size_t)b * n, sizeof(float) * n);
        }
    } else {
        sd_batch_rng_randn_shared(rng, n, lat);
    }
    free(lat);
    return st;
}

/* prepare_latents and prepare_mask_latents of the pipeline, in its order. */
static sd_status init_latents(void *ctx, sd_engine *e, const sd_plan *plan, int begin, sd_batch_rng *rng,
                              float *latents, char *err, size_t errlen)
{
    inpaint_job *j = ctx;
    size_t total = j->n * j->batch, px = (size_t)j->w * j->h;
    bool strength_max = j->p->i2i.strength == 1.0;
    float *chw = malloc(sizeof(float) * px * 3);
    if (!chw) return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the inpainting latents");
    sd_vae_from_rgb8(j->image, j->h, j->w, chw);
    sd_status st = j->image_latents ? vae_sample(j, e, chw, rng, j->image_latents, err, errlen) : SD_OK;
    if (st == SD_OK) {
        sd_batch_rng_randn(rng, j->n, j->noise);
        if (strength_max)
            for (size_t i = 0; i < total; i++) latents[i] = j->noise[i] * plan->init_noise_sigma;
        else
            sd_sampler_add_noise(plan, begin, j->image_latents, j->noise, latents, total);
        st = masked_image_latents(j, e, chw, rng, err, errlen);
    }
    free(chw);
    return st;
}

/* A base UNet's step: latents = (1 - m) * image latents noised to the next
 * timestep (clean after the last) + m * latents. */
static void blend(void *ctx, const sd_plan *plan, int next_eval, float *x)
{
    inpaint_job *j = ctx;
    size_t lpx = (size_t)j->lw * j->lh;
    float *proper = j->proper;
    for (int b = 0; b < j->batch; b++) {
        const float *x0 = j->image_latents + (size_t)b * j->n;
        if (next_eval < plan->n_evals) sd_sampler_add_noise(plan, next_eval, x0, j->noise + b * j->n, proper, j->n);
        else memcpy(proper, x0, sizeof(float) * j->n);
        float *xb = x + (size_t)b * j->n;
        for (size_t i = 0; i < j->n; i++) {
            float m = j->latent_mask[i % lpx];
            xb[i] = (1.0f - m) * proper[i] + m * xb[i];
        }
    }
}

/* ---- the paste-back --------------------------------------------------------------- */

/* A1111's overlay on every image; "only masked" returns images of the init
 * image's size in out. */
static sd_status overlay_all(inpaint_job *j, sd_image_out *out, char *err, size_t errlen)
{
    const sd_inpaint_params *p = j->p;
    bool masked = p->area == SD_INPAINT_MASKED;
    int ow = masked ? p->i2i.init_width : j->w, oh = masked ? p->i2i.init_height : j->h;
    size_t gen_bytes = (size_t)j->w * j->h * 3, out_bytes = (size_t)ow * oh * 3;
    uint8_t *rgb = malloc(out_bytes * j->batch), *overlay_mask = masked ? NULL : malloc((size_t)j->w * j->h);
    if (!rgb || (!masked && !overlay_mask)) {
        free(rgb);
        free(overlay_mask);
        return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the overlay");
    }
    for (size_t i = 0; !masked && i < (size_t)j->w * j->h; i++) /* mask_for_overlay: clip(2 * mask) */
        overlay_mask[i] = j->mask[i] >= 128 ? 255 : (uint8_t)(2 * j->mask[i]);
    int rc = 0;
    for (int b = 0; !rc && b < j->batch; b++)
        rc = masked ? img_overlay(out->rgb + b * gen_bytes, j->w, j->h, p->i2i.init_rgb, j->blurred, ow, oh, j->box,
                                  rgb + b * out_bytes)
                    : img_overlay(out->rgb + b * gen_bytes, j->w, j->h, j->image, overlay_mask, ow, oh, NULL,
                                  rgb + b * out_bytes);
    free(overlay_mask);
    if (rc) {
        free(rgb);
        return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the overlay");
    }
    free(out->rgb);
    out->rgb = rgb;
    out->width = ow, out->height = oh;
    return SD_OK;
}

/* ---- the job ---------------------------------------------------------------------- */

static void job_free(inpaint_job *j)
{
    free(j->blurred);
    free(j->image);
    free(j->mask);
    free(j->latent_mask);
    free(j->image_latents);
    free(j->noise);
    free(j->proper);
    free(j->extra);
}

static int alloc_latents(inpaint_job *j, sd_engine *e)
{
    size_t lpx = (size_t)j->lw * j->lh, total = j->n * j->batch;
    bool unet9 = sd_engine_extra_channels(e) > 0;
    j->latent_mask = malloc(sizeof(float) * lpx);
    j->noise = malloc(sizeof(float) * total);
    if (!unet9 || j->p->i2i.strength < 1.0) j->image_latents = malloc(sizeof(float) * total);
    if (unet9) j->extra = malloc(sizeof(float) * (lpx + j->n) * j->batch);
    else j->proper = malloc(sizeof(float) * j->n);
    return j->latent_mask && j->noise && (j->image_latents || (unet9 && j->p->i2i.strength >= 1.0)) &&
                   (unet9 ? j->extra != NULL : j->proper != NULL)
               ? 0
               : -1;
}

sd_status sd_inpaint(sd_engine *e, const sd_inpaint_params *p, sd_image_out *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    sd_status st = check(p, err, errlen);
    if (st) return st;
    const sd_txt2img_params *g = &p->i2i.gen;
    int m = sd_engine_size_multiple(e), extra = sd_engine_extra_channels(e);
    if (g->width < m || g->height < m || g->width % m || g->height % m || g->width > SD_MAX_SIDE ||
        g->height > SD_MAX_SIDE || g->batch < 1 || g->batch > SD_MAX_BATCH)
        return SD_FAIL(SD_EINVALID, err, errlen, "width and height must be multiples of %d between %d and %d, "
                    "and 1 to %d images (got %dx%d, %d)", m, m, SD_MAX_SIDE, SD_MAX_BATCH, g->width, g->height,
                    g->batch);
    if (extra && extra != 1 + sd_engine_hparams(e)->vae.z_channels)
        return SD_FAIL(SD_EMODEL, err, errlen, "the UNet takes %d extra channels; inpainting needs 5", extra);
    inpaint_job j = {.p = p, .w = g->width, .h = g->height, .lw = g->width / 8, .lh = g->height / 8,
                     .batch = g->batch};
    j.n = (size_t)sd_engine_hparams(e)->vae.z_channels * j.lw * j.lh;
    if (prepare_pixels(&j) || alloc_latents(&j, e)) {
        job_free(&j);
        return SD_FAIL(SD_ENOMEM, err, errlen, "out of memory for the inpainting job");
    }
    latent_mask(&j);
    sd_job_hooks hooks = {.ctx = &j, .init_latents = init_latents, .after_step = extra ? NULL : blend,
                          .extra_channels = extra, .extra = j.extra};
    sd_img2img_params q = p->i2i;
    st = sd_img2img_hooked(e, &q, &hooks, out, err, errlen);
    if (st == SD_OK && (p->area == SD_INPAINT_MASKED || !p->no_overlay)) st = overlay_all(&j, out, err, errlen);
    if (st != SD_OK) { /* the engine's failures leave no images; the overlay's neither */
        free(out->rgb);
        free(out->seeds);
        out->rgb = NULL, out->seeds = NULL;
    }
    job_free(&j);
    return st;
}
