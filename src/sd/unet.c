/* The SDXL UNet: weight binding in SGM block order, the conditioning
 * embeddings, the down/mid/up pass with its skip stack, and the FLOP count.
 * Numerics: diffusers UNet2DConditionModel.forward (models/unets/
 * unet_2d_condition.py) in fp32; names: SGM openaimodel (spec §2.4). The
 * blocks themselves are in unet_blocks.c. See unet.h. */
#include "sd/error.h"
#include "sd/unet_impl.h"
#include "sd/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_PREFIX "model.diffusion_model."
#define OUT_GN_EPS 1e-5f         /* conv_norm_out: norm_eps */
#define SINUSOID_MAX_PERIOD 10000.0
#define MAX_RES_BLOCKS 8 /* per level, as the loader allows (checkpoint.c) */
#define MAX_SKIPS (1 + SDXL_MAX_LEVELS * (MAX_RES_BLOCKS + 1))

/* The structure limits every walk below relies on. */
static int hparams_ok(const sdxl_unet_hparams *hp)
{
    return hp->num_levels >= 1 && hp->num_levels <= SDXL_MAX_LEVELS && hp->num_res_blocks >= 1 &&
           hp->num_res_blocks <= MAX_RES_BLOCKS && hp->head_width >= 1 && hp->norm_groups >= 1;
}

/* ---- binding ------------------------------------------------------------------------- */

static void bind_resblock(sd_binder *b, unet_resblock *r, const char *p, int cin, int cout)
{
    r->cin = cin;
    r->cout = cout;
    sd_bind_wb(b, &r->norm1.w, &r->norm1.b, "%sin_layers.0", p);
    sd_bind_wb(b, &r->conv1.w, &r->conv1.b, "%sin_layers.2", p);
    sd_bind_wb(b, &r->emb_proj.w, &r->emb_proj.b, "%semb_layers.1", p);
    sd_bind_wb(b, &r->norm2.w, &r->norm2.b, "%sout_layers.0", p);
    sd_bind_wb(b, &r->conv2.w, &r->conv2.b, "%sout_layers.3", p);
    if (cin != cout) sd_bind_wb(b, &r->skip.w, &r->skip.b, "%sskip_connection", p);
}

static void bind_attention(sd_binder *b, unet_attention *a, const char *p)
{
    sd_bind(b, &a->to_q, "%sto_q.weight", p);
    sd_bind(b, &a->to_k, "%sto_k.weight", p);
    sd_bind(b, &a->to_v, "%sto_v.weight", p);
    sd_bind_wb(b, &a->to_out.w, &a->to_out.b, "%sto_out.0", p);
}

/* A SpatialTransformer of `depth` blocks taken from *pool (advanced). */
static void bind_transformer(sd_binder *b, const sdxl_unet_hparams *hp, unet_transformer *t, unet_tblock **pool,
                             const char *p, int ch, int depth)
{
    char q[256];
    *t = (unet_transformer){.channels = ch, .heads = ch / hp->head_width, .depth = depth, .blocks = *pool};
    *pool += depth;
    if (!depth) return;
    sd_bind_wb(b, &t->norm.w, &t->norm.b, "%snorm", p);
    sd_bind_wb(b, &t->proj_in.w, &t->proj_in.b, "%sproj_in", p);
    sd_bind_wb(b, &t->proj_out.w, &t->proj_out.b, "%sproj_out", p);
    for (int k = 0; k < depth; k++) {
        unet_tblock *tb = &t->blocks[k];
        sd_bind_wb(b, &tb->norm1.w, &tb->norm1.b, "%stransformer_blocks.%d.norm1", p, k);
        sd_bind_wb(b, &tb->norm2.w, &tb->norm2.b, "%stransformer_blocks.%d.norm2", p, k);
        sd_bind_wb(b, &tb->norm3.w, &tb->norm3.b, "%stransformer_blocks.%d.norm3", p, k);
        snprintf(q, sizeof q, "%stransformer_blocks.%d.attn1.", p, k);
        bind_attention(b, &tb->attn1, q);
        snprintf(q, sizeof q, "%stransformer_blocks.%d.attn2.", p, k);
        bind_attention(b, &tb->attn2, q);
        sd_bind_wb(b, &tb->ff_proj.w, &tb->ff_proj.b, "%stransformer_blocks.%d.ff.net.0.proj", p, k);
        sd_bind_wb(b, &tb->ff_out.w, &tb->ff_out.b, "%stransformer_blocks.%d.ff.net.2", p, k);
    }
}

static int total_transformer_blocks(const sdxl_unet_hparams *hp)
{
    int n = hp->depth_mid;
    for (int l = 0; l < hp->num_levels; l++)
        n += hp->num_res_blocks * hp->depth_down[l] + (hp->num_res_blocks + 1) * hp->depth_up[l];
    return n;
}

/* input_blocks.1..: per level R x (ResBlock [+ transformer]), then a
 * downsampler except after the last level. Returns the channels of each
 * skip tensor in `skips` (conv_in's first), as the up path consumes them. */
static int bind_down(sd_binder *b, sd_unet *u, unet_tblock **pool, int *skips)
{
    const sdxl_unet_hparams *hp = &u->hp;
    char p[64];
    int ch = hp->model_channels, ns = 0, i = 0;
    skips[ns++] = ch;
    for (int l = 0; l < hp->num_levels; l++) {
        int cout = hp->model_channels * hp->channel_mult[l];
        for (int j = 0; j < hp->num_res_blocks; j++, i++) {
            unet_block *blk = &u->in[i];
            blk->has_res = 1;
            snprintf(p, sizeof p, "input_blocks.%d.0.", i + 1);
            bind_resblock(b, &blk->res, p, ch, cout);
            snprintf(p, sizeof p, "input_blocks.%d.1.", i + 1);
            bind_transformer(b, hp, &blk->attn, pool, p, cout, hp->depth_down[l]);
            skips[ns++] = ch = cout;
        }
        if (l < hp->num_levels - 1) {
            u->in[i].has_conv = 1;
            sd_bind_wb(b, &u->in[i].conv.w, &u->in[i].conv.b, "input_blocks.%d.0.op", i + 1);
            skips[ns++] = ch;
            i++;
        }
    }
    return ns;
}

/* output_blocks.0..: per level, deepest first, R+1 x (ResBlock over
 * [h, skip] [+ transformer]), the last one closed by an upsampler except on
 * the full-resolution level (at .1.conv, or .2.conv after a transformer). */
static void bind_up(sd_binder *b, sd_unet *u, unet_tblock **pool, const int *skips, int ns)
{
    const sdxl_unet_hparams *hp = &u->hp;
    char p[64];
    int ch = hp->model_channels * hp->channel_mult[hp->num_levels - 1], i = 0;
    for (int l = hp->num_levels - 1; l >= 0; l--) {
        int cout = hp->model_channels * hp->channel_mult[l];
        for (int j = 0; j <= hp->num_res_blocks; j++, i++) {
            unet_block *blk = &u->out[i];
            blk->has_res = 1;
            snprintf(p, sizeof p, "output_blocks.%d.0.", i);
            bind_resblock(b, &blk->res, p, ch + skips[--ns], cout);
            ch = cout;
            snprintf(p, sizeof p, "output_blocks.%d.1.", i);
            bind_transformer(b, hp, &blk->attn, pool, p, cout, hp->depth_up[l]);
            if (l > 0 && j == hp->num_res_blocks) {
                blk->has_conv = 1;
                sd_bind_wb(b, &blk->conv.w, &blk->conv.b, "output_blocks.%d.%d.conv", i, blk->attn.depth ? 2 : 1);
            }
        }
    }
}

static void bind_all(sd_binder *b, sd_unet *u)
{
    const sdxl_unet_hparams *hp = &u->hp;
    int skips[MAX_SKIPS];
    unet_tblock *pool = u->tblocks;
    int top = hp->model_channels * hp->channel_mult[hp->num_levels - 1];
    sd_bind_wb(b, &u->time_embed1.w, &u->time_embed1.b, "time_embed.0");
    sd_bind_wb(b, &u->time_embed2.w, &u->time_embed2.b, "time_embed.2");
    sd_bind_wb(b, &u->label_emb1.w, &u->label_emb1.b, "label_emb.0.0");
    sd_bind_wb(b, &u->label_emb2.w, &u->label_emb2.b, "label_emb.0.2");
    sd_bind_wb(b, &u->conv_in.w, &u->conv_in.b, "input_blocks.0.0");
    int ns = bind_down(b, u, &pool, skips);
    bind_resblock(b, &u->mid_res1, "middle_block.0.", top, top);
    bind_transformer(b, hp, &u->mid_attn, &pool, "middle_block.1.", top, hp->depth_mid);
    bind_resblock(b, &u->mid_res2, "middle_block.2.", top, top);
    bind_up(b, u, &pool, skips, ns);
    sd_bind_wb(b, &u->out_norm.w, &u->out_norm.b, "out.0");
    sd_bind_wb(b, &u->out_conv.w, &u->out_conv.b, "out.2");
}

int sd_unet_bind(sd_unet **out, const st_file *f, const sdxl_unet_hparams *hp, char *err, size_t errlen)
{
    *out = NULL;
    if (!hparams_ok(hp)) {
        snprintf(err, errlen, "UNet hyper-parameters are not valid (levels %d, resnets %d, head width %d, "
                 "groups %d)", hp->num_levels, hp->num_res_blocks, hp->head_width, hp->norm_groups);
        return -1;
    }
    sd_unet *u = calloc(1, sizeof *u);
    int blocks = hp->num_levels * (hp->num_res_blocks + 1);
    if (u) {
        u->hp = *hp;
        u->n_in = blocks - 1;
        u->n_out = blocks;
        u->in = calloc((size_t)blocks, sizeof *u->in);
        u->out = calloc((size_t)blocks, sizeof *u->out);
        u->tblocks = calloc((size_t)total_transformer_blocks(hp) + 1, sizeof *u->tblocks);
    }
    if (!u || !u->in || !u->out || !u->tblocks) {
        sd_unet_free(u);
        snprintf(err, errlen, "out of memory binding the UNet");
        return -1;
    }
    sd_binder b = {.f = f, .prefix = UNET_PREFIX, .what = "UNet", .err = err, .errlen = errlen};
    bind_all(&b, u);
    if (b.failed) {
        sd_unet_free(u);
        return -1;
    }
    *out = u;
    return 0;
}

void sd_unet_free(sd_unet *u)
{
    if (!u) return;
    free(u->in);
    free(u->out);
    free(u->tblocks);
    free(u);
}

sd_dtype sd_unet_weight_dtype(const sd_unet *u) { return u->conv_in.w.dtype; }

const sdxl_unet_hparams *sd_unet_hparams(const sd_unet *u) { return &u->hp; }

/* ---- conditioning embeddings ------------------------------------------------------------ */

/* diffusers get_timestep_embedding(t, dim, flip_sin_to_cos=True,
 * downscale_freq_shift=0) in torch's fp32 steps (models/embeddings.py):
 * e_k = (-ln(10000) * k) / half, f_k = exp(e_k), a_k = t * f_k,
 * out = [cos(a_0..a_{half-1}), sin(a_0..a_{half-1})]. exp/sin/cos are taken
 * in double and rounded once, within torch's own 1-ulp kernels. */
static void timestep_sinusoid(float t, int dim, float *out)
{
    int half = dim / 2;
    const float neg_log_period = (float)-log(SINUSOID_MAX_PERIOD);
    for (int k = 0; k < half; k++) {
        float e = neg_log_period * (float)k / (float)half;
        float a = t * (float)exp((double)e);
        out[k] = (float)cos((double)a);
        out[half + k] = (float)sin((double)a);
    }
}

void sd_unet_adm_vector(const sdxl_unet_hparams *hp, const float *pooled, const float values[6], float *out)
{
    memcpy(out, pooled, sizeof(float) * (size_t)hp->adm_pooled_dim);
    for (int i = 0; i < SDXL_ADM_VALUES; i++)
        timestep_sinusoid(values[i], hp->adm_embed_dim, out + hp->adm_pooled_dim + i * hp->adm_embed_dim);
}

/* linear_2(SiLU(linear_1(x))): diffusers TimestepEmbedding, [rows, ted]. */
static sd_tensor *embedding_mlp(sd_backend *be, const unet_wb *l1, const unet_wb *l2, const sd_tensor *x,
                                int64_t rows, int64_t ted)
{
    sd_tensor *a = sd_new2(be, rows, ted);
    sd_linear(be, a, x, &l1->w, &l1->b);
    sd_silu(be, a, a);
    sd_tensor *o = sd_new2(be, rows, ted);
    sd_linear(be, o, a, &l2->w, &l2->b);
    sd_tensor_free(be, a);
    return o;
}

/* SiLU(time_embedding(sinusoid(t)) + add_embedding(y)) [B, ted]: every
 * ResBlock's time_emb_proj reads this activation. The timestep is the same
 * for the whole batch, so its embedding is computed once and broadcast. */
static sd_tensor *conditioning_embedding(sd_backend *be, const sd_unet *u, const float *sinusoid,
                                         const sd_tensor *y, int64_t batch)
{
    const sdxl_unet_hparams *hp = &u->hp;
    sd_tensor *s = sd_new2(be, 1, hp->time_sinusoid_dim);
    sd_tensor_upload(be, s, sinusoid);
    sd_tensor *temb = embedding_mlp(be, &u->time_embed1, &u->time_embed2, s, 1, hp->time_embed_dim);
    sd_tensor_free(be, s);
    sd_tensor *emb = embedding_mlp(be, &u->label_emb1, &u->label_emb2, y, batch, hp->time_embed_dim);
    sd_add(be, emb, emb, temb);
    sd_tensor_free(be, temb);
    sd_silu(be, emb, emb);
    return emb;
}

/* ---- forward ----------------------------------------------------------------------------- */

static int has_shape(const sd_tensor *t, int ndim, const int64_t *shape)
{
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

static int check_forward_args(const sd_unet *u, const sd_tensor *x, float t, const sd_tensor *context,
                              const sd_tensor *y, const sd_tensor *eps, char *err, size_t errlen)
{
    const sdxl_unet_hparams *hp = &u->hp;
    if (!x || !context || !y || !eps) return sd_error(err, errlen, "sd_unet_forward: a tensor argument is missing");
    if (x->ndim != 4 || x->shape[1] != hp->in_channels)
        return sd_error(err, errlen, "sd_unet_forward: latents must be [B, %d, h, w]", hp->in_channels);
    int64_t b = x->shape[0], h = x->shape[2], w = x->shape[3];
    if (h < 1 || w < 1) return sd_error(err, errlen, "sd_unet_forward: the latents are empty");
    if (!isfinite(t)) return sd_error(err, errlen, "sd_unet_forward: the timestep is not finite");
    if (context->ndim != 3 || context->shape[0] != b || context->shape[2] != hp->context_dim)
        return sd_error(err, errlen, "sd_unet_forward: context must be [%lld, n_tokens, %d]", (long long)b,
                         hp->context_dim);
    if (!has_shape(y, 2, (const int64_t[]){b, hp->adm_in_channels}))
        return sd_error(err, errlen, "sd_unet_forward: y must be [%lld, %d]", (long long)b, hp->adm_in_channels);
    if (!has_shape(eps, 4, (const int64_t[]){b, hp->out_channels, h, w}))
        return sd_error(err, errlen, "sd_unet_forward: eps must be [%lld, %d, %lld, %lld]", (long long)b,
                         hp->out_channels, (long long)h, (long long)w);
    return 0;
}

/* A downsampler (conv3x3, stride 2, pad 1), or ResBlock [+ transformer].
 * x stays alive: it is on the skip stack. */
static sd_tensor *input_block(sd_backend *be, const sd_unet *u, const unet_block *blk, const sd_tensor *x,
                              unet_dims *d, const sd_tensor *emb_act, const sd_tensor *context)
{
    int groups = u->hp.norm_groups;
    if (!blk->has_res) {
        *d = (unet_dims){d->b, (d->h + 1) / 2, (d->w + 1) / 2}; /* conv k3 s2 p1: ceil(n / 2) */
        sd_tensor *y = sd_new4(be, d->b, blk->conv.w.shape[0], d->h, d->w);
        sd_conv2d(be, y, x, &blk->conv.w, &blk->conv.b, 2, 1);
        return y;
    }
    sd_tensor *h = unet_resblock_forward(be, &blk->res, groups, x, *d, emb_act);
    if (blk->attn.depth) unet_transformer_forward(be, &blk->attn, groups, h, *d, context);
    return h;
}

/* ResBlock, transformer, ResBlock; x (the last skip) stays alive. */
static sd_tensor *middle_block(sd_backend *be, const sd_unet *u, const sd_tensor *x, unet_dims d,
                               const sd_tensor *emb_act, const sd_tensor *context)
{
    int groups = u->hp.norm_groups;
    sd_tensor *h = unet_resblock_forward(be, &u->mid_res1, groups, x, d, emb_act);
    unet_transformer_forward(be, &u->mid_attn, groups, h, d, context);
    sd_tensor *out = unet_resblock_forward(be, &u->mid_res2, groups, h, d, emb_act);
    sd_tensor_free(be, h);
    return out;
}

/* nearest to the next skip's size, then conv3x3 (diffusers Upsample2D: x2,
 * or the skip's size via forward_upsample_size when a side was odd on the
 * way down); frees x. */
static sd_tensor *upsample(sd_backend *be, const unet_wb *conv, sd_tensor *x, unet_dims *d, int64_t ch,
                           const sd_tensor *next_skip)
{
    /* next_skip is NULL only after a backend failure, when no op runs anyway */
    *d = next_skip ? (unet_dims){d->b, next_skip->shape[2], next_skip->shape[3]} : (unet_dims){d->b, d->h * 2, d->w * 2};
    sd_tensor *up = sd_new4(be, d->b, ch, d->h, d->w);
    sd_upsample_nearest(be, up, x);
    sd_tensor_free(be, x);
    sd_tensor *y = sd_new4(be, d->b, ch, d->h, d->w);
    sd_conv2d(be, y, up, &conv->w, &conv->b, 1, 1);
    sd_tensor_free(be, up);
    return y;
}

/* ResBlock(cat([h, skip], channels)) [+ transformer] [+ upsampler to the
 * size of next_skip, the one the following block takes]; frees h and skip. */
static sd_tensor *output_block(sd_backend *be, const sd_unet *u, const unet_block *blk, sd_tensor *h,
                               sd_tensor *skip, const sd_tensor *next_skip, unet_dims *d, const sd_tensor *emb_act,
                               const sd_tensor *context)
{
    int groups = u->hp.norm_groups;
    sd_tensor *cat = sd_new4(be, d->b, blk->res.cin, d->h, d->w);
    sd_concat(be, cat, h, skip, 1);
    sd_tensor_free(be, h);
    sd_tensor_free(be, skip);
    h = unet_resblock_forward(be, &blk->res, groups, cat, *d, emb_act);
    sd_tensor_free(be, cat);
    if (blk->attn.depth) unet_transformer_forward(be, &blk->attn, groups, h, *d, context);
    if (blk->has_conv) h = upsample(be, &blk->conv, h, d, blk->res.cout, next_skip);
    return h;
}

/* conv_in; input blocks (each output pushed); middle; output blocks (each
 * pops one skip); GN + SiLU; conv_out. */
static void unet_pass(sd_backend *be, const sd_unet *u, const sd_tensor *x, const sd_tensor *emb_act,
                      const sd_tensor *context, sd_tensor *eps)
{
    const sdxl_unet_hparams *hp = &u->hp;
    sd_tensor *skips[MAX_SKIPS];
    int ns = 0;
    unet_dims d = {x->shape[0], x->shape[2], x->shape[3]};
    sd_tensor *h = sd_new4(be, d.b, hp->model_channels, d.h, d.w);
    sd_conv2d(be, h, x, &u->conv_in.w, &u->conv_in.b, 1, 1);
    skips[ns++] = h;
    for (int i = 0; i < u->n_in; i++) skips[ns++] = h = input_block(be, u, &u->in[i], h, &d, emb_act, context);
    h = middle_block(be, u, h, d, emb_act, context);
    for (int i = 0; i < u->n_out; i++) {
        sd_tensor *skip = skips[--ns];
        h = output_block(be, u, &u->out[i], h, skip, ns > 0 ? skips[ns - 1] : NULL, &d, emb_act, context);
    }
    sd_group_norm(be, h, h, hp->norm_groups, OUT_GN_EPS, &u->out_norm.w, &u->out_norm.b, SD_ACT_SILU);
    sd_conv2d(be, eps, h, &u->out_conv.w, &u->out_conv.b, 1, 1);
    sd_tensor_free(be, h);
}

int sd_unet_forward(sd_backend *be, const sd_unet *u, const sd_tensor *x, float t, const sd_tensor *context,
                    const sd_tensor *y, sd_tensor *eps, char *err, size_t errlen)
{
    if (check_forward_args(u, x, t, context, y, eps, err, errlen)) return -1;
    sd_backend_set_stage(be, SD_STAGE_UNET);
    float *sinusoid = malloc(sizeof(float) * (size_t)u->hp.time_sinusoid_dim);
    if (!sinusoid) return sd_error(err, errlen, "sd_unet_forward: out of memory");
    timestep_sinusoid(t, u->hp.time_sinusoid_dim, sinusoid);
    sd_tensor *emb_act = conditioning_embedding(be, u, sinusoid, y, x->shape[0]);
    free(sinusoid);
    unet_pass(be, u, x, emb_act, context, eps);
    sd_tensor_free(be, emb_act);
    const char *e = sd_backend_error(be);
    if (e) return sd_error(err, errlen, "%s", e);
    return 0;
}

/* ---- FLOPs ------------------------------------------------------------------------------- */

/* Multiply-adds of a ResBlock over px pixels (convs, 1x1 skip, time projection). */
static double resblock_macs(const sdxl_unet_hparams *hp, double cin, double cout, double px)
{
    return px * 9.0 * cout * (cin + cout) + (cin != cout ? px * cin * cout : 0.0) + hp->time_embed_dim * cout;
}

/* Multiply-adds of a SpatialTransformer over n tokens with n_text context tokens:
 * proj_in/out, and per block q/k/v/out of both attentions, the text k/v
 * projections, QK^T and AV of both attentions, and the GEGLU feed-forward. */
static double transformer_macs(const sdxl_unet_hparams *hp, double c, int depth, double n, double n_text)
{
    if (!depth) return 0.0;
    double inner = hp->ff_inner_mult * c;
    double self_attn = 4.0 * n * c * c + 2.0 * n * n * c;
    double cross_attn = 2.0 * n * c * c + 2.0 * n_text * hp->context_dim * c + 2.0 * n * n_text * c;
    double ff = n * c * 2.0 * inner + n * inner * c;
    return 2.0 * n * c * c + depth * (self_attn + cross_attn + ff);
}

double sd_unet_flops(const sdxl_unet_hparams *hp, int h, int w, int n_tokens)
{
    double mc = hp->model_channels, ted = hp->time_embed_dim, px = (double)h * w, macs = 0.0, ch = mc;
    double skips[MAX_SKIPS];
    int ns = 0, L = hp->num_levels, R = hp->num_res_blocks;
    if (!hparams_ok(hp)) return 0.0;
    macs += ted * (hp->time_sinusoid_dim + ted) + ted * (hp->adm_in_channels + ted); /* embedding MLPs */
    macs += px * 9.0 * hp->in_channels * mc;
    skips[ns++] = ch;
    for (int l = 0; l < L; l++) {
        double cout = mc * hp->channel_mult[l];
        for (int j = 0; j < R; j++) {
            macs += resblock_macs(hp, ch, cout, px) + transformer_macs(hp, cout, hp->depth_down[l], px, n_tokens);
            skips[ns++] = ch = cout;
        }
        if (l < L - 1) {
            px /= 4.0;
            macs += px * 9.0 * ch * ch;
            skips[ns++] = ch;
        }
    }
    macs += 2.0 * resblock_macs(hp, ch, ch, px) + transformer_macs(hp, ch, hp->depth_mid, px, n_tokens);
    for (int l = L - 1; l >= 0; l--) {
        double cout = mc * hp->channel_mult[l];
        for (int j = 0; j <= R; j++) {
            macs += resblock_macs(hp, ch + skips[--ns], cout, px) +
                    transformer_macs(hp, cout, hp->depth_up[l], px, n_tokens);
            ch = cout;
        }
        if (l > 0) {
            px *= 4.0;
            macs += px * 9.0 * ch * ch;
        }
    }
    macs += px * 9.0 * mc * hp->out_channels;
    return 2.0 * macs;
}
