/* `sdxl-worker fetch-models`: the command-line face of the model store
 * (store.h). Reads the environment and the models config, makes every model
 * present and verified, prints a JSON summary on stdout (logs on stderr),
 * and exits 0 only when all of them are. */
#include "models/store.h"

#include "runpod/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *out)
{
    fprintf(out,
            "usage: sdxl-worker fetch-models [--config FILE] [--allow-unverified]\n"
            "  Downloads and verifies the checkpoint, LoRAs, VAEs and embeddings of the\n"
            "  models config (MODELS_CONFIG, default config/models.json) into MODELS_DIR\n"
            "  (default /runpod-volume/models; CHECKPOINT_DIR, LORA_DIR, VAE_DIR,\n"
            "  EMBEDDINGS_DIR override).\n"
            "  CIVITAI_API_KEY authenticates Civitai downloads; CIVITAI_HOST picks\n"
            "  civitai.com or civitai.red. --allow-unverified accepts downloads\n"
            "  for which neither the config nor Civitai gives a SHA-256.\n");
    return out == stdout ? 0 : 2;
}

static cJSON *item_json(const models_item *it, const char *kind)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddStringToObject(j, "name", it->name ? it->name : "");
    cJSON_AddStringToObject(j, "path", it->path ? it->path : "");
    cJSON_AddBoolToObject(j, "ok", it->ok);
    if (!strcmp(kind, "lora")) cJSON_AddNumberToObject(j, "scale", it->scale);
    if (it->sha256[0]) {
        cJSON_AddNumberToObject(j, "size", (double)it->size);
        cJSON_AddStringToObject(j, "sha256", it->sha256);
        cJSON_AddStringToObject(j, "sha256_verified_by", models_hash_source_name(it->hash_source));
    }
    cJSON_AddBoolToObject(j, "downloaded", it->downloaded);
    if (it->error) cJSON_AddStringToObject(j, "error", it->error);
    return j;
}

static void print_summary(const char *config, const models_paths *p, bool ok)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddBoolToObject(root, "ok", ok);
    cJSON_AddStringToObject(root, "config", config);
    cJSON *models = cJSON_AddArrayToObject(root, "models");
    cJSON_AddItemToArray(models, item_json(&p->checkpoint, "checkpoint"));
    for (size_t i = 0; i < p->n_loras; i++) cJSON_AddItemToArray(models, item_json(&p->loras[i], "lora"));
    for (size_t i = 0; i < p->n_vaes; i++) cJSON_AddItemToArray(models, item_json(&p->vaes[i], "vae"));
    for (size_t i = 0; i < p->n_embeddings; i++)
        cJSON_AddItemToArray(models, item_json(&p->embeddings[i], "embedding"));
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return;
    rp_log_redact(text);
    printf("%s\n", text);
    fflush(stdout);
    free(text);
}

int models_fetch_main(int argc, char **argv)
{
    const char *config = NULL;
    models_opts opts;
    models_opts_from_env(&opts);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--allow-unverified")) opts.allow_unverified = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout);
        else return usage(stderr);
    }
    rp_log_init_from_env();
    models_env env;
    char err[8192];
    if (models_env_from_environ(&env, err, sizeof err) != 0) {
        rp_error("fetch-models: %s", err);
        return 2;
    }
    rp_log_add_secret(env.api_key);
    if (config) snprintf(env.config_path, sizeof env.config_path, "%s", config);
    models_config cfg;
    if (models_config_load(env.config_path, &cfg, err, sizeof err) != 0) {
        rp_error("fetch-models: %s", err);
        return 2;
    }
    rp_info("fetch-models: %s: checkpoint into %s, %zu LoRAs into %s, %zu VAEs into %s, %zu embeddings into %s",
            env.config_path, env.checkpoint_dir, cfg.n_loras, env.lora_dir, cfg.n_vaes, env.vae_dir,
            cfg.n_embeddings, env.embedding_dir);
    models_paths paths;
    int rc = models_ensure(&cfg, &env, &opts, &paths, err, sizeof err);
    print_summary(env.config_path, &paths, rc == 0);
    if (rc == 0)
        rp_info("fetch-models: all %zu models present and verified",
                1 + cfg.n_loras + cfg.n_vaes + cfg.n_embeddings);
    else rp_error("fetch-models: %s", err);
    models_paths_free(&paths);
    models_config_free(&cfg);
    return rc == 0 ? 0 : 1;
}
