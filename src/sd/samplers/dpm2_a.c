/* DPM2 a: diffusers KDPM2AncestralDiscreteScheduler
 * (scheduling_k_dpm_2_ancestral_discrete.py). Like DPM2 but the step goes to
 * sigma_down, the midpoint is the geometric mean of sigma_i and sigma_down,
 * and each correction adds sigma_up times one noise draw (none on the final
 * plain Euler step). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/samplers/samplers.h"

typedef struct {
    float up, down, mid;
} ancestral;

/* sigmas_up / sigmas_down / sigmas_interpol of step i (tensor math in fp32):
 * up = sqrt(next^2 (s^2 - next^2) / s^2), down = sqrt(next^2 - up^2), the
 * last two midpoints 0. */
static ancestral ancestral_at(const float *s, int n, int i)
{
    ancestral a = {0.0f, 0.0f, 0.0f};
    float cur = s[i], next = i < n ? s[i + 1] : 0.0f;
    a.up = sqrtf(next * next * (cur * cur - next * next) / (cur * cur));
    a.down = i < n ? sqrtf(next * next - a.up * a.up) : 0.0f;
    if (i < n - 1) a.mid = sd_dpm2_log_midpoint(cur, a.down);
    return a;
}

static void dpm2_a_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 1, t, sigma);
    sd_plan_store(p, n, t, sigma);
    float s[n + 1];
    memcpy(s, p->sigmas, sizeof s);
    /* timesteps [t0, t_mid0, t1, t_mid1, t2, ..., t_mid_{n-2}, t_{n-1}] */
    p->n_evals = 2 * n - 1;
    p->timesteps[0] = (float)t[0];
    for (int j = 0; j + 1 < n; j++) {
        p->timesteps[2 * j + 1] = (float)sd_sigma_to_t(ancestral_at(s, n, j).mid);
        p->timesteps[2 * j + 2] = (float)t[j + 1];
    }
    p->n_sigmas = 2 * n + 2;
    for (int k = 0; k < p->n_sigmas; k++) p->sigmas[k] = s[k <= 2 * n ? (k + 1) / 2 : n];
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

static int dpm2_a_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    int steps = p->n_sigmas / 2 - 1; /* sigmas before interleaving: steps + 1 */
    float s[steps + 1];
    for (int j = 0; j <= steps; j++) s[j] = p->sigmas[j ? 2 * j : 0];
    float *buf = sd_latents_alloc(io, 4);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *x_in = buf, *eps = buf + n, *x_first = buf + 2 * n, *z = buf + 3 * n;
    int rc = 0;
    for (int k = begin; k < p->n_evals && !rc; k++) {
        int first = k % 2 == 0, j = k / 2;
        float sigma = s[j];
        ancestral a = ancestral_at(s, steps, j);
        sd_scale_input(x, first ? sigma : a.mid, x_in, n);
        if ((rc = sd_eps(io, x_in, p->timesteps[k], eps))) break;
        if (first) {
            float dt = a.mid - sigma;
            memcpy(x_first, x, n * sizeof(float));
            for (size_t q = 0; q < n; q++) {
                float x0 = x[q] - sigma * eps[q];
                float d = (x[q] - x0) / sigma;
                x[q] = x[q] + d * dt;
            }
        } else {
            if ((rc = sd_noise(io, z))) break;
            float dt = a.down - sigma;
            for (size_t q = 0; q < n; q++) {
                float x0 = x[q] - a.mid * eps[q];
                float d = (x[q] - x0) / a.mid;
                float prev = x_first[q] + d * dt;
                x[q] = prev + z[q] * a.up;
            }
        }
        sd_step_done(io, k + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_dpm2_a_ops = {dpm2_a_plan, dpm2_a_run};
