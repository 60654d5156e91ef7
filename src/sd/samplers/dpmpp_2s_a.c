/* DPM++ 2S a: k-diffusion's sample_dpmpp_2s_ancestral (k_diffusion/sampling.py
 * of k-diffusion 0.1.1.post1) with eta 1 and s_noise 1, which is what A1111
 * runs for "DPM++ 2S a". diffusers has no such scheduler.
 *
 * The model is seen through k-diffusion's CompVisDenoiser
 * (k_diffusion/external.py, DiscreteEpsDDPMDenoiser): the UNet gets
 * x * c_in with c_in = 1/sqrt(sigma^2 + 1) at t = sigma_to_t(sigma), and
 * denoised = x - sigma * eps. Per step i, with get_ancestral_step's
 *   up = min(next, sqrt(next^2 (sigma^2 - next^2) / sigma^2)),
 *   down = sqrt(next^2 - up^2):
 *   - down == 0 (the last step, next = 0): one Euler step to down;
 *   - otherwise DPM-Solver++(2S) in t = -log sigma, h = t(down) - t, with
 *     the midpoint s = t + h/2 evaluated at sigma(s) = exp(-s):
 *       x_2 = (sigma(s)/sigma(t)) x - expm1(-h/2) D(x, sigma_i)
 *       x   = (sigma(t_next)/sigma(t)) x - expm1(-h) D(x_2, sigma(s));
 *   - then, if next > 0, x += up * z with one draw z from the noise source.
 * All of it in fp32, in k-diffusion's operation order.
 *
 * The sigmas are the Euler-family schedule of the schedule type
 * (sd_discrete_schedule, diffusers' EulerDiscreteScheduler.sigmas, final 0);
 * the run starts from sigma_0 * z, as A1111's KDiffusionSampler.sample does.
 * down > 0 whenever next > 0: down is about next^2/sigma, which fp32 keeps
 * above 0 while sigma/next < 2^12, and the training sigmas span a ratio of
 * about 501. So every step but the last evaluates the model twice, and step
 * i's first evaluation is 2i (img2img's begin, sd/sampler.h). */
#include <math.h>
#include <stdlib.h>

#include "sd/samplers/samplers.h"

/* The scalars of one step (0-d fp32 tensors in k-diffusion). */
typedef struct {
    float up, down;
    float mid;                   /* sigma(s), the midpoint's sigma */
    float x_scale_mid, d_scale_mid; /* x_2 = x_scale_mid x - d_scale_mid D */
    float x_scale, d_scale;      /* x = x_scale x - d_scale D(x_2) */
} step_coeffs;

static step_coeffs coeffs_at(float sigma, float next)
{
    step_coeffs c = {0};
    float up = sqrtf(next * next * (sigma * sigma - next * next) / (sigma * sigma));
    c.up = up < next ? up : next; /* Python's min(next, up) */
    c.down = sqrtf(next * next - c.up * c.up);
    if (c.down == 0.0f) return c;
    float t = -logf(sigma), t_next = -logf(c.down);
    float h = t_next - t, s = t + h * 0.5f;
    float sigma_t = expf(-t);
    c.mid = expf(-s);
    c.x_scale_mid = c.mid / sigma_t;
    c.d_scale_mid = expm1f(-h * 0.5f);
    c.x_scale = expf(-t_next) / sigma_t;
    c.d_scale = expm1f(-h);
    return c;
}

/* timesteps: sigma_to_t of every sigma the model sees, in order. */
static void dpmpp_2s_a_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 0, t, sigma);
    sd_plan_store(p, n, t, sigma);
    int k = 0;
    for (int i = 0; i < n; i++) {
        step_coeffs c = coeffs_at(p->sigmas[i], p->sigmas[i + 1]);
        p->timesteps[k++] = (float)sd_sigma_to_t(p->sigmas[i]);
        if (c.down > 0.0f) p->timesteps[k++] = (float)sd_sigma_to_t(c.mid);
    }
    p->n_evals = k;
    p->init_noise_sigma = p->sigmas[0];
}

/* CompVisDenoiser: out = x - sigma * eps(x * c_in, t). */
static int denoise(const sd_sample_io *io, const float *x, float sigma, float t, float *x_in, float *out)
{
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f);
    for (size_t q = 0; q < io->n; q++) x_in[q] = x[q] * c_in;
    int rc = sd_eps(io, x_in, t, out);
    for (size_t q = 0; !rc && q < io->n; q++) out[q] = x[q] - out[q] * sigma;
    return rc;
}

static int dpmpp_2s_a_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 4);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *x_in = buf, *d = buf + n, *x_2 = buf + 2 * n, *z = buf + 3 * n;
    int rc = 0;
    for (int i = begin / 2, k = begin; i + 1 < p->n_sigmas && !rc; i++) {
        float sigma = p->sigmas[i], next = p->sigmas[i + 1];
        step_coeffs c = coeffs_at(sigma, next);
        if ((rc = denoise(io, x, sigma, p->timesteps[k++], x_in, d))) break;
        if (c.down == 0.0f) { /* Euler: d = (x - denoised)/sigma, x += d * (down - sigma) */
            float dt = c.down - sigma;
            for (size_t q = 0; q < n; q++) x[q] = x[q] + (x[q] - d[q]) / sigma * dt;
        } else {
            for (size_t q = 0; q < n; q++) x_2[q] = c.x_scale_mid * x[q] - c.d_scale_mid * d[q];
            if ((rc = denoise(io, x_2, c.mid, p->timesteps[k++], x_in, d))) break;
            for (size_t q = 0; q < n; q++) x[q] = c.x_scale * x[q] - c.d_scale * d[q];
        }
        if (next > 0.0f) {
            if ((rc = sd_noise(io, z))) break;
            for (size_t q = 0; q < n; q++) x[q] = x[q] + z[q] * c.up;
        }
        sd_step_done(io, k, x); /* k: the next step's first evaluation */
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_dpmpp_2s_a_ops = {dpmpp_2s_a_plan, dpmpp_2s_a_run};
