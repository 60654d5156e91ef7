/* The SDXL job handler: the product the worker runs. Owns the job schema
 * (issue 8's table, declared with the runtime's validator), the warm worker
 * state (models made present by the model store, the engine loaded once, the
 * LoRA stack, the model hashes, the bucket), the run of one job (progress per
 * denoising step, cancellation, engine failures as job errors) and the result
 * shape, which keeps clients of the original Python worker working:
 *
 *   {"image": "<base64 of the first image>",
 *    "images": [{"image": "<base64>" | "url": "<presigned GET>", "seed": N, "format": "png"}],
 *    "metadata": {prompt, negative_prompt, steps, cfg_scale, sampler, scheduler, seed, width,
 *                 height, clip_skip, rng, model, loras: [{name, scale, tensors_applied}],
 *                 vae (when chosen), embeddings (when used)},
 *    "timings": {encode, denoise, decode, total}}
 *
 * A failed job returns {"error": "<message naming the field or cause>",
 * "code": "<CODE>"}; the runtime posts it as the SDK posts such a dict
 * ({"error": ..., "output": {"code": ...}}). docs/handler.md has the
 * schema, the codes and examples. */
#ifndef SDXL_HANDLER_H
#define SDXL_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "image/encode.h"
#include "runpod/runpod.h"
#include "sd/hires.h"
#include "sd/inpaint.h"
#include "sd/rng.h"
#include "sd/sampler.h"

/* ---- error codes ------------------------------------------------------------ */

/* Stable, documented machine-readable codes (the "code" of a failed job). */
typedef enum {
    SDXL_OK = 0,
    SDXL_INVALID_INPUT,     /* the job input: a field's type, range or value */
    SDXL_MODEL_UNAVAILABLE, /* the checkpoint or a LoRA is not on disk / failed to load */
    SDXL_LORA_MISMATCH,     /* a LoRA does not fit the checkpoint */
    SDXL_OUT_OF_MEMORY,     /* host or device memory ran out during the job */
    SDXL_CANCELLED,         /* the job was stopped through the job-stop channel */
    SDXL_UPLOAD_FAILED,     /* return_type "url": the bucket refused the upload */
    SDXL_INTERNAL,          /* anything else */
} sdxl_code;

const char *sdxl_code_name(sdxl_code c); /* "INVALID_INPUT", ... */

#define SDXL_ERROR_MAX 2048 /* bytes of an error message, UTF-8 */

typedef struct {
    sdxl_code code;
    char message[SDXL_ERROR_MAX];
} sdxl_error;

/* {"error": message, "code": CODE}; the message is made valid UTF-8 and has
 * every registered secret masked. */
cJSON *sdxl_error_result(const sdxl_error *e);

/* ---- the job input ---------------------------------------------------------- */

#define SDXL_MIN_SIDE 256
#define SDXL_MAX_SIDE 2048
#define SDXL_MAX_STEPS 150
#define SDXL_MAX_IMAGES 4
#define SDXL_MAX_PROMPT_CHARS 10000
#define SDXL_MAX_LORA_SCALE 10.0
/* Default pixel budget of one job, width x height x num_images: one 2048²
 * image or four 1024² ones. SDXL_MAX_PIXELS overrides it. */
#define SDXL_DEFAULT_MAX_PIXELS (4L * 1024 * 1024)
/* Default work budget of one job, width x height x num_images x steps: four
 * 1024² images (or one 2048²) at 60 steps, one 1024² image at up to the 150
 * steps allowed. SDXL_MAX_PIXEL_STEPS overrides it. */
#define SDXL_DEFAULT_MAX_PIXEL_STEPS (SDXL_DEFAULT_MAX_PIXELS * 60)
/* Default cap on the 75-token chunks of prompt and negative_prompt together
 * (each BREAK starts one; every chunk adds a text-encoder pass and 77
 * context tokens to every cross-attention of every step). Real prompts take
 * 1 to 4 each side; 32 leaves room for 1,200 tokens a side, and refuses the
 * 10,000-character "a BREAK a BREAK ..." of 1,249 chunks. SDXL_MAX_PROMPT_CHUNKS
 * overrides it. */
#define SDXL_DEFAULT_MAX_PROMPT_CHUNKS 32
#define SDXL_MAX_IMAGE_BYTES (32u << 20) /* decoded size of an img2img `image` */

/* One LoRA of the configured stack (the models config's `loras`). */
typedef struct {
    const char *name;  /* the config's display name; jobs refer to it */
    const char *path;  /* the file, when available */
    double scale;      /* the config's scale */
    bool available;    /* present and verified at start-up */
    const char *why;   /* when !available: the model store's reason */
} sdxl_lora_slot;

/* One VAE of the models config's "vae"/"vaes", which a job's "vae" names. */
typedef struct {
    const char *name;  /* the config's name */
    const char *path;  /* the file, when available */
    int index;         /* the engine's sd_txt2img_params.vae for it; 0 when unavailable */
    bool available;    /* present, verified and accepted by the engine */
    const char *why;   /* when !available: the store's or the engine's reason */
} sdxl_vae_slot;

/* What the schema checks against: set from the environment and the engine. */
typedef struct {
    long max_pixels;    /* width x height x num_images; SDXL_MAX_PIXELS */
    long max_pixel_steps; /* width x height x num_images x steps; SDXL_MAX_PIXEL_STEPS (0: the default) */
    long max_prompt_chunks; /* prompt + negative_prompt chunks; SDXL_MAX_PROMPT_CHUNKS (0: the default) */
    int size_multiple;  /* 8, or the engine's when larger */
    bool bucket;        /* return_type "url" is possible */
    const sdxl_lora_slot *stack;
    size_t n_stack;
    const sdxl_vae_slot *vaes;
    size_t n_vaes;
} sdxl_job_limits;

/* limits from the environment: SDXL_MAX_PIXELS, SDXL_MAX_PIXEL_STEPS and
 * SDXL_MAX_PROMPT_CHUNKS (positive integers, else the default with a
 * warning), BUCKET_* (all three set); no LoRA stack. */
void sdxl_job_limits_from_env(sdxl_job_limits *lim);

/* A LoRA the job uses: a slot of the stack and its scales. */
typedef struct {
    size_t slot;
    double scale;       /* text encoders (A1111's te multiplier) */
    double unet_scale;  /* UNet; equal to scale unless a tag gives a third number */
} sdxl_lora_use;

typedef struct {
    cJSON *input;       /* the validated input; the strings below point into it */
    const char *prompt; /* as typed, <lora:...> tags included */
    const char *negative_prompt;
    int width, height, steps, num_images;
    double cfg_scale, guidance_rescale;
    uint64_t seed;      /* the seed of the first image */
    bool seed_random;   /* -1 or absent: drawn by the worker */
    const char *sampler, *scheduler; /* as given (scheduler NULL when absent) */
    sd_sampler_choice choice;        /* resolved */
    int clip_skip;      /* 0: the SDXL default (penultimate layer) */
    sd_rng_kind rng;
    img_format format;
    int quality;        /* JPEG/WebP 1..100 */
    bool return_url;
    sdxl_lora_use *loras;
    size_t n_loras;
    bool has_image;     /* img2img */
    img_rgb image;      /* decoded init image */
    double strength;
    /* inpainting: `mask` with `image` */
    uint8_t *mask;      /* grey, image.width x image.height; NULL when absent */
    int mask_blur;
    sd_inpaint_area inpaint_area;
    int inpaint_padding;
    /* hires fix: hr_scale on a txt2img job */
    bool hires;
    double hr_scale, denoising_strength;
    sd_hires_upscaler hr_upscaler;
    int hr_steps;       /* 0: steps */
    long vae;           /* the slot of limits.vaes the job chose; -1: the checkpoint's own VAE */
    int vae_index;      /* its sd_txt2img_params.vae (0: the checkpoint's own) */
} sdxl_job;

/* Validates a job input (any JSON value) and resolves it into *job: types,
 * ranges, the pixel and pixel x step budgets, the prompt chunks (tokenized as
 * the engine will), the sampler and schedule names, the LoRA request
 * against the stack (the `loras` field, then <lora:name:w> tags in the
 * prompt), the VAE it names, the img2img image. Draws a random seed for
 * -1/absent. 0, or -1 with err filled (INVALID_INPUT, or MODEL_UNAVAILABLE
 * for a LoRA or VAE that is configured but unusable). Never runs the
 * engine. */
int sdxl_job_parse(const cJSON *input, const sdxl_job_limits *lim, sdxl_job *job, sdxl_error *err);
void sdxl_job_free(sdxl_job *job);

/* ---- the worker ------------------------------------------------------------- */

typedef struct sdxl_worker sdxl_worker;

/* Start-up, before the first job is taken: reads the environment
 * (MODELS_CONFIG, MODELS_DIR, ..., SDXL_MAX_PIXELS, BUCKET_*), makes the
 * models present and verified (models_ensure), computes the model hashes
 * for the infotext and loads the engine once. A worker whose models are not
 * available is still returned: its jobs fail with MODEL_UNAVAILABLE and the
 * reason, and the next job after SDXL_RETRY_MODELS_S seconds tries again.
 * NULL only when out of memory. */
#define SDXL_RETRY_MODELS_S 60
sdxl_worker *sdxl_worker_start(void);
void sdxl_worker_free(sdxl_worker *w);
/* True once the engine is loaded. */
bool sdxl_worker_ready(const sdxl_worker *w);

/* The rp_handler_fn: ctx is the sdxl_worker. */
cJSON *sdxl_handle_job(rp_job *job, void *ctx);

/* The worker mode of main: start-up, then rp_serverless_start with the
 * handler. Returns the exit code. */
int sdxl_worker_main(int argc, char **argv);

#endif
