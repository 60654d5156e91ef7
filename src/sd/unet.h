/* The SDXL UNet (SGM "openaimodel" layout in the single file, diffusers
 * UNet2DConditionModel numerics): timestep + text_time added conditioning,
 * ResBlocks, spatial transformers with GEGLU, down/mid/up paths with skips.
 * Hyper-parameters come from sdxl_unet_hparams (read from tensor shapes), so
 * the small test model runs exactly the code path of real checkpoints.
 * Owner: the engine's denoiser. Spec: sdxl-numerics-diffusers.md §1.4, §2. */
#ifndef SDXL_SD_UNET_H
#define SDXL_SD_UNET_H

#include <stddef.h>

#include "sd/backend.h"
#include "sd/checkpoint.h"
#include "sd/safetensors.h"

typedef struct sd_unet sd_unet;

/* Binds the model.diffusion_model.* weights of a validated SDXL checkpoint.
 * The weights stay in the mapping (st_file must outlive the sd_unet). */
int sd_unet_bind(sd_unet **out, const st_file *f, const sdxl_unet_hparams *hp, char *err, size_t errlen);
void sd_unet_free(sd_unet *u);
const sdxl_unet_hparams *sd_unet_hparams(const sd_unet *u);
/* How the UNet's weights are stored (its conv_in's dtype). */
sd_dtype sd_unet_weight_dtype(const sd_unet *u);

/* The added-conditioning vector y of one image (diffusers get_aug_embed /
 * SGM ConcatTimestepEmbedderND): pooled text embedding (adm_pooled_dim)
 * followed by the adm_embed_dim-wide sinusoid (flip_sin_to_cos, shift 0) of
 * each of the six values orig_h, orig_w, crop_top, crop_left, target_h,
 * target_w. out has adm_in_channels floats. */
void sd_unet_adm_vector(const sdxl_unet_hparams *hp, const float *pooled, const float values[6], float *out);

/* eps = UNet(x, t, context, y) for a batch:
 *   x       [B, in_channels, h, w]   (already scaled by the sampler)
 *   t       one timestep for the whole batch (fractional allowed)
 *   context [B, n_tokens, context_dim]
 *   y       [B, adm_in_channels]
 *   eps     [B, out_channels, h, w]
 * h and w must be multiples of 2^(num_levels-1). Attention runs in bounded
 * memory (the backend's tiled sd_attention). 0, or -1 with the backend's
 * sticky error set (or err filled for argument errors). */
int sd_unet_forward(sd_backend *be, const sd_unet *u, const sd_tensor *x, float t, const sd_tensor *context,
                    const sd_tensor *y, sd_tensor *eps, char *err, size_t errlen);

/* FLOPs (2 x multiply-adds) of one forward pass for a batch of 1 at latent
 * size h x w with n_tokens of context: for benchmarks' GFLOP/s figures.
 * Counts every conv and linear (the text K/V projections and the embedding
 * MLPs included) and the attention QK^T and AV matmuls; norms, activations,
 * softmax and adds are not counted (spec §7.3's convention: SDXL base gives
 * 6.76 TFLOP at latent 128^2 and 1.59 at 64^2). 0 for invalid hparams. */
double sd_unet_flops(const sdxl_unet_hparams *hp, int h, int w, int n_tokens);

#endif
