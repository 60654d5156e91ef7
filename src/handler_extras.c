/* The models config's VAEs and textual-inversion embeddings in the worker
 * (handler_impl.h). At start-up each is loaded into the warm engine with the
 * hash A1111 writes for it ("VAE hash": AutoV2; "TI hashes": the first 12
 * hex digits of the file's SHA-256, textual_inversion.py); one that cannot
 * be used is logged and keeps its reason, so that only the jobs naming it
 * fail, with that reason. Per job: the embeddings its prompts use, for the
 * infotext and the result's metadata. */
#include "handler_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/infotext.h"
#include "runpod/log.h"

/* The model store's item becomes unusable for `why` (its reason from now on). */
static void mark_unusable(models_item *it, const char *why)
{
    char *copy = strdup(why);
    if (!copy) return;
    free(it->error);
    it->error = copy;
    it->ok = false;
}

static void load_vae(sdxl_worker *w, size_t i)
{
    models_item *it = &w->paths.vaes[i];
    sdxl_vae_slot *slot = &w->vaes[i];
    char why[SDXL_ERROR_MAX];
    int index;
    *slot = (sdxl_vae_slot){.name = w->config.vaes[i].name, .path = it->path};
    if (it->ok && sd_engine_add_vae(w->engine, it->path, &index, why, sizeof why) != SD_OK) {
        rp_error("the VAE '%s' cannot be used: %s", slot->name, why);
        mark_unusable(it, why);
    }
    slot->why = it->error;
    if (!it->ok) return;
    slot->available = true;
    slot->index = index;
    if (it->sha256[0]) hash_cache_put_sha256(w->hashes, it->path, it->sha256);
    if (hash_autov2(w->hashes, it->path, w->vae_hash[i], why, sizeof why)) {
        w->vae_hash[i][0] = '\0';
        rp_warn("no hash for the VAE '%s': %s", slot->name, why);
    }
    rp_info("VAE '%s' ready for jobs that name it (%s)", slot->name, it->path);
}

static void load_embedding(sdxl_worker *w, size_t i)
{
    models_item *it = &w->paths.embeddings[i];
    const char *name = w->config.embeddings[i].name;
    sd_embedding_db *db = sd_engine_embeddings(w->engine);
    char why[SDXL_ERROR_MAX], hex[65];
    if (!it->ok) {
        sd_embeddings_add_unavailable(db, name, it->path, it->error);
        return;
    }
    if (sd_embeddings_load(db, name, it->path, why, sizeof why)) {
        rp_error("%s", why);
        mark_unusable(it, why);
        return;
    }
    if (it->sha256[0]) hash_cache_put_sha256(w->hashes, it->path, it->sha256);
    if (hash_sha256(w->hashes, it->path, hex, why, sizeof why)) rp_warn("no hash for the embedding '%s': %s", name, why);
    else snprintf(w->ti_hash[i], sizeof w->ti_hash[i], "%.12s", hex);
    rp_info("embedding '%s': %d vectors (%s)", name, sd_embedding_vectors(db, sd_embeddings_count(db) - 1), it->path);
}

int sdxl_worker_load_extras(sdxl_worker *w)
{
    size_t nv = w->paths.n_vaes, ne = w->paths.n_embeddings;
    w->vaes = calloc(nv + 1, sizeof *w->vaes);
    w->vae_hash = calloc(nv + 1, sizeof *w->vae_hash);
    w->ti_hash = calloc(ne + 1, sizeof *w->ti_hash);
    if (!w->vaes || !w->vae_hash || !w->ti_hash) return -1;
    for (size_t i = 0; i < nv; i++) load_vae(w, i);
    for (size_t i = 0; i < ne; i++) load_embedding(w, i);
    w->limits.vaes = w->vaes;
    w->limits.n_vaes = nv;
    return 0;
}

void sdxl_worker_free_extras(sdxl_worker *w)
{
    free(w->vaes);
    free(w->vae_hash);
    free(w->ti_hash);
    w->vaes = NULL, w->vae_hash = NULL, w->ti_hash = NULL;
    w->limits.vaes = NULL;
    w->limits.n_vaes = 0;
}

/* ---- per job ---------------------------------------------------------------------- */

int sdxl_ti_use_of(sdxl_worker *w, const sdxl_job *j, sdxl_ti_use *u, sdxl_error *err)
{
    memset(u, 0, sizeof *u);
    sd_status st = sd_engine_embeddings_used(w->engine, j->prompt, false, &u->prompt, &u->n_prompt, err->message,
                                             sizeof err->message);
    if (st == SD_OK)
        st = sd_engine_embeddings_used(w->engine, j->negative_prompt, true, &u->negative, &u->n_negative,
                                       err->message, sizeof err->message);
    if (st == SD_OK) return 0;
    sdxl_ti_use_free(u);
    err->code = st == SD_EMODEL ? SDXL_MODEL_UNAVAILABLE : st == SD_ENOMEM ? SDXL_OUT_OF_MEMORY : SDXL_INVALID_INPUT;
    return -1;
}

void sdxl_ti_use_free(sdxl_ti_use *u)
{
    free(u->prompt);
    free(u->negative);
    memset(u, 0, sizeof *u);
}

/* The names and hashes of one text's embeddings (those with a hash). */
static size_t hashed(const sdxl_worker *w, const size_t *idx, size_t n, const char **names, const char **hashes)
{
    const sd_embedding_db *db = sd_engine_embeddings(w->engine);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!w->ti_hash[idx[i]][0]) continue; /* A1111 leaves out an embedding without a hash */
        names[k] = sd_embedding_name(db, idx[i]);
        hashes[k++] = w->ti_hash[idx[i]];
    }
    return k;
}

char *sdxl_ti_hashes(const sdxl_worker *w, const sdxl_ti_use *u)
{
    size_t total = u->n_prompt + u->n_negative + 1;
    const char **names = calloc(total, sizeof *names), **hashes = calloc(total, sizeof *hashes);
    char *text = NULL;
    if (names && hashes) {
        size_t nn = hashed(w, u->negative, u->n_negative, names, hashes);
        size_t np = hashed(w, u->prompt, u->n_prompt, names + nn, hashes + nn);
        const infotext_ti_pass neg = {names, hashes, nn}, pos = {names + nn, hashes + nn, np};
        const infotext_ti_pass passes[] = {neg, neg, pos, pos}; /* CLIP-L, then bigG; the negative first */
        text = infotext_ti_hashes(passes, 4);
    }
    free(names);
    free(hashes);
    return text;
}

static void add_use(cJSON *list, const sd_embedding_db *db, size_t idx, const char *where)
{
    cJSON *e, *found = NULL;
    const char *name = sd_embedding_name(db, idx);
    cJSON_ArrayForEach(e, list)
        if (!strcmp(cJSON_GetObjectItem(e, "name")->valuestring, name)) found = e;
    if (!found) {
        found = cJSON_CreateObject();
        cJSON_AddStringToObject(found, "name", name);
        cJSON_AddNumberToObject(found, "vectors", sd_embedding_vectors(db, idx));
        cJSON_AddArrayToObject(found, "in");
        cJSON_AddItemToArray(list, found);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(found, "in"), cJSON_CreateString(where));
}

cJSON *sdxl_ti_json(const sdxl_worker *w, const sdxl_ti_use *u)
{
    if (!u->n_prompt && !u->n_negative) return NULL;
    const sd_embedding_db *db = sd_engine_embeddings(w->engine);
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < u->n_prompt; i++) add_use(list, db, u->prompt[i], "prompt");
    for (size_t i = 0; i < u->n_negative; i++) add_use(list, db, u->negative[i], "negative_prompt");
    return list;
}
