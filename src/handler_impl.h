/* Internals shared by the handler's files: the warm worker state
 * (handler_startup.c fills it, handler.c runs jobs on it) and the result
 * builder (handler_output.c). */
#ifndef SDXL_HANDLER_IMPL_H
#define SDXL_HANDLER_IMPL_H

#include <pthread.h>
#include <time.h>

#include "handler.h"
#include "image/hashes.h"
#include "models/store.h"
#include "s3/s3.h"
#include "sd/clock.h"
#include "sd/engine.h"

struct sdxl_worker {
    pthread_mutex_t lock;    /* one job at a time on the engine; guards (re)loading */
    models_config config;
    models_paths paths;
    bool have_config, have_paths;
    sdxl_lora_slot *stack;   /* from paths.loras */
    char (*lora_hash)[HASH_AUTOV3_MAX]; /* AutoV3 per slot, "" when unknown */
    sdxl_vae_slot *vaes;     /* from paths.vaes, loaded into the engine */
    char (*vae_hash)[11];    /* AutoV2 per VAE ("VAE hash"), "" when unknown */
    char (*ti_hash)[13];     /* per embedding of the engine's set (config order): "TI hashes", "" when unknown */
    sdxl_job_limits limits;
    hash_cache *hashes;
    sd_engine *engine;
    char model_name[256];    /* the config's checkpoint name (metadata.model) */
    char model_hash[11];     /* AutoV2 ("" when unknown) */
    char unavailable[SDXL_ERROR_MAX]; /* why the engine is not loaded */
    time_t last_attempt;
    bool has_bucket;
    s3_bucket bucket;
    char output_dir[1024];   /* SDXL_OUTPUT_DIR: local copies of the images, "" when unset */
};

/* Makes the models present, hashes them and loads the engine; on failure
 * fills w->unavailable. Called with the lock held (or before any job). */
void sdxl_worker_load(sdxl_worker *w);

/* The VAEs and embeddings of the models config into the loaded engine, with
 * their hashes; failures are logged and kept as the slots' reasons
 * (handler_extras.c, called by sdxl_worker_load). -1 when out of memory. */
int sdxl_worker_load_extras(sdxl_worker *w);
void sdxl_worker_free_extras(sdxl_worker *w);

/* The embeddings a job's prompt and negative prompt name, by index in the
 * engine's set, in A1111's order of first use (handler_extras.c). */
typedef struct {
    size_t *prompt, n_prompt;
    size_t *negative, n_negative;
} sdxl_ti_use;

/* Fills u for the job; a text naming an embedding that could not be loaded
 * fails with MODEL_UNAVAILABLE (an unparsable one with INVALID_INPUT). */
int sdxl_ti_use_of(sdxl_worker *w, const sdxl_job *j, sdxl_ti_use *u, sdxl_error *err);
void sdxl_ti_use_free(sdxl_ti_use *u);
/* The infotext's "TI hashes" (malloc'd; NULL when none) and the result's
 * metadata.embeddings (NULL when none). */
char *sdxl_ti_hashes(const sdxl_worker *w, const sdxl_ti_use *u);
cJSON *sdxl_ti_json(const sdxl_worker *w, const sdxl_ti_use *u);

/* What a finished generation turns into (handler_output.c). */
typedef struct {
    const sdxl_worker *w;
    const sdxl_job *job;
    const char *job_id;
    const sd_image_out *out;
    const int *tensors_applied; /* per job LoRA, or NULL when none were applied */
    const cJSON *lora_unmatched; /* per job LoRA: array of the keys that landed nowhere (partial matches) */
    const sdxl_ti_use *ti;      /* the embeddings its prompts used; may be NULL */
    double t_start;             /* monotonic seconds when the job started */
} sdxl_result_in;

/* The success result (handler.h's shape). NULL with err set when an image
 * cannot be encoded or uploaded. */
cJSON *sdxl_result_build(const sdxl_result_in *in, sdxl_error *err);

/* The log warning for a serialised result of `bytes` (RunPod refuses
 * results over 10 MB on /run and 20 MB on /runsync): true and the text in
 * out when over 10 MB. */
bool sdxl_result_size_warning(size_t bytes, char *out, size_t n);

#endif
