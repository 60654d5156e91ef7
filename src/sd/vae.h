/* The SDXL VAE (first_stage_model.* in LDM names, diffusers AutoencoderKL
 * numerics), always in fp32 activations so no fp16-fix VAE is needed:
 * decoder (post_quant_conv, mid block with attention, up blocks), encoder
 * (for img2img), tiled decoding for large images in bounded memory, and the
 * pixel post-processing of diffusers' VaeImageProcessor. Owner: the engine's
 * latent <-> image conversion. Spec: sdxl-numerics-diffusers.md §1.6-1.7, §2.5. */
#ifndef SDXL_SD_VAE_H
#define SDXL_SD_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "sd/backend.h"
#include "sd/checkpoint.h"
#include "sd/safetensors.h"

#define SD_VAE_SCALING_FACTOR 0.13025f /* SDXL; latents are divided by it before decoding */

typedef struct sd_vae sd_vae;

int sd_vae_bind(sd_vae **out, const st_file *f, const sdxl_vae_hparams *hp, char *err, size_t errlen);
/* The same with the tensors under `prefix` (a checkpoint: "first_stage_model.";
 * a standalone VAE file's view, sd/vae_file.h: ""). */
int sd_vae_bind_prefix(sd_vae **out, const st_file *f, const char *prefix, const sdxl_vae_hparams *hp, char *err,
                       size_t errlen);
void sd_vae_free(sd_vae *v);

/* image [B, 3, 8h, 8w] in [-1, 1]-ish = decoder(post_quant_conv(z)) where z
 * [B, 4, h, w] are the latents ALREADY divided by the scaling factor. */
int sd_vae_decode(sd_backend *be, const sd_vae *v, const sd_tensor *z, sd_tensor *image, char *err, size_t errlen);

/* Tiled decode that reproduces sd_vae_decode (not diffusers' tiled_decode,
 * whose per-tile GroupNorm shifts tones between tiles): the latent-resolution
 * part runs whole, the up path per tile with a halo of context and
 * image-wide GroupNorm statistics found over a few passes (vae_tiled.c).
 * Within ~5e-3 of the untiled decode (at most 1/255 after rgb8) on the small
 * model; costs about 4-5 untiled decodes. tile_latent is the tile edge in
 * latent pixels (0: 64); latents that fit in one tile are decoded untiled.
 * Memory: one tile's activations plus the latent-resolution ones and a host
 * copy of the image, not the image-size activations. */
int sd_vae_decode_tiled(sd_backend *be, const sd_vae *v, const sd_tensor *z, sd_tensor *image, int tile_latent,
                        char *err, size_t errlen);

/* The encoder's posterior for image [B, 3, H, W] in [-1, 1] (H, W multiples
 * of 8): mean and logvar [B, 4, H/8, W/8] (quant_conv applied, logvar not yet
 * clamped). img2img samples
 * z = mean + exp(0.5 * clamp(logvar, -30, 20)) * noise, then * scaling factor
 * (diffusers DiagonalGaussianDistribution.sample), noise from the job's RNG. */
int sd_vae_encode(sd_backend *be, const sd_vae *v, const sd_tensor *image, sd_tensor *mean, sd_tensor *logvar,
                  char *err, size_t errlen);

/* DiagonalGaussianDistribution.sample times the scaling factor, for n
 * values: out = (mean + exp(0.5 * clamp(logvar, -30, 20)) * z) * 0.13025. */
void sd_vae_posterior_sample(const float *mean, const float *logvar, const float *z, size_t n, float *out);

/* diffusers VaeImageProcessor.postprocess to 8-bit RGB: per value
 * clamp(x * 0.5 + 0.5, 0, 1) * 255 rounded half to even; CHW planes of one
 * image -> interleaved HWC bytes. NaN gives 0. Both conversions do nothing
 * for NULL buffers or sizes <= 0. */
void sd_vae_to_rgb8(const float *chw, int height, int width, uint8_t *rgb);
/* The inverse for img2img inputs: RGB8 HWC -> CHW in [-1, 1] (x / 127.5 - 1,
 * as VaeImageProcessor.preprocess: x / 255 * 2 - 1). */
void sd_vae_from_rgb8(const uint8_t *rgb, int height, int width, float *chw);

#endif
