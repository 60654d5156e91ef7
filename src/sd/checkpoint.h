/* Checkpoint recognition: what a safetensors file holds (judged from its
 * tensor names), and for an SDXL base single-file checkpoint its complete
 * hyper-parameters, read from tensor shapes and checked tensor by tensor.
 * Owner: the engine's model loading. Key layout: docs/checkpoints.md.
 *
 * After sdxl_read_hparams succeeds every tensor the SDXL networks need is
 * present, is a float weight, and has exactly the shape the hparams imply,
 * so the UNet/VAE/text-encoder builders can look tensors up without
 * re-checking shapes. Prefixes:
 *   model.diffusion_model.                          UNet (SGM/LDM names)
 *   conditioner.embedders.0.transformer.text_model. CLIP-L (transformers names)
 *   conditioner.embedders.1.model.                  OpenCLIP-bigG (open_clip names)
 *   first_stage_model.                              VAE (LDM names)
 *
 * Values that shapes cannot give come from SDXL defaults, overridable by
 * these __metadata__ keys (decimal integer strings), which the reference
 * harness writes for the small test models:
 *   sdxl.unet.head_width (64)  sdxl.unet.norm_groups (32)
 *   sdxl.vae.norm_groups (32)  sdxl.te1.head_width (64)  sdxl.te2.head_width (64) */
#ifndef SDXL_SD_CHECKPOINT_H
#define SDXL_SD_CHECKPOINT_H

#include <stddef.h>

#include "sd/safetensors.h"

#define SDXL_UNET_PREFIX "model.diffusion_model."
#define SDXL_TEXT_ENCODERS_PREFIX "conditioner.embedders."

typedef enum {
    CKPT_EMPTY = 0,      /* no tensors at all */
    CKPT_UNKNOWN,        /* nothing recognisable */
    CKPT_SDXL,           /* SDXL base single file: UNet + CLIP-L + bigG + VAE (the one accepted) */
    CKPT_SDXL_PARTIAL,   /* SDXL UNet with the text encoders and/or the VAE missing */
    CKPT_SDXL_REFINER,   /* only bigG at conditioner.embedders.0, adm 2560 */
    CKPT_SD1,            /* cond_stage_model.transformer.* (CLIP-L, 768) */
    CKPT_SD2,            /* cond_stage_model.model.* (OpenCLIP-H, 1024) */
    CKPT_SD3,            /* joint_blocks.* (MMDiT) */
    CKPT_FLUX,           /* double_blocks.* */
    CKPT_UNET_BARE,      /* LDM UNet names without the model.diffusion_model. prefix */
    CKPT_DIFFUSERS,      /* diffusers-format component or folder (down_blocks.*, ...) */
    CKPT_LORA,           /* LoRA / LyCORIS adapter */
    CKPT_VAE,            /* a VAE alone */
    CKPT_TEXT_ENCODER,   /* text encoder(s) alone */
    CKPT_EMBEDDING,      /* textual-inversion embedding */
} ckpt_kind;

/* Classifies by tensor names alone (one pass, O(tensors)). `what` receives a
 * short phrase naming what was found, e.g. "an SD 1.5 checkpoint
 * (cond_stage_model.transformer.*, text width 768)". */
ckpt_kind ckpt_identify(const st_file *f, char *what, size_t whatlen);

#define SDXL_MAX_LEVELS 6
#define SDXL_ADM_VALUES 6 /* original size (h, w), crop (top, left), target size (h, w) */

typedef enum { SDXL_PRED_EPS = 0, SDXL_PRED_V, SDXL_PRED_EDM, SDXL_PRED_EDM_V } sdxl_prediction;
typedef enum { SDXL_ACT_QUICK_GELU = 0, SDXL_ACT_GELU } sdxl_activation;

typedef struct {
    int in_channels;                    /* input_blocks.0.0 in-dim: 4 (9 inpaint, 8 pix2pix) */
    int out_channels;                   /* out.2 out-dim: 4 */
    int model_channels;                 /* 320 */
    int num_levels;                     /* 3 */
    int channel_mult[SDXL_MAX_LEVELS];  /* 1, 2, 4: level l has model_channels*mult[l] */
    int num_res_blocks;                 /* per down level: 2; up levels have num_res_blocks + 1 */
    int depth_down[SDXL_MAX_LEVELS];    /* transformer blocks after each down resnet: 0, 2, 10 */
    int depth_up[SDXL_MAX_LEVELS];      /* same for the up path, indexed by level: 0, 2, 10 */
    int depth_mid;                      /* 10 */
    int context_dim;                    /* attn2.to_k in-dim: 2048 */
    int head_width;                     /* 64 (metadata); heads at level l = channels / head_width */
    int ff_inner_mult;                  /* GEGLU inner width / channels: 4 (ff.net.0.proj is 2x) */
    int norm_groups;                    /* 32 (metadata) */
    int time_sinusoid_dim;              /* time_embed.0 in-dim: 320 */
    int time_embed_dim;                 /* 1280 */
    int adm_in_channels;                /* label_emb.0.0 in-dim: 2816 */
    int adm_pooled_dim;                 /* pooled text part of adm: 1280 (= te2 projection) */
    int adm_embed_dim;                  /* sinusoid width per added value: (2816-1280)/6 = 256 */
} sdxl_unet_hparams;

typedef struct {
    int in_channels;                    /* encoder.conv_in in-dim: 3 */
    int out_channels;                   /* decoder.conv_out out-dim: 3 */
    int base_channels;                  /* 128 */
    int num_levels;                     /* 4 */
    int channel_mult[SDXL_MAX_LEVELS];  /* 1, 2, 4, 4 */
    int num_res_blocks;                 /* encoder: 2 per level; decoder has num_res_blocks + 1 */
    int z_channels;                     /* latent channels: 4 (encoder.conv_out gives 2*z) */
    int norm_groups;                    /* 32 (metadata) */
    int mid_attn_conv;                  /* 1: mid.attn_1 q/k/v/proj_out stored as [C,C,1,1]; 0: [C,C] */
} sdxl_vae_hparams;

typedef struct {
    int width;                          /* 768 (CLIP-L), 1280 (bigG) */
    int layers;                         /* 12, 32 */
    int heads;                          /* width / head_width: 12, 20 */
    int head_width;                     /* 64 (metadata) */
    int vocab;                          /* 49408 */
    int positions;                      /* 77 */
    int intermediate;                   /* 3072, 5120 */
    int projection_dim;                 /* bigG text_projection out-dim 1280; 0 for CLIP-L */
    sdxl_activation act;                /* CLIP-L quick_gelu, bigG gelu (fixed by SDXL) */
} sdxl_te_hparams;

typedef struct {
    sdxl_unet_hparams unet;
    sdxl_vae_hparams vae;
    sdxl_te_hparams te1;                /* CLIP-L */
    sdxl_te_hparams te2;                /* OpenCLIP-bigG */
    sdxl_prediction prediction;         /* from marker keys: v_pred, edm_vpred.sigma_max, edm_mean */
    int ztsnr;                          /* marker key "ztsnr" present */
} sdxl_hparams;

/* Recognises an SDXL base single file and reads + validates its hparams.
 * Any other kind fails with "<file>: this is <what>; ..." in err. */
int sdxl_read_hparams(const st_file *f, sdxl_hparams *hp, char *err, size_t errlen);

/* The VAE part of sdxl_read_hparams on its own: the VAE's tensors under
 * `prefix` + LDM names (encoder.down.N..., decoder.up.N..., quant_conv...),
 * read and checked tensor by tensor. A standalone VAE file (sd/vae_file.h)
 * is read with prefix "". 0, or -1 with err naming the first problem. */
int sdxl_read_vae_hparams(const st_file *f, const char *prefix, sdxl_vae_hparams *v, char *err, size_t errlen);

/* st_open + sdxl_read_hparams; also names a diffusers folder passed as the
 * path. On success the caller owns *out (st_close). */
int sdxl_checkpoint_open(const char *path, st_file **out, sdxl_hparams *hp, char *err, size_t errlen);

#endif
