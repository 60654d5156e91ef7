/* The sampler layer: names users type (A1111, ComfyUI, diffusers), the
 * timestep/sigma plan of each sampler x schedule pair, and the sampling loops.
 * Owner: the engine's denoising loop.
 *
 * Parity target: diffusers 0.42 schedulers with SDXL's scheduler config
 * (scaled_linear 0.00085..0.012, timestep_spacing "leading", steps_offset 1)
 * plus the options each pair needs, as StableDiffusionXLPipeline runs them
 * (init_noise_sigma, scale_model_input, step). docs/samplers.md has the table
 * name -> diffusers class and config. DPM++ 2S a, which diffusers lacks,
 * matches k-diffusion's sample_dpmpp_2s_ancestral as A1111 runs it instead
 * (sd/samplers/dpmpp_2s_a.c).
 *
 * A sampler sees only two callbacks:
 *   - the denoiser: eps for a model input x_in at timestep t (the float the
 *     UNet receives, fractional for some schedules). The engine's denoiser
 *     runs the UNet and applies CFG / guidance_rescale (sd/guidance.h).
 *   - the noise source (stochastic samplers only): standard normal values for
 *     the whole latent, one call per draw in diffusers' order. The engine
 *     passes the image's own generator, the one that drew the initial latents,
 *     so the sampler noise continues that stream (sd_batch_rng_randn).
 * Both return 0 to go on; a positive value stops the run, and
 * sd_sampler_run returns it (cancellation, model error).
 *
 * The latent is one flat fp32 array of n values (batch x 4 x h x w): every
 * update is elementwise, in fp32, in diffusers' operation order. */
#ifndef SDXL_SD_SAMPLER_H
#define SDXL_SD_SAMPLER_H

#include <stddef.h>

typedef enum {
    SD_SAMPLER_EULER = 0,
    SD_SAMPLER_EULER_A,
    SD_SAMPLER_HEUN,
    SD_SAMPLER_DPM2,
    SD_SAMPLER_DPM2_A,
    SD_SAMPLER_DPMPP_2M,
    SD_SAMPLER_DPMPP_2M_SDE,
    SD_SAMPLER_DPMPP_3M_SDE,
    SD_SAMPLER_LMS,
    SD_SAMPLER_DDIM,
    SD_SAMPLER_UNIPC,
    SD_SAMPLER_LCM,
    SD_SAMPLER_DPMPP_2S_A,
    SD_SAMPLER_COUNT
} sd_sampler_id;

/* Schedule types. SGM Uniform and Simple run diffusers' "trailing" spacing
 * (diffusers' documented equivalent) but keep their own label. */
typedef enum {
    SD_SCHEDULE_AUTOMATIC = 0, /* the sampler's A1111 default; resolved by parsing */
    SD_SCHEDULE_LEADING,       /* diffusers' SDXL default ("normal", "discrete") */
    SD_SCHEDULE_TRAILING,
    SD_SCHEDULE_LINSPACE,      /* A1111 "Uniform" */
    SD_SCHEDULE_KARRAS,
    SD_SCHEDULE_EXPONENTIAL,
    SD_SCHEDULE_BETA,
    SD_SCHEDULE_SGM_UNIFORM,
    SD_SCHEDULE_SIMPLE,
    SD_SCHEDULE_COUNT
} sd_schedule_type;

typedef struct {
    sd_sampler_id sampler;
    sd_schedule_type schedule; /* never SD_SCHEDULE_AUTOMATIC after parsing */
} sd_sampler_choice;

/* Resolves a sampler name and an optional schedule name (NULL or "" means
 * Automatic), case-insensitively:
 *   - A1111 names ("DPM++ 2M", "Euler a"), their k_ aliases ("k_dpmpp_2m"),
 *     ComfyUI names ("dpmpp_2m", "euler_ancestral"), diffusers class names
 *     ("DPMSolverMultistepScheduler");
 *   - legacy combined names ("DPM++ 2M Karras", "DPM++ 2M SDE Exponential"),
 *     whose schedule must agree with an explicit one;
 *   - schedule labels: Automatic, Normal/discrete/leading, trailing,
 *     Uniform/linspace, Karras, Exponential, Beta, SGM Uniform, Simple.
 * Automatic picks the sampler's A1111 default (Karras for DPM++ 2M, DPM2,
 * DPM2 a, DPM++ 2S a; Exponential for the SDE samplers; diffusers' leading
 * otherwise).
 * Returns 0, or -1 with a one-line message in err: an unknown name lists the
 * valid ones; a known but unsupported sampler or pair says why. */
int sd_sampler_parse(const char *sampler, const char *schedule, sd_sampler_choice *out,
                     char *err, size_t errlen);

const char *sd_sampler_label(sd_sampler_id id);         /* A1111 name: "DPM++ 2M" */
/* "DPMSolverMultistepScheduler"; NULL for DPM++ 2S a, which has none. */
const char *sd_sampler_diffusers_class(sd_sampler_id id);
const char *sd_schedule_label(sd_schedule_type s);       /* A1111 label: "Karras" */
int sd_sampler_is_stochastic(sd_sampler_id id);
/* 1 if diffusers' class for the sampler supports the schedule. */
int sd_sampler_supports(sd_sampler_id id, sd_schedule_type s);

/* What a run will do: the timesteps passed to the model, one per model
 * evaluation (Heun, DPM2, DPM2 a and DPM++ 2S a evaluate 2N-1 times), and the
 * scheduler's sigma array (diffusers' scheduler.sigmas; for DDIM and LCM,
 * which have none, the sigma of each timestep then 0; for DPM++ 2S a the
 * sigma list k-diffusion is given, one per step then 0: its midpoint sigmas
 * appear only as timesteps). init_noise_sigma is sigmas[0] for DPM++ 2S a,
 * as A1111 starts k-diffusion samplers. */
typedef struct {
    sd_sampler_choice choice;
    int steps;
    int n_evals;
    float *timesteps;     /* n_evals */
    int n_sigmas;
    float *sigmas;        /* n_sigmas */
    float init_noise_sigma;
} sd_plan;

#define SD_MAX_STEPS 1000

/* 0, or -1 with a message (steps out of 1..SD_MAX_STEPS, unsupported pair,
 * out of memory). Free with sd_plan_free. */
int sd_plan_make(const sd_sampler_choice *c, int steps, sd_plan *p, char *err, size_t errlen);
void sd_plan_free(sd_plan *p);

typedef int (*sd_eps_fn)(void *ctx, const float *x_in, float t, float *eps);
typedef int (*sd_noise_fn)(void *ctx, float *out, size_t n);
/* Called after each update with the index of the plan evaluation that comes
 * next (n_evals after the last one; for DPM++ 2S a the next step's first
 * evaluation); may change x, as diffusers' inpainting loop changes the
 * latents between scheduler.step calls. */
typedef void (*sd_step_fn)(void *ctx, int next_eval, float *x);

typedef struct {
    size_t n;              /* floats in the latent */
    sd_eps_fn eps;
    void *eps_ctx;
    sd_noise_fn noise;     /* required when sd_sampler_is_stochastic */
    void *noise_ctx;
    sd_step_fn after_step; /* optional */
    void *step_ctx;
} sd_sample_io;

#define SD_SAMPLE_ENOMEM (-1)
#define SD_SAMPLE_ENONOISE (-2)

/* Runs the plan. x holds the initial noise, standard normal (txt2img: what
 * the generator drew), and is first scaled by init_noise_sigma as the
 * pipeline's prepare_latents does; on return it holds the final latents.
 * Returns 0, a callback's positive value, SD_SAMPLE_ENONOISE (a stochastic
 * sampler without a noise source) or SD_SAMPLE_ENOMEM. */
int sd_sampler_run(const sd_plan *p, const sd_sample_io *io, float *x);

/* img2img, as StableDiffusionXLImg2ImgPipeline runs it (get_timesteps with
 * denoising_start None, scheduler.set_begin_index, prepare_latents):
 *
 * sd_plan_strength_begin: init = min(int(steps * strength), steps) steps are
 * run (*steps_run), starting at model evaluation
 * begin = (steps - init) * scheduler.order (order 2 for Heun, DPM2, DPM2 a,
 * whose plans list every interior timestep twice, and for DPM++ 2S a, which
 * evaluates the model twice in every step but the last: begin is then the
 * first evaluation of step steps - init). strength is a double so
 * that int() truncates the same product Python does (10 * 0.7 -> 7). With
 * *steps_run == 0 nothing would be denoised (diffusers fails there).
 *
 * sd_sampler_add_noise: scheduler.add_noise at the first timestep run:
 *   k-diffusion classes (Euler, Euler a, Heun, DPM2, DPM2 a, LMS):
 *       x = x0 + noise * sigmas[begin]
 *   DPM++ 2S a: x = x0 + noise * sigmas[begin / 2], the sigma of step
 *       steps - init, as k-diffusion samplers start from sigmas[step:]
 *   DPMSolverMultistep and UniPC: x = alpha_t x0 + sigma_t noise with
 *       alpha_t = 1/sqrt(sigma^2 + 1), sigma_t = sigma alpha_t, sigma = sigmas[begin]
 *   DDIM and LCM: x = sqrt(acp[t]) x0 + sqrt(1 - acp[t]) noise, t = timesteps[begin]
 * (fp32, diffusers' operation order; x may alias x0 or noise).
 *
 * sd_sampler_run_from: runs model evaluations begin..n_evals-1 on x, which
 * holds the noised latents (no init_noise_sigma scaling). Step indices stay
 * those of the whole plan, as diffusers' step_index after set_begin_index:
 * lower_order_final, LCM's last step and LMS's order count from the start of
 * the schedule, while the solver history starts empty (LMS then sums only the
 * derivatives it has, as diffusers' zip does; UniPC corrects from the second
 * step run). Returns as sd_sampler_run; begin >= n_evals runs nothing. */
int sd_plan_strength_begin(const sd_plan *p, double strength, int *steps_run);
void sd_sampler_add_noise(const sd_plan *p, int begin, const float *x0, const float *noise, float *x, size_t n);
int sd_sampler_run_from(const sd_plan *p, int begin, const sd_sample_io *io, float *x);

#endif
