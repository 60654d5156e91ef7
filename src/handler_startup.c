/* The worker's start-up (handler.h): before the first job is taken the model
 * store makes the checkpoint, the LoRA stack, the VAEs and the embeddings
 * present and verified, their hashes are computed for the infotext (AutoV2,
 * AutoV3), and the engine is loaded once with the VAEs and embeddings
 * (handler_extras.c); it then stays warm. Then the RunPod runtime runs the handler.
 * A failure leaves the worker serving MODEL_UNAVAILABLE with the reason, and
 * a later job tries again (handler.c). */
#include "handler_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runpod/log.h"

static void clear_models(sdxl_worker *w)
{
    sd_engine_free(w->engine);
    w->engine = NULL;
    sdxl_worker_free_extras(w);
    free(w->stack);
    free(w->lora_hash);
    w->stack = NULL;
    w->lora_hash = NULL;
    w->limits.stack = NULL;
    w->limits.n_stack = 0;
    if (w->have_paths) models_paths_free(&w->paths);
    if (w->have_config) models_config_free(&w->config);
    w->have_paths = w->have_config = false;
    hash_cache_free(w->hashes);
    w->hashes = NULL;
}

/* The hash cache lives next to the checkpoints when that folder is
 * writable (a network volume keeps it across workers), else in memory. */
static hash_cache *open_hash_cache(const models_env *env)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/.sdxl-hashes.json", env->checkpoint_dir);
    return hash_cache_new(access(env->checkpoint_dir, W_OK) == 0 ? path : NULL);
}

/* The LoRA stack from the store's answer: every configured LoRA, with
 * whether it is usable and why not. */
static int build_stack(sdxl_worker *w)
{
    size_t n = w->paths.n_loras;
    w->stack = calloc(n ? n : 1, sizeof *w->stack);
    w->lora_hash = calloc(n ? n : 1, sizeof *w->lora_hash);
    if (!w->stack || !w->lora_hash) return -1;
    for (size_t i = 0; i < n; i++) {
        const models_item *it = &w->paths.loras[i];
        w->stack[i] = (sdxl_lora_slot){.name = w->config.loras[i].name, .path = it->path, .scale = it->scale,
                                       .available = it->ok, .why = it->error};
    }
    w->limits.stack = w->stack;
    w->limits.n_stack = n;
    return 0;
}

/* AutoV2 of the checkpoint and AutoV3 of each LoRA. The store's SHA-256
 * seeds the cache, so a verified checkpoint is not read again. */
static void compute_hashes(sdxl_worker *w)
{
    char why[512];
    const models_item *ck = &w->paths.checkpoint;
    if (ck->sha256[0]) hash_cache_put_sha256(w->hashes, ck->path, ck->sha256);
    if (hash_autov2(w->hashes, ck->path, w->model_hash, why, sizeof why)) {
        w->model_hash[0] = '\0';
        rp_warn("no model hash for the infotext: %s", why);
    }
    for (size_t i = 0; i < w->paths.n_loras; i++) {
        if (!w->stack[i].available) continue;
        if (hash_autov3(w->hashes, w->stack[i].path, w->lora_hash[i], why, sizeof why)) {
            w->lora_hash[i][0] = '\0';
            rp_warn("no hash for the LoRA '%s': %s", w->stack[i].name, why);
        }
    }
}

static void set_unavailable(sdxl_worker *w, const char *what, const char *why)
{
    snprintf(w->unavailable, sizeof w->unavailable, "%.300s%.1700s", what, why);
    rp_log_redact(w->unavailable);
    rp_error("%s", w->unavailable);
}

static int ensure_models(sdxl_worker *w, models_env *env)
{
    char err[SDXL_ERROR_MAX];
    if (models_env_from_environ(env, err, sizeof err))
        return set_unavailable(w, "the model store's environment is unusable: ", err), -1;
    rp_log_add_secret(env->api_key);
    if (models_config_load(env->config_path, &w->config, err, sizeof err))
        return set_unavailable(w, "the models config cannot be used: ", err), -1;
    w->have_config = true;
    snprintf(w->model_name, sizeof w->model_name, "%s", w->config.checkpoint.name);
    models_opts opts;
    models_opts_from_env(&opts);
    rp_info("models: %s (checkpoint into %s, %zu LoRAs into %s)", env->config_path, env->checkpoint_dir,
            w->config.n_loras, env->lora_dir);
    if (models_ensure(&w->config, env, &opts, &w->paths, err, sizeof err))
        rp_warn("models: %s", err);
    w->have_paths = true;
    if (!w->paths.checkpoint.ok) {
        char what[400];
        snprintf(what, sizeof what, "the checkpoint '%s' is not available: ", w->model_name);
        return set_unavailable(w, what, w->paths.checkpoint.error ? w->paths.checkpoint.error : "unknown error"), -1;
    }
    return 0;
}

/* On a GPU, the configured LoRA stack merged and every weight uploaded
 * before the first job (sd_engine_warm_up); a failure here is logged and
 * left to the first job to report. */
static void warm_up(sdxl_worker *w)
{
    if (strcmp(sd_backend_name(sd_engine_backend(w->engine)), "cuda")) return;
    double t0 = sd_now_seconds();
    sd_lora_spec *specs = calloc(w->limits.n_stack + 1, sizeof *specs);
    size_t n = 0;
    for (size_t i = 0; specs && i < w->limits.n_stack; i++)
        if (w->stack[i].available)
            specs[n++] = (sd_lora_spec){.path = w->stack[i].path, .name = w->stack[i].name,
                                        .te_multiplier = (float)w->stack[i].scale,
                                        .unet_multiplier = (float)w->stack[i].scale};
    char err[SDXL_ERROR_MAX] = "";
    if (specs && sd_engine_set_loras(w->engine, specs, n, NULL, err, sizeof err) != SD_LORA_OK)
        rp_warn("warm-up: the configured LoRAs: %s", err);
    free(specs);
    if (sd_engine_warm_up(w->engine, err, sizeof err) != SD_OK) {
        rp_warn("warm-up: %s", err);
        return;
    }
    sd_mem_stats m;
    sd_backend_mem(sd_engine_backend(w->engine), &m);
    rp_info("warm-up: %.1f MB of weights on the device, %.1f MB in use, in %.1f s", m.weight_bytes / 1048576.0,
            m.device_used_peak / 1048576.0, sd_now_seconds() - t0);
}

void sdxl_worker_load(sdxl_worker *w)
{
    clear_models(w);
    w->last_attempt = time(NULL);
    double t0 = sd_now_seconds();
    models_env env;
    if (ensure_models(w, &env)) return;
    w->hashes = open_hash_cache(&env);
    if (!w->hashes || build_stack(w)) {
        set_unavailable(w, "out of memory at start-up", "");
        return;
    }
    compute_hashes(w);
    char err[SDXL_ERROR_MAX];
    sd_status st = sd_engine_load(w->paths.checkpoint.path, NULL, &w->engine, err, sizeof err);
    if (st != SD_OK) {
        w->engine = NULL;
        set_unavailable(w, st == SD_EDEVICE ? "the engine could not start: " : "the checkpoint could not be loaded: ",
                        err);
        return;
    }
    if (sdxl_worker_load_extras(w)) {
        sd_engine_free(w->engine);
        w->engine = NULL;
        set_unavailable(w, "out of memory at start-up", "");
        return;
    }
    rp_info("device: %s", sd_engine_device(w->engine));
    warm_up(w);
    w->limits.size_multiple = sd_engine_size_multiple(w->engine);
    w->unavailable[0] = '\0';
    rp_info("engine ready in %.1f s: %s (%s, model hash %s), %zu LoRAs, %zu VAEs and %zu embeddings configured",
            sd_now_seconds() - t0, w->model_name, w->paths.checkpoint.path,
            w->model_hash[0] ? w->model_hash : "unknown", w->limits.n_stack, w->paths.n_vaes,
            w->paths.n_embeddings);
}

sdxl_worker *sdxl_worker_start(void)
{
    sdxl_worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_mutex_init(&w->lock, NULL);
    sdxl_job_limits_from_env(&w->limits);
    w->has_bucket = s3_bucket_from_env(&w->bucket) == 0;
    const char *dir = getenv("SDXL_OUTPUT_DIR");
    snprintf(w->output_dir, sizeof w->output_dir, "%s", dir ? dir : "");
    rp_info("job limits: at most %ld pixels (SDXL_MAX_PIXELS), %ld pixel-steps (SDXL_MAX_PIXEL_STEPS) and %ld "
            "prompt chunks (SDXL_MAX_PROMPT_CHUNKS) per job, return_type url %s", w->limits.max_pixels,
            w->limits.max_pixel_steps, w->limits.max_prompt_chunks,
            w->has_bucket ? "uploads to the bucket" : "unavailable (no BUCKET_* variables)");
    sdxl_worker_load(w);
    return w;
}

void sdxl_worker_free(sdxl_worker *w)
{
    if (!w) return;
    clear_models(w);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

bool sdxl_worker_ready(const sdxl_worker *w) { return w && w->engine; }

int sdxl_worker_main(int argc, char **argv)
{
    rp_log_init_from_env();
    sdxl_worker *w = sdxl_worker_start();
    if (!w) {
        rp_error("out of memory at start-up");
        return 1;
    }
    rp_config cfg = {.handler = sdxl_handle_job, .ctx = w};
    int rc = rp_serverless_start(&cfg, argc, argv);
    sdxl_worker_free(w);
    return rc;
}
