/* The small generated SDXL model with one of its golden sets, as the engine
 * tests (txt2img, img2img, sampler pipeline) load and compare them: engine,
 * tests/data/small/<stem>.{safetensors,json}, golden job settings and uint8
 * image differences. */
#ifndef SDXL_SMALL_MODEL_H
#define SDXL_SMALL_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

#include "image/decode.h"
#include "json_assert.h"
#include "sd/engine.h"

#define SMALL "tests/data/small/"

typedef struct {
    sd_engine *engine;
    st_file *goldens; /* <stem>.safetensors */
    cJSON *doc;       /* <stem>.json */
} small_model;

/* Loads the small model on one CPU thread (its ops are too small to share,
 * and on a busy machine OpenMP's waits would dominate) and the golden set
 * <stem>; 0 on success, else prints why and returns -1. */
int small_model_open(small_model *m, const char *stem);
void small_model_close(small_model *m);

/* The uint8 golden image `name` of numel bytes (fails the test otherwise). */
const st_tensor *small_model_golden_u8(const small_model *m, const char *name, size_t numel);

/* sd_txt2img that fails the test on an error or a wrong batch size. */
void small_model_txt2img_ok(const small_model *m, const sd_txt2img_params *p, sd_image_out *out);

/* Settings every golden case shares, read from object o: prompt,
 * negative_prompt (null: none), cfg, seed (a decimal string); rng cpu. */
void golden_prompt_settings(const cJSON *o, sd_txt2img_params *p);
/* golden_prompt_settings plus width, height, steps and sampler, with one
 * generator for the batch (diffusers' generator=manual_seed(seed)). */
void golden_job_settings(const cJSON *o, sd_txt2img_params *p);
/* A case's "seeding": "per-image" (A1111's seeds) or one generator. */
sd_batch_seeding golden_seeding(const cJSON *c);

/* An engine call that must fail with SD_EINVALID, an error containing
 * needle and no images. */
void small_expect_invalid(sd_status st, const char *err, const sd_image_out *out, const char *needle);

/* An sd_progress_fn that checks the steps come one by one from 1 and
 * counts them (ctx: a zeroed small_progress). */
typedef struct {
    int calls, last, total;
} small_progress;
int small_progress_step(void *ctx, int step, int total);

/* Writes the small model's 9-channel inpainting variant to path: every
 * tensor and metadata key of sdxl_small.safetensors, with the UNet's conv_in
 * replaced by goldens_inpaint's "unet9.conv_in.weight"
 * (tools/reference/make_inpaint_goldens.py). 0, or -1 after printing why. */
int small_inpaint_model_write(const char *path);

/* An image file (PNG, JPEG, WebP) decoded into out; 0, else prints why and
 * returns -1. */
int small_model_read_image(const char *path, img_rgb *out);

/* Largest per-byte |a - b|; counts the differing bytes into *n_diff unless NULL. */
int u8_max_abs_diff(const uint8_t *a, const uint8_t *b, size_t n, size_t *n_diff);

#endif
