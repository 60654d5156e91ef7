/* The VP-space helpers that DPM-Solver++ (dpm_multistep.c) and UniPC
 * (unipc.c) share: their plan (multistep schedule, init_noise_sigma 1), the
 * alpha / sigma / lambda of a sigma, and the x0 prediction of
 * diffusers' convert_model_output (scheduling_dpmsolver_multistep.py,
 * scheduling_unipc_multistep.py). */
#include <math.h>

#include "sd/samplers/samplers.h"

void sd_multistep_plan(sd_plan *p)
{
    double t[p->steps + 1], sigma[p->steps + 1];
    int n = sd_multistep_schedule(p->choice.schedule, p->steps, t, sigma);
    sd_plan_store(p, n, t, sigma);
    p->init_noise_sigma = 1.0f;
}

sd_vp_point sd_vp_at(float sigma)
{
    sd_vp_point v;
    v.alpha = 1.0f / sqrtf(sigma * sigma + 1.0f);
    v.sigma = sigma * v.alpha;
    v.lambda = logf(v.alpha) - logf(v.sigma);
    return v;
}

void sd_vp_predict_x0(const float *x, const float *eps, sd_vp_point s, float *x0, size_t n)
{
    for (size_t j = 0; j < n; j++) x0[j] = (x[j] - s.sigma * eps[j]) / s.alpha;
}
