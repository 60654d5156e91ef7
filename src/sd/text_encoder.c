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

/* Runs one encoder over every chunk at once and downloads its states. */
static float *encode_chunks(sd_backend *be, const sd_clip *m, const int32_t *ids, int chunks, int layer,
                            float *pooled)
{
    const sdxl_te_hparams *hp = &m->hp;
    size_t n = (size_t)chunks * hp->positions * hp->width;
    sd_tensor *hidden = sd_new3(be, chunks, hp->positions, hp->width);
    float *host = malloc(n * sizeof(float));
    int rc = host ? sd_clip_forward(be, m, ids, chunks, layer, SD_TOK_EOS, hidden, pooled) : -1;
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

int sd_encode_prompt(sd_backend *be, const sd_text_encoders *te, const sd_prompt *p, int clip_skip,
                     bool zero_if_empty, sd_conditioning *out, char *err, size_t errlen)
{
    const sdxl_te_hparams *hl = &te->clip_l.hp, *hg = &te->clip_g.hp;
    int n = clip_skip > 0 ? clip_skip : SD_CLIP_SKIP_DEFAULT;
    memset(out, 0, sizeof *out);
    if (n > sd_clip_skip_max(te)) {
        snprintf(err, errlen, "clip_skip must be between 1 and %d (got %d)", sd_clip_skip_max(te), clip_skip);
        return -1;
    }
    int chunks = (int)p->n_chunks, per = SD_TOK_CONTEXT;
    if (alloc_conditioning(out, chunks * per, hl->width + hg->width, hg->projection_dim)) goto oom;
    if (zero_if_empty && p->is_empty) return 0;

    int32_t *ids_l = malloc(sizeof(int32_t) * chunks * per), *ids_g = malloc(sizeof(int32_t) * chunks * per);
    float *pooled = malloc(sizeof(float) * chunks * hg->projection_dim);
    float *h1 = NULL, *h2 = NULL;
    if (!ids_l || !ids_g || !pooled) goto fail;
    for (int c = 0; c < chunks; c++) {
        memcpy(ids_l + c * per, p->chunks[c].ids_l, sizeof(int32_t) * per);
        memcpy(ids_g + c * per, p->chunks[c].ids_g, sizeof(int32_t) * per);
    }
    h1 = encode_chunks(be, &te->clip_l, ids_l, chunks, hl->layers + 1 - n, NULL);
    h2 = h1 ? encode_chunks(be, &te->clip_g, ids_g, chunks, hg->layers + 1 - n, pooled) : NULL;
    if (!h2) goto fail;
    for (int c = 0; c < chunks; c++) {
        const float *w = p->chunks[c].weights;
        if (all_ones(w, per)) continue;
        sd_emphasis_original(h1 + (size_t)c * per * hl->width, per, hl->width, w);
        sd_emphasis_original(h2 + (size_t)c * per * hg->width, per, hg->width, w);
    }
    interleave(out->context, h1, hl->width, h2, hg->width, (size_t)chunks * per);
    memcpy(out->pooled, pooled, sizeof(float) * hg->projection_dim);
    free(ids_l), free(ids_g), free(pooled), free(h1), free(h2);
    return 0;
fail:
    snprintf(err, errlen, "text encoder failed: %s", sd_backend_error(be) ? sd_backend_error(be) : "out of memory");
    free(ids_l), free(ids_g), free(pooled), free(h1), free(h2);
    sd_conditioning_free(out);
    return -1;
oom:
    snprintf(err, errlen, "out of memory for the text conditioning");
    sd_conditioning_free(out);
    return -1;
}

void sd_conditioning_free(sd_conditioning *c)
{
    free(c->context);
    free(c->pooled);
    memset(c, 0, sizeof *c);
}
