/* DDIM: diffusers DDIMScheduler (scheduling_ddim.py) with eta 0 and the SDXL
 * config (clip_sample false, set_alpha_to_one false, leading + offset 1).
 * Integer timesteps; the previous timestep is t - 1000//N whatever the
 * spacing, and below 0 its alphas_cumprod is alphas_cumprod[0]. */
#include <math.h>
#include <stdlib.h>

#include "sd/samplers/samplers.h"

static void ddim_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_spacing_ddim(sd_schedule_spacing(p->choice.schedule), p->steps, 1, t);
    for (int i = 0; i < n; i++) sigma[i] = sd_sigma_at(t[i]);
    sd_plan_store(p, n, t, sigma);
    p->init_noise_sigma = 1.0f;
}

/* x0 = (x - sqrt(1 - a_t) eps)/sqrt(a_t); x = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps. */
static void ddim_step(float *x, const float *eps, float a_t, float a_prev, size_t n)
{
    float sqrt_beta = sqrtf(1.0f - a_t), sqrt_a = sqrtf(a_t);
    float sqrt_a_prev = sqrtf(a_prev), dir = sqrtf(1.0f - a_prev);
    for (size_t j = 0; j < n; j++) {
        float x0 = (x[j] - sqrt_beta * eps[j]) / sqrt_a;
        x[j] = sqrt_a_prev * x0 + dir * eps[j];
    }
}

static int ddim_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    const float *acp = sd_train_schedule_sdxl()->alphas_cumprod;
    float *eps = sd_latents_alloc(io, 1);
    if (!eps) return SD_SAMPLE_ENOMEM;
    int ratio = SD_TRAIN_STEPS / p->steps, rc = 0;
    for (int i = begin; i < p->n_evals && !rc; i++) {
        int t = (int)p->timesteps[i], prev = t - ratio;
        if (!(rc = sd_eps(io, x, p->timesteps[i], eps)))
            ddim_step(x, eps, acp[t], prev >= 0 ? acp[prev] : acp[0], io->n);
        if (!rc) sd_step_done(io, i + 1, x);
    }
    free(eps);
    return rc;
}

const sd_sampler_ops sd_ddim_ops = {ddim_plan, ddim_run};
