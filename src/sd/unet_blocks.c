/* The UNet's repeated blocks, written against the ops layer as diffusers
 * runs them (fp32): ResnetBlock2D (models/resnet.py), Transformer2DModel with
 * linear projections (models/transformers/transformer_2d.py,
 * _operate_on_continuous_inputs) and BasicTransformerBlock
 * (models/attention.py, norm_type "layer_norm", AttnProcessor2_0, GEGLU).
 * Every intermediate is freed as soon as its last reader has run, so a block
 * holds at most a few activations of its own size (the GEGLU hidden state,
 * 8C wide, is the largest). */
#include "sd/unet_impl.h"

#define RESNET_GN_EPS 1e-5f      /* UNet2DConditionModel norm_eps */
#define TRANSFORMER_GN_EPS 1e-6f /* Transformer2DModel GroupNorm */
#define BLOCK_LN_EPS 1e-5f       /* BasicTransformerBlock LayerNorms */

/* h += time_emb_proj(SiLU(emb))[:, :, None, None]. */
static void add_time_embedding(sd_backend *be, const unet_resblock *r, sd_tensor *h, unet_dims d,
                               const sd_tensor *emb_act)
{
    sd_tensor *t = sd_new2(be, d.b, r->cout);
    sd_linear(be, t, emb_act, &r->emb_proj.w, &r->emb_proj.b);
    sd_tensor_reshape(be, t, 4, (const int64_t[]){d.b, r->cout, 1, 1});
    sd_add(be, h, h, t);
    sd_tensor_free(be, t);
}

/* out = shortcut(x) + conv2(SiLU(GN2(conv1(SiLU(GN1(x))) + time)))   (dropout off, output scale 1). */
sd_tensor *unet_resblock_forward(sd_backend *be, const unet_resblock *r, int groups, const sd_tensor *x,
                                 unet_dims d, const sd_tensor *emb_act)
{
    sd_tensor *a = sd_new4(be, d.b, r->cin, d.h, d.w);
    sd_group_norm(be, a, x, groups, RESNET_GN_EPS, &r->norm1.w, &r->norm1.b, SD_ACT_SILU);
    sd_tensor *h = sd_new4(be, d.b, r->cout, d.h, d.w);
    sd_conv2d(be, h, a, &r->conv1.w, &r->conv1.b, 1, 1);
    sd_tensor_free(be, a);
    add_time_embedding(be, r, h, d, emb_act);
    sd_group_norm(be, h, h, groups, RESNET_GN_EPS, &r->norm2.w, &r->norm2.b, SD_ACT_SILU);
    sd_tensor *out = sd_new4(be, d.b, r->cout, d.h, d.w);
    sd_conv2d(be, out, h, &r->conv2.w, &r->conv2.b, 1, 1);
    sd_tensor_free(be, h);
    if (r->skip.w.data) {
        sd_tensor *s = sd_new4(be, d.b, r->cout, d.h, d.w);
        sd_conv2d(be, s, x, &r->skip.w, &r->skip.b, 1, 0);
        sd_add(be, out, out, s);
        sd_tensor_free(be, s);
    } else {
        sd_add(be, out, out, x);
    }
    return out;
}

/* Token activations [b, n, c]. */
typedef struct {
    int64_t b, n, c;
} seq_dims;

/* h += to_out(SDPA(to_q(xn), to_k(kv), to_v(kv)))  with `heads` heads; kv is
 * xn itself (self-attention) or the text context of nkv tokens (cross). */
static void attention_residual(sd_backend *be, const unet_attention *a, int heads, sd_tensor *h,
                               const sd_tensor *xn, const sd_tensor *kv, int64_t nkv, seq_dims s)
{
    sd_tensor *q = sd_new3(be, s.b, s.n, s.c), *k = sd_new3(be, s.b, nkv, s.c), *v = sd_new3(be, s.b, nkv, s.c);
    sd_linear(be, q, xn, &a->to_q, NULL);
    sd_linear(be, k, kv, &a->to_k, NULL);
    sd_linear(be, v, kv, &a->to_v, NULL);
    sd_tensor *o = sd_new3(be, s.b, s.n, s.c);
    sd_attention(be, o, q, k, v, heads, 0);
    sd_tensor_free(be, k);
    sd_tensor_free(be, v);
    sd_linear(be, q, o, &a->to_out.w, &a->to_out.b); /* q is dead: it takes the projection */
    sd_tensor_free(be, o);
    sd_add(be, h, h, q);
    sd_tensor_free(be, q);
}

/* h += ff.net.2(GEGLU(ff.net.0.proj(xn))). */
static void feed_forward_residual(sd_backend *be, const unet_tblock *t, sd_tensor *h, const sd_tensor *xn,
                                  seq_dims s)
{
    int64_t inner = t->ff_out.w.shape[1];
    sd_tensor *p = sd_new3(be, s.b, s.n, 2 * inner);
    sd_linear(be, p, xn, &t->ff_proj.w, &t->ff_proj.b);
    sd_tensor *g = sd_new3(be, s.b, s.n, inner);
    sd_geglu(be, g, p);
    sd_tensor_free(be, p);
    sd_tensor *f = sd_new3(be, s.b, s.n, s.c);
    sd_linear(be, f, g, &t->ff_out.w, &t->ff_out.b);
    sd_tensor_free(be, g);
    sd_add(be, h, h, f);
    sd_tensor_free(be, f);
}

/* h += attn1(LN1(h));  h += attn2(LN2(h), context);  h += FF(LN3(h)). */
static void tblock_forward(sd_backend *be, const unet_tblock *t, int heads, sd_tensor *h, seq_dims s,
                           const sd_tensor *context)
{
    sd_tensor *xn = sd_new3(be, s.b, s.n, s.c);
    sd_layer_norm(be, xn, h, BLOCK_LN_EPS, &t->norm1.w, &t->norm1.b);
    attention_residual(be, &t->attn1, heads, h, xn, xn, s.n, s);
    sd_layer_norm(be, xn, h, BLOCK_LN_EPS, &t->norm2.w, &t->norm2.b);
    attention_residual(be, &t->attn2, heads, h, xn, context, context->shape[1], s);
    sd_layer_norm(be, xn, h, BLOCK_LN_EPS, &t->norm3.w, &t->norm3.b);
    feed_forward_residual(be, t, h, xn, s);
    sd_tensor_free(be, xn);
}

/* residual = x; h = proj_in(tokens(GN(x))); blocks; x = image(proj_out(h)) + residual. */
void unet_transformer_forward(sd_backend *be, const unet_transformer *t, int groups, sd_tensor *x, unet_dims d,
                              const sd_tensor *context)
{
    seq_dims s = {d.b, d.h * d.w, t->channels};
    sd_tensor *g = sd_new4(be, d.b, s.c, d.h, d.w);
    sd_group_norm(be, g, x, groups, TRANSFORMER_GN_EPS, &t->norm.w, &t->norm.b, SD_ACT_NONE);
    sd_tensor *tok = sd_new3(be, s.b, s.n, s.c);
    sd_to_tokens(be, tok, g);
    sd_tensor_free(be, g);
    sd_tensor *h = sd_new3(be, s.b, s.n, s.c);
    sd_linear(be, h, tok, &t->proj_in.w, &t->proj_in.b);
    for (int k = 0; k < t->depth; k++) tblock_forward(be, &t->blocks[k], t->heads, h, s, context);
    sd_linear(be, tok, h, &t->proj_out.w, &t->proj_out.b);
    sd_tensor_free(be, h);
    sd_tensor *img = sd_new4(be, d.b, s.c, d.h, d.w);
    sd_to_image(be, img, tok);
    sd_tensor_free(be, tok);
    sd_add(be, x, x, img);
    sd_tensor_free(be, img);
}
