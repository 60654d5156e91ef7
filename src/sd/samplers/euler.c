/* Euler: diffusers EulerDiscreteScheduler (scheduling_euler_discrete.py),
 * s_churn 0. The SDXL default scheduler: leading spacing, steps_offset 1,
 * final sigma 0; Karras/exponential/beta sigmas with fractional timesteps. */
#include <stdlib.h>

#include "sd/samplers/samplers.h"

static void euler_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 0, t, sigma);
    sd_plan_store(p, n, t, sigma);
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

/* step(): x0 = x - sigma*eps; d = (x - x0)/sigma; x += d*(sigma_next - sigma). */
static void euler_step(float *x, const float *eps, float sigma, float sigma_next, size_t n)
{
    float dt = sigma_next - sigma;
    for (size_t j = 0; j < n; j++) {
        float x0 = x[j] - sigma * eps[j];
        float d = (x[j] - x0) / sigma;
        x[j] = x[j] + d * dt;
    }
}

static int euler_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    float *x_in = sd_latents_alloc(io, 2);
    if (!x_in) return SD_SAMPLE_ENOMEM;
    float *eps = x_in + io->n;
    int rc = 0;
    for (int i = begin; i < p->n_evals && !rc; i++) {
        sd_scale_input(x, p->sigmas[i], x_in, io->n);
        rc = sd_eps(io, x_in, p->timesteps[i], eps);
        if (!rc) euler_step(x, eps, p->sigmas[i], p->sigmas[i + 1], io->n);
        if (!rc) sd_step_done(io, i + 1, x);
    }
    free(x_in);
    return rc;
}

const sd_sampler_ops sd_euler_ops = {euler_plan, euler_run};
