/* LCM: diffusers LCMScheduler (scheduling_lcm.py) with the SDXL config
 * (set_alpha_to_one false), original_inference_steps 50, timestep_scaling 10.
 * Timesteps are picked from the 50 LCM training timesteps 999, 979, ..., 19;
 * each step predicts the consistency output and, except on the last step,
 * re-noises it to the next timestep with one noise draw. */
#include <math.h>
#include <stdlib.h>

#include "sd/samplers/samplers.h"

#define LCM_ORIGINAL_STEPS 50

static void lcm_plan(sd_plan *p)
{
    int k = SD_TRAIN_STEPS / LCM_ORIGINAL_STEPS;
    double idx[p->steps], t[p->steps], sigma[p->steps];
    /* floor(linspace(0, 50, N, endpoint=False)) into the reversed origin steps */
    for (int i = 0; i < p->steps; i++) {
        idx[i] = floor((double)i * ((double)LCM_ORIGINAL_STEPS / p->steps));
        t[i] = (double)((LCM_ORIGINAL_STEPS - (int)idx[i]) * k - 1);
        sigma[i] = sd_sigma_at(t[i]);
    }
    sd_plan_store(p, p->steps, t, sigma);
    p->init_noise_sigma = 1.0f;
}

/* get_scalings_for_boundary_condition_discrete (sigma_data 0.5). */
static void boundary_scalings(int t, float *c_skip, float *c_out)
{
    float scaled = (float)t * 10.0f;
    *c_skip = 0.25f / (scaled * scaled + 0.25f);
    *c_out = scaled / sqrtf(scaled * scaled + 0.25f);
}

static int lcm_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    const float *acp = sd_train_schedule_sdxl()->alphas_cumprod;
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 2);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *eps = buf, *z = buf + n;
    int N = p->n_evals, rc = 0;
    for (int i = begin; i < N && !rc; i++) {
        int t = (int)p->timesteps[i], prev = i + 1 < N ? (int)p->timesteps[i + 1] : t;
        if ((rc = sd_eps(io, x, p->timesteps[i], eps))) break;
        float a_t = acp[t], a_prev = acp[prev], c_skip, c_out;
        float sqrt_beta = sqrtf(1.0f - a_t), sqrt_a = sqrtf(a_t);
        boundary_scalings(t, &c_skip, &c_out);
        int last = i == N - 1;
        if (!last && (rc = sd_noise(io, z))) break;
        float sa_prev = sqrtf(a_prev), sb_prev = sqrtf(1.0f - a_prev);
        for (size_t j = 0; j < n; j++) {
            float x0 = (x[j] - sqrt_beta * eps[j]) / sqrt_a;
            float denoised = c_out * x0 + c_skip * x[j];
            x[j] = last ? denoised : sa_prev * denoised + sb_prev * z[j];
        }
        sd_step_done(io, i + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_lcm_ops = {lcm_plan, lcm_run};
