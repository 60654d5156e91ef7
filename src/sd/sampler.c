/* Sampler registry: names (A1111, ComfyUI, diffusers), the supported
 * sampler x schedule pairs, plans, and the helpers the sampler files in
 * sd/samplers/ share. See sd/sampler.h and docs/samplers.md. */
#include "sd/sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sd/samplers/samplers.h"

/* Which schedules a diffusers class can run. */
enum { SPACINGS_ONLY, ALL_SCHEDULES, OWN_SCHEDULE };

typedef struct {
    const char *label;     /* A1111 */
    const char *diffusers; /* class */
    const char *aliases[4]; /* ComfyUI, A1111 k_ aliases, sd.cpp */
    int stochastic;
    int schedules;
    sd_schedule_type automatic; /* A1111's default schedule type */
    const sd_sampler_ops *ops;
    int max_steps; /* 0: SD_MAX_STEPS */
} sampler_info;

static const sampler_info samplers[SD_SAMPLER_COUNT] = {
    [SD_SAMPLER_EULER] = {"Euler", "EulerDiscreteScheduler", {"euler", "k_euler"}, 0,
                          ALL_SCHEDULES, SD_SCHEDULE_LEADING, &sd_euler_ops},
    [SD_SAMPLER_EULER_A] = {"Euler a", "EulerAncestralDiscreteScheduler",
                            {"euler_ancestral", "euler_a", "k_euler_a", "k_euler_ancestral"}, 1,
                            SPACINGS_ONLY, SD_SCHEDULE_LEADING, &sd_euler_a_ops},
    [SD_SAMPLER_HEUN] = {"Heun", "HeunDiscreteScheduler", {"heun", "k_heun"}, 0, ALL_SCHEDULES,
                         SD_SCHEDULE_LEADING, &sd_heun_ops},
    [SD_SAMPLER_DPM2] = {"DPM2", "KDPM2DiscreteScheduler", {"dpm_2", "k_dpm_2", "dpm2"}, 0,
                         ALL_SCHEDULES, SD_SCHEDULE_KARRAS, &sd_dpm2_ops},
    [SD_SAMPLER_DPM2_A] = {"DPM2 a", "KDPM2AncestralDiscreteScheduler",
                           {"dpm_2_ancestral", "k_dpm_2_a", "dpm2_a", "dpm2a"}, 1, ALL_SCHEDULES,
                           SD_SCHEDULE_KARRAS, &sd_dpm2_a_ops},
    [SD_SAMPLER_DPMPP_2M] = {"DPM++ 2M", "DPMSolverMultistepScheduler",
                             {"dpmpp_2m", "k_dpmpp_2m", "dpm++2m"}, 0, ALL_SCHEDULES,
                             SD_SCHEDULE_KARRAS, &sd_dpmpp_2m_ops},
    [SD_SAMPLER_DPMPP_2M_SDE] = {"DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                                 {"dpmpp_2m_sde", "k_dpmpp_2m_sde", "dpm++2m_sde"}, 1,
                                 ALL_SCHEDULES, SD_SCHEDULE_EXPONENTIAL, &sd_dpmpp_2m_sde_ops},
    [SD_SAMPLER_DPMPP_3M_SDE] = {"DPM++ 3M SDE", "DPMSolverMultistepScheduler",
                                 {"dpmpp_3m_sde", "k_dpmpp_3m_sde"}, 1, ALL_SCHEDULES,
                                 SD_SCHEDULE_EXPONENTIAL, &sd_dpmpp_3m_sde_ops},
    [SD_SAMPLER_LMS] = {"LMS", "LMSDiscreteScheduler", {"lms", "k_lms"}, 0, ALL_SCHEDULES,
                        SD_SCHEDULE_LEADING, &sd_lms_ops},
    [SD_SAMPLER_DDIM] = {"DDIM", "DDIMScheduler", {"ddim"}, 0, SPACINGS_ONLY,
                         SD_SCHEDULE_LEADING, &sd_ddim_ops},
    [SD_SAMPLER_UNIPC] = {"UniPC", "UniPCMultistepScheduler", {"uni_pc", "unipc", "uni_pc_bh2"}, 0,
                          ALL_SCHEDULES, SD_SCHEDULE_LEADING, &sd_unipc_ops},
    /* LCMScheduler picks its timesteps among original_inference_steps = 50 */
    [SD_SAMPLER_LCM] = {"LCM", "LCMScheduler", {"lcm"}, 1, OWN_SCHEDULE, SD_SCHEDULE_LEADING,
                        &sd_lcm_ops, 50},
    /* no diffusers class: k-diffusion's sample_dpmpp_2s_ancestral, as A1111 runs it */
    [SD_SAMPLER_DPMPP_2S_A] = {"DPM++ 2S a", NULL, {"dpmpp_2s_ancestral", "k_dpmpp_2s_a", "dpm++2s_a"}, 1,
                               ALL_SCHEDULES, SD_SCHEDULE_KARRAS, &sd_dpmpp_2s_a_ops},
};

/* Known names we do not run, with the reason. */
typedef struct {
    const char *names[5];
    const char *why;
} refused_info;

static const refused_info refused[] = {
    {{"DPM++ SDE", "dpmpp_sde", "dpmpp_sde_gpu", "k_dpmpp_sde", "DPMSolverSDEScheduler"},
     "its diffusers version (DPMSolverSDEScheduler) draws noise from torchsde's Brownian "
     "tree seeded separately from the image generator, which cannot be reproduced here"},
    {{"DPMSolverSinglestepScheduler"},
     "it is diffusers' deterministic single-step DPM-Solver, which is not DPM++ 2S a (that one is "
     "ancestral: use \"DPM++ 2S a\"), and it is not implemented"},
    {{"DPM fast", "dpm_fast", "DPM adaptive", "dpm_adaptive"},
     "diffusers has no equivalent scheduler"},
};

static const struct {
    const char *label;
    const char *names[4];
} schedules[SD_SCHEDULE_COUNT] = {
    [SD_SCHEDULE_AUTOMATIC] = {"Automatic", {"automatic", "auto", "default"}},
    [SD_SCHEDULE_LEADING] = {"Normal", {"normal", "discrete", "leading"}},
    [SD_SCHEDULE_TRAILING] = {"Trailing", {"trailing"}},
    [SD_SCHEDULE_LINSPACE] = {"Uniform", {"uniform", "linspace"}},
    [SD_SCHEDULE_KARRAS] = {"Karras", {"karras"}},
    [SD_SCHEDULE_EXPONENTIAL] = {"Exponential", {"exponential"}},
    [SD_SCHEDULE_BETA] = {"Beta", {"beta"}},
    [SD_SCHEDULE_SGM_UNIFORM] = {"SGM Uniform", {"sgm uniform", "sgm_uniform"}},
    [SD_SCHEDULE_SIMPLE] = {"Simple", {"simple"}},
};

const char *sd_sampler_label(sd_sampler_id id)
{
    return (unsigned)id < SD_SAMPLER_COUNT ? samplers[id].label : "?";
}

const char *sd_sampler_diffusers_class(sd_sampler_id id)
{
    return (unsigned)id < SD_SAMPLER_COUNT ? samplers[id].diffusers : "?";
}

const char *sd_schedule_label(sd_schedule_type s)
{
    return (unsigned)s < SD_SCHEDULE_COUNT ? schedules[s].label : "?";
}

int sd_sampler_is_stochastic(sd_sampler_id id)
{
    return (unsigned)id < SD_SAMPLER_COUNT && samplers[id].stochastic;
}

int sd_sampler_supports(sd_sampler_id id, sd_schedule_type s)
{
    if ((unsigned)id >= SD_SAMPLER_COUNT || s <= SD_SCHEDULE_AUTOMATIC || s >= SD_SCHEDULE_COUNT)
        return 0;
    switch (samplers[id].schedules) {
    case ALL_SCHEDULES: return 1;
    case OWN_SCHEDULE: return s == SD_SCHEDULE_LEADING;
    default:
        return s != SD_SCHEDULE_KARRAS && s != SD_SCHEDULE_EXPONENTIAL && s != SD_SCHEDULE_BETA;
    }
}

/* ---- names ---------------------------------------------------------------- */

/* Case-insensitive equality ignoring surrounding blanks of `s`. */
static int name_is(const char *s, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(s, name, len) == 0;
}

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

static int find_sampler(const char *s, size_t len)
{
    for (int i = 0; i < SD_SAMPLER_COUNT; i++) {
        if (name_is(s, len, samplers[i].label)) return i;
        for (int a = 0; a < 4 && samplers[i].aliases[a]; a++)
            if (name_is(s, len, samplers[i].aliases[a])) return i;
    }
    /* The diffusers class name picks the class's plain sampler. */
    for (int i = 0; i < SD_SAMPLER_COUNT; i++)
        if (samplers[i].diffusers && name_is(s, len, samplers[i].diffusers)) return i;
    return -1;
}

static int find_schedule(const char *s, size_t len)
{
    for (int i = 0; i < SD_SCHEDULE_COUNT; i++) {
        if (name_is(s, len, schedules[i].label)) return i;
        for (int a = 0; a < 4 && schedules[i].names[a]; a++)
            if (name_is(s, len, schedules[i].names[a])) return i;
    }
    return -1;
}

static const refused_info *find_refused(const char *s, size_t len)
{
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        for (int a = 0; a < 5 && refused[i].names[a]; a++)
            if (name_is(s, len, refused[i].names[a])) return &refused[i];
    return NULL;
}

/* A name from a job, fit for a one-line message: at most 64 bytes, control
 * bytes shown as '?'. */
static const char *shown(const char *s, size_t len, char buf[72])
{
    size_t n = len < 64 ? len : 64;
    for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(buf + n, len > 64 ? "..." : "");
    return buf;
}

static void list_samplers(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < SD_SAMPLER_COUNT && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s\"%s\"", i ? ", " : "", samplers[i].label);
}

static void list_schedules(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < SD_SCHEDULE_COUNT && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s\"%s\"", i ? ", " : "", schedules[i].label);
}

/* A legacy combined name: "<sampler> Karras" / "<sampler> Exponential". */
static int split_legacy(const char *s, size_t len, int *sampler, int *schedule)
{
    static const sd_schedule_type suffixes[] = {SD_SCHEDULE_KARRAS, SD_SCHEDULE_EXPONENTIAL};
    for (size_t k = 0; k < 2; k++) {
        const char *word = schedules[suffixes[k]].label;
        size_t wl = strlen(word);
        if (len > wl + 1 && s[len - wl - 1] == ' ' && strncasecmp(s + len - wl, word, wl) == 0) {
            size_t base = len - wl - 1;
            trim(&s, &base);
            int id = find_sampler(s, base);
            if (id < 0) return 0;
            *sampler = id, *schedule = (int)suffixes[k];
            return 1;
        }
    }
    return 0;
}

int sd_sampler_parse(const char *sampler, const char *schedule, sd_sampler_choice *out,
                     char *err, size_t errlen)
{
    char valid[512], name[72];
    const char *s = sampler ? sampler : "";
    size_t len = strlen(s);
    trim(&s, &len);
    int id = find_sampler(s, len), legacy = SD_SCHEDULE_AUTOMATIC;
    if (id < 0 && !split_legacy(s, len, &id, &legacy)) {
        const refused_info *r = find_refused(s, len);
        if (r) {
            snprintf(err, errlen, "sampler \"%s\" is not supported: %s", shown(s, len, name), r->why);
            return -1;
        }
        list_samplers(valid, sizeof valid);
        snprintf(err, errlen, "unknown sampler \"%s\"; valid samplers: %s (A1111, ComfyUI or "
                 "diffusers names, any case)", shown(s, len, name), valid);
        return -1;
    }
    const char *q = schedule ? schedule : "";
    size_t qlen = strlen(q);
    trim(&q, &qlen);
    int sched = qlen ? find_schedule(q, qlen) : SD_SCHEDULE_AUTOMATIC;
    if (sched < 0) {
        list_schedules(valid, sizeof valid);
        snprintf(err, errlen, "unknown schedule type \"%s\"; valid schedule types: %s",
                 shown(q, qlen, name), valid);
        return -1;
    }
    if (legacy != SD_SCHEDULE_AUTOMATIC) {
        if (sched != SD_SCHEDULE_AUTOMATIC && sched != legacy) {
            snprintf(err, errlen, "sampler \"%s\" names the %s schedule but the schedule type is "
                     "\"%s\"", shown(s, len, name), schedules[legacy].label, schedules[sched].label);
            return -1;
        }
        sched = legacy;
    }
    if (sched == SD_SCHEDULE_AUTOMATIC) sched = samplers[id].automatic;
    if (!sd_sampler_supports(id, sched)) {
        snprintf(err, errlen, "sampler \"%s\" cannot run the %s schedule: diffusers' %s %s",
                 samplers[id].label, schedules[sched].label, samplers[id].diffusers,
                 samplers[id].schedules == OWN_SCHEDULE ? "has only its own schedule"
                                                        : "supports only timestep spacings "
                                                          "(Normal, Trailing, Uniform, SGM Uniform, Simple)");
        return -1;
    }
    out->sampler = (sd_sampler_id)id;
    out->schedule = (sd_schedule_type)sched;
    return 0;
}

/* ---- plans ---------------------------------------------------------------- */

int sd_plan_make(const sd_sampler_choice *c, int steps, sd_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!sd_sampler_supports(c->sampler, c->schedule)) {
        snprintf(err, errlen, "sampler \"%s\" cannot run the %s schedule",
                 sd_sampler_label(c->sampler), sd_schedule_label(c->schedule));
        return -1;
    }
    int max = samplers[c->sampler].max_steps ? samplers[c->sampler].max_steps : SD_MAX_STEPS;
    if (steps < 1 || steps > max) {
        snprintf(err, errlen, "steps must be between 1 and %d for %s, got %d", max,
                 samplers[c->sampler].label, steps);
        return -1;
    }
    p->choice = *c;
    p->steps = steps;
    p->timesteps = calloc(SD_PLAN_CAP(steps), sizeof(float));
    p->sigmas = calloc(SD_PLAN_CAP(steps), sizeof(float));
    if (!p->timesteps || !p->sigmas) {
        sd_plan_free(p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    samplers[c->sampler].ops->plan(p);
    return 0;
}

void sd_plan_free(sd_plan *p)
{
    free(p->timesteps);
    free(p->sigmas);
    p->timesteps = p->sigmas = NULL;
}

sd_spacing sd_schedule_spacing(sd_schedule_type s)
{
    switch (s) {
    case SD_SCHEDULE_TRAILING:
    case SD_SCHEDULE_SGM_UNIFORM:
    case SD_SCHEDULE_SIMPLE: return SD_SPACING_TRAILING;
    case SD_SCHEDULE_LINSPACE: return SD_SPACING_LINSPACE;
    default: return SD_SPACING_LEADING;
    }
}

/* Replaces the sigmas by a converted schedule over [lo, hi]. */
static void convert_sigmas(sd_schedule_type s, int n, double lo, double hi, double *sigma)
{
    if (s == SD_SCHEDULE_KARRAS) sd_sigmas_karras(n, lo, hi, sigma);
    else if (s == SD_SCHEDULE_EXPONENTIAL) sd_sigmas_exponential(n, lo, hi, sigma);
    else sd_sigmas_beta(n, lo, hi, sigma);
}

static int is_converted(sd_schedule_type s)
{
    return s == SD_SCHEDULE_KARRAS || s == SD_SCHEDULE_EXPONENTIAL || s == SD_SCHEDULE_BETA;
}

int sd_discrete_schedule(sd_schedule_type s, int steps, int round_karras, double *t, double *sigma)
{
    int n = sd_spacing_discrete(sd_schedule_spacing(s), steps, 1, t);
    for (int i = 0; i < n; i++) sigma[i] = sd_sigma_at(t[i]);
    if (!is_converted(s)) return n;
    /* diffusers converts num_inference_steps sigmas between the spaced ones'
     * last and first */
    convert_sigmas(s, steps, sigma[n - 1], sigma[0], sigma);
    for (int i = 0; i < steps; i++) {
        t[i] = sd_sigma_to_t(sigma[i]);
        if (round_karras && s == SD_SCHEDULE_KARRAS) t[i] = nearbyint(t[i]);
    }
    return steps;
}

int sd_multistep_schedule(sd_schedule_type s, int steps, double *t, double *sigma)
{
    int n = sd_spacing_multistep(sd_schedule_spacing(s), steps, 1, t);
    if (!is_converted(s)) {
        for (int i = 0; i < n; i++) sigma[i] = sd_sigma_at(t[i]);
        return n;
    }
    const float *table = sd_train_schedule_sdxl()->sigmas;
    convert_sigmas(s, steps, table[0], table[SD_TRAIN_STEPS - 1], sigma);
    for (int i = 0; i < steps; i++) {
        double ti = sd_sigma_to_t(sigma[i]);
        t[i] = s == SD_SCHEDULE_KARRAS ? nearbyint(ti) : trunc(ti);
    }
    return steps;
}

void sd_plan_store(sd_plan *p, int n, const double *t, const double *sigma)
{
    for (int i = 0; i < n; i++) {
        p->timesteps[i] = (float)t[i];
        p->sigmas[i] = (float)sigma[i];
    }
    p->sigmas[n] = 0.0f;
    p->n_evals = n;
    p->n_sigmas = n + 1;
}

float sd_k_init_noise_sigma(const sd_plan *p)
{
    float max = 0.0f;
    for (int i = 0; i < p->n_sigmas; i++)
        if (p->sigmas[i] > max) max = p->sigmas[i];
    if (sd_schedule_spacing(p->choice.schedule) != SD_SPACING_LEADING) return max;
    return sqrtf(max * max + 1.0f);
}

/* ---- running -------------------------------------------------------------- */

void sd_scale_input(const float *x, float sigma, float *out, size_t n)
{
    float scale = sqrtf(sigma * sigma + 1.0f);
    for (size_t j = 0; j < n; j++) out[j] = x[j] / scale;
}

int sd_eps(const sd_sample_io *io, const float *x_in, float t, float *eps)
{
    return io->eps(io->eps_ctx, x_in, t, eps);
}

int sd_noise(const sd_sample_io *io, float *out)
{
    return io->noise(io->noise_ctx, out, io->n);
}

void sd_step_done(const sd_sample_io *io, int next_eval, float *x)
{
    if (io->after_step) io->after_step(io->step_ctx, next_eval, x);
}

float *sd_latents_alloc(const sd_sample_io *io, int k)
{
    return malloc((size_t)k * io->n * sizeof(float));
}

int sd_sampler_run(const sd_plan *p, const sd_sample_io *io, float *x)
{
    if (sd_sampler_is_stochastic(p->choice.sampler) && !io->noise) return SD_SAMPLE_ENONOISE;
    for (size_t j = 0; j < io->n; j++) x[j] = x[j] * p->init_noise_sigma;
    return samplers[p->choice.sampler].ops->run(p, 0, io, x);
}

/* ---- img2img -------------------------------------------------------------- */

/* scheduler.order: the second-order k-diffusion classes list every interior
 * timestep twice (Heun, KDPM2, KDPM2Ancestral); DPM++ 2S a evaluates the
 * model twice in every step but the last. */
static int scheduler_order(sd_sampler_id id)
{
    return id == SD_SAMPLER_HEUN || id == SD_SAMPLER_DPM2 || id == SD_SAMPLER_DPM2_A ||
                   id == SD_SAMPLER_DPMPP_2S_A
               ? 2
               : 1;
}

int sd_plan_strength_begin(const sd_plan *p, double strength, int *steps_run)
{
    int init = (int)(p->steps * strength); /* Python's int() of a double */
    if (init > p->steps) init = p->steps;
    if (init < 0) init = 0;
    *steps_run = init;
    return (p->steps - init) * scheduler_order(p->choice.sampler);
}

void sd_sampler_add_noise(const sd_plan *p, int begin, const float *x0, const float *noise, float *x, size_t n)
{
    switch (p->choice.sampler) {
    case SD_SAMPLER_DDIM:
    case SD_SAMPLER_LCM: { /* alphas_cumprod[t]^0.5 x0 + (1 - alphas_cumprod[t])^0.5 noise */
        float a = sd_train_schedule_sdxl()->alphas_cumprod[(int)p->timesteps[begin]];
        float sqrt_a = sqrtf(a), sqrt_b = sqrtf(1.0f - a);
        for (size_t j = 0; j < n; j++) x[j] = sqrt_a * x0[j] + sqrt_b * noise[j];
        break;
    }
    case SD_SAMPLER_DPMPP_2M:
    case SD_SAMPLER_DPMPP_2M_SDE:
    case SD_SAMPLER_DPMPP_3M_SDE:
    case SD_SAMPLER_UNIPC: { /* _sigma_to_alpha_sigma_t: alpha_t x0 + sigma_t noise */
        float sigma = p->sigmas[begin];
        float alpha_t = 1.0f / sqrtf(sigma * sigma + 1.0f), sigma_t = sigma * alpha_t;
        for (size_t j = 0; j < n; j++) x[j] = alpha_t * x0[j] + sigma_t * noise[j];
        break;
    }
    default: { /* the k-diffusion classes: x0 + noise * sigma; DPM++ 2S a's sigmas are per
                * step, and step i starts at evaluation 2i */
        float sigma = p->sigmas[p->choice.sampler == SD_SAMPLER_DPMPP_2S_A ? begin / 2 : begin];
        for (size_t j = 0; j < n; j++) x[j] = x0[j] + noise[j] * sigma;
        break;
    }
    }
}

int sd_sampler_run_from(const sd_plan *p, int begin, const sd_sample_io *io, float *x)
{
    if (sd_sampler_is_stochastic(p->choice.sampler) && !io->noise) return SD_SAMPLE_ENONOISE;
    if (begin < 0 || begin >= p->n_evals) return 0;
    return samplers[p->choice.sampler].ops->run(p, begin, io, x);
}
