/* The model store: makes every model of the models config present and
 * verified on disk (spec original-worker-and-civitai.md §2.6 steps 1, 5, 6):
 *   - a file already verified is recognised by its `<file>.verified` sidecar
 *     (size, mtime, SHA-256, who vouched for it, the URL), so a 7 GB
 *     checkpoint is not re-hashed at every start;
 *   - otherwise, under an exclusive lock on `<file>.lock` (workers sharing a
 *     volume download each file once; the others wait, then find it), the
 *     expected SHA-256/size come from the config or else from Civitai's
 *     /api/v1/model-versions/{id}; the file is downloaded into `<file>.part`
 *     (download.h), checked (size, SHA-256, safetensors header), fsync'd,
 *     renamed atomically into place and the directory fsync'd;
 *   - the Civitai API key goes only to Civitai origins (civitai.h) and never
 *     appears in a log line or an error (it is registered with the logger and
 *     every message is redacted).
 * Entries with a local `path` are checked in place (existence, safetensors
 * header, and size/SHA-256 when the config gives them).
 * Lock caveat: flock(2) is exclusive across processes on one machine and,
 * on NFS, across machines when the server supports locks. A filesystem that
 * answers ENOLCK gets a warning and no lock; two workers may then download
 * the same file at once, but readers still never see a partial file (rename
 * is atomic) and the SHA-256 check rejects a mixed one. One process should
 * not run two models_ensure calls on one directory at the same time. */
#ifndef SDXL_MODELS_STORE_H
#define SDXL_MODELS_STORE_H

#include "models/config.h"
#include "models/download.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    dl_opts net;
    bool allow_unverified; /* accept downloads whose SHA-256 nobody published */
    int lock_poll_ms;      /* 250 */
    int lock_notice_ms;    /* between "still waiting" lines: 10000 */
} models_opts;

void models_opts_default(models_opts *o);
/* Defaults, plus MODELS_ALLOW_UNVERIFIED=1 from the environment. */
void models_opts_from_env(models_opts *o);

typedef enum {
    MODELS_HASH_NONE = 0, /* only computed: no published hash to compare with */
    MODELS_HASH_CONFIG,   /* equals the config's sha256 */
    MODELS_HASH_CIVITAI,  /* equals Civitai's files[].hashes.SHA256 */
} models_hash_source;

const char *models_hash_source_name(models_hash_source s); /* "none", "config", "civitai" */

typedef struct {
    const char *name;  /* the config entry's name (borrowed) */
    char *path;        /* the file to load */
    double scale;
    bool ok;           /* present and verified */
    char *error;       /* one line when !ok (never contains the key) */
    uint64_t size;
    char sha256[65];   /* of the file ("" when unknown) */
    models_hash_source hash_source;
    bool downloaded;   /* fetched during this call */
} models_item;

typedef struct {
    models_item checkpoint;
    models_item *loras;
    size_t n_loras;
    models_item *vaes;       /* the config's vaes, in its order */
    size_t n_vaes;
    models_item *embeddings;
    size_t n_embeddings;
} models_paths;

/* Makes every model present and verified, fetching what is missing. The
 * checkpoint goes to env->checkpoint_dir, LoRAs to env->lora_dir, VAEs to
 * env->vae_dir, embeddings to env->embedding_dir; the key and CIVITAI_HOST
 * come from env. Every entry is attempted. Returns 0 when all are ok; else
 * -1 and err lists each failed entry with its reason. `out` is filled
 * either way and freed with models_paths_free. */
int models_ensure(const models_config *cfg, const models_env *env, const models_opts *opts,
                  models_paths *out, char *err, size_t errlen);
void models_paths_free(models_paths *p);
/* Item i of all of them: the checkpoint, the LoRAs, the VAEs, the
 * embeddings; NULL past the end. */
const models_item *models_paths_item(const models_paths *p, size_t i);

/* One entry into `dir` (what models_ensure does for each). 0 or -1. */
int models_ensure_entry(const models_entry *e, const char *dir, const models_env *env,
                        const models_opts *opts, models_item *out);

/* `sdxl-worker fetch-models [--config FILE] [--allow-unverified]`: downloads
 * and verifies everything; prints a JSON summary on stdout, logs to stderr.
 * Exit 0 only when every model is present and verified; 1 when one is not;
 * 2 for a usage or config error. */
int models_fetch_main(int argc, char **argv);

#endif
