/* Hires fix: A1111's "Hires. fix" (AUTOMATIC1111 1.10 modules/processing.py
 * StableDiffusionProcessingTxt2Img.sample and sample_hr_pass) on the engine.
 * Owner: the worker's txt2img jobs with hr_scale. docs/hires.md has the
 * recipe and its reference.
 *
 *   1. txt2img at width x height;
 *   2. the upscale to int(width * scale) x int(height * scale), each rounded
 *      down to the engine's size multiple (8; A1111's upscalers and its
 *      VAE encoder give that size too):
 *        Latent            the latents, torch F.interpolate bilinear
 *                          (align_corners False, no antialias)
 *        Latent (nearest)  the latents, F.interpolate nearest
 *        Lanczos           the decoded images, PIL LANCZOS, then VAE-encoded
 *                          with a posterior sample from the generators
 *   3. img2img at the larger size with the same seeds (fresh generators, as
 *      A1111's second ImageRNG), hr_steps (0: the first pass's) and
 *      denoising_strength under img2img's strength rule (diffusers'
 *      StableDiffusionXLImg2ImgPipeline, which takes latents as its image).
 * Progress counts both passes: steps, then int(hr_steps * strength). */
#ifndef SDXL_SD_HIRES_H
#define SDXL_SD_HIRES_H

#include "sd/engine.h"

typedef enum { SD_HIRES_LATENT = 0, SD_HIRES_LATENT_NEAREST, SD_HIRES_LANCZOS, SD_HIRES_COUNT } sd_hires_upscaler;

#define SD_HIRES_SCALE_MIN 1.0
#define SD_HIRES_SCALE_MAX 2.0
#define SD_HIRES_STRENGTH_DEFAULT 0.7 /* A1111's denoising strength for hires fix */

typedef struct {
    sd_txt2img_params gen;     /* the first pass */
    double scale;              /* SD_HIRES_SCALE_MIN..MAX */
    sd_hires_upscaler upscaler;
    int hr_steps;              /* 0: gen.steps */
    double denoising_strength; /* (0, 1] */
} sd_hires_params;

/* txt2img's defaults, scale 2, Latent, hr_steps 0, strength 0.7. */
void sd_hires_params_default(sd_hires_params *p);

/* A1111's names, exactly as its infotext writes them: "Latent",
 * "Latent (nearest)", "Lanczos"; matched case-insensitively. 0, or -1 with
 * the valid names in err. */
int sd_hires_upscaler_parse(const char *name, sd_hires_upscaler *out, char *err, size_t errlen);
const char *sd_hires_upscaler_label(sd_hires_upscaler u);

/* The second pass's size: int(side * scale) rounded down to `multiple`. */
void sd_hires_size(int width, int height, double scale, int multiple, int *w2, int *h2);

/* Steps of the second pass: int(steps2 * strength), steps2 = hr_steps or
 * steps; 0 means nothing would be denoised (refused). */
int sd_hires_steps_run(int steps, int hr_steps, double strength);

/* Runs one hires-fix job; outputs and statuses as sd_txt2img (out is the
 * second pass's images; steps_run and steps_done count both passes, the
 * timings add up). SD_EINVALID also for a scale, hr_steps or strength out of
 * range. */
sd_status sd_hires(sd_engine *e, const sd_hires_params *p, sd_image_out *out, char *err, size_t errlen);

#endif
