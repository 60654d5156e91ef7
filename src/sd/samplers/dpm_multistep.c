/* DPM++ 2M, DPM++ 2M SDE and DPM++ 3M SDE: diffusers
 * DPMSolverMultistepScheduler (scheduling_dpmsolver_multistep.py) with
 * algorithm_type dpmsolver++ (order 2) or sde-dpmsolver++ (order 2 or 3),
 * solver_type midpoint, lower_order_final, final_sigmas_type zero.
 * Works in VP space: alpha = 1/sqrt(sigma^2+1), sigma_vp = sigma*alpha,
 * lambda = log alpha - log sigma_vp; the model sees x unscaled and
 * init_noise_sigma is 1. The SDE variants draw one noise tensor per step. */
#include <math.h>
#include <stdlib.h>

#include "sd/samplers/samplers.h"

/* Update coefficients shared by the orders:
 * ODE x_t = (s_t/s_s) x - a_t (e^-h - 1) D0 ...;
 * SDE x_t = (s_t/s_s) e^-h x + a_t (1 - e^-2h) D0 ... + s_t sqrt(1 - e^-2h) z. */
typedef struct {
    float cx, c0, cz; /* for x, D0 and the noise */
    float h;
} dpm_coef;

static dpm_coef coef(sd_vp_point t, sd_vp_point s, int sde)
{
    dpm_coef c;
    c.h = t.lambda - s.lambda;
    if (sde) {
        float e2 = expf(-2.0f * c.h);
        c.cx = t.sigma / s.sigma * expf(-c.h);
        c.c0 = t.alpha * (1.0f - e2);
        c.cz = t.sigma * sqrtf(1.0f - e2);
    } else {
        c.cx = t.sigma / s.sigma;
        c.c0 = t.alpha * (expf(-c.h) - 1.0f);
        c.cz = 0.0f;
    }
    return c;
}

/* dpm_solver_first_order_update. */
static void first_order(float *x, const float *m0, const float *z, dpm_coef c, size_t n)
{
    for (size_t j = 0; j < n; j++)
        x[j] = z ? c.cx * x[j] + c.c0 * m0[j] + c.cz * z[j] : c.cx * x[j] - c.c0 * m0[j];
}

/* multistep_dpm_solver_second_order_update, midpoint:
 * D1 = (m0 - m1)/r0 with r0 = h0/h; the D1 term is half the D0 term. */
static void second_order(float *x, const float *m0, const float *m1, const float *z, dpm_coef c,
                         float lambda_s1, float lambda_s0, size_t n)
{
    float r0 = (lambda_s0 - lambda_s1) / c.h;
    float inv_r0 = 1.0f / r0, c1 = 0.5f * c.c0;
    for (size_t j = 0; j < n; j++) {
        float d1 = inv_r0 * (m0[j] - m1[j]);
        x[j] = z ? c.cx * x[j] + c.c0 * m0[j] + c1 * d1 + c.cz * z[j]
                 : c.cx * x[j] - c.c0 * m0[j] - c1 * d1;
    }
}

/* multistep_dpm_solver_third_order_update, sde-dpmsolver++. */
static void third_order_sde(float *x, const float *m0, const float *m1, const float *m2,
                            const float *z, dpm_coef c, sd_vp_point t, const float lambda[3], size_t n)
{
    float h = c.h, r0 = (lambda[2] - lambda[1]) / h, r1 = (lambda[1] - lambda[0]) / h;
    float inv_r0 = 1.0f / r0, inv_r1 = 1.0f / r1;
    float w1 = r0 / (r0 + r1), w2 = 1.0f / (r0 + r1);
    float e2 = expf(-2.0f * h);
    float c1 = t.alpha * ((1.0f - e2) / (-2.0f * h) + 1.0f);
    float c2 = t.alpha * ((1.0f - e2 - 2.0f * h) / ((2.0f * h) * (2.0f * h)) - 0.5f);
    for (size_t j = 0; j < n; j++) {
        float d1_0 = inv_r0 * (m0[j] - m1[j]), d1_1 = inv_r1 * (m1[j] - m2[j]);
        float d1 = d1_0 + w1 * (d1_0 - d1_1), d2 = w2 * (d1_0 - d1_1);
        x[j] = c.cx * x[j] + c.c0 * m0[j] + c1 * d1 + c2 * d2 + c.cz * z[j];
    }
}

static int dpm_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x, int order, int sde)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 5);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *eps = buf, *z = sde ? buf + n : NULL;
    float *hist[3] = {buf + 2 * n, buf + 3 * n, buf + 4 * n}; /* x0 of steps i-2, i-1, i */
    float lambda[3] = {0, 0, 0};
    int N = p->n_evals, lower_order_nums = 0, rc = 0;
    for (int i = begin; i < N && !rc; i++) {
        if ((rc = sd_eps(io, x, p->timesteps[i], eps))) break;
        sd_vp_point s = sd_vp_at(p->sigmas[i]), t = sd_vp_at(p->sigmas[i + 1]);
        float *oldest = hist[0];
        hist[0] = hist[1], hist[1] = hist[2], hist[2] = oldest;
        lambda[0] = lambda[1], lambda[1] = lambda[2], lambda[2] = s.lambda;
        sd_vp_predict_x0(x, eps, s, hist[2], n);
        if (sde && (rc = sd_noise(io, z))) break;
        int lower_final = i == N - 1; /* final sigma 0 */
        int lower_second = i == N - 2 && N < 15;
        dpm_coef c = coef(t, s, sde);
        if (order == 1 || lower_order_nums < 1 || lower_final)
            first_order(x, hist[2], z, c, n);
        else if (order == 2 || lower_order_nums < 2 || lower_second)
            second_order(x, hist[2], hist[1], z, c, lambda[1], lambda[2], n);
        else
            third_order_sde(x, hist[2], hist[1], hist[0], z, c, t, lambda, n);
        if (lower_order_nums < order) lower_order_nums++;
        sd_step_done(io, i + 1, x);
    }
    free(buf);
    return rc;
}

static int dpmpp_2m_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    return dpm_run(p, begin, io, x, 2, 0);
}
static int dpmpp_2m_sde_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    return dpm_run(p, begin, io, x, 2, 1);
}
static int dpmpp_3m_sde_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    return dpm_run(p, begin, io, x, 3, 1);
}

const sd_sampler_ops sd_dpmpp_2m_ops = {sd_multistep_plan, dpmpp_2m_run};
const sd_sampler_ops sd_dpmpp_2m_sde_ops = {sd_multistep_plan, dpmpp_2m_sde_run};
const sd_sampler_ops sd_dpmpp_3m_sde_ops = {sd_multistep_plan, dpmpp_3m_sde_run};
