/* The SDXL handler in-process, on the small model (tests/data/small/): the
 * bad-input table (each malformed input gets INVALID_INPUT or
 * MODEL_UNAVAILABLE with a message that names the field and what is
 * allowed, and then the warm worker serves a valid job), the result shape
 * (image == images[0].image, metadata, timings, the PNG's A1111
 * `parameters`), progress per step, num_images 2 with seeds seed+i, random
 * seeds, cancellation within one step, engine errors as job errors,
 * img2img, SDXL_OUTPUT_DIR copies, a worker without its checkpoint, the
 * LoRA request resolution (field, tags, stack) on its own, and a job with a
 * chosen VAE, textual-inversion embeddings and a LoRA saved by diffusers'
 * training script (metadata, VAE hash, VAE, Lora hashes, TI hashes). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "handler.h"
#include "handler_impl.h"
#include "image/base64.h"
#include "image/decode.h"
#include "image/hashes.h"
#include "image/utf8.h"
#include "runpod/job.h"
#include "runpod/log.h"
#include "runpod/take.h"
#include "sd/safetensors.h"
#include "st_writer.h"
#include "testutil.h"

#define SMALL "tests/data/small/"
#define SMALL_MODEL SMALL "sdxl_small.safetensors"

static sdxl_worker *worker;
static const img_limits LIMITS = {.max_pixels = 1u << 24, .max_side = 8192};
static char *tmp;

/* ---- running a job in-process ---------------------------------------------------- */

typedef struct {
    cJSON *updates;  /* every progress update */
    int cancel_at;   /* cancel the job at this step (0: never) */
} progress_log;

static void on_progress(rp_job *job, cJSON *progress, void *ctx)
{
    progress_log *p = ctx;
    const cJSON *step = cJSON_GetObjectItem(progress, "step");
    if (p->cancel_at && cJSON_IsNumber(step) && step->valueint == p->cancel_at) rp_job_cancel(job);
    cJSON_AddItemToArray(p->updates, progress);
}

/* Runs input (JSON text, or a prepared value when text is NULL) as job
 * "test-job"; returns the handler's result. */
static cJSON *run_value(cJSON *input, progress_log *log)
{
    cJSON *json = cJSON_CreateObject();
    cJSON_AddStringToObject(json, "id", "test-job");
    cJSON_AddItemToObject(json, "input", input ? input : cJSON_CreateNull());
    progress_log local = {.updates = cJSON_CreateArray()};
    if (!log) log = &local;
    if (!log->updates) log->updates = cJSON_CreateArray();
    rp_job_sink sink = {.progress = on_progress, .ctx = log};
    rp_job *job = rp_job_new(json, &sink);
    cJSON *result = sdxl_handle_job(job, worker);
    rp_job_free(job);
    cJSON_Delete(local.updates);
    return result;
}

static cJSON *run(const char *input_json, progress_log *log)
{
    cJSON *input = rp_json_parse_exact(input_json, strlen(input_json)); /* as the runtime parses job bodies */
    assert_non_null(input);
    return run_value(input, log);
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static bool valid_utf8(const char *s)
{
    size_t len = strlen(s), i = 0;
    uint32_t cp;
    while (i < len)
        if (utf8_next(s, len, &i, &cp)) return false;
    return true;
}

static void assert_error(cJSON *result, const char *code, const char *part)
{
    if (!cJSON_GetObjectItem(result, "error")) {
        char *t = cJSON_PrintUnformatted(result);
        fprintf(stderr, "expected an error, got %.300s\n", t);
        free(t);
        fail();
    }
    const char *msg = str(result, "error");
    if (strcmp(str(result, "code"), code) || !strstr(msg, part)) {
        fprintf(stderr, "expected %s containing \"%s\", got %s: %s\n", code, part, str(result, "code"), msg);
        fail();
    }
    assert_true(valid_utf8(msg));
    assert_int_equal(cJSON_GetArraySize(result), 2); /* {"error", "code"} and nothing else */
}

/* The decoded bytes of a base64 image. */
static uint8_t *decode_b64(const char *b64, size_t *len)
{
    uint8_t *bytes;
    char err[128];
    assert_int_equal(b64_decode(b64, strlen(b64), 0, &bytes, len, err, sizeof err), 0);
    return bytes;
}

/* A partial match: the small kohya test LoRA plus a module that lands on no
 * layer of the checkpoint. */
static void write_partial_lora(const char *path)
{
    char err[256];
    st_file *f;
    assert_int_equal(st_open("tests/data/small/loras/kohya_full.safetensors", &f, err, sizeof err), 0);
    stw *w = stw_new();
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        assert_int_equal(stw_add(w, t->name, t->dtype_name, t->ndim, t->shape, t->data), 0);
    }
    const float zeros[16] = {0};
    assert_int_equal(stw_add_f32(w, "lora_unet_bogus_layer.lora_down.weight", "F32", 2, (const int64_t[]){2, 8}, zeros), 0);
    assert_int_equal(stw_add_f32(w, "lora_unet_bogus_layer.lora_up.weight", "F32", 2, (const int64_t[]){8, 2}, zeros), 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
    st_close(f);
}

/* An SD 1.5 textual inversion (emb_params [2, 768]): not usable on SDXL. */
static void write_sd15_embedding(const char *path)
{
    float v[2 * 768] = {0.25f};
    stw *w = stw_new();
    assert_int_equal(stw_add_f32(w, "emb_params", "F32", 2, (const int64_t[]){2, 768}, v), 0);
    assert_int_equal(stw_write(w, path), 0);
    stw_free(w);
}

/* ---- set-up: a worker on the small model with four configured LoRAs: one
 * whose file is missing (a name to resolve and to refuse), one that matches
 * partly, one whose file is truncated, and one saved by diffusers' training
 * scripts; four VAEs: the small test VAE in LDM and in diffusers names, a
 * LoRA file configured as a VAE and a missing file; four embeddings: the two
 * small test ones, an SD 1.5 one and a missing file ------------------------------- */

static int setup(void **state)
{
    tmp = tu_mkdtemp("handler");
    char cwd[2048], config[4200], text[40000], partial[4200], broken[4200], sd15[4200];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(config, sizeof config, "%s/models.json", tmp);
    snprintf(partial, sizeof partial, "%s/partial.safetensors", tmp);
    snprintf(broken, sizeof broken, "%s/broken.safetensors", tmp);
    snprintf(sd15, sizeof sd15, "%s/sd15neg.safetensors", tmp);
    write_partial_lora(partial);
    write_sd15_embedding(sd15);
    assert_int_equal(tu_write_file(broken, "\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":", 13), 0);
    snprintf(text, sizeof text,
             "{\"checkpoint\": {\"name\": \"Small test model\", \"path\": \"%s/" SMALL_MODEL "\"},"
             " \"loras\": [{\"name\": \"Gone\", \"path\": \"%s/missing.safetensors\", \"scale\": 0.5},"
             " {\"name\": \"Partial\", \"path\": \"%s\", \"scale\": 1.0},"
             " {\"name\": \"Broken\", \"path\": \"%s\", \"scale\": 1.0},"
             " {\"name\": \"Dreambooth\", \"path\": \"%s/" SMALL "loras/dreambooth.safetensors\", \"scale\": 0.7}],"
             " \"vae\": {\"name\": \"Small VAE\", \"path\": \"%s/" SMALL "vae/vae_ldm.safetensors\"},"
             " \"vaes\": [{\"name\": \"Small VAE (diffusers)\", \"path\": \"%s/" SMALL "vae/vae_diffusers.safetensors\"},"
             "  {\"name\": \"LoRA as VAE\", \"path\": \"%s/" SMALL "loras/peft.safetensors\"},"
             "  {\"name\": \"Gone VAE\", \"path\": \"%s/gone_vae.safetensors\"}],"
             " \"embeddings\": [{\"name\": \"sks_style\", \"path\": \"%s/" SMALL "embeddings/sks_style.safetensors\"},"
             "  {\"name\": \"lowq_neg\", \"path\": \"%s/" SMALL "embeddings/lowq_neg.safetensors\"},"
             "  {\"name\": \"oldneg\", \"path\": \"%s\"},"
             "  {\"name\": \"goneneg\", \"path\": \"%s/goneneg.safetensors\"}]}",
             cwd, tmp, partial, broken, cwd, cwd, cwd, cwd, tmp, cwd, cwd, sd15, tmp);
    assert_int_equal(tu_write_file(config, text, strlen(text)), 0);
    setenv("MODELS_CONFIG", config, 1);
    setenv("MODELS_DIR", tmp, 1);
    unsetenv("SDXL_MAX_PIXELS");
    unsetenv("BUCKET_ENDPOINT_URL");
    unsetenv("SDXL_OUTPUT_DIR");
    setenv("OMP_NUM_THREADS", "2", 0);
    rp_log_set_level(RP_LOG_WARN);
    worker = sdxl_worker_start();
    assert_non_null(worker);
    assert_true(sdxl_worker_ready(worker));
    return 0;
}

static int teardown(void **state)
{
    sdxl_worker_free(worker);
    tu_rm_rf(tmp);
    free(tmp);
    return 0;
}

/* A small valid job: 256² (the schema's minimum), 2 steps, no LoRA. */
#define VALID "\"prompt\":\"a lighthouse at dawn\",\"width\":256,\"height\":256,\"steps\":2,\"loras\":[]"

static void assert_serves_a_valid_job(void)
{
    cJSON *r = run("{" VALID ",\"seed\":7}", NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_true(cJSON_IsString(cJSON_GetObjectItem(r, "image")));
    cJSON_Delete(r);
}

/* ---- the bad-input table ----------------------------------------------------------- */

typedef struct {
    const char *input; /* the job input as JSON text */
    const char *code;
    const char *part;  /* a part of the message */
} bad_case;

static const bad_case BAD[] = {
    {"{}", "INVALID_INPUT", "prompt is a required input."},
    {"{\"prompt\":5}", "INVALID_INPUT", "prompt should be <class 'str'> type, not <class 'int'>."},
    {"{\"prompt\":\"\"}", "INVALID_INPUT", "prompt must not be empty."},
    {"{\"prompt\":\"a\\u0000cat\"}", "INVALID_INPUT", "prompt must not contain the NUL character (\\u0000)."},
    {"{\"prompt\":\"x\",\"negative_prompt\":\"\\u0000\"}", "INVALID_INPUT",
     "negative_prompt must not contain the NUL character (\\u0000)."},
    {"{\"prompt\":\"x\",\"loras\":[{\"name\":\"Gone\\u0000x\"}]}", "INVALID_INPUT",
     "loras[0]: name must not contain the NUL character (\\u0000)."},
    {"{\"prompt\":\"x\",\"steps\\u0000\":5}", "INVALID_INPUT",
     "The input key that starts \"steps\" contains the NUL character (\\u0000)"},
    {"{\"prompt\":\"x\",\"negative_prompt\":[1]}", "INVALID_INPUT", "negative_prompt should be <class 'str'> type, not <class 'list'>."},
    {"{\"prompt\":\"x\",\"width\":\"1024\"}", "INVALID_INPUT", "width should be <class 'int'> type, not <class 'str'>."},
    {"{\"prompt\":\"x\",\"width\":0}", "INVALID_INPUT", "width must be a multiple of 8 between 256 and 2048 (got 0)."},
    {"{\"prompt\":\"x\",\"width\":13}", "INVALID_INPUT", "width must be a multiple of 8 between 256 and 2048 (got 13)."},
    {"{\"prompt\":\"x\",\"height\":99999}", "INVALID_INPUT", "height must be a multiple of 8 between 256 and 2048 (got 99999)."},
    {"{\"prompt\":\"x\",\"height\":1001}", "INVALID_INPUT", "height must be a multiple of 8 between 256 and 2048 (got 1001)."},
    {"{\"prompt\":\"x\",\"width\":512.5}", "INVALID_INPUT", "width should be <class 'int'> type, not <class 'float'>."},
    {"{\"prompt\":\"x\",\"width\":2048,\"height\":2048,\"num_images\":2}", "INVALID_INPUT",
     "= 2048x2048x2 = 8388608 pixels is over this worker's budget of 4194304 pixels (SDXL_MAX_PIXELS)"},
    {"{\"prompt\":\"x\",\"steps\":-1}", "INVALID_INPUT", "steps must be between 1 and 150 (got -1)."},
    {"{\"prompt\":\"x\",\"steps\":0}", "INVALID_INPUT", "steps must be between 1 and 150 (got 0)."},
    {"{\"prompt\":\"x\",\"steps\":100000}", "INVALID_INPUT", "steps must be between 1 and 150 (got 100000)."},
    {"{\"prompt\":\"x\",\"steps\":1e300}", "INVALID_INPUT", "steps must be an integer between"},
    {"{\"prompt\":\"x\",\"steps\":true}", "INVALID_INPUT", "steps should be <class 'int'> type, not <class 'bool'>."},
    {"{\"prompt\":\"x\",\"width\":1024,\"height\":1024,\"num_images\":4,\"steps\":61}", "INVALID_INPUT",
     "width x height x num_images x steps = 1024x1024x4x61 = 255852544 pixel-steps is over this worker's budget of "
     "251658240 (SDXL_MAX_PIXEL_STEPS); ask for fewer steps, or fewer or smaller images."},
    {"{\"prompt\":\"x\",\"cfg_scale\":1e999}", "INVALID_INPUT", "cfg_scale must be a finite number (got inf)."},
    {"{\"prompt\":\"x\",\"guidance_scale\":-1e999}", "INVALID_INPUT", "guidance_scale must be a finite number (got -inf)."},
    {"{\"prompt\":\"x\",\"cfg_scale\":\"NaN\"}", "INVALID_INPUT", "cfg_scale should be <class 'float'> type, not <class 'str'>."},
    {"{\"prompt\":\"x\",\"cfg_scale\":31}", "INVALID_INPUT", "cfg_scale must be between 0 and 30 (got 31)."},
    {"{\"prompt\":\"x\",\"cfg_scale\":5,\"guidance_scale\":6}", "INVALID_INPUT", "cfg_scale (5) and its alias guidance_scale (6) disagree"},
    {"{\"prompt\":\"x\",\"guidance_rescale\":2}", "INVALID_INPUT", "guidance_rescale must be between 0 and 1 (got 2)."},
    {"{\"prompt\":\"x\",\"seed\":\"42\"}", "INVALID_INPUT", "seed should be <class 'int'> type, not <class 'str'>."},
    {"{\"prompt\":\"x\",\"seed\":-2}", "INVALID_INPUT", "seed must be between -1 and 9007199254740991 (got -2)."},
    {"{\"prompt\":\"x\",\"seed\":9007199254740991,\"num_images\":2}", "INVALID_INPUT", "seed must be at most 9007199254740990 with num_images 2"},
    {"{\"prompt\":\"x\",\"sampler\":\"Euler z\"}", "INVALID_INPUT", "sampler/scheduler: "},
    {"{\"prompt\":\"x\",\"sampler\":\"Euler\",\"scheduler\":\"Banana\"}", "INVALID_INPUT", "Banana"},
    {"{\"prompt\":\"x\",\"sampler\":42}", "INVALID_INPUT", "sampler should be <class 'str'> type, not <class 'int'>."},
    {"{\"prompt\":\"x\",\"num_images\":0}", "INVALID_INPUT", "num_images must be between 1 and 4 (got 0)."},
    {"{\"prompt\":\"x\",\"num_images\":5}", "INVALID_INPUT", "num_images must be between 1 and 4 (got 5)."},
    {"{\"prompt\":\"x\",\"clip_skip\":0}", "INVALID_INPUT", "clip_skip must be between 1 and 12 (got 0)."},
    {"{\"prompt\":\"x\",\"rng\":\"gpu\"}", "INVALID_INPUT", "rng must be one of 'cuda', 'cpu' (got 'gpu')."},
    {"{\"prompt\":\"x\",\"output_format\":\"gif\"}", "INVALID_INPUT", "output_format must be one of 'png', 'jpeg', 'webp' (got 'gif')."},
    {"{\"prompt\":\"x\",\"quality\":101}", "INVALID_INPUT", "quality must be between 1 and 100 (got 101)."},
    {"{\"prompt\":\"x\",\"return_type\":\"url\"}", "INVALID_INPUT", "return_type \"url\" needs a bucket"},
    {"{\"prompt\":\"x\",\"return_type\":\"s3\"}", "INVALID_INPUT", "return_type must be one of 'base64', 'url' (got 's3')."},
    {"{\"prompt\":\"x\",\"loras\":{\"name\":\"Gone\"}}", "INVALID_INPUT", "loras should be <class 'list'> type, not <class 'dict'>."},
    {"{\"prompt\":\"x\",\"loras\":[5]}", "INVALID_INPUT", "loras[0] must be an object"},
    {"{\"prompt\":\"x\",\"loras\":[{\"name\":\"Nope\",\"scale\":1}]}", "INVALID_INPUT",
     "loras[0] names the LoRA 'Nope', which this worker does not have; LoRAs: 'Gone', 'Partial', 'Broken', "
     "'Dreambooth'."},
    {"{\"prompt\":\"x\",\"loras\":[{\"name\":\"Gone\",\"scale\":\"high\"}]}", "INVALID_INPUT",
     "loras[0]: scale should be <class 'float'> type, not <class 'str'>."},
    {"{\"prompt\":\"x\",\"loras\":[{\"scale\":1}]}", "INVALID_INPUT", "loras[0]: name is a required input."},
    {"{\"prompt\":\"x <lora:nope:0.8>\",\"loras\":[]}", "INVALID_INPUT",
     "the prompt's tag <lora:nope:0.8> names the LoRA 'nope', which this worker does not have"},
    {"{\"prompt\":\"x <hypernet:h:1>\",\"loras\":[]}", "INVALID_INPUT", "the tag <hypernet:h:1> is not supported"},
    {"{\"prompt\":\"x\",\"loras\":[{\"name\":\"Gone\"}]}", "MODEL_UNAVAILABLE", "the LoRA 'Gone' is not available on this worker"},
    {"{\"prompt\":\"x\"}", "MODEL_UNAVAILABLE", "the LoRA 'Gone' is not available"}, /* the default stack */
    {"{\"prompt\":\"x\",\"loras\":[],\"image\":\"@@@ not base64\"}", "INVALID_INPUT", "image is not valid base64: "},
    {"{\"prompt\":\"x\",\"loras\":[],\"image\":\"http://127.0.0.1:9/init.png\"}", "INVALID_INPUT",
     "image could not be fetched: "},
    {"{\"prompt\":\"x\",\"loras\":[],\"image\":\"PGh0bWw+aGVsbG88L2h0bWw+\"}", "INVALID_INPUT", "image: "},
    {"{\"prompt\":\"x\",\"loras\":[],\"strength\":0.5}", "INVALID_INPUT", "strength is for img2img and needs an image."},
    {"{\"prompt\":\"x\",\"use_long_prompt\":true}", "INVALID_INPUT", "Unexpected input. use_long_prompt is not a valid input option."},
    {"[\"prompt\",\"x\"]", "INVALID_INPUT", "Input should be <class 'dict'> type, not <class 'list'>."},
    {"\"a cat\"", "INVALID_INPUT", "Input should be <class 'dict'> type, not <class 'str'>."},
    {"null", "INVALID_INPUT", "Input should be <class 'dict'> type, not <class 'NoneType'>."},
    {"{\"prompt\":7,\"steps\":0,\"rng\":\"x\"}", "INVALID_INPUT", "prompt should be <class 'str'> type, not <class 'int'>. steps must be between 1 and 150 (got 0). rng must be one of"},
    /* inpainting fields (issue 17) */
    {"{\"prompt\":\"x\",\"loras\":[],\"mask\":\"abc\"}", "INVALID_INPUT", "mask needs an image (the picture to repaint)."},
    {"{\"prompt\":\"x\",\"loras\":[],\"mask_blur\":4}", "INVALID_INPUT", "mask_blur is for inpainting and needs a mask."},
    {"{\"prompt\":\"x\",\"loras\":[],\"inpaint_area\":\"masked\"}", "INVALID_INPUT", "inpaint_area is for inpainting and needs a mask."},
    {"{\"prompt\":\"x\",\"loras\":[],\"inpaint_padding\":8}", "INVALID_INPUT", "inpaint_padding is for inpainting and needs a mask."},
    {"{\"prompt\":\"x\",\"mask_blur\":65}", "INVALID_INPUT", "mask_blur must be between 0 and 64 (got 65)."},
    {"{\"prompt\":\"x\",\"mask_blur\":2.5}", "INVALID_INPUT", "mask_blur should be <class 'int'> type, not <class 'float'>."},
    {"{\"prompt\":\"x\",\"inpaint_padding\":-1}", "INVALID_INPUT", "inpaint_padding must be between 0 and 256 (got -1)."},
    {"{\"prompt\":\"x\",\"inpaint_area\":\"center\"}", "INVALID_INPUT", "inpaint_area must be one of 'whole', 'masked' (got 'center')."},
    {"{\"prompt\":\"x\",\"mask\":7}", "INVALID_INPUT", "mask should be <class 'str'> type, not <class 'int'>."},
    /* hires-fix fields (issue 17) */
    {"{\"prompt\":\"x\",\"hr_scale\":2.5}", "INVALID_INPUT", "hr_scale must be between 1 and 2 (got 2.5)."},
    {"{\"prompt\":\"x\",\"hr_scale\":0.5}", "INVALID_INPUT", "hr_scale must be between 1 and 2 (got 0.5)."},
    {"{\"prompt\":\"x\",\"hr_scale\":\"2x\"}", "INVALID_INPUT", "hr_scale should be <class 'float'> type, not <class 'str'>."},
    {"{\"prompt\":\"x\",\"loras\":[],\"hr_scale\":1.5,\"hr_upscaler\":\"ESRGAN_4x\"}", "INVALID_INPUT",
     "hr_upscaler: unknown hires upscaler \"ESRGAN_4x\"; valid upscalers: \"Latent\", \"Latent (nearest)\", \"Lanczos\"."},
    {"{\"prompt\":\"x\",\"hr_upscaler\":5}", "INVALID_INPUT", "hr_upscaler should be <class 'str'> type, not <class 'int'>."},
    {"{\"prompt\":\"x\",\"loras\":[],\"hr_upscaler\":\"Latent\"}", "INVALID_INPUT", "hr_upscaler is for hires fix and needs hr_scale."},
    {"{\"prompt\":\"x\",\"loras\":[],\"hr_steps\":10}", "INVALID_INPUT", "hr_steps is for hires fix and needs hr_scale."},
    {"{\"prompt\":\"x\",\"loras\":[],\"denoising_strength\":0.5}", "INVALID_INPUT",
     "denoising_strength is for hires fix and needs hr_scale (img2img and inpainting take strength)."},
    {"{\"prompt\":\"x\",\"hr_steps\":151}", "INVALID_INPUT", "hr_steps must be between 0 and 150 (got 151)."},
    {"{\"prompt\":\"x\",\"hr_steps\":-1}", "INVALID_INPUT", "hr_steps must be between 0 and 150 (got -1)."},
    {"{\"prompt\":\"x\",\"denoising_strength\":0}", "INVALID_INPUT", "denoising_strength must be greater than 0 and at most 1 (got 0)."},
    {"{\"prompt\":\"x\",\"denoising_strength\":1.5}", "INVALID_INPUT", "denoising_strength must be greater than 0 and at most 1 (got 1.5)."},
    {"{\"prompt\":\"x\",\"loras\":[],\"width\":2048,\"height\":2048,\"hr_scale\":1.5}", "INVALID_INPUT",
     "hires fix: the second pass at 3072x3072 (hr_scale 1.5) x num_images 1 = 9437184 pixels is over this worker's budget of 4194304 pixels"},
    {"{\"prompt\":\"x\",\"loras\":[],\"width\":1024,\"height\":1024,\"num_images\":4,\"hr_scale\":1.25}", "INVALID_INPUT",
     "hires fix: the second pass at 1280x1280 (hr_scale 1.25) x num_images 4 = 6553600 pixels is over"},
    {"{\"prompt\":\"x\",\"loras\":[],\"width\":1024,\"height\":1024,\"num_images\":2,\"steps\":60,\"hr_scale\":1.25,"
     "\"hr_steps\":150,\"denoising_strength\":1}", "INVALID_INPUT",
     "hires fix: both passes take 617349120 pixel-steps (1024x1024x2 x 60 steps, then 1280x1280x2 x 150), over"},
    {"{\"prompt\":\"x\",\"loras\":[],\"steps\":2,\"hr_scale\":1.5,\"denoising_strength\":0.2}", "INVALID_INPUT",
     "denoising_strength 0.2 with 2 hires steps leaves no step to run; raise denoising_strength or hr_steps."},
    /* VAEs: unknown, not a name, a configured file that is not a VAE, a missing file */
    {"{" VALID ",\"vae\":\"Nope\"}", "INVALID_INPUT",
     "vae names the VAE 'Nope', which this worker does not have; VAEs: 'Small VAE', 'Small VAE (diffusers)', "
     "'LoRA as VAE', 'Gone VAE' (leave vae out for the checkpoint's own)."},
    {"{" VALID ",\"vae\":5}", "INVALID_INPUT", "vae should be <class 'str'> type, not <class 'int'>."},
    {"{" VALID ",\"vae\":\"LoRA as VAE\"}", "MODEL_UNAVAILABLE",
     SMALL "loras/peft.safetensors is a LoRA, not a VAE: list it under \"loras\""},
    {"{" VALID ",\"vae\":\"Gone VAE\"}", "MODEL_UNAVAILABLE",
     "the VAE 'Gone VAE' is not available on this worker (Gone VAE: local file "},
    /* embeddings that could not be loaded, named in the prompt or the negative prompt */
    {"{" VALID ",\"prompt\":\"a cat, oldneg\"}", "MODEL_UNAVAILABLE",
     "the prompt names the embedding 'oldneg', which is unavailable: embedding 'oldneg' ("},
    {"{" VALID ",\"negative_prompt\":\"(OLDNEG:1.2), blurry\"}", "MODEL_UNAVAILABLE",
     "is an SD 1.x/2.x embedding (\"emb_params\", 768 wide), not an SDXL one"},
    {"{" VALID ",\"negative_prompt\":\"goneneg\",\"cfg_scale\":1}", "MODEL_UNAVAILABLE",
     "the negative prompt names the embedding 'goneneg', which is unavailable: goneneg: local file "},
    /* the engine's own checks come back as job errors too */
    {"{" VALID ",\"clip_skip\":12}", "INVALID_INPUT", "clip_skip must be between 1 and"},
    {"{" VALID ",\"sampler\":\"LCM\",\"steps\":60}", "INVALID_INPUT", "LCM"},
};

static void bad_input_table(void **state)
{
    size_t n = sizeof BAD / sizeof BAD[0];
    assert_true(n >= 30);
    for (size_t i = 0; i < n; i++) {
        cJSON *r = run(BAD[i].input, NULL);
        assert_error(r, BAD[i].code, BAD[i].part);
        cJSON_Delete(r);
    }
    assert_serves_a_valid_job();
}

/* Inputs that cannot be written as a table row of JSON text. */
static void bad_inputs_built_in_code(void **state)
{
    /* a 10 MB prompt */
    size_t big = 10u << 20;
    char *prompt = malloc(big + 1);
    memset(prompt, 'a', big);
    prompt[big] = '\0';
    cJSON *in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "prompt", prompt);
    free(prompt);
    cJSON *r = run_value(in, NULL);
    assert_error(r, "INVALID_INPUT", "prompt must have at most 10000 characters (got 10485760).");
    cJSON_Delete(r);

    /* "a BREAK " x 1249: 9,992 characters, 1,249 chunks (issue 16: encode
     * 4,000x and denoise 71x slower than "a" on the small model) */
    char *breaks = calloc(1249, 8 + 1);
    for (int i = 0; i < 1249; i++) strcat(breaks, "a BREAK ");
    in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "prompt", breaks);
    cJSON_AddItemToObject(in, "loras", cJSON_CreateArray());
    free(breaks);
    r = run_value(in, NULL);
    assert_error(r, "INVALID_INPUT", "prompt and negative_prompt take 1249 + 1 = 1250 chunks of 75 tokens (each BREAK "
                                     "starts one), over this worker's limit of 32 chunks together (SDXL_MAX_PROMPT_CHUNKS)");
    cJSON_Delete(r);

    /* invalid UTF-8 in a value and in a key: the message itself stays valid UTF-8 */
    r = run("{\"prompt\":\"caf\xc3\x28 \xff\"}", NULL);
    assert_error(r, "INVALID_INPUT", "prompt is not valid UTF-8 text.");
    cJSON_Delete(r);
    r = run("{\"prompt\":\"x\",\"k\xff\xfe\":1}", NULL);
    assert_error(r, "INVALID_INPUT", "Unexpected input. k\xef\xbf\xbd\xef\xbf\xbd is not a valid input option.");
    cJSON_Delete(r);

    /* NaN and Infinity are not JSON: cJSON (like the platform's parsers)
     * refuses the whole text, so no job input ever carries them; a JSON
     * number too large for a double arrives as inf (table above). */
    assert_null(cJSON_Parse("{\"prompt\":\"x\",\"cfg_scale\":NaN}"));
    assert_null(cJSON_Parse("{\"prompt\":\"x\",\"cfg_scale\":Infinity}"));

    /* a file that is not an image, and a truncated PNG, as `image` */
    size_t len;
    char *bytes = tu_read_file("fuzz/corpus/image_decode/gif.bin", &len);
    assert_non_null(bytes);
    char *b64 = b64_encode(bytes, len, NULL);
    free(bytes);
    in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "prompt", "x");
    cJSON_AddItemToObject(in, "loras", cJSON_CreateArray());
    cJSON_AddStringToObject(in, "image", b64);
    free(b64);
    r = run_value(in, NULL);
    assert_error(r, "INVALID_INPUT", "GIF");
    cJSON_Delete(r);
    bytes = tu_read_file("fuzz/corpus/image_decode/png_truncated.bin", &len);
    b64 = b64_encode(bytes, len, NULL);
    free(bytes);
    in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "prompt", "x");
    cJSON_AddItemToObject(in, "loras", cJSON_CreateArray());
    cJSON_AddStringToObject(in, "image", b64);
    free(b64);
    r = run_value(in, NULL);
    assert_error(r, "INVALID_INPUT", "image: ");
    cJSON_Delete(r);
    assert_serves_a_valid_job();
}

/* ---- inpainting and hires fix (issue 17) --------------------------------------------- */

/* The base64 of a file. */
static char *file_b64(const char *path)
{
    size_t len;
    char *bytes = tu_read_file(path, &len);
    assert_non_null(bytes);
    char *b64 = b64_encode(bytes, len, NULL);
    free(bytes);
    return b64;
}

/* A w x h PNG of one grey level, as base64. */
static char *flat_png_b64(int w, int h, uint8_t level)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    memset(rgb, level, (size_t)w * h * 3);
    img_encode_opts o;
    img_encode_opts_default(&o, IMG_PNG);
    img_buf b = {0};
    char why[256];
    assert_int_equal(img_encode(rgb, w, h, (size_t)w * 3, &o, &b, why, sizeof why), 0);
    char *b64 = b64_encode(b.data, b.len, NULL);
    img_buf_free(&b);
    free(rgb);
    return b64;
}

/* {VALID extra} plus "image" and "mask" when given. */
static cJSON *run_edit(const char *extra, const char *image, const char *mask, progress_log *log)
{
    char *text = NULL;
    assert_true(asprintf(&text, "{" VALID "%s}", extra) > 0);
    cJSON *in = cJSON_Parse(text);
    free(text);
    assert_non_null(in);
    if (image) cJSON_AddStringToObject(in, "image", image);
    if (mask) cJSON_AddStringToObject(in, "mask", mask);
    return run_value(in, log);
}

static void inpaint_and_hires_bad_inputs(void **state)
{
    char *image = file_b64("tests/data/small/img2img_init.png"), *mask = file_b64("tests/data/small/inpaint_mask.png");
    char *small = file_b64("fuzz/corpus/image_decode/png_rgb.bin"), *black = flat_png_b64(100, 75, 0);
    char *gif = file_b64("fuzz/corpus/image_decode/gif.bin");
    cJSON *r = run_edit("", small, mask, NULL);
    assert_error(r, "INVALID_INPUT", "mask must be the image's size (48x32); got 100x75.");
    cJSON_Delete(r);
    r = run_edit("", image, black, NULL);
    assert_error(r, "INVALID_INPUT", "mask is all black: nothing to repaint (white marks the area to repaint).");
    cJSON_Delete(r);
    r = run_edit("", image, "@@@", NULL);
    assert_error(r, "INVALID_INPUT", "mask is not valid base64: ");
    cJSON_Delete(r);
    r = run_edit("", image, gif, NULL);
    assert_error(r, "INVALID_INPUT", "mask: ");
    cJSON_Delete(r);
    r = run_edit(",\"hr_scale\":1.5", image, NULL, NULL);
    assert_error(r, "INVALID_INPUT", "hr_scale (hires fix) is for txt2img; it cannot be used with image.");
    cJSON_Delete(r);
    r = run_edit(",\"hr_scale\":1.5", image, mask, NULL);
    assert_error(r, "INVALID_INPUT", "hr_scale (hires fix) is for txt2img; it cannot be used with image.");
    cJSON_Delete(r);
    free(image);
    free(mask);
    free(small);
    free(black);
    free(gif);
    assert_serves_a_valid_job();
}

/* The PNG's A1111 parameters of a result's first image, and its size. */
static char *result_params(const cJSON *r, int *w, int *h)
{
    size_t len;
    uint8_t *png = decode_b64(str(r, "image"), &len);
    img_rgb im = {0};
    char err[256], *params = NULL;
    assert_int_equal(img_decode(png, len, &LIMITS, &im, err, sizeof err), 0);
    *w = im.width, *h = im.height;
    img_rgb_free(&im);
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    free(png);
    return params;
}

static void expect_in(const char *text, const char *part)
{
    if (!strstr(text, part)) fail_msg("\"%s\" lacks \"%s\"", text, part);
}

static void inpainting_jobs(void **state)
{
    char *image = file_b64("tests/data/small/img2img_init.png"), *mask = file_b64("tests/data/small/inpaint_mask.png");
    progress_log log = {0};
    cJSON *r = run_edit(",\"steps\":4,\"seed\":5", image, mask, &log);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_int_equal(cJSON_GetArraySize(log.updates), 3); /* int(4 * 0.75) */
    const cJSON *m = cJSON_GetObjectItem(r, "metadata");
    assert_true(num(m, "strength") == 0.75 && num(m, "mask_blur") == 4);
    assert_string_equal(str(m, "inpaint_area"), "whole");
    int w, h;
    char *params = result_params(r, &w, &h);
    assert_true(w == 256 && h == 256);
    expect_in(params, ", Size: 256x256, ");
    expect_in(params, ", Denoising strength: 0.75, Mask blur: 4, Version: ");
    free(params);
    cJSON_Delete(r);
    cJSON_Delete(log.updates);

    /* only masked: the result has the image's size */
    r = run_edit(",\"steps\":2,\"seed\":5,\"strength\":1,\"inpaint_area\":\"Masked\",\"inpaint_padding\":8,"
                 "\"mask_blur\":0", image, mask, NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    m = cJSON_GetObjectItem(r, "metadata");
    assert_string_equal(str(m, "inpaint_area"), "masked");
    assert_true(num(m, "inpaint_padding") == 8 && num(m, "width") == 100 && num(m, "height") == 75);
    params = result_params(r, &w, &h);
    assert_true(w == 100 && h == 75);
    expect_in(params, ", Size: 256x256, ");
    expect_in(params, ", Denoising strength: 1, Inpaint area: Only masked, Masked area padding: 8, Version: ");
    assert_null(strstr(params, "Mask blur"));
    free(params);
    cJSON_Delete(r);
    free(image);
    free(mask);
}

static void hires_fix_jobs(void **state)
{
    progress_log log = {0};
    cJSON *r = run("{" VALID ",\"seed\":3,\"hr_scale\":1.25}", &log);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_int_equal(cJSON_GetArraySize(log.updates), 3); /* 2 steps, then int(2 * 0.7) */
    for (int i = 0; i < 3; i++) assert_int_equal((long)num(cJSON_GetArrayItem(log.updates, i), "steps"), 3);
    const cJSON *m = cJSON_GetObjectItem(r, "metadata");
    assert_true(num(m, "hr_scale") == 1.25 && num(m, "denoising_strength") == 0.7 && num(m, "hr_steps") == 2);
    assert_string_equal(str(m, "hr_upscaler"), "Latent");
    assert_true(num(m, "width") == 320 && num(m, "height") == 320);
    int w, h;
    char *params = result_params(r, &w, &h);
    assert_true(w == 320 && h == 320);
    expect_in(params, ", Size: 256x256, "); /* A1111 writes the first pass's size */
    expect_in(params, ", Denoising strength: 0.7, Hires upscale: 1.25, Hires upscaler: Latent, Version: ");
    free(params);
    cJSON_Delete(r);
    cJSON_Delete(log.updates);

    r = run("{" VALID ",\"seed\":3,\"hr_scale\":1.5,\"hr_upscaler\":\"lanczos\",\"hr_steps\":2,"
            "\"denoising_strength\":0.5}", NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    params = result_params(r, &w, &h);
    assert_true(w == 384 && h == 384);
    expect_in(params, ", Denoising strength: 0.5, Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos, ");
    free(params);
    cJSON_Delete(r);
}

/* ---- LoRAs through the worker ------------------------------------------------------- */

/* A partial match runs and names the keys that landed nowhere; a truncated
 * LoRA file is a clear error; the worker then serves a valid job. */
static void lora_partial_match_and_broken_file(void **state)
{
    cJSON *r = run("{\"prompt\":\"a lighthouse\",\"width\":256,\"height\":256,\"steps\":2,"
                   "\"loras\":[{\"name\":\"Partial\",\"scale\":0.7}]}", NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    const cJSON *lora = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "metadata"), "loras"), 0);
    assert_string_equal(str(lora, "name"), "Partial");
    assert_true(num(lora, "tensors_applied") > 0);
    const cJSON *keys = cJSON_GetObjectItem(lora, "unmatched_keys");
    assert_int_equal(cJSON_GetArraySize(keys), 1);
    assert_non_null(strstr(cJSON_GetArrayItem(keys, 0)->valuestring, "bogus_layer"));
    cJSON_Delete(r);

    r = run("{\"prompt\":\"x\",\"width\":256,\"height\":256,\"steps\":2,\"loras\":[{\"name\":\"Broken\"}]}", NULL);
    assert_error(r, "MODEL_UNAVAILABLE", "Broken");
    cJSON_Delete(r);
    assert_serves_a_valid_job();
}

/* ---- valid jobs ---------------------------------------------------------------------- */

static void valid_job_result_shape_and_infotext(void **state)
{
    progress_log log = {0};
    cJSON *r = run("{" VALID ",\"steps\":4,\"seed\":42,\"negative_prompt\":\"blurry\",\"cfg_scale\":6,"
                   "\"sampler\":\"Euler a\"}", &log);
    assert_null(cJSON_GetObjectItem(r, "error"));
    const cJSON *images = cJSON_GetObjectItem(r, "images"), *first = cJSON_GetArrayItem(images, 0);
    assert_int_equal(cJSON_GetArraySize(images), 1);
    assert_string_equal(str(r, "image"), str(first, "image"));
    assert_int_equal((long)num(first, "seed"), 42);
    assert_string_equal(str(first, "format"), "png");

    const cJSON *m = cJSON_GetObjectItem(r, "metadata");
    assert_string_equal(str(m, "prompt"), "a lighthouse at dawn");
    assert_string_equal(str(m, "negative_prompt"), "blurry");
    assert_int_equal((long)num(m, "steps"), 4);
    assert_true(num(m, "cfg_scale") == 6);
    assert_string_equal(str(m, "sampler"), "Euler a");
    assert_string_equal(str(m, "scheduler"), "Normal"); /* what Automatic resolved to */
    assert_int_equal((long)num(m, "seed"), 42);
    assert_int_equal((long)num(m, "width"), 256);
    assert_int_equal((long)num(m, "height"), 256);
    assert_int_equal((long)num(m, "clip_skip"), 2);
    assert_string_equal(str(m, "rng"), "cuda");
    assert_string_equal(str(m, "model"), "Small test model");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(m, "loras")), 0);
    const cJSON *t = cJSON_GetObjectItem(r, "timings");
    assert_true(num(t, "encode") >= 0 && num(t, "denoise") > 0 && num(t, "decode") > 0);
    assert_true(num(t, "total") >= num(t, "encode") + num(t, "denoise") + num(t, "decode") - 0.003);

    /* one progress update per step, small */
    assert_int_equal(cJSON_GetArraySize(log.updates), 4);
    for (int i = 0; i < 4; i++) {
        const cJSON *u = cJSON_GetArrayItem(log.updates, i);
        assert_int_equal((long)num(u, "step"), i + 1);
        assert_int_equal((long)num(u, "steps"), 4);
        char msg[32];
        snprintf(msg, sizeof msg, "step %d/4", i + 1);
        assert_string_equal(str(u, "message"), msg);
        assert_int_equal(cJSON_GetArraySize(u), 3);
    }
    cJSON_Delete(log.updates);

    /* the PNG and its A1111 parameters */
    size_t len;
    uint8_t *png = decode_b64(str(r, "image"), &len);
    img_rgb im = {0};
    char err[256];
    assert_int_equal(img_decode(png, len, &LIMITS, &im, err, sizeof err), 0);
    assert_int_equal(im.format, IMG_PNG);
    assert_int_equal(im.width, 256);
    assert_int_equal(im.height, 256);
    img_rgb_free(&im);
    char *params = NULL;
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    hash_cache *hc = hash_cache_new(NULL);
    char autov2[11], expect[1024];
    assert_int_equal(hash_autov2(hc, SMALL_MODEL, autov2, err, sizeof err), 0);
    hash_cache_free(hc);
    snprintf(expect, sizeof expect,
             "a lighthouse at dawn\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, Schedule type: Normal, "
             "CFG scale: 6, Seed: 42, Size: 256x256, Model hash: %s, Model: sdxl_small, Version: sdxl-worker ",
             autov2);
    assert_memory_equal(params, expect, strlen(expect));
    free(params);
    free(png);
    cJSON_Delete(r);
}

/* The RGB of a base64 PNG. */
static img_rgb png_pixels(const char *b64)
{
    size_t len;
    uint8_t *png = decode_b64(b64, &len);
    img_rgb im = {0};
    char err[256];
    assert_int_equal(img_decode(png, len, &LIMITS, &im, err, sizeof err), 0);
    free(png);
    return im;
}

static int max_pixel_diff(const img_rgb *a, const img_rgb *b)
{
    int worst = 0;
    for (size_t i = 0; i < (size_t)a->width * a->height * 3; i++) {
        int d = abs((int)a->rgb[i] - (int)b->rgb[i]);
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* A job with a chosen VAE, both embeddings and the LoRA saved by diffusers'
 * training script: metadata, the infotext's VAE hash, VAE, Lora hashes and TI
 * hashes as A1111 writes them; the VAE named by file name or stem is the
 * same VAE, its diffusers file decodes alike, and without it the picture
 * changes. */
static void vae_embeddings_and_saved_lora_job(void **state)
{
#define EXTRAS VALID ",\"prompt\":\"a photo of sks_style lighthouse\",\"negative_prompt\":\"lowq_neg, blurry\"," \
               "\"loras\":[{\"name\":\"Dreambooth\"}],\"seed\":5,\"rng\":\"cpu\""
    cJSON *r = run("{" EXTRAS ",\"vae\":\"Small VAE\"}", NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    const cJSON *m = cJSON_GetObjectItem(r, "metadata");
    assert_string_equal(str(m, "vae"), "Small VAE");
    const cJSON *lora = cJSON_GetArrayItem(cJSON_GetObjectItem(m, "loras"), 0);
    assert_string_equal(str(lora, "name"), "Dreambooth");
    assert_int_equal((long)num(lora, "tensors_applied"), 9);
    char *used = cJSON_PrintUnformatted(cJSON_GetObjectItem(m, "embeddings"));
    assert_string_equal(used, "[{\"name\":\"sks_style\",\"vectors\":3,\"in\":[\"prompt\"]},"
                              "{\"name\":\"lowq_neg\",\"vectors\":2,\"in\":[\"negative_prompt\"]}]");
    free(used);

    hash_cache *hc = hash_cache_new(NULL);
    char vae[11], lora_hash[HASH_AUTOV3_MAX], sks[65], lowq[65], err[256], expect[1024];
    assert_int_equal(hash_autov2(hc, SMALL "vae/vae_ldm.safetensors", vae, err, sizeof err), 0);
    assert_int_equal(hash_autov3(hc, SMALL "loras/dreambooth.safetensors", lora_hash, err, sizeof err), 0);
    assert_int_equal(hash_sha256(hc, SMALL "embeddings/sks_style.safetensors", sks, err, sizeof err), 0);
    assert_int_equal(hash_sha256(hc, SMALL "embeddings/lowq_neg.safetensors", lowq, err, sizeof err), 0);
    hash_cache_free(hc);
    size_t len;
    uint8_t *png = decode_b64(str(r, "image"), &len);
    char *params = NULL;
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    snprintf(expect, sizeof expect, ", Model: sdxl_small, VAE hash: %s, VAE: vae_ldm.safetensors, RNG: CPU, "
             "Lora hashes: \"Dreambooth: %s\", TI hashes: \"sks_style: %.12s, sks_style: %.12s, lowq_neg: %.12s, "
             "lowq_neg: %.12s\", Version: ", vae, lora_hash, sks, sks, lowq, lowq);
    if (!strstr(params, expect)) fprintf(stderr, "infotext: %s\nwanted: %s\n", params, expect);
    assert_non_null(strstr(params, expect));
    free(params);
    free(png);

    img_rgb chosen = png_pixels(str(r, "image"));
    static const char *const same[] = {"vae_ldm.safetensors", "vae_ldm", "Small VAE (diffusers)"};
    for (size_t i = 0; i < 3; i++) {
        char input[1024];
        snprintf(input, sizeof input, "{" EXTRAS ",\"vae\":\"%s\"}", same[i]);
        cJSON *o = run(input, NULL);
        img_rgb im = png_pixels(str(o, "image"));
        assert_true(max_pixel_diff(&im, &chosen) <= 1);
        img_rgb_free(&im);
        cJSON_Delete(o);
    }
    cJSON *own = run("{" EXTRAS "}", NULL);
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(own, "metadata"), "vae"));
    img_rgb im = png_pixels(str(own, "image"));
    assert_true(max_pixel_diff(&im, &chosen) > 50);
    img_rgb_free(&im);
    img_rgb_free(&chosen);
    cJSON_Delete(own);
    cJSON_Delete(r);
#undef EXTRAS
}

static void same_seed_same_image_warm_engine(void **state)
{
    cJSON *a = run("{" VALID ",\"seed\":1234,\"rng\":\"cpu\"}", NULL);
    cJSON *b = run("{" VALID ",\"seed\":1234,\"rng\":\"cpu\"}", NULL);
    assert_string_equal(str(a, "image"), str(b, "image"));
    cJSON *c = run("{" VALID ",\"seed\":1235,\"rng\":\"cpu\"}", NULL);
    assert_string_not_equal(str(a, "image"), str(c, "image"));
    /* RNG: CPU is in the infotext, rng in the metadata */
    size_t len;
    uint8_t *png = decode_b64(str(a, "image"), &len);
    char *params = NULL;
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    assert_non_null(strstr(params, ", RNG: CPU, "));
    assert_string_equal(str(cJSON_GetObjectItem(a, "metadata"), "rng"), "cpu");
    free(params);
    free(png);
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}

static void two_images_jpeg_with_seeds(void **state)
{
    cJSON *r = run("{" VALID ",\"num_images\":2,\"seed\":500,\"output_format\":\"JPEG\",\"quality\":90,"
                   "\"guidance_scale\":3}", NULL);
    assert_null(cJSON_GetObjectItem(r, "error"));
    const cJSON *images = cJSON_GetObjectItem(r, "images");
    assert_int_equal(cJSON_GetArraySize(images), 2);
    for (int i = 0; i < 2; i++) {
        const cJSON *e = cJSON_GetArrayItem(images, i);
        assert_int_equal((long)num(e, "seed"), 500 + i);
        assert_string_equal(str(e, "format"), "jpeg");
        size_t len;
        uint8_t *jpg = decode_b64(str(e, "image"), &len);
        img_rgb im = {0};
        char err[128], *params = NULL, seed[32];
        assert_int_equal(img_decode(jpg, len, &LIMITS, &im, err, sizeof err), 0);
        assert_int_equal(im.format, IMG_JPEG);
        assert_int_equal(img_read_parameters(jpg, len, &params), 0);
        snprintf(seed, sizeof seed, "Seed: %d,", 500 + i);
        assert_non_null(strstr(params, seed));
        assert_non_null(strstr(params, "CFG scale: 3,"));
        free(params);
        img_rgb_free(&im);
        free(jpg);
    }
    assert_string_equal(str(r, "image"), str(cJSON_GetArrayItem(images, 0), "image"));
    assert_string_not_equal(str(cJSON_GetArrayItem(images, 0), "image"), str(cJSON_GetArrayItem(images, 1), "image"));
    assert_true(num(cJSON_GetObjectItem(r, "metadata"), "cfg_scale") == 3);
    cJSON_Delete(r);
}

static void random_seed_when_absent_or_minus_one(void **state)
{
    cJSON *a = run("{" VALID "}", NULL), *b = run("{" VALID ",\"seed\":-1,\"output_format\":\"webp\"}", NULL);
    double sa = num(cJSON_GetObjectItem(a, "metadata"), "seed"), sb = num(cJSON_GetObjectItem(b, "metadata"), "seed");
    assert_true(sa >= 0 && sa < 4294967294.0 && sa == floor(sa));
    assert_true(sb >= 0 && sb < 4294967294.0);
    assert_true(sa != sb); /* 1 in 4e9 to fail by chance */
    assert_true(num(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "images"), 0), "seed") == sa);
    assert_string_equal(str(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "images"), 0), "format"), "webp");
    cJSON_Delete(a);
    cJSON_Delete(b);
}

static void cancelled_within_one_step(void **state)
{
    progress_log log = {.cancel_at = 2};
    cJSON *r = run("{" VALID ",\"steps\":40}", &log);
    assert_error(r, "CANCELLED", "the job was cancelled after 2 of 40 steps");
    assert_int_equal(cJSON_GetArraySize(log.updates), 2); /* no step after the one that saw the flag */
    cJSON_Delete(log.updates);
    cJSON_Delete(r);
    assert_serves_a_valid_job();
}

static void img2img_job(void **state)
{
    size_t len;
    char *bytes = tu_read_file("fuzz/corpus/image_decode/png_rgb.bin", &len);
    char *b64 = b64_encode(bytes, len, NULL);
    free(bytes);
    char *input = NULL;
    assert_true(asprintf(&input, "{" VALID ",\"steps\":4,\"seed\":3,\"image\":\"data:image/png;base64,%s\",\"strength\":0.5}",
                         b64) > 0);
    free(b64);
    progress_log log = {0};
    cJSON *r = run(input, &log);
    free(input);
    assert_null(cJSON_GetObjectItem(r, "error"));
    assert_int_equal(cJSON_GetArraySize(log.updates), 2); /* int(4 * 0.5) steps run */
    assert_true(num(cJSON_GetObjectItem(r, "metadata"), "strength") == 0.5);
    uint8_t *png = decode_b64(str(r, "image"), &len);
    char *params = NULL;
    assert_int_equal(img_read_parameters(png, len, &params), 0);
    assert_non_null(strstr(params, ", Denoising strength: 0.5,"));
    free(params);
    free(png);
    cJSON_Delete(log.updates);
    cJSON_Delete(r);
}

static void images_copied_to_output_dir(void **state)
{
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/out", tmp);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(worker->output_dir, sizeof worker->output_dir, "%s", dir);
    cJSON *r = run("{" VALID ",\"num_images\":2,\"seed\":9}", NULL);
    worker->output_dir[0] = '\0';
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/test-job_%d.png", dir, i);
        size_t len, b64len;
        char *file = tu_read_file(path, &len);
        assert_non_null(file);
        uint8_t *img = decode_b64(str(cJSON_GetArrayItem(cJSON_GetObjectItem(r, "images"), i), "image"), &b64len);
        assert_int_equal(len, b64len);
        assert_memory_equal(file, img, len);
        free(file);
        free(img);
    }
    cJSON_Delete(r);
}

static void worker_without_its_checkpoint(void **state)
{
    char config[1024], model[1024], text[2600];
    snprintf(config, sizeof config, "%s/late.json", tmp);
    snprintf(model, sizeof model, "%s/late.safetensors", tmp);
    snprintf(text, sizeof text, "{\"checkpoint\": {\"name\": \"Late\", \"path\": \"%s\"}}", model);
    assert_int_equal(tu_write_file(config, text, strlen(text)), 0);
    setenv("MODELS_CONFIG", config, 1);
    sdxl_worker *warm = worker;
    worker = sdxl_worker_start();
    assert_false(sdxl_worker_ready(worker));
    cJSON *r = run("{" VALID "}", NULL);
    assert_error(r, "MODEL_UNAVAILABLE", "the checkpoint 'Late' is not available: ");
    cJSON_Delete(r);
    r = run("{\"prompt\": 5}", NULL); /* still up, still the same answer */
    assert_error(r, "MODEL_UNAVAILABLE", "Late");
    cJSON_Delete(r);
    /* the file appears; a job SDXL_RETRY_MODELS_S after the last attempt loads it */
    size_t len;
    char *bytes = tu_read_file(SMALL_MODEL, &len);
    assert_int_equal(tu_write_file(model, bytes, len), 0);
    free(bytes);
    r = run("{" VALID "}", NULL); /* too soon: no new attempt */
    assert_error(r, "MODEL_UNAVAILABLE", "Late");
    cJSON_Delete(r);
    worker->last_attempt -= SDXL_RETRY_MODELS_S;
    r = run("{" VALID "}", NULL);
    assert_non_null(cJSON_GetObjectItem(r, "image"));
    assert_true(sdxl_worker_ready(worker));
    cJSON_Delete(r);
    sdxl_worker_free(worker);
    worker = warm;
}

static void size_warning_points_to_urls(void **state)
{
    char msg[256];
    assert_false(sdxl_result_size_warning(10 * 1000 * 1000, msg, sizeof msg));
    assert_true(sdxl_result_size_warning(12 * 1000 * 1000, msg, sizeof msg));
    assert_string_equal(msg, "the result is 12.0 MB, over RunPod's limit for /run results (10 MB for /run, 20 MB for "
                             "/runsync); ask for return_type \"url\" (with a bucket configured), fewer images or jpeg/webp");
    assert_true(sdxl_result_size_warning(25 * 1000 * 1000, msg, sizeof msg));
    assert_non_null(strstr(msg, "25.0 MB, over RunPod's limit for /run and /runsync results"));
}

/* ---- the LoRA request on its own (no engine) ---------------------------------------- */

static const sdxl_lora_slot STACK[] = {
    {.name = "Detail Tweaker XL", .path = "/m/detail_tweaker_xl.safetensors", .scale = 1.5, .available = true},
    {.name = "Hand Detail", .path = "/m/hand_detail.safetensors", .scale = 1.0, .available = true},
    {.name = "Broken", .path = "/m/broken.safetensors", .scale = 1.0, .available = false, .why = "HTTP 404"},
};

static sdxl_job_limits lora_limits(size_t n_stack)
{
    return (sdxl_job_limits){.max_pixels = SDXL_DEFAULT_MAX_PIXELS, .size_multiple = 8, .stack = STACK,
                             .n_stack = n_stack};
}

static void lora_requests_resolve(void **state)
{
    sdxl_job_limits lim = lora_limits(2);
    sdxl_job j;
    sdxl_error err;
    cJSON *in = cJSON_Parse("{\"prompt\":\"x\"}"); /* the configured stack, its scales */
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0);
    assert_int_equal(j.n_loras, 2);
    assert_true(j.loras[0].slot == 0 && j.loras[0].scale == 1.5 && j.loras[1].slot == 1);
    sdxl_job_free(&j);
    cJSON_Delete(in);

    in = cJSON_Parse("{\"prompt\":\"x\",\"loras\":[]}"); /* off */
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0);
    assert_int_equal(j.n_loras, 0);
    sdxl_job_free(&j);
    cJSON_Delete(in);

    /* the field replaces the stack; a missing scale takes the config's; the
     * file stem is an alias; a tag updates a listed LoRA and adds another */
    in = cJSON_Parse("{\"prompt\":\"x <lora:detail_tweaker_xl:0.25> <lora:Hand Detail:0.5:0.75>\","
                     "\"loras\":[{\"name\":\"Detail Tweaker XL\"}]}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0);
    assert_int_equal(j.n_loras, 2);
    assert_true(j.loras[0].slot == 0 && j.loras[0].scale == 0.25 && j.loras[0].unet_scale == 0.25);
    assert_true(j.loras[1].slot == 1 && j.loras[1].scale == 0.5 && j.loras[1].unet_scale == 0.75);
    sdxl_job_free(&j);
    cJSON_Delete(in);

    in = cJSON_Parse("{\"prompt\":\"x\",\"loras\":[{\"name\":\"Hand Detail\",\"scale\":2},{\"name\":\"hand_detail\"}]}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_int_equal(err.code, SDXL_INVALID_INPUT);
    assert_non_null(strstr(err.message, "loras[1]: the LoRA 'Hand Detail' is listed twice."));
    cJSON_Delete(in);

    in = cJSON_Parse("{\"prompt\":\"x\",\"loras\":[{\"name\":\"detail tweaker xl\"}]}"); /* exact names, as A1111 */
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_non_null(strstr(err.message, "LoRAs: 'Detail Tweaker XL', 'Hand Detail'."));
    cJSON_Delete(in);

    lim = lora_limits(3); /* an unavailable LoRA in the stack: only jobs that use it fail */
    in = cJSON_Parse("{\"prompt\":\"x\"}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_int_equal(err.code, SDXL_MODEL_UNAVAILABLE);
    assert_non_null(strstr(err.message, "the LoRA 'Broken' is not available on this worker (HTTP 404)"));
    cJSON_Delete(in);
    in = cJSON_Parse("{\"prompt\":\"x <lora:Hand Detail:1>\",\"loras\":[]}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0);
    assert_int_equal(j.n_loras, 1);
    sdxl_job_free(&j);
    cJSON_Delete(in);
}

static void limits_from_environment(void **state)
{
    sdxl_job_limits lim;
    setenv("SDXL_MAX_PIXELS", "65536", 1);
    sdxl_job_limits_from_env(&lim);
    assert_int_equal(lim.max_pixels, 65536);
    sdxl_job j;
    sdxl_error err;
    cJSON *in = cJSON_Parse("{\"prompt\":\"x\",\"width\":512,\"height\":256}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_non_null(strstr(err.message, "= 512x256x1 = 131072 pixels is over this worker's budget of 65536 pixels"));
    cJSON_Delete(in);
    lim.size_multiple = 64; /* an engine with a coarser grid */
    in = cJSON_Parse("{\"prompt\":\"x\",\"width\":256,\"height\":288}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_string_equal(err.message, "height must be a multiple of 64 for this model (got 288).");
    cJSON_Delete(in);
    setenv("SDXL_MAX_PIXELS", "lots", 1);
    sdxl_job_limits_from_env(&lim);
    assert_int_equal(lim.max_pixels, SDXL_DEFAULT_MAX_PIXELS);
    unsetenv("SDXL_MAX_PIXELS");

    /* the work budget and the prompt chunks, at their edges */
    setenv("SDXL_MAX_PIXEL_STEPS", "1310720", 1); /* 512x256 at 10 steps */
    setenv("SDXL_MAX_PROMPT_CHUNKS", "4", 1);
    sdxl_job_limits_from_env(&lim);
    assert_int_equal(lim.max_pixel_steps, 1310720);
    assert_int_equal(lim.max_prompt_chunks, 4);
    in = cJSON_Parse("{\"prompt\":\"a BREAK b BREAK c\",\"width\":512,\"height\":256,\"steps\":10}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0); /* 3 + 1 chunks, 1310720 pixel-steps */
    sdxl_job_free(&j);
    cJSON_Delete(in);
    in = cJSON_Parse("{\"prompt\":\"x\",\"width\":512,\"height\":256,\"steps\":11}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1);
    assert_int_equal(err.code, SDXL_INVALID_INPUT);
    assert_non_null(strstr(err.message, "= 512x256x1x11 = 1441792 pixel-steps is over this worker's budget of 1310720"));
    cJSON_Delete(in);
    in = cJSON_Parse("{\"prompt\":\"a BREAK b\",\"negative_prompt\":\"c BREAK d BREAK <lora:e:1> e\",\"width\":256,"
                     "\"height\":256,\"steps\":1}");
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), -1); /* the negative keeps its tag text, as A1111 */
    assert_int_equal(err.code, SDXL_INVALID_INPUT);
    assert_non_null(strstr(err.message, "take 2 + 3 = 5 chunks of 75 tokens"));
    assert_non_null(strstr(err.message, "limit of 4 chunks together (SDXL_MAX_PROMPT_CHUNKS)"));
    cJSON_Delete(in);
    setenv("SDXL_MAX_PIXEL_STEPS", "-5", 1);
    setenv("SDXL_MAX_PROMPT_CHUNKS", "1", 1);
    sdxl_job_limits_from_env(&lim);
    assert_int_equal(lim.max_pixel_steps, SDXL_DEFAULT_MAX_PIXEL_STEPS);
    assert_int_equal(lim.max_prompt_chunks, SDXL_DEFAULT_MAX_PROMPT_CHUNKS);
    unsetenv("SDXL_MAX_PIXEL_STEPS");
    unsetenv("SDXL_MAX_PROMPT_CHUNKS");
}

static void img2img_strength_default(void **state)
{
    size_t len;
    char *bytes = tu_read_file("fuzz/corpus/image_decode/png_rgb.bin", &len);
    char *b64 = b64_encode(bytes, len, NULL), *text = NULL;
    free(bytes);
    assert_true(asprintf(&text, "{\"prompt\":\"x\",\"image\":\"%s\"}", b64) > 0);
    free(b64);
    cJSON *in = cJSON_Parse(text);
    free(text);
    sdxl_job_limits lim = lora_limits(0);
    sdxl_job j;
    sdxl_error err;
    assert_int_equal(sdxl_job_parse(in, &lim, &j, &err), 0);
    assert_true(j.has_image && j.strength == 0.3); /* diffusers' and the original worker's default */
    assert_int_equal(j.image.width, 48);
    assert_int_equal(j.image.height, 32);
    sdxl_job_free(&j);
    cJSON_Delete(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_input_table),
        cmocka_unit_test(bad_inputs_built_in_code),
        cmocka_unit_test(lora_partial_match_and_broken_file),
        cmocka_unit_test(valid_job_result_shape_and_infotext),
        cmocka_unit_test(vae_embeddings_and_saved_lora_job),
        cmocka_unit_test(same_seed_same_image_warm_engine),
        cmocka_unit_test(two_images_jpeg_with_seeds),
        cmocka_unit_test(random_seed_when_absent_or_minus_one),
        cmocka_unit_test(cancelled_within_one_step),
        cmocka_unit_test(img2img_job),
        cmocka_unit_test(images_copied_to_output_dir),
        cmocka_unit_test(worker_without_its_checkpoint),
        cmocka_unit_test(size_warning_points_to_urls),
        cmocka_unit_test(lora_requests_resolve),
        cmocka_unit_test(limits_from_environment),
        cmocka_unit_test(img2img_strength_default),
        cmocka_unit_test(inpaint_and_hires_bad_inputs),
        cmocka_unit_test(inpainting_jobs),
        cmocka_unit_test(hires_fix_jobs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
