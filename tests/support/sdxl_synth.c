/* Synthetic SDXL-layout checkpoints (see sdxl_synth.h). Names follow the
 * SGM checkpoint layout as diffusers' single_file_utils.py maps it
 * (specs/sdxl-numerics-diffusers.md §2.4-2.6), written out block by block
 * the way the original UNetModel/Encoder/Decoder constructors create them. */
#include "sdxl_synth.h"

#include <stdarg.h>
#include <stdio.h>

static stw *W;
static char prefix[160];

/* Adds a zero F16 tensor prefix + formatted name with the given dims. */
static void add(int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3, const char *fmt, ...)
{
    char name[320];
    int n = snprintf(name, sizeof name, "%s", prefix);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name + n, sizeof name - (size_t)n, fmt, ap);
    va_end(ap);
    int64_t shape[4] = {d0, d1, d2, d3};
    stw_add(W, name, "F16", ndim, shape, NULL);
}

#define VEC(n, ...) add(1, n, 0, 0, 0, __VA_ARGS__)
#define MAT(r, c, ...) add(2, r, c, 0, 0, __VA_ARGS__)
#define CONV(o, i, k, ...) add(4, o, i, k, k, __VA_ARGS__)

static void norm(int64_t ch, const char *p) { VEC(ch, "%sweight", p); VEC(ch, "%sbias", p); }
static void dense(int64_t o, int64_t i, const char *p) { MAT(o, i, "%sweight", p); VEC(o, "%sbias", p); }
static void conv(int64_t o, int64_t i, int k, const char *p) { CONV(o, i, k, "%sweight", p); VEC(o, "%sbias", p); }

static char *join(char *buf, const char *a, const char *b)
{
    if (snprintf(buf, 256, "%s%s", a, b) >= 256) buf[0] = 0; /* never with these names */
    return buf;
}

static void unet_res(const sdxl_unet_hparams *u, const char *p, int cin, int cout)
{
    char q[256];
    norm(cin, join(q, p, "in_layers.0."));
    conv(cout, cin, 3, join(q, p, "in_layers.2."));
    dense(cout, u->time_embed_dim, join(q, p, "emb_layers.1."));
    norm(cout, join(q, p, "out_layers.0."));
    conv(cout, cout, 3, join(q, p, "out_layers.3."));
    if (cin != cout) conv(cout, cin, 1, join(q, p, "skip_connection."));
}

static void unet_attn(const char *p, int ch, int kv)
{
    char q[256];
    MAT(ch, ch, "%sto_q.weight", p);
    MAT(ch, kv, "%sto_k.weight", p);
    MAT(ch, kv, "%sto_v.weight", p);
    dense(ch, ch, join(q, p, "to_out.0."));
}

static void unet_spatial(const sdxl_unet_hparams *u, const char *p, int ch, int depth)
{
    char q[256], b[256];
    int inner = u->ff_inner_mult * ch;
    norm(ch, join(q, p, "norm."));
    dense(ch, ch, join(q, p, "proj_in."));
    for (int k = 0; k < depth; k++) {
        snprintf(b, sizeof b, "%stransformer_blocks.%d.", p, k);
        norm(ch, join(q, b, "norm1."));
        unet_attn(join(q, b, "attn1."), ch, ch);
        norm(ch, join(q, b, "norm2."));
        unet_attn(join(q, b, "attn2."), ch, u->context_dim);
        norm(ch, join(q, b, "norm3."));
        dense(2 * inner, ch, join(q, b, "ff.net.0.proj."));
        dense(ch, inner, join(q, b, "ff.net.2."));
    }
    dense(ch, ch, join(q, p, "proj_out."));
}

static void unet(const sdxl_unet_hparams *u)
{
    snprintf(prefix, sizeof prefix, "model.diffusion_model.");
    int mc = u->model_channels, ted = u->time_embed_dim, stack[64], sp = 0, ch = mc, blk = 1;
    char p[256];
    dense(ted, u->time_sinusoid_dim, "time_embed.0.");
    dense(ted, ted, "time_embed.2.");
    dense(ted, u->adm_in_channels, "label_emb.0.0.");
    dense(ted, ted, "label_emb.0.2.");
    conv(mc, u->in_channels, 3, "input_blocks.0.0.");
    stack[sp++] = mc;
    for (int l = 0; l < u->num_levels; l++) {
        int out = mc * u->channel_mult[l];
        for (int j = 0; j < u->num_res_blocks; j++) {
            snprintf(p, sizeof p, "input_blocks.%d.0.", blk);
            unet_res(u, p, ch, out);
            ch = out;
            snprintf(p, sizeof p, "input_blocks.%d.1.", blk++);
            if (u->depth_down[l]) unet_spatial(u, p, ch, u->depth_down[l]);
            stack[sp++] = ch;
        }
        if (l + 1 < u->num_levels) {
            snprintf(p, sizeof p, "input_blocks.%d.0.op.", blk++);
            conv(ch, ch, 3, p);
            stack[sp++] = ch;
        }
    }
    unet_res(u, "middle_block.0.", ch, ch);
    unet_spatial(u, "middle_block.1.", ch, u->depth_mid);
    unet_res(u, "middle_block.2.", ch, ch);
    blk = 0;
    for (int l = u->num_levels - 1; l >= 0; l--) {
        int out = mc * u->channel_mult[l];
        for (int j = 0; j <= u->num_res_blocks; j++, blk++) {
            snprintf(p, sizeof p, "output_blocks.%d.0.", blk);
            unet_res(u, p, ch + stack[--sp], out);
            ch = out;
            int layer = 1;
            if (u->depth_up[l]) {
                snprintf(p, sizeof p, "output_blocks.%d.1.", blk);
                unet_spatial(u, p, ch, u->depth_up[l]);
                layer = 2;
            }
            if (l > 0 && j == u->num_res_blocks) {
                snprintf(p, sizeof p, "output_blocks.%d.%d.conv.", blk, layer);
                conv(ch, ch, 3, p);
            }
        }
    }
    norm(mc, "out.0.");
    conv(u->out_channels, mc, 3, "out.2.");
}

static void vae_res(const char *p, int cin, int cout)
{
    char q[256];
    norm(cin, join(q, p, "norm1."));
    conv(cout, cin, 3, join(q, p, "conv1."));
    norm(cout, join(q, p, "norm2."));
    conv(cout, cout, 3, join(q, p, "conv2."));
    if (cin != cout) conv(cout, cin, 1, join(q, p, "nin_shortcut."));
}

static void vae_mid(const sdxl_vae_hparams *v, const char *p, int ch)
{
    char q[256];
    vae_res(join(q, p, "mid.block_1."), ch, ch);
    norm(ch, join(q, p, "mid.attn_1.norm."));
    const char *names[] = {"q", "k", "v", "proj_out"};
    for (int i = 0; i < 4; i++) {
        if (v->mid_attn_conv) CONV(ch, ch, 1, "%smid.attn_1.%s.weight", p, names[i]);
        else MAT(ch, ch, "%smid.attn_1.%s.weight", p, names[i]);
        VEC(ch, "%smid.attn_1.%s.bias", p, names[i]);
    }
    vae_res(join(q, p, "mid.block_2."), ch, ch);
}

static void vae(const sdxl_vae_hparams *v)
{
    snprintf(prefix, sizeof prefix, "first_stage_model.");
    int base = v->base_channels, z = v->z_channels, ch = base, L = v->num_levels;
    char p[256];
    conv(base, v->in_channels, 3, "encoder.conv_in.");
    for (int l = 0; l < L; l++) {
        int out = base * v->channel_mult[l];
        for (int j = 0; j < v->num_res_blocks; j++, ch = out) {
            snprintf(p, sizeof p, "encoder.down.%d.block.%d.", l, j);
            vae_res(p, ch, out);
        }
        if (l + 1 < L) {
            snprintf(p, sizeof p, "encoder.down.%d.downsample.conv.", l);
            conv(ch, ch, 3, p);
        }
    }
    vae_mid(v, "encoder.", ch);
    norm(ch, "encoder.norm_out.");
    conv(2 * z, ch, 3, "encoder.conv_out.");
    conv(2 * z, 2 * z, 1, "quant_conv.");
    conv(z, z, 1, "post_quant_conv.");
    conv(ch, z, 3, "decoder.conv_in.");
    vae_mid(v, "decoder.", ch);
    for (int l = L - 1; l >= 0; l--) {
        int out = base * v->channel_mult[l];
        for (int j = 0; j <= v->num_res_blocks; j++, ch = out) {
            snprintf(p, sizeof p, "decoder.up.%d.block.%d.", l, j);
            vae_res(p, ch, out);
        }
        if (l > 0) {
            snprintf(p, sizeof p, "decoder.up.%d.upsample.conv.", l);
            conv(ch, ch, 3, p);
        }
    }
    norm(base, "decoder.norm_out.");
    conv(v->out_channels, base, 3, "decoder.conv_out.");
}

static void clip_l(const sdxl_te_hparams *t)
{
    snprintf(prefix, sizeof prefix, "conditioner.embedders.0.transformer.text_model.");
    int w = t->width;
    char p[256], q[256];
    MAT(t->vocab, w, "embeddings.token_embedding.weight");
    MAT(t->positions, w, "embeddings.position_embedding.weight");
    for (int i = 0; i < t->layers; i++) {
        snprintf(p, sizeof p, "encoder.layers.%d.", i);
        norm(w, join(q, p, "layer_norm1."));
        dense(w, w, join(q, p, "self_attn.q_proj."));
        dense(w, w, join(q, p, "self_attn.k_proj."));
        dense(w, w, join(q, p, "self_attn.v_proj."));
        dense(w, w, join(q, p, "self_attn.out_proj."));
        norm(w, join(q, p, "layer_norm2."));
        dense(t->intermediate, w, join(q, p, "mlp.fc1."));
        dense(w, t->intermediate, join(q, p, "mlp.fc2."));
    }
    norm(w, "final_layer_norm.");
}

static void open_clip_g(const sdxl_te_hparams *t)
{
    snprintf(prefix, sizeof prefix, "conditioner.embedders.1.model.");
    int w = t->width;
    char p[256], q[256];
    MAT(t->vocab, w, "token_embedding.weight");
    MAT(t->positions, w, "positional_embedding");
    for (int i = 0; i < t->layers; i++) {
        snprintf(p, sizeof p, "transformer.resblocks.%d.", i);
        norm(w, join(q, p, "ln_1."));
        MAT(3 * w, w, "%sattn.in_proj_weight", p);
        VEC(3 * w, "%sattn.in_proj_bias", p);
        dense(w, w, join(q, p, "attn.out_proj."));
        norm(w, join(q, p, "ln_2."));
        dense(t->intermediate, w, join(q, p, "mlp.c_fc."));
        dense(w, t->intermediate, join(q, p, "mlp.c_proj."));
    }
    norm(w, "ln_final.");
    MAT(w, t->projection_dim, "text_projection");
    add(0, 0, 0, 0, 0, "logit_scale"); /* a scalar in real files, unused */
}

static void meta_if_not(const char *key, int value, int dflt)
{
    char s[16];
    snprintf(s, sizeof s, "%d", value);
    if (value != dflt) stw_meta(W, key, s);
}

void synth_sdxl(stw *w, const sdxl_hparams *hp)
{
    W = w;
    meta_if_not("sdxl.unet.head_width", hp->unet.head_width, 64);
    meta_if_not("sdxl.unet.norm_groups", hp->unet.norm_groups, 32);
    meta_if_not("sdxl.vae.norm_groups", hp->vae.norm_groups, 32);
    meta_if_not("sdxl.te1.head_width", hp->te1.head_width, 64);
    meta_if_not("sdxl.te2.head_width", hp->te2.head_width, 64);
    unet(&hp->unet);
    clip_l(&hp->te1);
    open_clip_g(&hp->te2);
    vae(&hp->vae);
}

void synth_tiny_hparams(sdxl_hparams *hp)
{
    *hp = (sdxl_hparams){
        .unet = {.in_channels = 4, .out_channels = 4, .model_channels = 8, .num_levels = 3,
                 .channel_mult = {1, 2, 4}, .num_res_blocks = 2, .depth_down = {0, 1, 2}, .depth_up = {0, 1, 2},
                 .depth_mid = 2, .context_dim = 24, .head_width = 4, .ff_inner_mult = 4, .norm_groups = 4,
                 .time_sinusoid_dim = 8, .time_embed_dim = 32, .adm_in_channels = 16 + 6 * 4,
                 .adm_pooled_dim = 16, .adm_embed_dim = 4},
        .vae = {.in_channels = 3, .out_channels = 3, .base_channels = 8, .num_levels = 3,
                .channel_mult = {1, 2, 2}, .num_res_blocks = 1, .z_channels = 4, .norm_groups = 4,
                .mid_attn_conv = 1},
        .te1 = {.width = 8, .layers = 2, .heads = 2, .head_width = 4, .vocab = 16, .positions = 8,
                .intermediate = 32, .projection_dim = 0, .act = SDXL_ACT_QUICK_GELU},
        .te2 = {.width = 16, .layers = 2, .heads = 4, .head_width = 4, .vocab = 16, .positions = 8,
                .intermediate = 64, .projection_dim = 16, .act = SDXL_ACT_GELU},
        .prediction = SDXL_PRED_EPS,
    };
}
