/* Internal interface between the sampler registry (sd/sampler.c) and the
 * sampler files in this folder: each file defines one sd_sampler_ops (how it
 * plans timesteps/sigmas, how it runs), plus the helpers they share. */
#ifndef SDXL_SD_SAMPLERS_H
#define SDXL_SD_SAMPLERS_H

#include <stddef.h>

#include "sd/sampler.h"
#include "sd/schedule.h"

typedef struct {
    /* Fills p->n_evals, timesteps, n_sigmas, sigmas and init_noise_sigma for
     * p->choice and p->steps; the arrays hold SD_PLAN_CAP(steps) values. */
    void (*plan)(sd_plan *p);
    /* Runs model evaluations begin..n_evals-1 on x (txt2img: begin 0, x
     * already scaled by init_noise_sigma; img2img: x noised to the
     * begin'th timestep). Indices stay absolute, as diffusers' step_index
     * after set_begin_index(begin); the solver state (history, order
     * ramp-up, first/second stage) starts fresh, as after set_timesteps. */
    int (*run)(const sd_plan *p, int begin, const sd_sample_io *io, float *x);
} sd_sampler_ops;

#define SD_PLAN_CAP(steps) (2 * (steps) + 6)

extern const sd_sampler_ops sd_euler_ops, sd_euler_a_ops, sd_heun_ops, sd_dpm2_ops,
    sd_dpm2_a_ops, sd_dpmpp_2m_ops, sd_dpmpp_2m_sde_ops, sd_dpmpp_3m_sde_ops, sd_lms_ops,
    sd_ddim_ops, sd_unipc_ops, sd_lcm_ops, sd_dpmpp_2s_a_ops;

/* diffusers' timestep_spacing for a schedule type (Karras, exponential and
 * beta keep the SDXL config's "leading"). */
sd_spacing sd_schedule_spacing(sd_schedule_type s);

/* Timesteps and sigmas (count returned, descending, without the final 0) of
 * the k-diffusion-style classes (EulerDiscrete, Heun, LMS, KDPM2, KDPM2
 * Ancestral; DPM++ 2S a takes EulerDiscrete's): spaced timesteps and
 * interpolated sigmas; Karras, exponential
 * and beta span the spaced sigmas' range and take t = _sigma_to_t(sigma),
 * rounded for Karras when round_karras (KDPM2). t and sigma hold steps + 1. */
int sd_discrete_schedule(sd_schedule_type s, int steps, int round_karras, double *t, double *sigma);

/* The same for DPMSolverMultistep and UniPC: multistep spacing; converted
 * schedules span the whole training table; Karras timesteps are rounded,
 * exponential and beta ones truncated by the int64 cast. */
int sd_multistep_schedule(sd_schedule_type s, int steps, double *t, double *sigma);

/* Copies a schedule into the plan as fp32, appends the final sigma 0. */
void sd_plan_store(sd_plan *p, int n, const double *t, const double *sigma);

/* init_noise_sigma of the k-diffusion-style classes: max sigma for
 * linspace/trailing spacing, sqrt(max^2 + 1) for leading (fp32 tensor math). */
float sd_k_init_noise_sigma(const sd_plan *p);

/* scale_model_input of those classes: out = x / sqrt(sigma^2 + 1). */
void sd_scale_input(const float *x, float sigma, float *out, size_t n);

/* Calls the denoiser / the noise source of io. */
int sd_eps(const sd_sample_io *io, const float *x_in, float t, float *eps);
int sd_noise(const sd_sample_io *io, float *out);
/* Calls io's after_step (if any) once the update that ends before plan
 * evaluation next_eval is done: what diffusers' scheduler.step returned. */
void sd_step_done(const sd_sample_io *io, int next_eval, float *x);

/* KDPM2's sigma_interpol: exp(lerp(log start, log end, 0.5)), torch's lerp
 * at weight 0.5 being end - (end - start) * 0.5 (fp32). */
float sd_dpm2_log_midpoint(float start, float end);

/* Plan of the multistep solvers (DPM-Solver++, UniPC): sd_multistep_schedule
 * stored with init_noise_sigma 1 (the model sees x unscaled). */
void sd_multistep_plan(sd_plan *p);

/* A sigma in VP space: alpha = 1/sqrt(sigma^2+1), sigma_vp = sigma*alpha,
 * lambda = log alpha - log sigma_vp (diffusers' _sigma_to_alpha_sigma_t and
 * lambda, as fp32 tensor scalars). */
typedef struct {
    float alpha, sigma, lambda;
} sd_vp_point;
sd_vp_point sd_vp_at(float sigma);

/* convert_model_output of an epsilon model: x0 = (x - sigma_vp*eps) / alpha. */
void sd_vp_predict_x0(const float *x, const float *eps, sd_vp_point s, float *x0, size_t n);

/* A scratch block of k latents (k * io->n floats), NULL when out of memory. */
float *sd_latents_alloc(const sd_sample_io *io, int k);

#endif
