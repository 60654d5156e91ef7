/* The SDXL VAE: weight binding (LDM first_stage_model.* names), the encoder
 * and decoder forward passes with diffusers AutoencoderKL numerics in fp32,
 * and VaeImageProcessor's pixel conversions. Tiled decoding is in
 * vae_tiled.c. References: diffusers models/autoencoders/vae.py (Encoder,
 * Decoder), models/resnet.py (ResnetBlock2D, Upsample2D, Downsample2D),
 * models/attention_processor.py (AttnProcessor2_0 on the VAE's mid-block
 * Attention), image_processor.py (postprocess, preprocess). */
#include "sd/vae_impl.h"
#include "sd/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VAE_PREFIX "first_stage_model."

int vae_backend_status(sd_backend *be, const char *what, char *err, size_t errlen)
{
    const char *e = sd_backend_error(be);
    if (!e) return 0;
    sd_error(err, errlen, "%s: %s", what, e);
    return -1;
}

/* ---- weights ----------------------------------------------------------------------- */

/* conv1 [cout, cin, 3, 3] gives the widths; nin_shortcut exists iff they differ
 * (diffusers ResnetBlock2D use_in_shortcut default). */
static void bind_resblock(sd_binder *b, vae_resblock *r, const char *p)
{
    sd_bind_wb(b, &r->norm1.w, &r->norm1.b, "%snorm1", p);
    sd_bind_wb(b, &r->conv1.w, &r->conv1.b, "%sconv1", p);
    sd_bind_wb(b, &r->norm2.w, &r->norm2.b, "%snorm2", p);
    sd_bind_wb(b, &r->conv2.w, &r->conv2.b, "%sconv2", p);
    if (b->failed) return;
    r->cout = (int)r->conv1.w.shape[0];
    r->cin = (int)r->conv1.w.shape[1];
    if (r->cin != r->cout) sd_bind_wb(b, &r->shortcut.w, &r->shortcut.b, "%snin_shortcut", p);
}

/* <side>.mid.{block_1, attn_1, block_2}; q/k/v/proj_out may be [C,C,1,1] or [C,C]:
 * sd_linear takes both. */
static void bind_mid(sd_binder *b, vae_mid *m, const char *side)
{
    char p[64];
    snprintf(p, sizeof p, "%s.mid.block_1.", side);
    bind_resblock(b, &m->res1, p);
    sd_bind_wb(b, &m->norm.w, &m->norm.b, "%s.mid.attn_1.norm", side);
    sd_bind_wb(b, &m->q.w, &m->q.b, "%s.mid.attn_1.q", side);
    sd_bind_wb(b, &m->k.w, &m->k.b, "%s.mid.attn_1.k", side);
    sd_bind_wb(b, &m->v.w, &m->v.b, "%s.mid.attn_1.v", side);
    sd_bind_wb(b, &m->proj.w, &m->proj.b, "%s.mid.attn_1.proj_out", side);
    snprintf(p, sizeof p, "%s.mid.block_2.", side);
    bind_resblock(b, &m->res2, p);
}

/* encoder.down.l: num_res_blocks resnets, then downsample.conv except on the last level. */
static void bind_encoder(sd_binder *b, sd_vae *v)
{
    const sdxl_vae_hparams *hp = &v->hp;
    sd_bind_wb(b, &v->enc_conv_in.w, &v->enc_conv_in.b, "encoder.conv_in");
    for (int l = 0; l < hp->num_levels; l++) {
        vae_level *lv = &v->enc[l];
        lv->n_blocks = hp->num_res_blocks;
        for (int j = 0; j < lv->n_blocks; j++) {
            char p[64];
            snprintf(p, sizeof p, "encoder.down.%d.block.%d.", l, j);
            bind_resblock(b, &lv->blocks[j], p);
        }
        if (l < hp->num_levels - 1) sd_bind_wb(b, &lv->resample.w, &lv->resample.b, "encoder.down.%d.downsample.conv", l);
    }
    bind_mid(b, &v->enc_mid, "encoder");
    sd_bind_wb(b, &v->enc_norm_out.w, &v->enc_norm_out.b, "encoder.norm_out");
    sd_bind_wb(b, &v->enc_conv_out.w, &v->enc_conv_out.b, "encoder.conv_out");
    sd_bind_wb(b, &v->quant_conv.w, &v->quant_conv.b, "quant_conv");
}

/* LDM stores the decoder levels by resolution: decoder.up.(L-1) is the deepest
 * and runs first (diffusers up_blocks[i] = decoder.up.(L-1-i)); each has
 * num_res_blocks + 1 resnets, then upsample.conv except decoder.up.0. */
static void bind_decoder(sd_binder *b, sd_vae *v)
{
    const sdxl_vae_hparams *hp = &v->hp;
    int L = hp->num_levels;
    sd_bind_wb(b, &v->post_quant_conv.w, &v->post_quant_conv.b, "post_quant_conv");
    sd_bind_wb(b, &v->dec_conv_in.w, &v->dec_conv_in.b, "decoder.conv_in");
    bind_mid(b, &v->dec_mid, "decoder");
    for (int i = 0; i < L; i++) {
        int l = L - 1 - i;
        vae_level *lv = &v->dec[i];
        lv->n_blocks = hp->num_res_blocks + 1;
        for (int j = 0; j < lv->n_blocks; j++) {
            char p[64];
            snprintf(p, sizeof p, "decoder.up.%d.block.%d.", l, j);
            bind_resblock(b, &lv->blocks[j], p);
        }
        if (l > 0) sd_bind_wb(b, &lv->resample.w, &lv->resample.b, "decoder.up.%d.upsample.conv", l);
    }
    sd_bind_wb(b, &v->dec_norm_out.w, &v->dec_norm_out.b, "decoder.norm_out");
    sd_bind_wb(b, &v->dec_conv_out.w, &v->dec_conv_out.b, "decoder.conv_out");
}

int sd_vae_bind(sd_vae **out, const st_file *f, const sdxl_vae_hparams *hp, char *err, size_t errlen)
{
    return sd_vae_bind_prefix(out, f, VAE_PREFIX, hp, err, errlen);
}

int sd_vae_bind_prefix(sd_vae **out, const st_file *f, const char *prefix, const sdxl_vae_hparams *hp, char *err,
                       size_t errlen)
{
    if (!out || !f || !hp) {
        sd_error(err, errlen, "sd_vae_bind: NULL argument");
        return -1;
    }
    *out = NULL;
    if (hp->num_levels < 1 || hp->num_levels > SDXL_MAX_LEVELS || hp->num_res_blocks < 1 ||
        hp->num_res_blocks + 1 > VAE_MAX_BLOCKS || hp->norm_groups < 1) {
        sd_error(err, errlen, "VAE with %d levels of %d resnets and %d norm groups is not supported",
                  hp->num_levels, hp->num_res_blocks, hp->norm_groups);
        return -1;
    }
    sd_vae *v = calloc(1, sizeof *v);
    if (!v) {
        sd_error(err, errlen, "out of memory binding the VAE");
        return -1;
    }
    v->hp = *hp;
    v->scale = 1 << (hp->num_levels - 1);
    v->top_channels = hp->base_channels * hp->channel_mult[hp->num_levels - 1];
    sd_binder b = {.f = f, .prefix = prefix, .what = "VAE", .err = err, .errlen = errlen};
    bind_encoder(&b, v);
    bind_decoder(&b, v);
    if (b.failed) {
        free(v);
        return -1;
    }
    *out = v;
    return 0;
}

void sd_vae_free(sd_vae *v) { free(v); }

/* ---- blocks (each consumes its input tensor; NULL in, NULL out) ----------------------- */

void vae_norm_plain(vae_ctx *c, sd_tensor *y, const sd_tensor *x, const vae_affine *n, sd_act act)
{
    sd_group_norm(c->be, y, x, c->v->hp.norm_groups, VAE_GN_EPS, &n->w, &n->b, act);
}

/* A size-preserving conv (3x3 pad 1 or 1x1 pad 0) into a new tensor; x is kept. */
static sd_tensor *conv_same(vae_ctx *c, const sd_tensor *x, const vae_affine *k)
{
    if (!x) return NULL;
    sd_tensor *y = sd_new4(c->be, x->shape[0], k->w.shape[0], x->shape[2], x->shape[3]);
    sd_conv2d(c->be, y, x, &k->w, &k->b, 1, (int)(k->w.shape[2] / 2));
    return y;
}

static sd_tensor *linear(vae_ctx *c, const sd_tensor *x, const vae_affine *k)
{
    if (!x) return NULL;
    sd_tensor *y = sd_new3(c->be, x->shape[0], x->shape[1], k->w.shape[0]);
    sd_linear(c->be, y, x, &k->w, &k->b);
    return y;
}

/* ResnetBlock2D (no temb, output_scale_factor 1):
 *   out = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x)))))).
 * With a 1x1 shortcut, x is normalised in place once the shortcut has read it. */
static sd_tensor *resblock(vae_ctx *c, const vae_resblock *r, sd_tensor *x)
{
    if (!x) return NULL;
    sd_backend *be = c->be;
    sd_tensor *skip = r->shortcut.w.data ? conv_same(c, x, &r->shortcut) : x;
    sd_tensor *h = skip == x ? sd_new4(be, x->shape[0], x->shape[1], x->shape[2], x->shape[3]) : x;
    c->norm(c, h, x, &r->norm1, SD_ACT_SILU);
    sd_tensor *h1 = conv_same(c, h, &r->conv1);
    sd_tensor_free(be, h);
    c->norm(c, h1, h1, &r->norm2, SD_ACT_SILU);
    sd_tensor *out = conv_same(c, h1, &r->conv2);
    sd_tensor_free(be, h1);
    sd_add(be, out, out, skip);
    sd_tensor_free(be, skip);
    return out;
}

/* Attention(C, heads 1, dim_head C, bias, residual_connection, rescale 1):
 *   x + proj(softmax(q k^T / sqrt(C)) v), q/k/v = linear(tokens(GN(x))). */
static sd_tensor *self_attention(vae_ctx *c, const vae_mid *m, sd_tensor *x)
{
    if (!x) return NULL;
    sd_backend *be = c->be;
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    sd_tensor *gn = sd_new4(be, B, C, H, W), *tokens = sd_new3(be, B, H * W, C);
    c->norm(c, gn, x, &m->norm, SD_ACT_NONE);
    sd_to_tokens(be, tokens, gn);
    sd_tensor_free(be, gn);
    sd_tensor *q = linear(c, tokens, &m->q), *k = linear(c, tokens, &m->k), *v = linear(c, tokens, &m->v);
    sd_tensor_free(be, tokens);
    sd_tensor *a = sd_new3(be, B, H * W, C);
    sd_attention(be, a, q, k, v, 1, 0);
    sd_tensor_free(be, q);
    sd_tensor_free(be, k);
    sd_tensor_free(be, v);
    sd_tensor *o = linear(c, a, &m->proj), *img = sd_new4(be, B, C, H, W);
    sd_tensor_free(be, a);
    sd_to_image(be, img, o);
    sd_tensor_free(be, o);
    sd_add(be, x, x, img);
    sd_tensor_free(be, img);
    return x;
}

/* UNetMidBlock2D: resnet, attention, resnet. */
static sd_tensor *mid_block(vae_ctx *c, const vae_mid *m, sd_tensor *x)
{
    x = resblock(c, &m->res1, x);
    x = self_attention(c, m, x);
    return resblock(c, &m->res2, x);
}

/* Upsample2D: nearest x2 (F.interpolate scale_factor 2), then conv3 pad 1. */
static sd_tensor *upsample(vae_ctx *c, const vae_affine *k, sd_tensor *x)
{
    if (!x) return NULL;
    sd_tensor *up = sd_new4(c->be, x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]);
    sd_upsample_nearest(c->be, up, x);
    sd_tensor_free(c->be, x);
    sd_tensor *y = conv_same(c, up, k);
    sd_tensor_free(c->be, up);
    return y;
}

/* Downsample2D(padding=0): F.pad(x, (0, 1, 0, 1)), then conv3 stride 2. */
static sd_tensor *downsample(vae_ctx *c, const vae_affine *k, sd_tensor *x)
{
    if (!x) return NULL;
    int64_t ho = (x->shape[2] - 2) / 2 + 1, wo = (x->shape[3] - 2) / 2 + 1;
    sd_tensor *y = sd_new4(c->be, x->shape[0], k->w.shape[0], ho, wo);
    sd_conv2d_pad(c->be, y, x, &k->w, &k->b, 2, 0, 1, 0, 1);
    sd_tensor_free(c->be, x);
    return y;
}

/* ---- decoder and encoder ---------------------------------------------------------------- */

sd_tensor *vae_decode_low(vae_ctx *c, const sd_tensor *z)
{
    sd_tensor *pq = conv_same(c, z, &c->v->post_quant_conv);
    sd_tensor *h = conv_same(c, pq, &c->v->dec_conv_in);
    sd_tensor_free(c->be, pq);
    return mid_block(c, &c->v->dec_mid, h);
}

void vae_decode_high(vae_ctx *c, sd_tensor *h, sd_tensor *image)
{
    const sd_vae *v = c->v;
    for (int i = 0; i < v->hp.num_levels; i++) {
        const vae_level *lv = &v->dec[i];
        for (int j = 0; j < lv->n_blocks; j++) h = resblock(c, &lv->blocks[j], h);
        if (lv->resample.w.data) h = upsample(c, &lv->resample, h);
    }
    if (h) c->norm(c, h, h, &v->dec_norm_out, SD_ACT_SILU);
    sd_conv2d(c->be, image, h, &v->dec_conv_out.w, &v->dec_conv_out.b, 1, 1);
    sd_tensor_free(c->be, h);
}

/* Encoder + quant_conv: image -> moments [B, 2z, H/scale, W/scale]. */
static void encode_moments(vae_ctx *c, const sd_tensor *image, sd_tensor *moments)
{
    const sd_vae *v = c->v;
    sd_tensor *h = conv_same(c, image, &v->enc_conv_in);
    for (int l = 0; l < v->hp.num_levels; l++) {
        const vae_level *lv = &v->enc[l];
        for (int j = 0; j < lv->n_blocks; j++) h = resblock(c, &lv->blocks[j], h);
        if (lv->resample.w.data) h = downsample(c, &lv->resample, h);
    }
    h = mid_block(c, &v->enc_mid, h);
    if (h) c->norm(c, h, h, &v->enc_norm_out, SD_ACT_SILU);
    sd_tensor *e = conv_same(c, h, &v->enc_conv_out);
    sd_tensor_free(c->be, h);
    sd_conv2d(c->be, moments, e, &v->quant_conv.w, &v->quant_conv.b, 1, 0);
    sd_tensor_free(c->be, e);
}

/* ---- public entry points ---------------------------------------------------------------- */

static int is_4d(const sd_tensor *t, int64_t b, int64_t c, int64_t h, int64_t w)
{
    return t->ndim == 4 && t->shape[0] == b && t->shape[1] == c && t->shape[2] == h && t->shape[3] == w;
}

static void shape_text(const sd_tensor *t, char *buf, size_t len)
{
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < t->ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

int vae_check_decode_args(const char *fn, const sd_backend *be, const sd_vae *v, const sd_tensor *z,
                          const sd_tensor *image, char *err, size_t errlen)
{
    if (!be || !v || !z || !image) {
        sd_error(err, errlen, "%s: NULL argument", fn);
        return -1;
    }
    char zs[96], is[96];
    shape_text(z, zs, sizeof zs);
    shape_text(image, is, sizeof is);
    if (z->ndim != 4 || z->shape[0] < 1 || z->shape[1] != v->hp.z_channels || z->shape[2] < 1 || z->shape[3] < 1) {
        sd_error(err, errlen, "%s: latents are %s, expected [batch, %d, h, w]", fn, zs, v->hp.z_channels);
        return -1;
    }
    int64_t s = v->scale;
    if (!is_4d(image, z->shape[0], v->hp.out_channels, z->shape[2] * s, z->shape[3] * s)) {
        sd_error(err, errlen, "%s: image tensor is %s, expected [%lld, %d, %lld, %lld] for latents %s", fn, is,
                  (long long)z->shape[0], v->hp.out_channels, (long long)(z->shape[2] * s),
                  (long long)(z->shape[3] * s), zs);
        return -1;
    }
    return 0;
}

int sd_vae_decode(sd_backend *be, const sd_vae *v, const sd_tensor *z, sd_tensor *image, char *err, size_t errlen)
{
    if (vae_check_decode_args("sd_vae_decode", be, v, z, image, err, errlen)) return -1;
    sd_backend_set_stage(be, SD_STAGE_VAE);
    vae_ctx c = {.be = be, .v = v, .norm = vae_norm_plain};
    vae_decode_high(&c, vae_decode_low(&c, z), image);
    return vae_backend_status(be, "VAE decode", err, errlen);
}

static int check_encode_args(const sd_backend *be, const sd_vae *v, const sd_tensor *image, const sd_tensor *mean,
                             const sd_tensor *logvar, char *err, size_t errlen)
{
    if (!be || !v || !image || !mean || !logvar) {
        sd_error(err, errlen, "sd_vae_encode: NULL argument");
        return -1;
    }
    char is[96];
    shape_text(image, is, sizeof is);
    int64_t s = v->scale;
    if (image->ndim != 4 || image->shape[0] < 1 || image->shape[1] != v->hp.in_channels || image->shape[2] < s ||
        image->shape[3] < s || image->shape[2] % s || image->shape[3] % s) {
        sd_error(err, errlen, "sd_vae_encode: image is %s, expected [batch, %d, H, W] with H and W multiples of %lld",
                  is, v->hp.in_channels, (long long)s);
        return -1;
    }
    int64_t b = image->shape[0], h = image->shape[2] / s, w = image->shape[3] / s;
    if (!is_4d(mean, b, v->hp.z_channels, h, w) || !is_4d(logvar, b, v->hp.z_channels, h, w)) {
        sd_error(err, errlen, "sd_vae_encode: mean and logvar must be [%lld, %d, %lld, %lld] for image %s",
                  (long long)b, v->hp.z_channels, (long long)h, (long long)w, is);
        return -1;
    }
    return 0;
}

/* DiagonalGaussianDistribution(parameters): mean, logvar = chunk(parameters, 2, dim=1). */
int sd_vae_encode(sd_backend *be, const sd_vae *v, const sd_tensor *image, sd_tensor *mean, sd_tensor *logvar,
                  char *err, size_t errlen)
{
    if (check_encode_args(be, v, image, mean, logvar, err, errlen)) return -1;
    sd_backend_set_stage(be, SD_STAGE_VAE);
    vae_ctx c = {.be = be, .v = v, .norm = vae_norm_plain};
    sd_tensor *moments = sd_new4(be, mean->shape[0], 2 * mean->shape[1], mean->shape[2], mean->shape[3]);
    encode_moments(&c, image, moments);
    sd_slice(be, mean, moments, 1, 0);
    sd_slice(be, logvar, moments, 1, mean->shape[1]);
    sd_tensor_free(be, moments);
    return vae_backend_status(be, "VAE encode", err, errlen);
}

/* ---- pixels ------------------------------------------------------------------------------ */

/* VaeImageProcessor.postprocess: denormalize (x * 0.5 + 0.5).clamp(0, 1) in fp32,
 * then numpy_to_pil: (images * 255).round().astype("uint8"), round half to even
 * (rintf in the default rounding mode). NaN, whose uint8 cast numpy leaves to
 * the platform, becomes 0 here. */
static uint8_t postprocess_value(float x)
{
    float v = x * 0.5f + 0.5f;
    if (isnan(v)) return 0;
    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    return (uint8_t)rintf(v * 255.0f);
}

void sd_vae_to_rgb8(const float *chw, int height, int width, uint8_t *rgb)
{
    if (!chw || !rgb || height <= 0 || width <= 0) return;
    size_t plane = (size_t)height * (size_t)width;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) rgb[3 * i + (size_t)c] = postprocess_value(chw[(size_t)c * plane + i]);
}

/* VaeImageProcessor.preprocess: pil_to_numpy (uint8 as float32 / 255), then
 * normalize 2 * x - 1, both in fp32. */
void sd_vae_from_rgb8(const uint8_t *rgb, int height, int width, float *chw)
{
    if (!chw || !rgb || height <= 0 || width <= 0) return;
    size_t plane = (size_t)height * (size_t)width;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float u = (float)rgb[3 * i + (size_t)c] / 255.0f;
            chw[(size_t)c * plane + i] = 2.0f * u - 1.0f;
        }
}

void sd_vae_posterior_sample(const float *mean, const float *logvar, const float *z, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        float std = expf(0.5f * fminf(fmaxf(logvar[i], -30.0f), 20.0f));
        out[i] = (mean[i] + std * z[i]) * SD_VAE_SCALING_FACTOR;
    }
}
