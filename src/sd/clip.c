/* CLIP text transformer forward pass and its weight binding for SDXL's CLIP-L
 * (transformers layout) and OpenCLIP bigG (open_clip layout). See clip.h. */
#include "sd/clip.h"

#include "sd/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLIP_LN_EPS 1e-5f

/* Rows [row0, row0 + rows) of a 2-D weight (or elements of a 1-D one) as a
 * weight of its own: the q, k, v blocks of open_clip's fused in_proj. */
static sd_weight row_block(const sd_weight *w, int64_t row0, int64_t rows)
{
    sd_weight r = *w;
    int64_t row_elems = w->ndim == 2 ? w->shape[1] : 1;
    r.shape[0] = rows;
    r.data = (const char *)w->data + (size_t)(row0 * row_elems) * sd_dtype_size(w->dtype);
    return r;
}

static int bind_begin(sd_clip *m, const sdxl_te_hparams *hp, sd_binder *b, const st_file *f, const char *prefix,
                      char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    *b = (sd_binder){.f = f, .prefix = prefix, .what = "text encoder", .err = err, .errlen = errlen};
    m->hp = *hp;
    m->layers = calloc((size_t)hp->layers, sizeof *m->layers);
    if (!m->layers) snprintf(err, errlen, "out of memory binding the text encoder");
    return m->layers ? 0 : -1;
}

static int bind_end(sd_clip *m, sd_binder *b)
{
    if (!b->failed) return 0;
    sd_clip_release(m);
    return -1;
}

/* conditioner.embedders.0.transformer.text_model.* (transformers CLIPTextModel). */
int sd_clip_bind_l(sd_clip *m, const st_file *f, const sdxl_te_hparams *hp, char *err, size_t errlen)
{
    sd_binder b;
    if (bind_begin(m, hp, &b, f, "conditioner.embedders.0.transformer.text_model.", err, errlen)) return -1;
    sd_bind(&b, &m->token_embedding, "embeddings.token_embedding.weight");
    sd_bind(&b, &m->position_embedding, "embeddings.position_embedding.weight");
    for (int i = 0; i < hp->layers; i++) {
        sd_clip_layer *L = &m->layers[i];
        const char *p = "encoder.layers.";
        sd_bind_wb(&b, &L->ln1_w, &L->ln1_b, "%s%d.layer_norm1", p, i);
        sd_bind_wb(&b, &L->q_w, &L->q_b, "%s%d.self_attn.q_proj", p, i);
        sd_bind_wb(&b, &L->k_w, &L->k_b, "%s%d.self_attn.k_proj", p, i);
        sd_bind_wb(&b, &L->v_w, &L->v_b, "%s%d.self_attn.v_proj", p, i);
        sd_bind_wb(&b, &L->out_w, &L->out_b, "%s%d.self_attn.out_proj", p, i);
        sd_bind_wb(&b, &L->ln2_w, &L->ln2_b, "%s%d.layer_norm2", p, i);
        sd_bind_wb(&b, &L->fc1_w, &L->fc1_b, "%s%d.mlp.fc1", p, i);
        sd_bind_wb(&b, &L->fc2_w, &L->fc2_b, "%s%d.mlp.fc2", p, i);
    }
    sd_bind_wb(&b, &m->final_ln_w, &m->final_ln_b, "final_layer_norm");
    return bind_end(m, &b);
}

/* conditioner.embedders.1.model.* (open_clip TextTransformer): q, k, v are the
 * row blocks of attn.in_proj_weight/bias, in that order (torch
 * nn.MultiheadAttention); text_projection is applied as x @ P. */
int sd_clip_bind_g(sd_clip *m, const st_file *f, const sdxl_te_hparams *hp, char *err, size_t errlen)
{
    sd_binder b;
    if (bind_begin(m, hp, &b, f, "conditioner.embedders.1.model.", err, errlen)) return -1;
    int64_t w = hp->width;
    sd_bind(&b, &m->token_embedding, "token_embedding.weight");
    sd_bind(&b, &m->position_embedding, "positional_embedding");
    for (int i = 0; i < hp->layers; i++) {
        sd_clip_layer *L = &m->layers[i];
        sd_weight in_w, in_b;
        const char *p = "transformer.resblocks.";
        sd_bind_wb(&b, &L->ln1_w, &L->ln1_b, "%s%d.ln_1", p, i);
        sd_bind(&b, &in_w, "%s%d.attn.in_proj_weight", p, i);
        sd_bind(&b, &in_b, "%s%d.attn.in_proj_bias", p, i);
        sd_bind_wb(&b, &L->out_w, &L->out_b, "%s%d.attn.out_proj", p, i);
        sd_bind_wb(&b, &L->ln2_w, &L->ln2_b, "%s%d.ln_2", p, i);
        sd_bind_wb(&b, &L->fc1_w, &L->fc1_b, "%s%d.mlp.c_fc", p, i);
        sd_bind_wb(&b, &L->fc2_w, &L->fc2_b, "%s%d.mlp.c_proj", p, i);
        if (b.failed) break;
        L->q_w = row_block(&in_w, 0, w), L->k_w = row_block(&in_w, w, w), L->v_w = row_block(&in_w, 2 * w, w);
        L->q_b = row_block(&in_b, 0, w), L->k_b = row_block(&in_b, w, w), L->v_b = row_block(&in_b, 2 * w, w);
    }
    sd_bind_wb(&b, &m->final_ln_w, &m->final_ln_b, "ln_final");
    sd_bind(&b, &m->projection, "text_projection");
    return bind_end(m, &b);
}

void sd_clip_release(sd_clip *m)
{
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* Per-layer activations, allocated once per forward pass. */
typedef struct {
    sd_tensor *h, *q, *k, *v, *a, *f;
} clip_scratch;

/* x += out_proj(attn(LN1(x)));  x += fc2(act(fc1(LN2(x))))  (pre-LN block). */
static void layer_forward(sd_backend *be, const sd_clip *m, const sd_clip_layer *L, sd_tensor *x,
                          const clip_scratch *s)
{
    sd_act act = m->hp.act == SDXL_ACT_GELU ? SD_ACT_GELU : SD_ACT_QUICK_GELU;
    sd_layer_norm(be, s->h, x, CLIP_LN_EPS, &L->ln1_w, &L->ln1_b);
    sd_linear(be, s->q, s->h, &L->q_w, &L->q_b);
    sd_linear(be, s->k, s->h, &L->k_w, &L->k_b);
    sd_linear(be, s->v, s->h, &L->v_w, &L->v_b);
    sd_attention(be, s->a, s->q, s->k, s->v, m->hp.heads, 1);
    sd_linear(be, s->h, s->a, &L->out_w, &L->out_b);
    sd_add(be, x, x, s->h);
    sd_layer_norm(be, s->h, x, CLIP_LN_EPS, &L->ln2_w, &L->ln2_b);
    sd_linear(be, s->f, s->h, &L->fc1_w, &L->fc1_b);
    sd_act_apply(be, s->f, s->f, act);
    sd_linear(be, s->h, s->f, &L->fc2_w, &L->fc2_b);
    sd_add(be, x, x, s->h);
}

/* Index of the first largest id: the first EOS, since EOS is the largest id
 * (transformers' and open_clip's argmax rule). */
static int eos_index(const int32_t *ids, int n, int32_t eos)
{
    int best = 0;
    for (int i = 0; i < n; i++) {
        if (ids[i] == eos) return i;
        if (ids[i] > ids[best]) best = i;
    }
    return best;
}

/* pooled[b] = final_LN(x[b, eos_b]) @ P. The EOS rows are gathered on the
 * host (LayerNorm is per row, so normalising just them is the same). */
static int project_pooled(sd_backend *be, const sd_clip *m, const sd_tensor *x, const int32_t *ids, int batch,
                          int32_t eos, float *pooled)
{
    const sdxl_te_hparams *hp = &m->hp;
    int64_t n = hp->positions, w = hp->width;
    float *rows = malloc(sizeof(float) * (size_t)(batch * n * w));
    int rc = rows ? sd_tensor_download(be, x, rows) : -1;
    for (int b = 0; rc == 0 && b < batch; b++)
        memmove(rows + (size_t)b * w, rows + ((size_t)b * n + eos_index(ids + b * n, (int)n, eos)) * w,
                sizeof(float) * (size_t)w);
    sd_tensor *sel = sd_new2(be, batch, w), *ln = sd_new2(be, batch, w), *out = sd_new2(be, batch, hp->projection_dim);
    if (rc == 0) rc = sd_tensor_upload(be, sel, rows);
    sd_layer_norm(be, ln, sel, CLIP_LN_EPS, &m->final_ln_w, &m->final_ln_b);
    sd_matmul(be, out, ln, &m->projection, NULL);
    if (rc == 0) rc = sd_tensor_download(be, out, pooled);
    free(rows);
    sd_tensor_free(be, sel);
    sd_tensor_free(be, ln);
    sd_tensor_free(be, out);
    return rc;
}

/* The replaced rows of x [rows_total, w], on the host (as project_pooled
 * gathers its rows): a job has a few chunks of 77 rows. */
static int replace_rows(sd_backend *be, sd_tensor *x, int64_t rows_total, int64_t w, const sd_clip_row *rows,
                        size_t n_rows)
{
    float *host = malloc(sizeof(float) * (size_t)(rows_total * w));
    int rc = host ? sd_tensor_download(be, x, host) : -1;
    for (size_t i = 0; rc == 0 && i < n_rows; i++)
        if (rows[i].row >= 0 && rows[i].row < rows_total)
            memcpy(host + rows[i].row * w, rows[i].vec, sizeof(float) * (size_t)w);
    if (rc == 0) rc = sd_tensor_upload(be, x, host);
    free(host);
    return rc;
}

int sd_clip_forward(sd_backend *be, const sd_clip *m, const int32_t *ids, int batch, int layer, int32_t eos,
                    sd_tensor *hidden, float *pooled)
{
    return sd_clip_forward_rows(be, m, ids, NULL, 0, batch, layer, eos, hidden, pooled);
}

int sd_clip_forward_rows(sd_backend *be, const sd_clip *m, const int32_t *ids, const sd_clip_row *rows,
                         size_t n_rows, int batch, int layer, int32_t eos, sd_tensor *hidden, float *pooled)
{
    const sdxl_te_hparams *hp = &m->hp;
    if (layer < 1 || layer > hp->layers || (pooled && !m->projection.data))
        return -1;
    sd_backend_set_stage(be, SD_STAGE_TEXT);
    int64_t n = hp->positions, w = hp->width;
    int last = pooled ? hp->layers : layer;

    sd_tensor *x = sd_new3(be, batch, n, w), *pos = sd_new2(be, n, w);
    sd_embedding(be, x, &m->token_embedding, ids, (int64_t)batch * n);
    if (n_rows && !sd_backend_error(be) && replace_rows(be, x, batch * n, w, rows, n_rows)) {
        sd_tensor_free(be, x);
        sd_tensor_free(be, pos);
        return -1;
    }
    sd_load_weight(be, pos, &m->position_embedding);
    sd_add(be, x, x, pos);
    sd_tensor_free(be, pos);

    clip_scratch s = {
        .h = sd_new3(be, batch, n, w), .q = sd_new3(be, batch, n, w), .k = sd_new3(be, batch, n, w),
        .v = sd_new3(be, batch, n, w), .a = sd_new3(be, batch, n, w), .f = sd_new3(be, batch, n, hp->intermediate),
    };
    for (int l = 0; l < last; l++) {
        layer_forward(be, m, &m->layers[l], x, &s);
        if (l + 1 == layer) sd_copy(be, hidden, x);
    }
    sd_tensor *all[] = {s.h, s.q, s.k, s.v, s.a, s.f};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) sd_tensor_free(be, all[i]);

    int rc = sd_backend_error(be) ? -1 : 0;
    if (rc == 0 && pooled) rc = project_pooled(be, m, x, ids, batch, eos, pooled);
    sd_tensor_free(be, x);
    return rc == 0 && !sd_backend_error(be) ? 0 : -1;
}
