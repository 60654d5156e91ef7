/* SDXL text conditioning from a prepared prompt (see text_encoder.h). */
#include "sd/text_encoder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/tokenizer.h"

int sd_text_encoders_bind(sd_text_encoders *te, const st_file *f, const sdxl_hparams *hp, char *err,
                          size_t errlen)
{
    memset(te, 0, sizeof *te);
    if (sd_clip_bind_l(&te->clip_l, f, &hp->te1, err, errlen)) return -1;
    if (sd_clip_bind_g(&te->clip_g, f, &hp->te2, err, errlen)) {
        sd_clip_release(&te->clip_l);
        return -1;
    }
    return 0;
}

void sd_text_encoders_release(sd_text_encoders *te)
{
    sd_clip_release(&te->clip_l);
    sd_clip_release(&te->clip_g);
}

int sd_clip_skip_max(const sd_text_encoders *te)
{
    int l = te->clip_l.hp.layers, g = te->clip_g.hp.layers;
    return l < g ? l : g;
}

void sd_emphasis_original(float *z, int n, int w, const float *weights)
{
    size_t count = (size_t)n * (size_t)w;
    double before = 0.0, after = 0.0;
    for (size_t i = 0; i < count; i++) before += z[i];
    for (int t = 0; t < n; t++)
        for (int c = 0; c < w; c++) z[(size_t)t * w + c] *= weights[t];
    for (size_t i = 0; i < count; i++) after += z[i];
    float rescale = (float)(before / (double)count) / (float)(after / (double)count);
    for (size_t i = 0; i < count; i++) z[i] *= rescale;
}

static bool all_ones(const float *weights, int n)
{
    for (int i = 0; i < n; i++)
        if (weights[i] != 1.0f) return false;
    return true;
}

/* The textual-inversion vectors of the batch's chunks for one encoder
 * (bigg: OpenCLIP-bigG's, else CLIP-L's): one row per slot a fix covers. */
static sd_clip_row *embedding_rows(const sd_prompt *p, int n, const int *first, bool bigg, size_t *count)
{
    int per = SD_TOK_CONTEXT;
    *count = 0;
    for (int i = 0; i < n; i++)
        for (size_t c = 0; first[i] >= 0 && c < p[i].n_chunks; c++)
            for (int r = 0; r < per; r++) *count += p[i].chunks[c].emb[r] != 0;
    sd_clip_row *rows = malloc((*count + 1) * sizeof *rows);
    size_t k = 0;
    for (int i = 0; rows && i < n; i++)
        for (size_t c = 0; first[i] >= 0 && c < p[i].n_chunks; c++)
            for (int r = 0; r < per; r++) {
                const sd_prompt_chunk *ch = &p[i].chunks[c];
                if (!ch->emb[r]) continue;
                rows[k].row = (int64_t)(first[i] + (int)c) * per + r;
                rows[k++].vec = sd_embedding_vector(p[i].embeddings, (size_t)(ch->emb[r] - 1), bigg, ch->emb_vector[r]);
            }
    return rows;
}

/* Runs one encoder over every chunk at once and downloads its states. */
static float *encode_chunks(sd_backend *be, const sd_clip *m, const int32_t *ids, const sd_clip_row *rows,
                            size_t n_rows, int chunks, int layer, float *pooled)
{
    const sdxl_te_hparams *hp = &m->hp;
    size_t n = (size_t)chunks * hp->positions * hp->width;
    sd_tensor *hidden = sd_new3(be, chunks, hp->positions, hp->width);
    float *host = malloc(n * sizeof(float));
    int rc = host && rows ? sd_clip_forward_rows(be, m, ids, rows, n_rows, chunks, layer, SD_TOK_EOS, hidden, pooled)
                          : -1;
    if (rc == 0) rc = sd_tensor_download(be, hidden, host);
    sd_tensor_free(be, hidden);
    if (rc == 0) return host;
    free(host);
    return NULL;
}

/* context[token, 0:w1] = h1, context[token, w1:w1+w2] = h2. */
static void interleave(float *context, const float *h1, int w1, const float *h2, int w2, size_t tokens)
{
    for (size_t t = 0; t < tokens; t++) {
        memcpy(context + t * (w1 + w2), h1 + t * w1, sizeof(float) * w1);
        memcpy(context + t * (w1 + w2) + w1, h2 + t * w2, sizeof(float) * w2);
    }
}

static int alloc_conditioning(sd_conditioning *out, int n_tokens, int width, int pooled_dim)
{
    out->n_tokens = n_tokens, out->width = width, out->pooled_dim = pooled_dim;
    out->context = calloc((size_t)n_tokens * width, sizeof(float));
    out->pooled = calloc((size_t)pooled_dim, sizeof(float));
    return out->context && out->pooled ? 0 : -1;
}

/* Emphasis on each chunk of one prompt, then its context rows and its pooled
 * vector (the first chunk's) out of the batch's states. */
static void gather_prompt(const sd_text_encoders *te, const sd_prompt *p, float *h1, float *h2,
                          const float *pooled, sd_conditioning *out)
{
    const sdxl_te_hparams *hl = &te->clip_l.hp, *hg = &te->clip_g.hp;
    int per = SD_TOK_CONTEXT;
    for (size_t c = 0; c < p->n_chunks; c++) {
        const float *w = p->chunks[c].weights;
        if (all_ones(w, per)) continue;
        sd_emphasis_original(h1 + c * per * hl->width, per, hl->width, w);
        sd_emphasis_original(h2 + c * per * hg->width, per, hg->width, w);
    }
    interleave(out->context, h1, hl->width, h2, hg->width, p->n_chunks * per);
    memcpy(out->pooled, pooled, sizeof(float) * hg->projection_dim);
}

int sd_encode_prompts(sd_backend *be, const sd_text_encoders *te, const sd_prompt *p, int n, int clip_skip,
                      const bool *zero_if_empty, sd_conditioning *out, char *err, size_t errlen)
{
    const sdxl_te_hparams *hl = &te->clip_l.hp, *hg = &te->clip_g.hp;
    int skip = clip_skip > 0 ? clip_skip : SD_CLIP_SKIP_DEFAULT, per = SD_TOK_CONTEXT, chunks = 0;
    memset(out, 0, sizeof *out * (size_t)n);
    sd_backend_set_stage(be, SD_STAGE_TEXT);
    if (skip > sd_clip_skip_max(te)) {
        snprintf(err, errlen, "clip_skip must be between 1 and %d (got %d)", sd_clip_skip_max(te), clip_skip);
        return -1;
    }
    int first[n];   /* each encoded prompt's first chunk in the batch, -1 if zeroed */
    for (int i = 0; i < n; i++) {
        if (alloc_conditioning(&out[i], (int)p[i].n_chunks * per, hl->width + hg->width, hg->projection_dim))
            goto oom;
        first[i] = zero_if_empty[i] && p[i].is_empty ? -1 : chunks;
        if (first[i] >= 0) chunks += (int)p[i].n_chunks;
    }
    if (!chunks) return 0;

    int32_t *ids_l = malloc(sizeof(int32_t) * chunks * per), *ids_g = malloc(sizeof(int32_t) * chunks * per);
    float *pooled = malloc(sizeof(float) * chunks * hg->projection_dim);
    float *h1 = NULL, *h2 = NULL;
    size_t n_rows_l, n_rows_g;
    sd_clip_row *rows_l = embedding_rows(p, n, first, false, &n_rows_l);
    sd_clip_row *rows_g = embedding_rows(p, n, first, true, &n_rows_g);
    if (!ids_l || !ids_g || !pooled) goto fail;
    for (int i = 0; i < n; i++)
        for (size_t c = 0; first[i] >= 0 && c < p[i].n_chunks; c++) {
            memcpy(ids_l + (first[i] + c) * per, p[i].chunks[c].ids_l, sizeof(int32_t) * per);
            memcpy(ids_g + (first[i] + c) * per, p[i].chunks[c].ids_g, sizeof(int32_t) * per);
        }
    h1 = encode_chunks(be, &te->clip_l, ids_l, rows_l, n_rows_l, chunks, hl->layers + 1 - skip, NULL);
    h2 = h1 ? encode_chunks(be, &te->clip_g, ids_g, rows_g, n_rows_g, chunks, hg->layers + 1 - skip, pooled) : NULL;
    if (!h2) goto fail;
    for (int i = 0; i < n; i++)
        if (first[i] >= 0)
            gather_prompt(te, &p[i], h1 + (size_t)first[i] * per * hl->width, h2 + (size_t)first[i] * per * hg->width,
                          pooled + (size_t)first[i] * hg->projection_dim, &out[i]);
    free(ids_l), free(ids_g), free(pooled), free(h1), free(h2), free(rows_l), free(rows_g);
    return 0;
fail:
    snprintf(err, errlen, "text encoder failed: %s", sd_backend_error(be) ? sd_backend_error(be) : "out of memory");
    free(ids_l), free(ids_g), free(pooled), free(h1), free(h2), free(rows_l), free(rows_g);
    for (int i = 0; i < n; i++) sd_conditioning_free(&out[i]);
    return -1;
oom:
    snprintf(err, errlen, "out of memory for the text conditioning");
    for (int i = 0; i < n; i++) sd_conditioning_free(&out[i]);
    return -1;
}

void sd_conditioning_free(sd_conditioning *c)
{
    free(c->context);
    free(c->pooled);
    memset(c, 0, sizeof *c);
}
