/* The CLIP text transformer of SDXL's two text encoders: CLIP ViT-L/14
 * (transformers names, quick_gelu) and OpenCLIP ViT-bigG/14 (open_clip names,
 * fused in_proj, GELU, text_projection). One forward pass serves both; only
 * the weight binding differs. Owner: the text encoders' numerics.
 *
 * Forward (transformers models/clip/modeling_clip.py, CLIPTextTransformer):
 *   x = token_embedding[ids] + position_embedding
 *   per layer (pre-LN):  x += out_proj(causal_attention(LN1(x)))
 *                        x += fc2(act(fc1(LN2(x))))
 *   hidden_states[i] = output of layer i (i = 0: the embeddings)
 *   pooled = final_LN(hidden_states[L])[first EOS] @ text_projection
 * LayerNorm eps 1e-5, attention scale 1/sqrt(head_width), no padding mask. */
#ifndef SDXL_SD_CLIP_H
#define SDXL_SD_CLIP_H

#include <stdint.h>

#include "sd/backend.h"
#include "sd/checkpoint.h"
#include "sd/safetensors.h"

typedef struct {
    sd_weight ln1_w, ln1_b;
    sd_weight q_w, q_b, k_w, k_b, v_w, v_b; /* bigG: row blocks of the fused in_proj */
    sd_weight out_w, out_b;
    sd_weight ln2_w, ln2_b;
    sd_weight fc1_w, fc1_b, fc2_w, fc2_b;
} sd_clip_layer;

typedef struct {
    sdxl_te_hparams hp;
    sd_weight token_embedding;    /* [vocab, width] */
    sd_weight position_embedding; /* [positions, width] */
    sd_clip_layer *layers;        /* hp.layers of them */
    sd_weight final_ln_w, final_ln_b;
    sd_weight projection;         /* [width, projection_dim], x @ P; absent (data NULL) for CLIP-L */
} sd_clip;

/* Binds the weights of conditioner.embedders.0 (CLIP-L) or .1 (bigG) of an
 * SDXL checkpoint whose hparams sdxl_read_hparams has validated. */
int sd_clip_bind_l(sd_clip *m, const st_file *f, const sdxl_te_hparams *hp, char *err, size_t errlen);
int sd_clip_bind_g(sd_clip *m, const st_file *f, const sdxl_te_hparams *hp, char *err, size_t errlen);
void sd_clip_release(sd_clip *m);

/* Runs `batch` sequences of hp.positions ids. Writes hidden_states[layer]
 * (1 <= layer <= hp.layers, never followed by the final LayerNorm) into
 * `hidden` [batch, positions, width]. When `pooled` is non-NULL the pass runs
 * to the full depth and also writes the projected pooled vector of each
 * sequence (host memory, batch x projection_dim floats), taken at the first
 * EOS id (`eos`). Returns 0, or -1 with the backend's sticky error set. */
int sd_clip_forward(sd_backend *be, const sd_clip *m, const int32_t *ids, int batch, int layer,
                    int32_t eos, sd_tensor *hidden, float *pooled);

/* A row of the token embeddings replaced by a vector (width floats): a
 * textual-inversion embedding (sd/embedding.h). row counts over the batch,
 * sequence b's position p being b * positions + p. */
typedef struct {
    int64_t row;
    const float *vec;
} sd_clip_row;

/* sd_clip_forward with rows[0..n_rows) put in place of their token
 * embeddings before the position embeddings are added (A1111's
 * EmbeddingsWithFixes; diffusers' added-token embeddings); later rows win. */
int sd_clip_forward_rows(sd_backend *be, const sd_clip *m, const int32_t *ids, const sd_clip_row *rows,
                         size_t n_rows, int batch, int layer, int32_t eos, sd_tensor *hidden, float *pooled);

#endif
