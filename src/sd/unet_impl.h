/* Internals of the SDXL UNet shared by its files: the bound weights in SGM
 * block order (unet.c binds them and runs the top-level pass) and the block
 * forward passes (unet_blocks.c: ResBlock, SpatialTransformer). */
#ifndef SDXL_SD_UNET_IMPL_H
#define SDXL_SD_UNET_IMPL_H

#include "sd/unet.h"

/* A weight and its bias (conv, linear), or a norm's gamma and beta. */
typedef struct {
    sd_weight w, b;
} unet_wb;

/* ResBlock (SGM in_layers / emb_layers / out_layers / skip_connection;
 * diffusers ResnetBlock2D norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut). */
typedef struct {
    int cin, cout;
    unet_wb norm1, conv1, emb_proj, norm2, conv2;
    unet_wb skip; /* 1x1 conv when cin != cout; skip.w.data == NULL otherwise */
} unet_resblock;

/* diffusers Attention: to_q/to_k/to_v without bias, to_out.0 with bias. */
typedef struct {
    sd_weight to_q, to_k, to_v;
    unet_wb to_out;
} unet_attention;

/* BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward. */
typedef struct {
    unet_wb norm1, norm2, norm3;
    unet_attention attn1, attn2;
    unet_wb ff_proj, ff_out; /* ff.net.0.proj [2*inner, C], ff.net.2 [C, inner] */
} unet_tblock;

/* SpatialTransformer / Transformer2DModel with linear proj_in/proj_out. */
typedef struct {
    int channels, heads, depth; /* depth 0: absent */
    unet_wb norm, proj_in, proj_out;
    unet_tblock *blocks;        /* depth of them (inside sd_unet.tblocks) */
} unet_transformer;

/* One SGM TimestepEmbedSequential entry of input_blocks / output_blocks:
 * a downsampler alone (input_blocks.N.0.op), or a ResBlock, an optional
 * transformer and, closing an up level, an upsampler (nearest x2 + conv). */
typedef struct {
    int has_res;
    unet_resblock res;
    unet_transformer attn;
    int has_conv;      /* input block: the stride-2 downsampler; output block: the upsampler */
    unet_wb conv;
} unet_block;

struct sd_unet {
    sdxl_unet_hparams hp;
    unet_wb time_embed1, time_embed2;  /* time_embed.0/.2: linear_1, linear_2 */
    unet_wb label_emb1, label_emb2;    /* label_emb.0.0/.0.2: add_embedding */
    unet_wb conv_in;                   /* input_blocks.0.0 */
    int n_in, n_out;
    unet_block *in, *out;              /* input_blocks.1.., output_blocks.0.. */
    unet_resblock mid_res1, mid_res2;  /* middle_block.0, .2 */
    unet_transformer mid_attn;         /* middle_block.1 */
    unet_wb out_norm, out_conv;        /* out.0, out.2 */
    unet_tblock *tblocks;              /* every transformer block, one allocation */
};

/* Batch and spatial size of the activations a block sees. */
typedef struct {
    int64_t b, h, w;
} unet_dims;

/* The blocks' forward passes. Each allocates its output and leaves its input
 * alone unless said otherwise; emb_act is SiLU(time + added embedding)
 * [B, time_embed_dim], context [B, n_tokens, context_dim] (never NULL: the
 * caller's checked input). After a backend failure they return NULL / do
 * nothing (the sticky error stays set); they never read an activation's shape. */
sd_tensor *unet_resblock_forward(sd_backend *be, const unet_resblock *r, int groups, const sd_tensor *x,
                                 unet_dims d, const sd_tensor *emb_act);
/* x += SpatialTransformer(x), in place. */
void unet_transformer_forward(sd_backend *be, const unet_transformer *t, int groups, sd_tensor *x, unet_dims d,
                              const sd_tensor *context);

#endif
