/* Heun: diffusers HeunDiscreteScheduler (scheduling_heun_discrete.py). Every
 * interior sigma and timestep is repeated: an Euler step to sigma_{i+1}, then
 * a correction with the model evaluated there, 2N-1 evaluations in all (the
 * last step is a plain Euler step to 0). */
#include <stdlib.h>
#include <string.h>

#include "sd/samplers/samplers.h"

/* sigmas [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0], timesteps [t0, t1, t1, ...]. */
static void heun_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 0, t, sigma);
    p->n_evals = 2 * n - 1;
    p->n_sigmas = 2 * n;
    for (int k = 0; k < p->n_evals; k++) {
        p->timesteps[k] = (float)t[(k + 1) / 2];
        p->sigmas[k] = (float)sigma[(k + 1) / 2];
    }
    p->sigmas[p->n_sigmas - 1] = 0.0f;
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

static int heun_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 4);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *x_in = buf, *eps = buf + n, *d_first = buf + 2 * n, *x_first = buf + 3 * n;
    float dt = 0.0f;
    int rc = 0;
    for (int k = begin; k < p->n_evals && !rc; k++) {
        int first = k % 2 == 0;
        sd_scale_input(x, p->sigmas[k], x_in, n);
        if ((rc = sd_eps(io, x_in, p->timesteps[k], eps))) break;
        if (first) { /* derivative at sigma, Euler step to sigma_next */
            float sigma = p->sigmas[k];
            dt = p->sigmas[k + 1] - sigma;
            memcpy(x_first, x, n * sizeof(float));
            for (size_t j = 0; j < n; j++) {
                float x0 = x[j] - sigma * eps[j];
                d_first[j] = (x[j] - x0) / sigma;
                x[j] = x[j] + d_first[j] * dt;
            }
        } else { /* average with the derivative at sigma_next, redo the step */
            float sigma_next = p->sigmas[k];
            for (size_t j = 0; j < n; j++) {
                float x0 = x[j] - sigma_next * eps[j];
                float d = (x[j] - x0) / sigma_next;
                d = (d_first[j] + d) / 2.0f;
                x[j] = x_first[j] + d * dt;
            }
        }
        sd_step_done(io, k + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_heun_ops = {heun_plan, heun_run};
