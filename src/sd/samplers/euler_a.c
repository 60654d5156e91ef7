/* Euler a: diffusers EulerAncestralDiscreteScheduler
 * (scheduling_euler_ancestral_discrete.py). Timestep spacings only (the class
 * has no Karras/exponential/beta option). Each step draws one noise tensor
 * of the latent's shape from the pipeline generator, the last step too. */
#include <math.h>
#include <stdlib.h>

#include "sd/samplers/samplers.h"

static void euler_a_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 0, t, sigma);
    sd_plan_store(p, n, t, sigma);
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

/* step(): sigma_up = sqrt(to^2 (from^2 - to^2) / from^2),
 * sigma_down = sqrt(to^2 - up^2); x += d*(sigma_down - sigma) + z*sigma_up. */
static void euler_a_step(float *x, const float *eps, const float *z, float from, float to, size_t n)
{
    float up = sqrtf(to * to * (from * from - to * to) / (from * from));
    float down = sqrtf(to * to - up * up);
    float dt = down - from;
    for (size_t j = 0; j < n; j++) {
        float x0 = x[j] - from * eps[j];
        float d = (x[j] - x0) / from;
        float prev = x[j] + d * dt;
        x[j] = prev + z[j] * up;
    }
}

static int euler_a_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    float *x_in = sd_latents_alloc(io, 3);
    if (!x_in) return SD_SAMPLE_ENOMEM;
    float *eps = x_in + io->n, *z = eps + io->n;
    int rc = 0;
    for (int i = begin; i < p->n_evals && !rc; i++) {
        sd_scale_input(x, p->sigmas[i], x_in, io->n);
        if (!(rc = sd_eps(io, x_in, p->timesteps[i], eps)) && !(rc = sd_noise(io, z)))
            euler_a_step(x, eps, z, p->sigmas[i], p->sigmas[i + 1], io->n);
        if (!rc) sd_step_done(io, i + 1, x);
    }
    free(x_in);
    return rc;
}

const sd_sampler_ops sd_euler_a_ops = {euler_a_plan, euler_a_run};
