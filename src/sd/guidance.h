/* Classifier-free guidance: the denoiser the engine hands to a sampler
 * (sd_eps_fn), wrapping the UNet. Owner: the engine's denoising loop.
 *
 * As StableDiffusionXLPipeline (diffusers 0.42) does it, per model call:
 *   - guidance on when cfg > 1: the model runs once on a batch of 2B latents,
 *     [x; x], whose first B rows it conditions on the negative prompt and the
 *     last B on the prompt; eps = eps_u + cfg * (eps_c - eps_u);
 *   - guidance_rescale phi > 0 (only with guidance, rescale_noise_cfg):
 *     per image, std_c = std(eps_c) and std_g = std(eps), unbiased over all
 *     non-batch values; eps = phi * eps * (std_c / std_g) + (1 - phi) * eps;
 *   - cfg <= 1: one batch of B latents conditioned on the prompt only.
 * All in fp32 in torch's operation order; the standard deviations in double
 * (torch's CPU reduction accumulates in double), rounded to fp32. */
#ifndef SDXL_SD_GUIDANCE_H
#define SDXL_SD_GUIDANCE_H

#include <stddef.h>

/* The model: eps for `rows` latents of n_per_image floats each at timestep t.
 * with_uncond: rows = 2B, the first B to condition on the negative prompt;
 * otherwise rows = B on the prompt. 0, or a positive value to stop. */
typedef int (*sd_model_fn)(void *ctx, const float *x_in, int rows, int with_uncond, float t,
                           float *eps);

typedef struct {
    sd_model_fn model;
    void *model_ctx;
    int batch;            /* B images */
    size_t n_per_image;
    float cfg;
    float guidance_rescale;
    float *buf;           /* 4B latents of scratch when guided */
} sd_cfg_denoiser;

/* 0, or -1 when out of memory or batch < 1. */
int sd_cfg_denoiser_init(sd_cfg_denoiser *d, sd_model_fn model, void *model_ctx, int batch,
                         size_t n_per_image, float cfg, float guidance_rescale);
void sd_cfg_denoiser_free(sd_cfg_denoiser *d);

/* An sd_eps_fn: ctx is the sd_cfg_denoiser, x_in and eps hold B latents. */
int sd_cfg_eps(void *ctx, const float *x_in, float t, float *eps);

/* The guidance arithmetic alone, on one image's n values. */
void sd_cfg_combine(const float *eps_u, const float *eps_c, float cfg, size_t n, float *eps);
void sd_cfg_rescale(const float *eps_c, float phi, size_t n, float *eps);

#endif
