/* The SDXL training noise schedule and the timestep / sigma schedules that
 * diffusers' schedulers derive from it (owner: the sampler layer).
 *
 * Training schedule (SDXL scheduler_config.json): scaled_linear betas from
 * 0.00085 to 0.012 over 1000 steps, computed in fp32 exactly as torch does on
 * an x86 CPU (linspace with FMA, cumprod accumulated in double, see
 * schedule.c), sigma_t = sqrt((1 - alphas_cumprod_t) / alphas_cumprod_t).
 *
 * Everything derived from the table (spacings, interpolation, Karras,
 * exponential, beta, sigma -> timestep) runs in double like the numpy code in
 * diffusers 0.42 (schedulers/scheduling_euler_discrete.py and
 * scheduling_dpmsolver_multistep.py), and the scheduler rounds to fp32 at the
 * same place diffusers does. */
#ifndef SDXL_SD_SCHEDULE_H
#define SDXL_SD_SCHEDULE_H

#define SD_TRAIN_STEPS 1000

typedef struct {
    float betas[SD_TRAIN_STEPS];
    float alphas_cumprod[SD_TRAIN_STEPS];
    float sigmas[SD_TRAIN_STEPS];     /* ascending with the timestep */
    float log_sigmas[SD_TRAIN_STEPS]; /* fp32 log of sigmas */
} sd_train_schedule;

/* The SDXL table, computed on first use (thread-safe). */
const sd_train_schedule *sd_train_schedule_sdxl(void);

/* diffusers' timestep_spacing. */
typedef enum { SD_SPACING_LEADING = 0, SD_SPACING_TRAILING, SD_SPACING_LINSPACE } sd_spacing;

/* How a scheduler class turns a number of steps into timesteps. Each writes
 * at most steps + 1 values into t (descending) and returns the count, which
 * is `steps` except where numpy's arange yields one more for "trailing" (as
 * for 61, 103, 121 ... steps: diffusers then runs that many). steps >= 1.
 *   discrete:  Euler, Euler a, Heun, LMS, KDPM2 (a): leading 1000//N + offset,
 *              fp32 linspace(0, 999, N), trailing round(arange(1000, 0, -1000/N)) - 1.
 *   multistep: DPMSolverMultistep, UniPC: N+1 grid points, the last dropped
 *              (leading 1000//(N+1) + offset, linspace rounded), integers.
 *   ddim:      DDIMScheduler: like discrete, linspace rounded, integers. */
int sd_spacing_discrete(sd_spacing sp, int steps, int steps_offset, double *t);
int sd_spacing_multistep(sd_spacing sp, int steps, int steps_offset, double *t);
int sd_spacing_ddim(sd_spacing sp, int steps, int steps_offset, double *t);

/* np.interp(t, arange(1000), sigmas): sigma at a (fractional) timestep. */
double sd_sigma_at(double t);

/* diffusers' _sigma_to_t: the fractional timestep whose log-sigma, linearly
 * interpolated between neighbouring table entries, equals log(sigma);
 * clamped to [0, 999]. */
double sd_sigma_to_t(double sigma);

/* Converted sigma schedules between sigma_max (first) and sigma_min (last),
 * n >= 1 values, as diffusers' _convert_to_karras (rho 7),
 * _convert_to_exponential and _convert_to_beta (alpha = beta = 0.6). */
void sd_sigmas_karras(int n, double sigma_min, double sigma_max, double *out);
void sd_sigmas_exponential(int n, double sigma_min, double sigma_max, double *out);
void sd_sigmas_beta(int n, double sigma_min, double sigma_max, double *out);

/* The inverse of the regularized incomplete beta function I_x(a, b):
 * scipy.stats.beta.ppf(p, a, b), to double precision. */
double sd_beta_ppf(double p, double a, double b);

/* numpy.linspace(a, b, n) (float64): i*step + a, the last value exactly b. */
void sd_linspace(double a, double b, int n, double *out);

#endif
