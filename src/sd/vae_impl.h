/* Internals of the VAE shared by vae.c (weights, blocks, whole-image decode
 * and encode) and vae_tiled.c (tiled decode): the bound weights and the
 * forward pieces, written once against a norm hook so that the tiled decoder
 * can swap in image-wide GroupNorm statistics. Not a public header. */
#ifndef SDXL_SD_VAE_IMPL_H
#define SDXL_SD_VAE_IMPL_H

#include "sd/error.h"
#include "sd/vae.h"

#define VAE_GN_EPS 1e-6f            /* every VAE GroupNorm (diffusers Encoder/Decoder, resnet_eps) */
#define VAE_MAX_BLOCKS 9            /* resnets per level: num_res_blocks + 1 in the decoder */

typedef struct { sd_weight w, b; } vae_affine;   /* a conv, linear or norm: weight and bias */

/* diffusers ResnetBlock2D without time embedding (LDM ResnetBlock). */
typedef struct {
    int cin, cout;
    vae_affine norm1, conv1, norm2, conv2;
    vae_affine shortcut;            /* nin_shortcut 1x1 when cin != cout; w.data NULL otherwise */
} vae_resblock;

/* UNetMidBlock2D: resnet, single-head self-attention over H*W tokens, resnet. */
typedef struct {
    vae_resblock res1, res2;
    vae_affine norm, q, k, v, proj;
} vae_mid;

/* One level in the order it runs: its resnets, then the resampling conv
 * (stride-2 downsample in the encoder, nearest x2 + conv in the decoder). */
typedef struct {
    int n_blocks;
    vae_resblock blocks[VAE_MAX_BLOCKS];
    vae_affine resample;            /* w.data NULL on the level that does not resample */
} vae_level;

struct sd_vae {
    sdxl_vae_hparams hp;
    int scale;                      /* image pixels per latent pixel: 2^(num_levels - 1) */
    int top_channels;               /* channels of the deepest level (mid blocks) */
    vae_affine enc_conv_in, enc_norm_out, enc_conv_out, quant_conv;
    vae_level enc[SDXL_MAX_LEVELS];
    vae_mid enc_mid;
    vae_affine post_quant_conv, dec_conv_in, dec_norm_out, dec_conv_out;
    vae_mid dec_mid;
    vae_level dec[SDXL_MAX_LEVELS]; /* dec[0] is LDM decoder.up.(L-1): the one applied first */
};

/* One forward pass: the backend, the model and how GroupNorm is computed. */
typedef struct vae_ctx {
    sd_backend *be;
    const sd_vae *v;
    /* y = act(GroupNorm(x) * gamma + beta); y may be x. */
    void (*norm)(struct vae_ctx *c, sd_tensor *y, const sd_tensor *x, const vae_affine *n, sd_act act);
    void *state;                    /* the norm hook's own data */
} vae_ctx;

/* torch F.group_norm with the model's groups and eps (the plain hook). */
void vae_norm_plain(vae_ctx *c, sd_tensor *y, const sd_tensor *x, const vae_affine *n, sd_act act);

/* The decoder in two halves; both tolerate NULL after a backend failure
 * (the sticky error is then set).
 *   low:  z -> post_quant_conv -> conv_in -> mid block   (latent resolution; returns a new tensor)
 *   high: up levels -> norm_out + SiLU -> conv_out into `image` (consumes h) */
sd_tensor *vae_decode_low(vae_ctx *c, const sd_tensor *z);
void vae_decode_high(vae_ctx *c, sd_tensor *h, sd_tensor *image);

/* Checks z [B, z_channels, h, w] and image [B, out_channels, h*scale, w*scale];
 * 0, or -1 with a message naming `fn`. */
int vae_check_decode_args(const char *fn, const sd_backend *be, const sd_vae *v, const sd_tensor *z,
                          const sd_tensor *image, char *err, size_t errlen);
/* 0 if the backend has no error, else -1 with "<what>: <backend error>" in err. */
int vae_backend_status(sd_backend *be, const char *what, char *err, size_t errlen);

#endif
