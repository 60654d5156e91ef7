/* Classifier-free guidance and guidance_rescale (see sd/guidance.h), after
 * diffusers pipeline_stable_diffusion_xl.py (the denoising loop and
 * rescale_noise_cfg). */
#include "sd/guidance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sd_cfg_denoiser_init(sd_cfg_denoiser *d, sd_model_fn model, void *model_ctx, int batch,
                         size_t n_per_image, float cfg, float guidance_rescale)
{
    memset(d, 0, sizeof *d);
    if (batch < 1) return -1;
    d->model = model, d->model_ctx = model_ctx;
    d->batch = batch, d->n_per_image = n_per_image;
    d->cfg = cfg, d->guidance_rescale = guidance_rescale;
    if (cfg > 1.0f) {
        d->buf = malloc(4 * (size_t)batch * n_per_image * sizeof(float));
        if (!d->buf) return -1;
    }
    return 0;
}

void sd_cfg_denoiser_free(sd_cfg_denoiser *d)
{
    free(d->buf);
    d->buf = NULL;
}

/* eps = eps_u + cfg * (eps_c - eps_u) */
void sd_cfg_combine(const float *eps_u, const float *eps_c, float cfg, size_t n, float *eps)
{
    for (size_t j = 0; j < n; j++) eps[j] = eps_u[j] + cfg * (eps_c[j] - eps_u[j]);
}

/* Unbiased standard deviation (torch.std default), in double. */
static double std_unbiased(const float *v, size_t n)
{
    double mean = 0.0, ss = 0.0;
    for (size_t j = 0; j < n; j++) mean += v[j];
    mean /= (double)n;
    for (size_t j = 0; j < n; j++) ss += ((double)v[j] - mean) * ((double)v[j] - mean);
    return sqrt(ss / (double)(n - 1));
}

/* rescale_noise_cfg: phi * (eps * (std_c / std_g)) + (1 - phi) * eps */
void sd_cfg_rescale(const float *eps_c, float phi, size_t n, float *eps)
{
    float std_c = (float)std_unbiased(eps_c, n), std_g = (float)std_unbiased(eps, n);
    float ratio = std_c / std_g, keep = (float)(1.0 - (double)phi);
    for (size_t j = 0; j < n; j++) {
        float rescaled = eps[j] * ratio;
        eps[j] = phi * rescaled + keep * eps[j];
    }
}

int sd_cfg_eps(void *ctx, const float *x_in, float t, float *eps)
{
    sd_cfg_denoiser *d = ctx;
    size_t n = (size_t)d->batch * d->n_per_image;
    if (d->cfg <= 1.0f) return d->model(d->model_ctx, x_in, d->batch, 0, t, eps);
    float *in = d->buf, *out = d->buf + 2 * n;
    memcpy(in, x_in, n * sizeof(float));
    memcpy(in + n, x_in, n * sizeof(float));
    int rc = d->model(d->model_ctx, in, 2 * d->batch, 1, t, out);
    if (rc) return rc;
    for (int b = 0; b < d->batch; b++) {
        size_t off = (size_t)b * d->n_per_image;
        const float *eps_u = out + off, *eps_c = out + n + off;
        sd_cfg_combine(eps_u, eps_c, d->cfg, d->n_per_image, eps + off);
        if (d->guidance_rescale > 0.0f)
            sd_cfg_rescale(eps_c, d->guidance_rescale, d->n_per_image, eps + off);
    }
    return 0;
}
