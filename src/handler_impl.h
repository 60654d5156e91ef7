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

/* What a finished generation turns into (handler_output.c). */
typedef struct {
    const sdxl_worker *w;
    const sdxl_job *job;
    const char *job_id;
    const sd_image_out *out;
    const int *tensors_applied; /* per job LoRA, or NULL when none were applied */
    const cJSON *lora_unmatched; /* per job LoRA: array of the keys that landed nowhere (partial matches) */
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
