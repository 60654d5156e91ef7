/* UniPC: diffusers UniPCMultistepScheduler (scheduling_unipc_multistep.py)
 * with its defaults: solver_order 2, bh2, predict_x0, lower_order_final, the
 * corrector on every step after the first, final sigma 0. VP space like
 * DPM-Solver; init_noise_sigma 1, the model sees x unscaled.
 * Per step i: x0_i from the model; after the first step run the corrector
 * UniC refines x with x0_i; then the predictor UniP steps to sigma_{i+1}. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sd/samplers/samplers.h"

/* The bh2 coefficients from t's and s0's sigmas: h_phi_1 = expm1(-h),
 * B_h = expm1(-h), and b_k = h_phi_k k! / B_h for k = 1, 2. */
typedef struct {
    sd_vp_point t, s0;
    float h, h_phi_1, b_h, b[2];
} unipc_coef;

static unipc_coef coef_between(float sigma_t, float sigma_s0)
{
    unipc_coef c;
    c.t = sd_vp_at(sigma_t), c.s0 = sd_vp_at(sigma_s0);
    c.h = c.t.lambda - c.s0.lambda;
    float hh = -c.h;
    c.h_phi_1 = expm1f(hh);
    c.b_h = expm1f(hh);
    float h_phi_k = c.h_phi_1 / hh - 1.0f;
    c.b[0] = h_phi_k * 1.0f / c.b_h;
    h_phi_k = h_phi_k / hh - 0.5f;
    c.b[1] = h_phi_k * 2.0f / c.b_h;
    return c;
}

/* x_t_ = (s_t/s_s0) x - a_t h_phi_1 m0 */
static inline float base_update(unipc_coef c, float x, float m0)
{
    return c.t.sigma / c.s0.sigma * x - c.t.alpha * c.h_phi_1 * m0;
}

/* multistep_uni_p_bh_update, order 1 or 2 (rhos_p = 0.5). */
static void predictor(float *x, const float *m0, const float *m1, float sigma_s1, unipc_coef c,
                      int order, size_t n)
{
    float cx = c.t.sigma / c.s0.sigma, c0 = c.t.alpha * c.h_phi_1, cb = c.t.alpha * c.b_h;
    float rk = order == 2 ? (sd_vp_at(sigma_s1).lambda - c.s0.lambda) / c.h : 1.0f;
    for (size_t j = 0; j < n; j++) {
        float xt = cx * x[j] - c0 * m0[j];
        if (order == 2) xt = xt - cb * (0.5f * ((m1[j] - m0[j]) / rk));
        x[j] = xt;
    }
}

/* rhos_c = solve([[1, 1], [rk, 1]], b) for the order-2 corrector (diffusers
 * calls torch.linalg.solve in fp32; solved here in double, then rounded). */
static void solve_rhos(float rk, const float b[2], float rhos[2])
{
    double det = 1.0 - (double)rk;
    rhos[0] = (float)(((double)b[0] - b[1]) / det);
    rhos[1] = (float)(((double)b[1] - (double)rk * b[0]) / det);
}

/* multistep_uni_c_bh_update: x is the sample the last predictor started
 * from, x_t the predicted sample (updated in place), m0 the x0 of the
 * previous step, m1 the one before, model_t the x0 just computed. */
static void corrector(float *x_t, const float *x, const float *m0, const float *m1,
                      const float *model_t, float sigma_s1, unipc_coef c, int order, size_t n)
{
    float rhos[2] = {0.0f, 0.5f}, rk = 1.0f;
    if (order == 2) {
        rk = (sd_vp_at(sigma_s1).lambda - c.s0.lambda) / c.h;
        solve_rhos(rk, c.b, rhos);
    }
    float cb = c.t.alpha * c.b_h;
    for (size_t j = 0; j < n; j++) {
        float corr = order == 2 ? rhos[0] * ((m1[j] - m0[j]) / rk) + rhos[1] * (model_t[j] - m0[j])
                                : rhos[1] * (model_t[j] - m0[j]);
        x_t[j] = base_update(c, x[j], m0[j]) - cb * corr;
    }
}

static int unipc_run(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    size_t n = io->n;
    float *buf = sd_latents_alloc(io, 5);
    if (!buf) return SD_SAMPLE_ENOMEM;
    float *eps = buf, *last = buf + n, *m_new = buf + 2 * n;
    float *m[2] = {buf + 3 * n, buf + 4 * n}; /* x0 of steps i-2, i-1 */
    int N = p->n_evals, lower_order_nums = 0, this_order = 0, rc = 0;
    for (int i = begin; i < N && !rc; i++) {
        if ((rc = sd_eps(io, x, p->timesteps[i], eps))) break;
        sd_vp_point s = sd_vp_at(p->sigmas[i]);
        sd_vp_predict_x0(x, eps, s, m_new, n);
        if (i > begin) /* step_index > 0 and a last_sample exists */
            corrector(x, last, m[1], m[0], m_new, i >= 2 ? p->sigmas[i - 2] : 0.0f,
                      coef_between(p->sigmas[i], p->sigmas[i - 1]), this_order, n);
        float *oldest = m[0];
        m[0] = m[1], m[1] = m_new, m_new = oldest;
        this_order = N - i < 2 ? N - i : 2;
        if (this_order > lower_order_nums + 1) this_order = lower_order_nums + 1;
        memcpy(last, x, n * sizeof(float));
        predictor(x, m[1], m[0], i >= 1 ? p->sigmas[i - 1] : 0.0f,
                  coef_between(p->sigmas[i + 1], p->sigmas[i]), this_order, n);
        if (lower_order_nums < 2) lower_order_nums++;
        sd_step_done(io, i + 1, x);
    }
    free(buf);
    return rc;
}

const sd_sampler_ops sd_unipc_ops = {sd_multistep_plan, unipc_run};
