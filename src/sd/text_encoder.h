/* SDXL text conditioning as A1111 builds it: a prepared prompt (sd/prompt.h:
 * tags stripped, attention weights, 77-token chunks) goes through CLIP-L and
 * OpenCLIP-bigG; per chunk both encoders' hidden_states[-clip_skip] are
 * weighted with A1111's mean-restoring emphasis, each encoder on its own,
 * and concatenated on the feature axis (CLIP-L first); chunks concatenate on
 * the token axis. The pooled vector is bigG's projected EOS state of the
 * first chunk. Owner: the engine's text conditioning. Semantics in
 * docs/prompts.md; goldens in tests/data/small/goldens_text.*. */
#ifndef SDXL_SD_TEXT_ENCODER_H
#define SDXL_SD_TEXT_ENCODER_H

#include <stdbool.h>
#include <stddef.h>

#include "sd/backend.h"
#include "sd/checkpoint.h"
#include "sd/clip.h"
#include "sd/prompt.h"

#define SD_CLIP_SKIP_DEFAULT 2 /* SDXL's normal: the penultimate layer */

typedef struct {
    sd_clip clip_l; /* conditioner.embedders.0 */
    sd_clip clip_g; /* conditioner.embedders.1 */
} sd_text_encoders;

/* Host-side conditioning of one prompt. */
typedef struct {
    float *context;  /* [n_tokens, width], row-major */
    int n_tokens;    /* 77 per chunk */
    int width;       /* CLIP-L width + bigG width (2048 on SDXL) */
    float *pooled;   /* [pooled_dim] */
    int pooled_dim;  /* bigG projection width (1280 on SDXL) */
} sd_conditioning;

int sd_text_encoders_bind(sd_text_encoders *te, const st_file *f, const sdxl_hparams *hp, char *err,
                          size_t errlen);
void sd_text_encoders_release(sd_text_encoders *te);

/* The largest clip_skip both encoders allow (hidden_states[-n] must be a
 * layer's output, not the embeddings). */
int sd_clip_skip_max(const sd_text_encoders *te);

/* Encodes n prepared prompts (a job's prompt and negative) into out[0..n).
 * clip_skip k >= 1 takes hidden_states[-k] of both encoders (1: last layer,
 * 2: penultimate), 0 means SD_CLIP_SKIP_DEFAULT. A prompt whose
 * zero_if_empty[i] is set and that is empty (the negative-prompt rule of
 * A1111's force_zero_negative_prompt and diffusers' force_zeros_for_empty_prompt)
 * gets all-zero context and pooled and is not encoded. The chunks of all the
 * other prompts go through each encoder as one batch: every layer's weight
 * is widened once for the whole job, not once per prompt. On failure every
 * out[i] is freed. */
int sd_encode_prompts(sd_backend *be, const sd_text_encoders *te, const sd_prompt *p, int n, int clip_skip,
                      const bool *zero_if_empty, sd_conditioning *out, char *err, size_t errlen);
static inline int sd_encode_prompt(sd_backend *be, const sd_text_encoders *te, const sd_prompt *p, int clip_skip,
                                   bool zero_if_empty, sd_conditioning *out, char *err, size_t errlen)
{ return sd_encode_prompts(be, te, p, 1, clip_skip, &zero_if_empty, out, err, errlen); }
void sd_conditioning_free(sd_conditioning *c);

/* A1111's emphasis "Original" (modules/sd_emphasis.py EmphasisOriginal) on one
 * chunk of one encoder: z [n, w] *= weight per token, then rescaled so that
 * the mean over all of z is what it was before. */
void sd_emphasis_original(float *z, int n, int w, const float *weights);

#endif
