/* LMS: diffusers LMSDiscreteScheduler (scheduling_lms_discrete.py), order 4:
 * x += sum_k c_k d_{i-k}, c_k the integral from sigma_i to sigma_{i+1} of the
 * Lagrange basis polynomial of node i-k over the last min(i+1, 4) sigmas.
 * diffusers integrates with scipy quad (exact for these cubics up to fp32
 * evaluation); here Gauss-Legendre with 3 nodes, exact to degree 5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/samplers/samplers.h"

#define LMS_ORDER 4

static void lms_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_discrete_schedule(p->choice.schedule, p->steps, 0, t, sigma);
    sd_plan_store(p, n, t, sigma);
    p->init_noise_sigma = sd_k_init_noise_sigma(p);
}

/* get_lms_coefficient(order, i, k) over the fp32 sigmas. */
static double lms_coefficient(const float *sigmas, int order, int i, int k)
{
    static const double node[3] = {-0.7745966692414834, 0.0, 0.7745966692414834};
    static const double weight[3] = {5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0};
    double a = sigmas[i], b = sigmas[i + 1], sum = 0.0;
    for (int q = 0; q < 3; q++) {
        double tau = 0.5 * (b - a) * node[q] + 0.5 * (a + b), prod = 1.0;
        for (int m = 0; m < order; m++)
            if (m != k) prod *= (tau - sigmas[i - m]) / ((double)sigmas[i - k] - sigmas[i - m]);
        sum += weight[q] * prod;
    }
    return 0.5 * (b - a) * sum;
}

static int lms_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 3 + LMS_ORDER);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *x_in = buf, *eps = buf + n, *acc = buf + 2 * n;
    float *d[LMS_ORDER]; /* d[0] newest */
    for (int k = 0; k < LMS_ORDER; k++) d[k] = buf + (3 + k) * n;
    int rc = 0;
    for (int i = begin; i < p->n_evals && !rc; i++) {
        float sigma = p->sigmas[i];
        sd_scale_input(x, sigma, x_in, n);
        if ((rc = sd_eps(io, x_in, p->timesteps[i], eps))) break;
        float *oldest = d[LMS_ORDER - 1];
        memmove(d + 1, d, (LMS_ORDER - 1) * sizeof d[0]);
        d[0] = oldest;
        for (size_t j = 0; j < n; j++) {
            float x0 = x[j] - sigma * eps[j];
            d[0][j] = (x[j] - x0) / sigma;
        }
        /* order = min(step_index + 1, 4) counts from the schedule's start,
         * but only the derivatives of the steps run exist: diffusers zips the
         * coefficients with them, so after set_begin_index (img2img) the
         * first steps use fewer terms of a higher-order polynomial. */
        int order = i + 1 < LMS_ORDER ? i + 1 : LMS_ORDER, have = i - begin + 1;
        for (int k = 0; k < order && k < have; k++) {
            float c = (float)lms_coefficient(p->sigmas, order, i, k);
            for (size_t j = 0; j < n; j++) acc[j] = k ? acc[j] + c * d[k][j] : c * d[k][j];
        }
        for (size_t j = 0; j < n; j++) x[j] = x[j] + acc[j];
        sd_step_done(io, i + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_lms_ops = {lms_plan, lms_run};
