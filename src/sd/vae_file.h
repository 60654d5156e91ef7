/* Standalone VAE files: a VAE of the user's choice in place of the
 * checkpoint's own (the models config's "vae"/"vaes", a job's "vae"). Owner:
 * recognising the layouts Civitai and the Hugging Face hub serve and checking
 * the file is an SDXL VAE this checkpoint can use; the engine binds and runs
 * it like the checkpoint's (sd/vae.h). docs/vae.md has the rules.
 *
 * Layouts (one safetensors file; any float dtype):
 *   LDM        encoder.down.N.block.M..., decoder.up.N..., quant_conv,
 *              post_quant_conv (stabilityai's sdxl_vae.safetensors, most
 *              Civitai VAEs), also under first_stage_model. (VAEs cut out of
 *              a checkpoint)
 *   diffusers  encoder.down_blocks.N.resnets.M..., decoder.up_blocks...,
 *              mid_block.attentions.0.to_q (or the older query/key/value/
 *              proj_attn) - AutoencoderKL.save_pretrained's
 *              diffusion_pytorch_model.safetensors (madebyollin's
 *              sdxl-vae-fp16-fix). Renamed to LDM names as diffusers'
 *              convert_ldm_vae_checkpoint maps them (single_file_utils.py),
 *              in the other direction.
 * Either way the file is opened as a view under bare LDM names
 * (st_open_renamed: no copy of the weights) and its hyper-parameters are read
 * and checked tensor by tensor (sdxl_read_vae_hparams). */
#ifndef SDXL_SD_VAE_FILE_H
#define SDXL_SD_VAE_FILE_H

#include <stddef.h>

#include "sd/checkpoint.h"
#include "sd/safetensors.h"

typedef struct {
    st_file *file;      /* the mapped file */
    st_file *view;      /* its VAE tensors under bare LDM names: bind with sd_vae_bind_prefix(.., "", ..) */
    sdxl_vae_hparams hp;
    const char *layout; /* "LDM", "LDM (first_stage_model.)" or "diffusers" */
} sd_vae_file;

/* Opens and recognises a standalone VAE file. A file that is something else
 * (a checkpoint, a LoRA, an embedding, a UNet), or a VAE with missing or
 * inconsistent tensors, is refused with one line naming the file and what it
 * is. 0, or -1 with err; out is zeroed on failure. */
int sd_vae_file_open(const char *path, sd_vae_file *out, char *err, size_t errlen);
/* The same for a file already opened, which out takes over (closed on failure too). */
int sd_vae_file_from(st_file *f, sd_vae_file *out, char *err, size_t errlen);
void sd_vae_file_close(sd_vae_file *v); /* a zeroed one is fine */

/* Whether the VAE fits a checkpoint: RGB in and out, as many latent
 * channels as the UNet takes and gives, and the checkpoint VAE's
 * downsampling factor. (The SD 1.x VAE has SDXL's shapes and passes; only its
 * weights differ, which no shape check can see.) 0, or -1 with err. */
int sd_vae_file_fits(const sd_vae_file *v, const sdxl_hparams *ckpt, char *err, size_t errlen);

#endif
