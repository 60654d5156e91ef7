/* DPM2: diffusers KDPM2DiscreteScheduler (scheduling_k_dpm_2_discrete.py).
 * Each step takes an Euler step to the geometric mean of sigma_i and
 * sigma_{i+1} (sigma_mid), evaluates the model there and redoes the step
 * with that derivative: 2N-1 evaluations, the last one a plain Euler step
 * (sigma_mid of the final 0 is 0). Karras timesteps are rounded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/samplers/samplers.h"

/* The per-evaluation sigma / sigma_mid / sigma_next (first-order evaluations
 * at even k, their corrections at odd k). */
typedef struct {
    float sigma, mid, next;
} dpm2_point;

/* sigmas_interpol = sigmas.log().lerp(sigmas.roll(1).log(), 0.5).exp(). */
float sd_dpm2_log_midpoint(float start, float end)
{
    float ls = logf(start), le = logf(end);
    return expf(le - (le - ls) * 0.5f);
}

static void dpm2_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 1, t, sigma);
    sd_plan_store(p, n, t, sigma); /* provisional: sigmas[0..n] */
    float s[n + 1];
    memcpy(s, p->sigmas, sizeof s);
    /* timesteps [t0, t_mid1, t1, t_mid2, t2, ...], t_mid = _sigma_to_t(mid) */
    p->n_evals = 2 * n - 1;
    for (int i = 1; i < n; i++) {
        p->timesteps[2 * i - 1] = (float)sd_sigma_to_t(sd_dpm2_log_midpoint(s[i], s[i - 1]));
        p->timesteps[2 * i] = (float)t[i];
    }
    p->timesteps[0] = (float)t[0];
    /* interleaved sigmas [s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0, 0] */
    p->n_sigmas = 2 * n + 2;
    for (int k = 0; k < p->n_sigmas; k++) p->sigmas[k] = s[k + 1 < 2 * n + 1 ? (k + 1) / 2 : n];
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

static int dpm2_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 3);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *x_in = buf, *eps = buf + n, *x_first = buf + 2 * n;
    int rc = 0;
    for (int k = begin; k < p->n_evals && !rc; k++) {
        int first = k % 2 == 0;
        /* sigmas / sigmas_interpol at the interleaved index of this step */
        int base = first ? k : k - 1;
        dpm2_point pt = {p->sigmas[base], 0.0f, p->sigmas[base + 1]};
        float lo = p->sigmas[base + 1], hi = p->sigmas[base];
        pt.mid = lo > 0.0f ? sd_dpm2_log_midpoint(lo, hi) : 0.0f;
        sd_scale_input(x, first ? pt.sigma : pt.mid, x_in, n);
        if ((rc = sd_eps(io, x_in, p->timesteps[k], eps))) break;
        if (first) {
            float dt = pt.mid - pt.sigma;
            memcpy(x_first, x, n * sizeof(float));
            for (size_t j = 0; j < n; j++) {
                float x0 = x[j] - pt.sigma * eps[j];
                float d = (x[j] - x0) / pt.sigma;
                x[j] = x[j] + d * dt;
            }
        } else {
            float dt = pt.next - pt.sigma;
            for (size_t j = 0; j < n; j++) {
                float x0 = x[j] - pt.mid * eps[j];
                float d = (x[j] - x0) / pt.mid;
                x[j] = x_first[j] + d * dt;
            }
        }
        sd_step_done(io, k + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_dpm2_ops = {dpm2_plan, dpm2_run};
