/* SDXL training schedule and the timestep/sigma schedules derived from it
 * (see schedule.h). Matches diffusers 0.42 with torch 2.15 and numpy 2.5 on
 * x86-64; the places where their arithmetic is subtle are noted inline. */
#include "sd/schedule.h"

#include <math.h>
#include <pthread.h>

#define BETA_START 0.00085
#define BETA_END 0.012

static sd_train_schedule table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

/* torch.linspace(start, end, 1000, float32) on CPU (RangeFactoriesKernel.cpp
 * linspace_kernel): step = (end - start) / 999 in fp32, the first half
 * start + step*i, the second half end - step*(999 - i). torch's AVX2 build
 * contracts both to one FMA; checked bit for bit against torch 2.15. */
static void torch_linspace_f32(float start, float end, int n, float *out)
{
    float step = (end - start) / (float)(n - 1);
    int halfway = n / 2;
    for (int i = 0; i < n; i++)
        out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(n - 1 - i), end);
}

static void build_table(void)
{
    sd_train_schedule *s = &table;
    /* betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2 */
    torch_linspace_f32((float)sqrt(BETA_START), (float)sqrt(BETA_END), SD_TRAIN_STEPS, s->betas);
    double acc = 1.0;
    for (int i = 0; i < SD_TRAIN_STEPS; i++) {
        s->betas[i] = s->betas[i] * s->betas[i];
        float alpha = 1.0f - s->betas[i];
        /* torch.cumprod on CPU accumulates in double and rounds each output */
        acc *= (double)alpha;
        s->alphas_cumprod[i] = (float)acc;
        float a = s->alphas_cumprod[i];
        s->sigmas[i] = sqrtf((1.0f - a) / a);
        /* numpy's float32 log is its own SIMD code, within a few ulp of
         * this correctly rounded one; the timesteps it feeds differ from
         * diffusers' by < 1e-6 relative (docs/samplers.md). */
        s->log_sigmas[i] = (float)log((double)s->sigmas[i]);
    }
}

const sd_train_schedule *sd_train_schedule_sdxl(void)
{
    pthread_once(&table_once, build_table);
    return &table;
}

void sd_linspace(double a, double b, int n, double *out)
{
    if (n == 1) {
        out[0] = a;
        return;
    }
    double step = (b - a) / (double)(n - 1);
    for (int i = 0; i < n; i++) out[i] = (double)i * step + a;
    out[n - 1] = b;
}

/* np.arange(1000, 0, -1000/N): numpy computes the length as
 * ceil((stop - start) / step) and the values as start + i*((start + step) - start). */
static int trailing_grid(int steps, double *t)
{
    double step = -(double)SD_TRAIN_STEPS / (double)steps;
    int len = (int)ceil((0.0 - SD_TRAIN_STEPS) / step);
    double delta = (SD_TRAIN_STEPS + step) - SD_TRAIN_STEPS;
    for (int i = 0; i < len; i++) t[i] = nearbyint(SD_TRAIN_STEPS + (double)i * delta) - 1.0;
    return len;
}

int sd_spacing_discrete(sd_spacing sp, int steps, int steps_offset, double *t)
{
    if (sp == SD_SPACING_TRAILING) return trailing_grid(steps, t);
    if (sp == SD_SPACING_LINSPACE) {
        double lin[steps];
        sd_linspace(0.0, SD_TRAIN_STEPS - 1, steps, lin);
        for (int i = 0; i < steps; i++) t[i] = (float)lin[steps - 1 - i];
        return steps;
    }
    int ratio = SD_TRAIN_STEPS / steps;
    for (int i = 0; i < steps; i++) t[i] = (double)((steps - 1 - i) * ratio + steps_offset);
    return steps;
}

int sd_spacing_multistep(sd_spacing sp, int steps, int steps_offset, double *t)
{
    if (sp == SD_SPACING_TRAILING) return trailing_grid(steps, t);
    if (sp == SD_SPACING_LINSPACE) {
        double lin[steps + 1];
        sd_linspace(0.0, SD_TRAIN_STEPS - 1, steps + 1, lin);
        for (int i = 0; i < steps; i++) t[i] = nearbyint(lin[steps - i]);
        return steps;
    }
    int ratio = SD_TRAIN_STEPS / (steps + 1);
    for (int i = 0; i < steps; i++) t[i] = (double)((steps - i) * ratio + steps_offset);
    return steps;
}

int sd_spacing_ddim(sd_spacing sp, int steps, int steps_offset, double *t)
{
    if (sp == SD_SPACING_LINSPACE) {
        double lin[steps];
        sd_linspace(0.0, SD_TRAIN_STEPS - 1, steps, lin);
        for (int i = 0; i < steps; i++) t[i] = nearbyint(lin[steps - 1 - i]);
        return steps;
    }
    return sd_spacing_discrete(sp, steps, steps_offset, t);
}

/* numpy's interp (compiled_base.c arr_interp) on the integer grid 0..999:
 * slope * (x - x_j) + y_j in double, the exact entry when x hits a node. */
double sd_sigma_at(double t)
{
    const float *s = sd_train_schedule_sdxl()->sigmas;
    if (t <= 0.0) return s[0];
    if (t >= SD_TRAIN_STEPS - 1) return s[SD_TRAIN_STEPS - 1];
    int j = (int)floor(t);
    if ((double)j == t) return s[j];
    double slope = ((double)s[j + 1] - (double)s[j]) / 1.0;
    return slope * (t - (double)j) + (double)s[j];
}

/* diffusers _sigma_to_t: low = the last table index whose log-sigma is
 * <= log(sigma) (0 if none), at most 998; w = (low - log sigma)/(low - high)
 * clipped to [0, 1]; t = (1 - w)*low + w*high. */
double sd_sigma_to_t(double sigma)
{
    const float *ls = sd_train_schedule_sdxl()->log_sigmas;
    double log_sigma = log(sigma > 1e-10 ? sigma : 1e-10);
    int low = 0;
    for (int i = 0; i < SD_TRAIN_STEPS; i++)
        if (log_sigma - (double)ls[i] >= 0.0) low = i;
    if (low > SD_TRAIN_STEPS - 2) low = SD_TRAIN_STEPS - 2;
    int high = low + 1;
    double lo = ls[low], hi = ls[high];
    double w = (lo - log_sigma) / (lo - hi);
    if (w < 0.0) w = 0.0;
    if (w > 1.0) w = 1.0;
    return (1.0 - w) * (double)low + w * (double)high;
}

void sd_sigmas_karras(int n, double sigma_min, double sigma_max, double *out)
{
    const double rho = 7.0;
    double min_inv_rho = pow(sigma_min, 1.0 / rho), max_inv_rho = pow(sigma_max, 1.0 / rho);
    sd_linspace(0.0, 1.0, n, out);
    for (int i = 0; i < n; i++) out[i] = pow(max_inv_rho + out[i] * (min_inv_rho - max_inv_rho), rho);
}

void sd_sigmas_exponential(int n, double sigma_min, double sigma_max, double *out)
{
    sd_linspace(log(sigma_max), log(sigma_min), n, out);
    for (int i = 0; i < n; i++) out[i] = exp(out[i]);
}

void sd_sigmas_beta(int n, double sigma_min, double sigma_max, double *out)
{
    sd_linspace(0.0, 1.0, n, out);
    for (int i = 0; i < n; i++)
        out[i] = sigma_min + sd_beta_ppf(1.0 - out[i], 0.6, 0.6) * (sigma_max - sigma_min);
}

/* Continued fraction of the incomplete beta function (modified Lentz), the
 * classic expansion that converges fast for x < (a + 1)/(a + b + 2). */
static double beta_cf(double x, double a, double b)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double f = d;
    for (int m = 1; m <= 1000; m++) {
        double m2 = 2.0 * m;
        double num = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for (int half = 0; half < 2; half++) {
            d = 1.0 + num * d;
            if (fabs(d) < tiny) d = tiny;
            c = 1.0 + num / c;
            if (fabs(c) < tiny) c = tiny;
            d = 1.0 / d;
            double delta = c * d;
            f *= delta;
            if (half == 1 && fabs(delta - 1.0) < 1e-16) return f;
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        }
    }
    return f;
}

/* Regularized incomplete beta I_x(a, b). */
static double beta_inc(double x, double a, double b)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    double ln_front = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    if (x < (a + 1.0) / (a + b + 2.0)) return exp(ln_front) * beta_cf(x, a, b) / a;
    return 1.0 - exp(ln_front) * beta_cf(1.0 - x, b, a) / b;
}

/* I_x is increasing in x: bisection down to adjacent doubles. */
double sd_beta_ppf(double p, double a, double b)
{
    if (p <= 0.0) return 0.0;
    if (p >= 1.0) return 1.0;
    double lo = 0.0, hi = 1.0;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (mid <= lo || mid >= hi) break;
        if (beta_inc(mid, a, b) < p) lo = mid; else hi = mid;
    }
    return 0.5 * (lo + hi);
}
