/* Textual-inversion embeddings (see embedding.h): the file check, the
 * vectors widened to fp32 once (a file is at most 75 x 2048 values, so it is
 * not kept mapped), and the names as token ids. Matched by reading
 * A1111's modules/textual_inversion/textual_inversion.py
 * (create_embedding_from_data: the clip_g/clip_l dict form, vectors =
 * clip_g.shape[0]; register_embedding, find_embedding_at_position). */
#include "sd/embedding.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/checkpoint.h"
#include "sd/error.h"
#include "sd/safetensors.h"

typedef struct {
    char *name;
    char *why;      /* unavailable: the reason; NULL when loaded */
    int n;          /* vectors */
    float *l, *g;   /* n x width_l and n x width_g */
} embedding;

typedef struct {
    sd_tok_ids ids; /* the name's content ids */
    size_t emb;
} alias;

struct sd_embedding_db {
    const sd_tokenizer *tok;
    int width_l, width_g;
    embedding *items;
    size_t n, cap;
    alias *aliases;
    size_t n_aliases, cap_aliases;
};

sd_embedding_db *sd_embeddings_new(const sd_tokenizer *tok, int width_l, int width_g)
{
    sd_embedding_db *db = calloc(1, sizeof *db);
    if (db) *db = (sd_embedding_db){.tok = tok, .width_l = width_l, .width_g = width_g};
    return db;
}

void sd_embeddings_free(sd_embedding_db *db)
{
    if (!db) return;
    for (size_t i = 0; i < db->n; i++) {
        free(db->items[i].name);
        free(db->items[i].why);
        free(db->items[i].l);
        free(db->items[i].g);
    }
    for (size_t i = 0; i < db->n_aliases; i++) sd_tok_ids_free(&db->aliases[i].ids);
    free(db->items);
    free(db->aliases);
    free(db);
}

/* ---- names ---------------------------------------------------------------------- */

static int add_alias(sd_embedding_db *db, const char *text, size_t len, size_t emb)
{
    if (db->n_aliases == db->cap_aliases) {
        size_t cap = db->cap_aliases ? 2 * db->cap_aliases : 8;
        alias *grown = realloc(db->aliases, cap * sizeof *grown);
        if (!grown) return -1;
        db->aliases = grown, db->cap_aliases = cap;
    }
    alias *a = &db->aliases[db->n_aliases];
    memset(a, 0, sizeof *a);
    a->emb = emb;
    if (sd_tokenize(db->tok, SD_TOK_CLIP_L, text, len, &a->ids)) {
        sd_tok_ids_free(&a->ids);
        return -1;
    }
    if (a->ids.n == 0) sd_tok_ids_free(&a->ids); /* a name without tokens never matches */
    else db->n_aliases++;
    return 0;
}

/* The configured name, and the file's stem (A1111's name) when it differs. */
static int add_names(sd_embedding_db *db, const char *name, const char *path, size_t emb)
{
    if (add_alias(db, name, strlen(name), emb)) return -1;
    if (!path) return 0;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    if (strlen(name) == n && !strncmp(name, base, n)) return 0;
    return add_alias(db, base, n, emb);
}

static embedding *new_item(sd_embedding_db *db, const char *name)
{
    if (db->n == db->cap) {
        size_t cap = db->cap ? 2 * db->cap : 8;
        embedding *grown = realloc(db->items, cap * sizeof *grown);
        if (!grown) return NULL;
        db->items = grown, db->cap = cap;
    }
    embedding *e = &db->items[db->n];
    memset(e, 0, sizeof *e);
    if (!(e->name = strdup(name))) return NULL;
    db->n++;
    return e;
}

int sd_embeddings_add_unavailable(sd_embedding_db *db, const char *name, const char *path, const char *why)
{
    embedding *e = new_item(db, name);
    if (!e || !(e->why = strdup(why ? why : "it failed to load"))) return -1;
    return add_names(db, name, path, db->n - 1);
}

/* ---- the file ------------------------------------------------------------------------ */

/* One line on what a file without clip_l/clip_g is. */
static int not_sdxl(const st_file *f, const char *name, const char *path, char *err, size_t errlen)
{
    char what[400];
    ckpt_kind kind = ckpt_identify(f, what, sizeof what);
    const st_tensor *old = st_find(f, "emb_params");
    if (!old && st_count(f) && !strncmp(st_get(f, 0)->name, "string_to_param.", 16)) old = st_get(f, 0);
    if (old && old->ndim >= 1)
        return sd_error(err, errlen, "embedding '%s' (%s) is an SD 1.x/2.x embedding (\"%s\", %lld wide), not an "
                        "SDXL one: an SDXL embedding holds clip_l and clip_g", name, path, old->name,
                        (long long)old->shape[old->ndim - 1]);
    if (kind == CKPT_LORA)
        return sd_error(err, errlen, "embedding '%s' (%s) is a LoRA, not a textual-inversion embedding: list it "
                        "under \"loras\"", name, path);
    if (kind != CKPT_EMBEDDING)
        return sd_error(err, errlen, "embedding '%s' (%s) is %s, not a textual-inversion embedding", name, path, what);
    return sd_error(err, errlen, "embedding '%s' (%s) has no %s tensor: an SDXL embedding holds clip_l [n, %s] "
                    "and clip_g [n, %s]", name, path, st_find(f, "clip_l") ? "clip_g" : "clip_l", "CLIP-L width",
                    "bigG width");
}

/* tensor [n, width] of finite floats, widened into *out. */
static int read_part(const st_tensor *t, int n, int width, const char *model, float **out, const char *name,
                     const char *path, char *err, size_t errlen)
{
    char shape[96];
    sd_weight w;
    if (t->ndim != 2 || !t->is_float || t->shape[0] != n)
        return sd_error(err, errlen, "embedding '%s' (%s): %s is %s %s; expected [%d, %d] floats", name, path,
                        t->name, t->dtype_name, st_shape_str(t, shape, sizeof shape), n, width);
    if (t->shape[1] != width)
        return sd_error(err, errlen, "embedding '%s' (%s) was made for another model: %s is %lld wide, this "
                        "checkpoint's %s is %d wide", name, path, t->name, (long long)t->shape[1], model, width);
    if (st_weight(t, &w, err, errlen)) return -1;
    size_t count = (size_t)n * (size_t)width;
    if (!(*out = malloc(count * sizeof **out))) return sd_error(err, errlen, "embedding '%s': out of memory", name);
    sd_widen(w.dtype, w.data, 0, count, *out);
    for (size_t i = 0; i < count; i++)
        if (!isfinite((*out)[i]))
            return sd_error(err, errlen, "embedding '%s' (%s): %s holds a non-finite value", name, path, t->name);
    return 0;
}

static int read_vectors(sd_embedding_db *db, embedding *e, const st_file *f, const char *path, char *err,
                        size_t errlen)
{
    const st_tensor *l = st_find(f, "clip_l"), *g = st_find(f, "clip_g");
    if (!l || !g) return not_sdxl(f, e->name, path, err, errlen);
    long long n = g->ndim >= 1 ? (long long)g->shape[0] : 0;
    if (n < 1 || n > SD_EMBEDDING_MAX_VECTORS)
        return sd_error(err, errlen, "embedding '%s' (%s) has %lld vectors; 1 to %d fit a prompt chunk", e->name,
                        path, n, SD_EMBEDDING_MAX_VECTORS);
    e->n = (int)n;
    return read_part(l, e->n, db->width_l, "CLIP-L", &e->l, e->name, path, err, errlen) ||
           read_part(g, e->n, db->width_g, "OpenCLIP-bigG", &e->g, e->name, path, err, errlen) ? -1 : 0;
}

int sd_embeddings_load_file(sd_embedding_db *db, const char *name, const st_file *f, char *err, size_t errlen)
{
    const char *path = st_label(f);
    embedding *e = new_item(db, name);
    if (!e) return sd_error(err, errlen, "embedding '%s': out of memory", name);
    int rc = read_vectors(db, e, f, path, err, errlen);
    if (rc) {
        free(e->l), free(e->g);
        e->l = e->g = NULL, e->n = 0;
        e->why = strdup(err);
    }
    if ((rc && !e->why) || add_names(db, name, path, db->n - 1))
        return sd_error(err, errlen, "embedding '%s': out of memory", name);
    return rc;
}

int sd_embeddings_load(sd_embedding_db *db, const char *name, const char *path, char *err, size_t errlen)
{
    char why[1024];
    st_file *f;
    if (st_open(path, &f, why, sizeof why)) {
        sd_error(err, errlen, "embedding '%s': %s", name, why);
        return sd_embeddings_add_unavailable(db, name, path, err) ? sd_error(err, errlen, "out of memory") : -1;
    }
    int rc = sd_embeddings_load_file(db, name, f, err, errlen);
    st_close(f);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------- */

size_t sd_embeddings_count(const sd_embedding_db *db) { return db ? db->n : 0; }
const char *sd_embedding_name(const sd_embedding_db *db, size_t i) { return db->items[i].name; }
const char *sd_embedding_unavailable(const sd_embedding_db *db, size_t i) { return db->items[i].why; }
int sd_embedding_vectors(const sd_embedding_db *db, size_t i) { return db->items[i].n; }

const float *sd_embedding_vector(const sd_embedding_db *db, size_t i, bool bigg, int v)
{
    const embedding *e = &db->items[i];
    return bigg ? e->g + (size_t)v * db->width_g : e->l + (size_t)v * db->width_l;
}

long sd_embeddings_match(const sd_embedding_db *db, const int32_t *ids, size_t n, size_t pos, size_t *len)
{
    long best = -1;
    size_t best_len = 0;
    for (size_t a = 0; db && a < db->n_aliases; a++) {
        const sd_tok_ids *name = &db->aliases[a].ids;
        if (name->n <= best_len || pos + name->n > n || memcmp(ids + pos, name->ids, name->n * sizeof *ids)) continue;
        best = (long)db->aliases[a].emb;
        best_len = name->n;
    }
    *len = best_len;
    return best;
}
