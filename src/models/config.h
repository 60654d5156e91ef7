/* Models config: the JSON file naming the checkpoint and the LoRA stack
 * (CONTRACTS.md "Models config"), and the environment that says where the
 * config is, where models live and how Civitai is reached (MODELS_CONFIG,
 * MODELS_DIR, CHECKPOINT_DIR, LORA_DIR, VAE_DIR, EMBEDDINGS_DIR,
 * CIVITAI_API_KEY, CIVITAI_HOST).
 * Shape, exactly:
 *   {"checkpoint": {"name", "url" | "path", "filename", "sha256"?, "size"?},
 *    "loras": [{"name", "url" | "path", "filename", "scale", "sha256"?, "size"?}],
 *    "vae"?: {"name", "url" | "path", "filename", "sha256"?, "size"?},
 *    "vaes"?: [ the same ], "embeddings"?: [ the same ]}
 * ("vae" and "vaes" are the VAEs jobs may choose; "embeddings" the
 * textual inversions prompts may name.)
 * Parsing is strict inside entries (unknown keys are typos and rejected) and
 * every error names the entry and the field. */
#ifndef SDXL_MODELS_CONFIG_H
#define SDXL_MODELS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MODELS_FILENAME_MAX 200 /* leaves room for ".verified"/".part" under NAME_MAX */
#define MODELS_DEFAULT_CONFIG "config/models.json"
#define MODELS_DEFAULT_DIR "/runpod-volume/models"

typedef struct {
    char *name;       /* display name; LoRAs are referred to by it */
    char *url;        /* http(s) download URL, or NULL when `path` is given */
    char *path;       /* local file, made absolute against the config's directory; or NULL */
    char *filename;   /* plain file name under the checkpoint/LoRA directory
                         (with `path`: optional, defaults to the path's base name) */
    char sha256[65];  /* lower-case hex, "" when not given */
    uint64_t size;    /* bytes, 0 when not given */
    double scale;     /* LoRAs: required; the checkpoint: 1 */
} models_entry;

typedef struct {
    models_entry checkpoint;
    models_entry *loras;
    size_t n_loras;
    models_entry *vaes;       /* "vae" first, then "vaes" */
    size_t n_vaes;
    models_entry *embeddings;
    size_t n_embeddings;
} models_config;

/* Parses a config from memory. Relative `path` entries are resolved against
 * base_dir (the config file's directory; NULL means the working directory).
 * Returns 0, or -1 with one line in err naming the entry and field. */
int models_config_parse(const char *json, size_t len, const char *base_dir,
                        models_config *out, char *err, size_t errlen);
/* Reads and parses a config file. */
int models_config_load(const char *path, models_config *out, char *err, size_t errlen);
void models_config_free(models_config *cfg);

/* 0 if `name` may be used as a file name inside a models directory: not
 * empty, at most MODELS_FILENAME_MAX bytes, no '/', '\\', "..", control
 * characters, and not hidden (leading '.'). Else -1 with the reason. */
int models_filename_check(const char *name, char *err, size_t errlen);

/* Where things are, from the environment (see the top of this file). */
typedef struct {
    char config_path[4096];    /* the config file found (or, if none, the first candidate) */
    char checkpoint_dir[4096]; /* CHECKPOINT_DIR, else $MODELS_DIR/checkpoints */
    char lora_dir[4096];       /* LORA_DIR, else $MODELS_DIR/loras */
    char vae_dir[4096];        /* VAE_DIR, else $MODELS_DIR/vae */
    char embedding_dir[4096];  /* EMBEDDINGS_DIR, else $MODELS_DIR/embeddings */
    char api_key[512];         /* CIVITAI_API_KEY, "" when unset */
    char civitai_origin[512];  /* CIVITAI_HOST as "scheme://host[:port]", "" when unset */
} models_env;

/* Reads the environment. The config is looked up as MODELS_CONFIG (default
 * config/models.json): an absolute path as is; a relative one against the
 * working directory, then <dir of the binary>/.., then <dir of the binary>.
 * Returns -1 with a reason only for an unusable CIVITAI_HOST; a missing
 * config file is reported later by models_config_load. */
int models_env_from_environ(models_env *out, char *err, size_t errlen);

/* Looks up a relative config name as described above; absolute names are
 * copied. Returns 0 when a readable file was found, -1 otherwise (out then
 * holds the working-directory candidate). */
int models_find_config(const char *name, char *out, size_t outlen);

#endif
