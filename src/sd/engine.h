/* The SDXL engine: one checkpoint opened once and kept warm (text encoders,
 * UNet, VAE bound to its mapping, one backend), and txt2img jobs run on it
 * the way diffusers' StableDiffusionXLPipeline runs them (sdxl-numerics-
 * diffusers.md §1), with A1111's prompt handling and seeds. Owner: the
 * worker's image generation; the job handler and `sdxl-worker generate` call
 * it.
 *
 * txt2img, per job:
 *   1. prompts (sd/prompt.h: <lora:...> tags stripped from the prompt,
 *      attention syntax, textual-inversion embeddings named in them,
 *      75-token chunks) -> context [77*chunks, 2048] and
 *      pooled (sd/text_encoder.h); an empty negative prompt gives all-zero
 *      context and pooled (diffusers' force_zeros_for_empty_prompt, A1111's
 *      force_zero_negative_prompt). With cfg <= 1 the negative is not encoded;
 *   2. noise (B, 4, H/8, W/8) from the job's generator (sd/rng.h): per-image
 *      generators seeded seed+i (A1111, the default) or one generator for
 *      the batch (diffusers' generator=manual_seed(seed));
 *   3. the sampler (sd/sampler.h) from that noise times init_noise_sigma,
 *      with the CFG denoiser (sd/guidance.h) around the UNet:
 *      context [uncond; cond], y = adm(pooled, (H, W, 0, 0, H, W)) for both
 *      halves. When the prompt and the negative have the same number of
 *      chunks, uncond and cond run as one UNet batch of 2B; when they differ
 *      (a long prompt against a short negative) they run as two UNet calls,
 *      as A1111 does without pad_cond_uncond. Sampler noise continues each
 *      image's own generator;
 *   4. latents / 0.13025 -> VAE decode (the checkpoint's VAE or the one the
 *      job chose, sd_engine_add_vae; tiled above a size threshold) ->
 *      RGB8 as VaeImageProcessor rounds (sd_vae_to_rgb8).
 *
 * img2img (sd_img2img) runs diffusers' StableDiffusionXLImg2ImgPipeline:
 * steps 1 and 4 as above; in between
 *   2'. the init image is resized to cover the job's size and centre-cropped
 *       (image/resize.h: VaeImageProcessor.resize, resize_mode "crop", PIL
 *       LANCZOS), VAE-encoded once, and each image's latent is sampled from
 *       the posterior with its generator's first draw (retrieve_latents,
 *       sample_mode "sample"; one generator for the batch draws one sample
 *       that all images share), times 0.13025; the second draw is the noise
 *       that scheduler.add_noise mixes in at the first timestep strength
 *       keeps (sd_plan_strength_begin);
 *   3'. the sampler runs from that timestep (sd_sampler_run_from); its noise
 *       continues each image's generator.
 *
 * Errors come back as a status and one line in err; the engine stays usable
 * after any of them. One job at a time per engine (the backend is driven by
 * one thread); the UNet, VAE and text encoders read the mapping only. */
#ifndef SDXL_SD_ENGINE_H
#define SDXL_SD_ENGINE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sd/backend.h"
#include "sd/checkpoint.h"
#include "sd/device.h"
#include "sd/embedding.h"
#include "sd/lora.h"
#include "sd/rng.h"
#include "sd/sampler.h"

typedef struct sd_engine sd_engine;

typedef enum {
    SD_OK = 0,
    SD_EINVALID,   /* a parameter the caller can fix: size, steps, sampler, clip_skip, prompt syntax */
    SD_ENOMEM,     /* out of memory (host or backend) */
    SD_ECANCELLED, /* the cancel flag was set or the progress callback asked to stop */
    SD_EMODEL,     /* the checkpoint could not be opened or is not an SDXL base model */
    SD_EINTERNAL,  /* anything else the backend reported */
    SD_EDEVICE,    /* the device asked for is not usable (SDXL_DEVICE=cuda without a GPU) */
} sd_status;

const char *sd_status_name(sd_status s); /* "ok", "invalid", "out of memory", ... */

typedef struct {
    /* The backend (sd/device.h): zero fields take SDXL_DEVICE and
     * SDXL_CUDA_PRECISION from the environment, and the CPU tunables their
     * defaults. */
    sd_device_options device;
    /* 0 (default): after encoding the prompts, and again before decoding,
     * the process drops its mapping of the text encoders' and the UNet's
     * file pages (st_release_pages): the page cache keeps them, the next job
     * maps them back on first touch, and the peak RSS of a job is the UNet
     * or the VAE stage alone, not all weights at once. 1 keeps every page
     * mapped (LoRA-merged tensors live in the heap and are always kept). */
    int keep_weights_resident;
} sd_engine_options;

/* Opens the checkpoint (sdxl_checkpoint_open: mapped, validated), binds the
 * text encoders, UNet and VAE, builds the tokenizer and opens the backend
 * (sd_backend_open: the GPU when one is usable, else the CPU). opts may be
 * NULL. SD_OK, or SD_EMODEL / SD_EDEVICE / SD_ENOMEM with err. */
sd_status sd_engine_load(const char *path, const sd_engine_options *opts, sd_engine **out, char *err,
                         size_t errlen);
/* On a GPU: runs a one-step 64x64 job so that every weight the text
 * encoders, the UNet and the VAE decoder use is on the device (with the
 * active LoRA set merged in) and the libraries have chosen their
 * algorithms; the first real job then pays none of it. Does nothing on the
 * CPU, whose weights stay mapped. SD_OK, or the job's status with err. */
sd_status sd_engine_warm_up(sd_engine *e, char *err, size_t errlen);
/* The start-up line of the backend in use (sd_backend_open's `line`): the
 * device, and for a CPU fall-back why the GPU is not used. */
const char *sd_engine_device(const sd_engine *e);
void sd_engine_free(sd_engine *e); /* NULL is fine */

const sdxl_hparams *sd_engine_hparams(const sd_engine *e);
sd_backend *sd_engine_backend(sd_engine *e);   /* for memory statistics and benchmarks */
const char *sd_engine_model_path(const sd_engine *e);
/* Pixel sizes must be multiples of this: 8 (the VAE) x 2^(UNet levels - 1);
 * 32 for SDXL. */
int sd_engine_size_multiple(const sd_engine *e);

/* Makes `specs` the active LoRA set (docs/loras.md): merged into the
 * weights from the pristine checkpoint, only the tensors that change are
 * rebuilt, and an unchanged set costs nothing. On SD_LORA_EFILE or
 * SD_LORA_EMISMATCH the previous set stays active. report may be NULL. */
sd_lora_status sd_engine_set_loras(sd_engine *e, const sd_lora_spec *specs, size_t n, sd_lora_report *report,
                                   char *err, size_t errlen);

/* Textual-inversion embeddings (sd/embedding.h) that prompts and negative
 * prompts may name: the engine's set, empty after loading; load files into
 * it with sd_embeddings_load (widths are the engine's encoders'). */
sd_embedding_db *sd_engine_embeddings(sd_engine *e);
/* The embeddings `text` names (negative: a negative prompt, whose <...>
 * tags are text), as indices into sd_engine_embeddings in A1111's order of
 * first use; *used is malloc'd (free it; NULL when none). SD_OK, SD_EINVALID
 * for a prompt that does not parse, SD_EMODEL when it names an embedding
 * that could not be loaded (err names it and the reason), SD_ENOMEM. */
sd_status sd_engine_embeddings_used(sd_engine *e, const char *text, bool negative, size_t **used, size_t *n,
                                    char *err, size_t errlen);

/* A VAE of the user's choice (sd/vae_file.h: LDM or diffusers names) for
 * jobs to decode (and img2img to encode) with: *index is the value of
 * sd_txt2img_params.vae that picks it (1 for the first added, 2 for the
 * next...). The file stays mapped until the engine is freed. SD_OK, or
 * SD_EMODEL when it is not an SDXL VAE this checkpoint can use (err says
 * what it is), SD_ENOMEM. */
sd_status sd_engine_add_vae(sd_engine *e, const char *path, int *index, char *err, size_t errlen);

/* Called after each sampling step with step = 1..total (total = steps; a
 * sampler with two model calls per step reports after the step's last call).
 * A nonzero return stops the job with SD_ECANCELLED. */
typedef int (*sd_progress_fn)(void *ctx, int step, int total);

#define SD_MAX_BATCH 16
#define SD_MAX_SIDE 8192
#define SD_VAE_TILE_ABOVE_DEFAULT (1536 * 1536) /* pixels; larger images decode tiled */

typedef struct {
    const char *prompt;          /* UTF-8; may carry <lora:...> tags (stripped here, applied elsewhere) */
    const char *negative_prompt; /* NULL or "": all-zero negative conditioning */
    int width, height;           /* pixels, multiples of sd_engine_size_multiple */
    int steps;                   /* 1..SD_MAX_STEPS */
    float cfg;                   /* guidance scale; <= 1 runs without the negative */
    float guidance_rescale;      /* phi >= 0 (diffusers rescale_noise_cfg), only with cfg > 1 */
    uint64_t seed;               /* torch's manual_seed value: pass (uint64_t)s for a negative s */
    const char *sampler;         /* any name sd_sampler_parse takes; NULL: "DPM++ 2M" */
    const char *schedule;        /* NULL or "": the sampler's Automatic schedule */
    sd_rng_kind rng;             /* SD_RNG_CUDA (A1111 / the original worker) or SD_RNG_CPU (diffusers, ComfyUI) */
    sd_batch_seeding seeding;    /* SD_BATCH_SEED_PER_IMAGE (seed+i, A1111) or SD_BATCH_ONE_GENERATOR */
    int clip_skip;               /* 0: SDXL's default 2 (penultimate layer); else 1..sd_clip_skip_max */
    int batch;                   /* number of images, 1..SD_MAX_BATCH */
    sd_progress_fn progress;     /* may be NULL */
    void *progress_ctx;
    const atomic_bool *cancel;   /* may be NULL; polled before every UNet call */
    /* Images with more than this many pixels decode tiled (bounded memory);
     * 0: SD_VAE_TILE_ABOVE_DEFAULT; negative: never tile. */
    long vae_tile_above;
    int vae_tile_latent;         /* tile edge in latent pixels for sd_vae_decode_tiled; 0: its default */
    int vae;                     /* 0: the checkpoint's own VAE; n: the n-th sd_engine_add_vae */
} sd_txt2img_params;

/* The worker's defaults: 1024x1024, 24 steps, cfg 4.5, DPM++ 2M Karras,
 * rng cuda, per-image seeds, seed 0, one image, no prompt (set one). */
void sd_txt2img_params_default(sd_txt2img_params *p);

/* img2img: a txt2img job plus the init image and the strength. */
typedef struct {
    sd_txt2img_params gen;   /* as txt2img; width x height is the output size */
    const uint8_t *init_rgb; /* the init image, RGB8 rows packed (image/decode.h gives it) */
    int init_width, init_height; /* 1..SD_MAX_INIT_SIDE */
    /* 0..1, diffusers' strength: int(steps * strength) steps run, from the
     * (steps - that)'th timestep on; at least one step must run. */
    double strength;
} sd_img2img_params;

#define SD_MAX_INIT_SIDE 16384
#define SD_IMG2IMG_STRENGTH_DEFAULT 0.3 /* diffusers' and the original worker's default */

/* txt2img's defaults, no init image, strength 0.3. */
void sd_img2img_params_default(sd_img2img_params *p);

typedef struct {
    int batch, width, height;
    uint8_t *rgb;             /* batch images of height x width x 3 bytes, one after the other */
    uint64_t *seeds;          /* per image: seed+i per image, or the batch generator's seed for every image */
    sd_sampler_choice choice; /* the sampler and schedule that ran (Automatic resolved) */
    int steps_done;           /* steps completed (== steps unless cancelled; img2img: of steps_run) */
    size_t prompt_tokens;     /* A1111's token counts, for logs */
    size_t negative_tokens;
    int unet_calls_per_eval;  /* 1 (one batch), or 2 (cond and uncond ran separately) */
    double t_encode, t_denoise, t_decode, t_total; /* seconds */
    int steps_run;            /* the steps the job runs: steps, or img2img's int(steps * strength) */
    double t_image_encode;    /* img2img: resizing and VAE-encoding the init image (seconds, in t_total) */
    const char *device;       /* the backend that ran the job: "cpu" or "cuda" */
    size_t peak_memory_bytes; /* its peak: device memory in use on a GPU (sd_mem_stats.device_used_peak),
                                 tensors and scratch on the CPU (sd_mem_stats.peak_bytes) */
} sd_image_out;

void sd_image_out_free(sd_image_out *o);

/* Runs one txt2img job. On SD_OK *out holds the images (free with
 * sd_image_out_free); on any other status err says why, rgb and seeds are
 * NULL, and steps_done and the timings say how far the job got. */
sd_status sd_txt2img(sd_engine *e, const sd_txt2img_params *p, sd_image_out *out, char *err, size_t errlen);

/* Runs one img2img job; outputs and statuses as sd_txt2img. The progress
 * callback counts to out->steps_run. SD_EINVALID also for a missing or
 * oversized init image, a strength outside [0, 1], and a strength that
 * leaves no step to run. */
sd_status sd_img2img(sd_engine *e, const sd_img2img_params *p, sd_image_out *out, char *err, size_t errlen);

/* ---- jobs built on txt2img and img2img (sd/inpaint.h, sd/hires.h) ----------- */

/* What such a job changes in a txt2img or img2img run; every member is
 * optional (zero/NULL: the plain run). */
typedef struct {
    void *ctx;
    /* img2img only: the starting latents (batch x n_per_image floats, n =
     * z_channels * h/8 * w/8) of a run that starts at plan evaluation
     * `begin`, in place of encoding init_rgb; the draws come from the job's
     * generators `rng` (the sampler's noise continues them). */
    sd_status (*init_latents)(void *ctx, sd_engine *e, const sd_plan *plan, int begin, sd_batch_rng *rng,
                              float *latents, char *err, size_t errlen);
    /* after every sampler update (sd_sample_io.after_step), with the plan */
    void (*after_step)(void *ctx, const sd_plan *plan, int next_eval, float *x);
    /* Channels appended to the UNet's input after the latents (an
     * inpainting UNet's mask and masked-image latents): extra_channels x
     * h/8 x w/8 floats per image; required when the UNet takes more
     * channels than the latents have. */
    int extra_channels;
    const float *extra;
    /* When set: the final latents (batch x n_per_image) land here and
     * nothing is decoded (out->rgb is then left unset). */
    float *latents_out;
} sd_job_hooks;

sd_status sd_txt2img_hooked(sd_engine *e, const sd_txt2img_params *p, const sd_job_hooks *h, sd_image_out *out,
                            char *err, size_t errlen);
/* With h->init_latents, p->init_rgb is not needed. */
sd_status sd_img2img_hooked(sd_engine *e, const sd_img2img_params *p, const sd_job_hooks *h, sd_image_out *out,
                            char *err, size_t errlen);

/* The VAE encoder's posterior of one image, chw [3, h, w] in [-1, 1] (h, w
 * multiples of 8): mean and logvar, z_channels x h/8 x w/8 floats each.
 * vae: as sd_txt2img_params.vae (0: the checkpoint's own). */
sd_status sd_engine_vae_encode(sd_engine *e, int vae, const float *chw, int width, int height, float *mean,
                               float *logvar, char *err, size_t errlen);
/* UNet input channels beyond the latents': 0, or 5 for an inpainting UNet. */
int sd_engine_extra_channels(const sd_engine *e);

#endif
