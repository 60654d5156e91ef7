/* Checkpoint recognition and SDXL hyper-parameters (see checkpoint.h).
 * Owns: the marker-key table that names a file's kind, the shape-driven
 * discovery of the SDXL hparams, and the full tensor-by-tensor shape check.
 * Layouts follow the original SGM single-file names, as mapped by diffusers
 * (loaders/single_file_utils.py: convert_ldm_unet_checkpoint,
 * convert_ldm_vae_checkpoint, convert_open_clip_checkpoint) and summarised
 * in specs/sdxl-numerics-diffusers.md §2.4-2.6; model-kind markers as in
 * stable-diffusion.cpp's ModelLoader::get_sd_version and ComfyUI's
 * model_detection/supported_models (specs/sdcpp-a1111-conventions.md §2.2). */
#include "sd/checkpoint.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define UNET SDXL_UNET_PREFIX
#define TE1 "conditioner.embedders.0.transformer.text_model."
#define TE2 "conditioner.embedders.1.model."
#define VAE "first_stage_model."

#define MAX_DIM (1 << 24)  /* larger widths are not plausible for any weight here */
#define MAX_RES_BLOCKS 8

/* ---- identification ----------------------------------------------------- */

enum {
    M_UNET, M_LABEL_EMB, M_TE1, M_TE2, M_EMB0_OPENCLIP, M_VAE, M_SD1_TE, M_SD2_TE, M_FLUX, M_SD3,
    M_LORA, M_LOHA, M_LOKR, M_EMBEDDING, M_BARE_UNET, M_BARE_LABEL_EMB, M_DIFFUSERS, M_DIFFUSERS_VAE,
    M_LDM_VAE, M_TEXT_ENCODER, M_COUNT
};

enum { PREFIX, CONTAINS, EXACT };

static const struct {
    int marker, match;
    const char *pattern;
} markers[] = {
    {M_UNET, PREFIX, UNET "input_blocks."},
    {M_LABEL_EMB, PREFIX, UNET "label_emb."},
    {M_TE1, PREFIX, TE1},
    {M_TE2, PREFIX, TE2},
    {M_EMB0_OPENCLIP, PREFIX, "conditioner.embedders.0.model."},
    {M_VAE, PREFIX, VAE},
    {M_SD1_TE, PREFIX, "cond_stage_model.transformer."},
    {M_SD2_TE, PREFIX, "cond_stage_model.model."},
    {M_FLUX, PREFIX, "double_blocks."},
    {M_FLUX, PREFIX, UNET "double_blocks."},
    {M_SD3, PREFIX, "joint_blocks."},
    {M_SD3, PREFIX, UNET "joint_blocks."},
    {M_LORA, PREFIX, "lora_unet_"},
    {M_LORA, PREFIX, "lora_te"},
    {M_LORA, CONTAINS, ".lora_down."},
    {M_LORA, CONTAINS, ".lora_up."},
    {M_LORA, CONTAINS, ".lora_A."},
    {M_LORA, CONTAINS, ".lora_B."},
    {M_LORA, CONTAINS, "_lora.down."},
    {M_LORA, CONTAINS, ".lora.down."},             /* diffusers' convert_state_dict_to_diffusers (UNet) */
    {M_LORA, CONTAINS, ".lora.up."},
    {M_LORA, CONTAINS, ".lora_linear_layer.down."}, /* the same for the text encoders */
    {M_LORA, CONTAINS, ".lora_linear_layer.up."},
    {M_LOHA, CONTAINS, ".hada_w1_a"},
    {M_LOKR, CONTAINS, ".lokr_w1"},
    {M_EMBEDDING, EXACT, "clip_l"},
    {M_EMBEDDING, EXACT, "clip_g"},
    {M_EMBEDDING, EXACT, "emb_params"},
    {M_EMBEDDING, PREFIX, "string_to_param."},
    {M_BARE_UNET, PREFIX, "input_blocks."},
    {M_BARE_LABEL_EMB, PREFIX, "label_emb."},
    {M_DIFFUSERS, PREFIX, "down_blocks."},
    {M_DIFFUSERS, PREFIX, "unet.down_blocks."},
    {M_DIFFUSERS, PREFIX, "model.diffusion_model.down_blocks."},
    {M_DIFFUSERS_VAE, PREFIX, "encoder.down_blocks."},
    {M_DIFFUSERS_VAE, PREFIX, "vae.encoder.down_blocks."},
    {M_DIFFUSERS_VAE, PREFIX, "decoder.up_blocks."},
    {M_LDM_VAE, PREFIX, "encoder.down."},
    {M_LDM_VAE, PREFIX, "decoder.up."},
    {M_TEXT_ENCODER, PREFIX, "text_model."},
    {M_TEXT_ENCODER, PREFIX, "text_encoder."},
    {M_TEXT_ENCODER, PREFIX, "text_encoders."},
    {M_TEXT_ENCODER, PREFIX, "conditioner.embedders."},
    {M_TEXT_ENCODER, PREFIX, "transformer.resblocks."},
};

typedef struct {
    size_t count[M_COUNT];
    const char *example[M_COUNT]; /* first key that matched each marker */
} key_census;

static int matches(const char *name, int match, const char *pattern)
{
    switch (match) {
    case PREFIX: return strncmp(name, pattern, strlen(pattern)) == 0;
    case CONTAINS: return strstr(name, pattern) != NULL;
    default: return strcmp(name, pattern) == 0;
    }
}

static void take_census(const st_file *f, key_census *k)
{
    memset(k, 0, sizeof *k);
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_get(f, i)->name;
        for (size_t m = 0; m < sizeof markers / sizeof markers[0]; m++)
            if (matches(name, markers[m].match, markers[m].pattern)) {
                int id = markers[m].marker;
                if (k->count[id]++ == 0) k->example[id] = name;
            }
    }
}

/* Second dim of a 2-D tensor (token-embedding width, adm width), or 0 when absent. */
static long long width_of(const st_file *f, const char *name)
{
    const st_tensor *t = st_find(f, name);
    return t && t->ndim == 2 ? (long long)t->shape[1] : 0;
}

static ckpt_kind describe_missing_sdxl_parts(const key_census *k, char *what, size_t len)
{
    const char *parts[3];
    int n = 0;
    if (!k->count[M_TE1]) parts[n++] = "the CLIP-L text encoder (" TE1 "*)";
    if (!k->count[M_TE2]) parts[n++] = "the OpenCLIP-bigG text encoder (" TE2 "*)";
    if (!k->count[M_VAE]) parts[n++] = "the VAE (" VAE "*)";
    snprintf(what, len, "an SDXL UNet without %s%s%s%s%s", parts[0], n > 2 ? ", " : n > 1 ? " and " : "",
             n > 1 ? parts[1] : "", n > 2 ? " and " : "", n > 2 ? parts[2] : "");
    return CKPT_SDXL_PARTIAL;
}

static ckpt_kind identify_unet_family(const st_file *f, const key_census *k, char *what, size_t len)
{
    if (k->count[M_EMB0_OPENCLIP] && !k->count[M_TE2]) {
        snprintf(what, len, "an SDXL refiner checkpoint (only an OpenCLIP-bigG text encoder at "
                 "conditioner.embedders.0.model.*, adm width %lld)", width_of(f, UNET "label_emb.0.0.weight"));
        return CKPT_SDXL_REFINER;
    }
    if (k->count[M_LABEL_EMB] || k->count[M_TE2]) {
        if (k->count[M_TE1] && k->count[M_TE2] && k->count[M_VAE]) {
            snprintf(what, len, "an SDXL checkpoint");
            return CKPT_SDXL;
        }
        return describe_missing_sdxl_parts(k, what, len);
    }
    if (k->count[M_SD2_TE]) {
        snprintf(what, len, "an SD 2.x checkpoint (cond_stage_model.model.*, OpenCLIP-H text width %lld)",
                 width_of(f, "cond_stage_model.model.token_embedding.weight"));
        return CKPT_SD2;
    }
    if (k->count[M_SD1_TE]) {
        snprintf(what, len, "an SD 1.x checkpoint (cond_stage_model.transformer.*, text width %lld)",
                 width_of(f, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"));
        return CKPT_SD1;
    }
    snprintf(what, len, "a UNet without text encoders and without SDXL's label_emb (an SD 1.x/2.x UNet?)");
    return CKPT_UNKNOWN;
}

ckpt_kind ckpt_identify(const st_file *f, char *what, size_t len)
{
    key_census k;
    take_census(f, &k);
    if (st_count(f) == 0) return snprintf(what, len, "a file without tensors"), CKPT_EMPTY;
    if (k.count[M_LORA] || k.count[M_LOHA] || k.count[M_LOKR]) {
        int m = k.count[M_LOHA] ? M_LOHA : k.count[M_LOKR] ? M_LOKR : M_LORA;
        snprintf(what, len, "a %s adapter (key \"%.80s\"), not a checkpoint: list it under loras",
                 m == M_LOHA ? "LyCORIS LoHa" : m == M_LOKR ? "LyCORIS LoKr" : "LoRA", k.example[m]);
        return CKPT_LORA;
    }
    if (k.count[M_EMBEDDING])
        return snprintf(what, len, "a textual-inversion embedding (key \"%.80s\")", k.example[M_EMBEDDING]),
               CKPT_EMBEDDING;
    if (k.count[M_FLUX])
        return snprintf(what, len, "a Flux model (key \"%.80s\")", k.example[M_FLUX]), CKPT_FLUX;
    if (k.count[M_SD3])
        return snprintf(what, len, "an SD3 model (key \"%.80s\")", k.example[M_SD3]), CKPT_SD3;
    if (k.count[M_UNET]) return identify_unet_family(f, &k, what, len);
    if (k.count[M_BARE_UNET]) {
        snprintf(what, len, "a bare %sUNet without the " UNET " prefix and without text encoders or VAE "
                 "(a diffusion-model-only export)", k.count[M_BARE_LABEL_EMB] ? "SDXL " : "");
        return CKPT_UNET_BARE;
    }
    if (k.count[M_DIFFUSERS] || k.count[M_DIFFUSERS_VAE]) {
        int m = k.count[M_DIFFUSERS] ? M_DIFFUSERS : M_DIFFUSERS_VAE;
        snprintf(what, len, "a diffusers-format %s (key \"%.80s\"), not a single-file checkpoint",
                 m == M_DIFFUSERS ? "UNet" : "VAE", k.example[m]);
        return CKPT_DIFFUSERS;
    }
    if (k.count[M_LDM_VAE] || k.count[M_VAE])
        return snprintf(what, len, "a VAE alone (key \"%.80s\")",
                        k.count[M_LDM_VAE] ? k.example[M_LDM_VAE] : k.example[M_VAE]), CKPT_VAE;
    if (k.count[M_TEXT_ENCODER] || k.count[M_SD1_TE] || k.count[M_SD2_TE])
        return snprintf(what, len, "text encoder weights alone (key \"%.80s\")",
                        k.count[M_TEXT_ENCODER] ? k.example[M_TEXT_ENCODER]
                        : k.count[M_SD1_TE] ? k.example[M_SD1_TE] : k.example[M_SD2_TE]), CKPT_TEXT_ENCODER;
    snprintf(what, len, "a file with unrecognised tensor names (first: \"%.80s\")", st_get(f, 0)->name);
    return CKPT_UNKNOWN;
}

/* ---- shape checking context ------------------------------------------------ */

/* The first error wins; later checks become no-ops, so the walks below read
 * as plain lists of expected tensors. */
typedef struct {
    const st_file *f;
    const char *prefix; /* of the component being read */
    char *err;
    size_t errlen;
    int failed;
    char part[96];      /* the layer being checked ("" when none), for missing tensors */
} ctx;

static int fail(ctx *c, const char *fmt, ...)
{
    if (c->failed) return -1;
    c->failed = 1;
    int n = snprintf(c->err, c->errlen, "%s: ", st_label(c->f));
    if (n < 0 || (size_t)n >= c->errlen) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static const st_tensor *vfind(ctx *c, char *full, size_t fulllen, const char *fmt, va_list ap)
{
    int n = snprintf(full, fulllen, "%s", c->prefix);
    vsnprintf(full + n, fulllen - (size_t)n, fmt, ap);
    return st_find(c->f, full);
}

/* Present or not; never an error. */
static const st_tensor *find(ctx *c, const char *fmt, ...)
{
    char full[320];
    va_list ap;
    va_start(ap, fmt);
    const st_tensor *t = vfind(c, full, sizeof full, fmt, ap);
    va_end(ap);
    return t;
}

static const st_tensor *need_v(ctx *c, int ndim, const char *fmt, va_list ap)
{
    char full[320];
    const st_tensor *t = vfind(c, full, sizeof full, fmt, ap);
    if (c->failed) return NULL;
    if (!t && c->part[0]) return fail(c, "%s is incomplete: missing tensor \"%s\"", c->part, full), NULL;
    if (!t) return fail(c, "SDXL checkpoint is missing tensor \"%s\"", full), NULL;
    if (!t->is_float) return fail(c, "tensor \"%s\" has dtype %s, expected a float weight", full, t->dtype_name), NULL;
    if (t->ndim != ndim) {
        char s[96];
        return fail(c, "tensor \"%s\" has shape %s, expected %d dimensions", full, st_shape_str(t, s, sizeof s),
                    ndim), NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] < 1 || t->shape[i] > MAX_DIM) {
            char s[96];
            return fail(c, "tensor \"%s\" has implausible shape %s", full, st_shape_str(t, s, sizeof s)), NULL;
        }
    return t;
}

/* A tensor that must exist with `ndim` plausible dims; NULL after an error. */
static const st_tensor *need(ctx *c, int ndim, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const st_tensor *t = need_v(c, ndim, fmt, ap);
    va_end(ap);
    return t;
}

static int want_v(ctx *c, int ndim, const int64_t *dims, const char *fmt, va_list ap)
{
    char full[320];
    va_list copy;
    va_copy(copy, ap);
    const st_tensor *t = need_v(c, ndim, fmt, copy);
    va_end(copy);
    if (!t) return -1;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != dims[i]) {
            char got[96], exp[96];
            st_tensor e = {.ndim = ndim};
            memcpy(e.shape, dims, (size_t)ndim * sizeof *dims);
            vfind(c, full, sizeof full, fmt, ap);
            return fail(c, "tensor \"%s\" has shape %s, expected %s: the SDXL tensors do not fit together "
                        "(broken or non-standard checkpoint)", full, st_shape_str(t, got, sizeof got),
                        st_shape_str(&e, exp, sizeof exp));
        }
    return 0;
}

#define WANT(ndim, ...)                                     \
    va_list ap;                                             \
    va_start(ap, fmt);                                      \
    want_v(c, ndim, (const int64_t[]){__VA_ARGS__}, fmt, ap); \
    va_end(ap)

static void vec(ctx *c, int64_t n, const char *fmt, ...) { WANT(1, n); }
static void mat(ctx *c, int64_t rows, int64_t cols, const char *fmt, ...) { WANT(2, rows, cols); }
static void kernel(ctx *c, int64_t out, int64_t in, int64_t k, const char *fmt, ...) { WANT(4, out, in, k, k); }

/* Layers as lists of tensors; `p` is the layer's name prefix ending in '.'. */
static void affine(ctx *c, int64_t ch, const char *p) { vec(c, ch, "%sweight", p); vec(c, ch, "%sbias", p); }
static void linear(ctx *c, int64_t out, int64_t in, const char *p) { mat(c, out, in, "%sweight", p); vec(c, out, "%sbias", p); }
static void conv(ctx *c, int64_t out, int64_t in, int k, const char *p) { kernel(c, out, in, k, "%sweight", p); vec(c, out, "%sbias", p); }

static void group_norm(ctx *c, int64_t ch, int groups, const char *p)
{
    if (ch % groups) fail(c, "%lld channels at \"%s%s\" are not divisible into %d norm groups", (long long)ch,
                          c->prefix, p, groups);
    affine(c, ch, p);
}

/* a + b in buf (256 bytes); names here are far shorter, so a cut name
 * (reported as missing) cannot happen with real prefixes. */
static const char *cat(char *buf, const char *a, const char *b)
{
    return snprintf(buf, 256, "%s%s", a, b) < 256 ? buf : a;
}

/* A dimension of a tensor returned by need(). */
static int dim(const st_tensor *t, int i) { return t ? (int)t->shape[i] : 0; }

/* Value of a metadata override, or the default. */
static int meta_int(ctx *c, const char *key, int def)
{
    const char *s = st_metadata(c->f, key);
    if (!s) return def;
    long v = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9' && v <= 65536; p++) v = v * 10 + (*p - '0');
    if (p == s || *p || v < 1 || v > 65536) {
        fail(c, "__metadata__ \"%s\" = \"%.40s\" is not an integer between 1 and 65536", key, s);
        return def; /* keeps later arithmetic defined */
    }
    return (int)v;
}

/* Number of consecutive numbered entries, probing fmt with 0, 1, ... */
static int count_numbered(ctx *c, const char *fmt)
{
    int n = 0;
    while (find(c, fmt, n)) n++;
    return n;
}

/* ---- text encoders ------------------------------------------------------------- */

#define MAX_TE_LAYERS 256

/* The depth of a text encoder: 1 + the highest N of its "<layers>N." keys.
 * Every layer below it must have tensors (the per-layer checks then ask for
 * each one): a renamed or dropped layer is an error naming it, never a
 * shallower encoder. */
static int te_layers(ctx *c, const char *layers, const char *model)
{
    char pre[320];
    size_t n = (size_t)snprintf(pre, sizeof pre, "%s%s", c->prefix, layers);
    bool seen[MAX_TE_LAYERS] = {0};
    int top = -1;
    for (size_t i = 0; i < st_count(c->f); i++) {
        const char *name = st_get(c->f, i)->name, *p = name + n;
        if (strncmp(name, pre, n)) continue;
        int v = 0, digits = 0;
        for (; *p >= '0' && *p <= '9' && v < MAX_TE_LAYERS; p++, digits++) v = v * 10 + (*p - '0');
        if (!digits || *p != '.' || (digits > 1 && name[n] == '0') || v >= MAX_TE_LAYERS)
            return fail(c, "%s tensor \"%s\" has no layer number below %d", model, name, MAX_TE_LAYERS);
        seen[v] = true;
        top = v > top ? v : top;
    }
    for (int i = 0; i < top; i++)
        if (!seen[i])
            return fail(c, "%s layer %d is missing (no \"%s%d.*\" tensors, but layers up to %d exist): layer "
                        "numbers must be contiguous", model, i, pre, i, top);
    return top + 1;
}

/* The per-layer checks of layer i name it when a tensor is missing. */
static void begin_layer(ctx *c, const char *model, int i, int layers)
{
    snprintf(c->part, sizeof c->part, "%s layer %d of %d", model, i, layers);
}

/* heads = width / head_width; the width must be a multiple of it. */
static void set_heads(ctx *c, sdxl_te_hparams *te, const char *model)
{
    if (te->width % te->head_width)
        fail(c, "%s width %d is not a multiple of the head width %d", model, te->width, te->head_width);
    te->heads = te->width / te->head_width;
}

static void read_te1(ctx *c, sdxl_te_hparams *te)
{
    c->prefix = TE1;
    int layers = te_layers(c, "encoder.layers.", "CLIP-L");
    const st_tensor *tok = need(c, 2, "embeddings.token_embedding.weight");
    const st_tensor *pos = need(c, 2, "embeddings.position_embedding.weight");
    const st_tensor *fc1 = need(c, 2, "encoder.layers.0.mlp.fc1.weight");
    if (c->failed) return;
    *te = (sdxl_te_hparams){.width = dim(tok, 1), .vocab = dim(tok, 0), .positions = dim(pos, 0),
                            .intermediate = dim(fc1, 0), .act = SDXL_ACT_QUICK_GELU,
                            .layers = layers,
                            .head_width = meta_int(c, "sdxl.te1.head_width", 64)};
    int w = te->width, inner = te->intermediate;
    set_heads(c, te, "CLIP-L");
    mat(c, te->positions, w, "embeddings.position_embedding.weight");
    for (int i = 0; i < te->layers; i++) {
        char p[256], q[256];
        snprintf(p, sizeof p, "encoder.layers.%d.", i);
        begin_layer(c, "CLIP-L", i, te->layers);
        affine(c, w, cat(q, p, "layer_norm1."));
        linear(c, w, w, cat(q, p, "self_attn.q_proj."));
        linear(c, w, w, cat(q, p, "self_attn.k_proj."));
        linear(c, w, w, cat(q, p, "self_attn.v_proj."));
        linear(c, w, w, cat(q, p, "self_attn.out_proj."));
        affine(c, w, cat(q, p, "layer_norm2."));
        linear(c, inner, w, cat(q, p, "mlp.fc1."));
        linear(c, w, inner, cat(q, p, "mlp.fc2."));
    }
    c->part[0] = '\0';
    affine(c, w, "final_layer_norm.");
}

static void read_te2(ctx *c, sdxl_te_hparams *te)
{
    c->prefix = TE2;
    int layers = te_layers(c, "transformer.resblocks.", "OpenCLIP-bigG");
    const st_tensor *tok = need(c, 2, "token_embedding.weight");
    const st_tensor *pos = need(c, 2, "positional_embedding");
    const st_tensor *fc = need(c, 2, "transformer.resblocks.0.mlp.c_fc.weight");
    const st_tensor *proj = need(c, 2, "text_projection");
    if (c->failed) return;
    *te = (sdxl_te_hparams){.width = dim(tok, 1), .vocab = dim(tok, 0), .positions = dim(pos, 0),
                            .intermediate = dim(fc, 0), .projection_dim = dim(proj, 1), .act = SDXL_ACT_GELU,
                            .layers = layers,
                            .head_width = meta_int(c, "sdxl.te2.head_width", 64)};
    int w = te->width, inner = te->intermediate;
    set_heads(c, te, "OpenCLIP-bigG");
    mat(c, te->positions, w, "positional_embedding");
    for (int i = 0; i < te->layers; i++) {
        char p[256], q[256];
        snprintf(p, sizeof p, "transformer.resblocks.%d.", i);
        begin_layer(c, "OpenCLIP-bigG", i, te->layers);
        affine(c, w, cat(q, p, "ln_1."));
        mat(c, 3 * w, w, "%sattn.in_proj_weight", p); /* fused q | k | v rows */
        vec(c, 3 * w, "%sattn.in_proj_bias", p);
        linear(c, w, w, cat(q, p, "attn.out_proj."));
        affine(c, w, cat(q, p, "ln_2."));
        linear(c, inner, w, cat(q, p, "mlp.c_fc."));
        linear(c, w, inner, cat(q, p, "mlp.c_proj."));
    }
    c->part[0] = '\0';
    affine(c, w, "ln_final.");
    mat(c, w, te->projection_dim, "text_projection"); /* used as x @ P (open_clip orientation) */
}

/* ---- VAE --------------------------------------------------------------------------- */

static void vae_resblock(ctx *c, const sdxl_vae_hparams *v, const char *p, int cin, int cout)
{
    char q[256];
    group_norm(c, cin, v->norm_groups, cat(q, p, "norm1."));
    conv(c, cout, cin, 3, cat(q, p, "conv1."));
    group_norm(c, cout, v->norm_groups, cat(q, p, "norm2."));
    conv(c, cout, cout, 3, cat(q, p, "conv2."));
    if (cin != cout) conv(c, cout, cin, 1, cat(q, p, "nin_shortcut."));
}

/* q/k/v/proj_out are 1x1 convs in SGM files, plain matrices in some others. */
static void vae_attn_proj(ctx *c, const sdxl_vae_hparams *v, int ch, const char *p)
{
    if (v->mid_attn_conv) conv(c, ch, ch, 1, p);
    else linear(c, ch, ch, p);
}

static void vae_mid(ctx *c, const sdxl_vae_hparams *v, const char *p, int ch)
{
    char q[256], r[256];
    vae_resblock(c, v, cat(q, p, "mid.block_1."), ch, ch);
    group_norm(c, ch, v->norm_groups, cat(q, p, "mid.attn_1.norm."));
    static const char *const projs[] = {"q.", "k.", "v.", "proj_out."};
    for (int i = 0; i < 4; i++) vae_attn_proj(c, v, ch, cat(r, cat(q, p, "mid.attn_1."), projs[i]));
    vae_resblock(c, v, cat(q, p, "mid.block_2."), ch, ch);
}

static int read_vae(ctx *c, const char *prefix, sdxl_vae_hparams *v)
{
    c->prefix = prefix;
    const st_tensor *cin = need(c, 4, "encoder.conv_in.weight");
    const st_tensor *cout = need(c, 4, "encoder.conv_out.weight");
    const st_tensor *dout = need(c, 4, "decoder.conv_out.weight");
    const st_tensor *q = find(c, "encoder.mid.attn_1.q.weight");
    if (c->failed) return -1;
    *v = (sdxl_vae_hparams){.in_channels = dim(cin, 1), .base_channels = dim(cin, 0), .out_channels = dim(dout, 0),
                            .z_channels = dim(cout, 0) / 2, .mid_attn_conv = q && q->ndim == 4,
                            .num_levels = count_numbered(c, "encoder.down.%d.block.0.conv1.weight"),
                            .num_res_blocks = count_numbered(c, "encoder.down.0.block.%d.conv1.weight"),
                            .norm_groups = meta_int(c, "sdxl.vae.norm_groups", 32)};
    if (v->num_levels < 1 || v->num_levels > SDXL_MAX_LEVELS || v->num_res_blocks > MAX_RES_BLOCKS)
        return fail(c, "VAE has %d levels of %d resnets: not an SDXL VAE", v->num_levels, v->num_res_blocks);
    if (dim(cout, 0) % 2) return fail(c, "VAE encoder.conv_out has an odd number of channels (mean + logvar expected)");
    int ch[SDXL_MAX_LEVELS], base = v->base_channels, z = v->z_channels, L = v->num_levels;
    for (int l = 0; l < L; l++) {
        ch[l] = dim(need(c, 4, "encoder.down.%d.block.0.conv1.weight", l), 0);
        if (c->failed) return -1;
        if (ch[l] % base) return fail(c, "VAE level %d has %d channels, not a multiple of %d", l, ch[l], base);
        v->channel_mult[l] = ch[l] / base;
    }
    char p[256];
    conv(c, base, v->in_channels, 3, "encoder.conv_in.");
    int prev = base;
    for (int l = 0; l < L; l++) {
        for (int j = 0; j < v->num_res_blocks; j++, prev = ch[l]) {
            snprintf(p, sizeof p, "encoder.down.%d.block.%d.", l, j);
            vae_resblock(c, v, p, prev, ch[l]);
        }
        if (l < L - 1) {
            snprintf(p, sizeof p, "encoder.down.%d.downsample.conv.", l);
            conv(c, ch[l], ch[l], 3, p);
        }
    }
    vae_mid(c, v, "encoder.", prev);
    group_norm(c, prev, v->norm_groups, "encoder.norm_out.");
    conv(c, 2 * z, prev, 3, "encoder.conv_out.");
    conv(c, 2 * z, 2 * z, 1, "quant_conv.");
    conv(c, z, z, 1, "post_quant_conv.");
    conv(c, prev, z, 3, "decoder.conv_in.");
    vae_mid(c, v, "decoder.", prev);
    for (int l = L - 1; l >= 0; l--) { /* decoder.up.l runs deepest first */
        for (int j = 0; j <= v->num_res_blocks; j++, prev = ch[l]) {
            snprintf(p, sizeof p, "decoder.up.%d.block.%d.", l, j);
            vae_resblock(c, v, p, prev, ch[l]);
        }
        if (l > 0) {
            snprintf(p, sizeof p, "decoder.up.%d.upsample.conv.", l);
            conv(c, ch[l], ch[l], 3, p);
        }
    }
    group_norm(c, base, v->norm_groups, "decoder.norm_out.");
    conv(c, v->out_channels, base, 3, "decoder.conv_out.");
    return c->failed ? -1 : 0;
}

/* ---- UNet ----------------------------------------------------------------------------- */

static void unet_resblock(ctx *c, const sdxl_unet_hparams *u, const char *p, int cin, int cout)
{
    char q[256];
    group_norm(c, cin, u->norm_groups, cat(q, p, "in_layers.0."));
    conv(c, cout, cin, 3, cat(q, p, "in_layers.2."));
    linear(c, cout, u->time_embed_dim, cat(q, p, "emb_layers.1."));
    group_norm(c, cout, u->norm_groups, cat(q, p, "out_layers.0."));
    conv(c, cout, cout, 3, cat(q, p, "out_layers.3."));
    if (cin != cout) conv(c, cout, cin, 1, cat(q, p, "skip_connection."));
}

static void attention(ctx *c, const char *p, int ch, int kv_in)
{
    char q[256];
    mat(c, ch, ch, "%sto_q.weight", p);
    mat(c, ch, kv_in, "%sto_k.weight", p);
    mat(c, ch, kv_in, "%sto_v.weight", p);
    linear(c, ch, ch, cat(q, p, "to_out.0."));
}

/* SpatialTransformer with linear proj_in/proj_out and `depth` BasicTransformerBlocks. */
static void unet_transformer(ctx *c, const sdxl_unet_hparams *u, const char *p, int ch, int depth)
{
    char q[256], b[256];
    if (ch % u->head_width)
        fail(c, "%d channels at \"%s%s\" are not a multiple of the head width %d", ch, c->prefix, p, u->head_width);
    int inner = u->ff_inner_mult * ch;
    group_norm(c, ch, u->norm_groups, cat(q, p, "norm."));
    linear(c, ch, ch, cat(q, p, "proj_in."));
    for (int k = 0; k < depth; k++) {
        snprintf(b, sizeof b, "%stransformer_blocks.%d.", p, k);
        affine(c, ch, cat(q, b, "norm1."));
        attention(c, cat(q, b, "attn1."), ch, ch);
        affine(c, ch, cat(q, b, "norm2."));
        attention(c, cat(q, b, "attn2."), ch, u->context_dim);
        affine(c, ch, cat(q, b, "norm3."));
        linear(c, 2 * inner, ch, cat(q, b, "ff.net.0.proj.")); /* GEGLU: value | gate */
        linear(c, ch, inner, cat(q, b, "ff.net.2."));
    }
    linear(c, ch, ch, cat(q, p, "proj_out."));
}

/* Transformer depth of the SpatialTransformer at prefix p (0: none there). */
static int block_depth(ctx *c, const char *p)
{
    if (!find(c, "%sproj_in.weight", p)) return 0;
    int d = 0;
    while (find(c, "%stransformer_blocks.%d.attn1.to_q.weight", p, d)) d++;
    if (d == 0) fail(c, "%s%s has proj_in but no transformer blocks", c->prefix, p);
    return d;
}

/* The same depth for the attention of blocks[first .. first+count), or an error. */
static int level_depth(ctx *c, const char *blocks, int first, int count, int level)
{
    char p[64];
    int d = 0;
    for (int j = 0; j < count; j++) {
        snprintf(p, sizeof p, "%s.%d.1.", blocks, first + j);
        int dj = block_depth(c, p);
        if (j > 0 && dj != d)
            fail(c, "UNet level %d has different transformer depths in one level (%s): not supported", level, blocks);
        d = dj;
    }
    return d;
}

static int max_block_index(const st_file *f, const char *prefix)
{
    size_t n = strlen(prefix);
    long best = -1;
    for (size_t i = 0; i < st_count(f); i++) {
        const char *s = st_get(f, i)->name;
        if (strncmp(s, prefix, n) != 0) continue;
        char *end;
        long v = strtol(s + n, &end, 10);
        if (end != s + n && *end == '.' && v > best && v < 100000) best = v;
    }
    return (int)best;
}

/* Levels, channels and depths from the block structure: level l is
 * num_res_blocks resnets (+ transformers) then a downsampler, except the
 * last level, so input_blocks count 1 + L*R + (L-1) = L*(R+1). */
static int discover_unet_levels(ctx *c, sdxl_unet_hparams *u)
{
    int n_in = max_block_index(c->f, UNET "input_blocks.") + 1;
    int n_out = max_block_index(c->f, UNET "output_blocks.") + 1;
    int r = 0;
    while (r <= MAX_RES_BLOCKS && find(c, "input_blocks.%d.0.in_layers.2.weight", r + 1)) r++;
    int levels = r ? n_in / (r + 1) : 0;
    if (r < 1 || r > MAX_RES_BLOCKS || levels < 1 || levels > SDXL_MAX_LEVELS || levels * (r + 1) != n_in)
        return fail(c, "UNet has %d input blocks, which is not a whole number of levels of %d resnets and a "
                    "downsampler: not an SDXL UNet", n_in, r);
    if (n_out != levels * (r + 1))
        return fail(c, "UNet has %d output blocks, expected %d for %d levels", n_out, levels * (r + 1), levels);
    u->num_levels = levels;
    u->num_res_blocks = r;
    for (int l = 0; l < levels; l++) {
        int first_in = 1 + l * (r + 1), first_out = (levels - 1 - l) * (r + 1);
        int ch = dim(need(c, 4, "input_blocks.%d.0.out_layers.3.weight", first_in), 0);
        if (c->failed) return -1;
        if (ch % u->model_channels)
            return fail(c, "UNet level %d has %d channels, not a multiple of %d", l, ch, u->model_channels);
        u->channel_mult[l] = ch / u->model_channels;
        u->depth_down[l] = level_depth(c, "input_blocks", first_in, r, l);
        u->depth_up[l] = level_depth(c, "output_blocks", first_out, r + 1, l);
    }
    return c->failed ? -1 : 0;
}

static int discover_unet(ctx *c, sdxl_unet_hparams *u)
{
    c->prefix = UNET;
    const st_tensor *conv_in = need(c, 4, "input_blocks.0.0.weight");
    const st_tensor *temb = need(c, 2, "time_embed.0.weight");
    const st_tensor *adm = need(c, 2, "label_emb.0.0.weight");
    const st_tensor *out = need(c, 4, "out.2.weight");
    const st_tensor *to_k = need(c, 2, "middle_block.1.transformer_blocks.0.attn2.to_k.weight");
    const st_tensor *ff_out = need(c, 2, "middle_block.1.transformer_blocks.0.ff.net.2.weight");
    if (c->failed) {
        if (!find(c, "middle_block.1.proj_in.weight"))
            c->failed = 0, fail(c, "the UNet has no mid-block transformer: a distilled SDXL variant "
                                   "(SSD-1B/Vega-style) is not supported");
        return -1;
    }
    *u = (sdxl_unet_hparams){.model_channels = dim(conv_in, 0), .in_channels = dim(conv_in, 1),
                             .out_channels = dim(out, 0), .time_embed_dim = dim(temb, 0),
                             .time_sinusoid_dim = dim(temb, 1), .adm_in_channels = dim(adm, 1),
                             .context_dim = dim(to_k, 1),
                             .head_width = meta_int(c, "sdxl.unet.head_width", 64),
                             .norm_groups = meta_int(c, "sdxl.unet.norm_groups", 32)};
    int mid_ch = dim(ff_out, 0);
    if (dim(ff_out, 1) % mid_ch) return fail(c, "UNet feed-forward width %d is not a multiple of %d", dim(ff_out, 1), mid_ch);
    u->ff_inner_mult = dim(ff_out, 1) / mid_ch;
    if (u->time_sinusoid_dim % 2) return fail(c, "UNet timestep sinusoid width %d is odd", u->time_sinusoid_dim);
    discover_unet_levels(c, u);
    u->depth_mid = block_depth(c, "middle_block.1.");
    return c->failed ? -1 : 0;
}

/* Every UNet tensor, walking the blocks in forward order with the skip stack
 * (spec §2.3: channels of the concatenated skips set each up-resnet's input). */
static void check_unet(ctx *c, const sdxl_unet_hparams *u)
{
    int skip[1 + SDXL_MAX_LEVELS * (MAX_RES_BLOCKS + 1)], ns = 0, mc = u->model_channels, r = u->num_res_blocks;
    char p[256];
    linear(c, u->time_embed_dim, u->time_sinusoid_dim, "time_embed.0.");
    linear(c, u->time_embed_dim, u->time_embed_dim, "time_embed.2.");
    linear(c, u->time_embed_dim, u->adm_in_channels, "label_emb.0.0.");
    linear(c, u->time_embed_dim, u->time_embed_dim, "label_emb.0.2.");
    conv(c, mc, u->in_channels, 3, "input_blocks.0.0.");
    int ch = mc, n = 1;
    skip[ns++] = ch;
    for (int l = 0; l < u->num_levels; l++) {
        for (int j = 0; j < r; j++, n++) {
            snprintf(p, sizeof p, "input_blocks.%d.0.", n);
            unet_resblock(c, u, p, ch, mc * u->channel_mult[l]);
            ch = mc * u->channel_mult[l];
            snprintf(p, sizeof p, "input_blocks.%d.1.", n);
            if (u->depth_down[l]) unet_transformer(c, u, p, ch, u->depth_down[l]);
            skip[ns++] = ch;
        }
        if (l < u->num_levels - 1) {
            snprintf(p, sizeof p, "input_blocks.%d.0.op.", n++);
            conv(c, ch, ch, 3, p);
            skip[ns++] = ch;
        }
    }
    unet_resblock(c, u, "middle_block.0.", ch, ch);
    unet_transformer(c, u, "middle_block.1.", ch, u->depth_mid);
    unet_resblock(c, u, "middle_block.2.", ch, ch);
    n = 0;
    for (int l = u->num_levels - 1; l >= 0; l--)
        for (int j = 0; j <= r; j++, n++) {
            int cout = mc * u->channel_mult[l], slot = 1;
            snprintf(p, sizeof p, "output_blocks.%d.0.", n);
            unet_resblock(c, u, p, ch + skip[--ns], cout);
            ch = cout;
            snprintf(p, sizeof p, "output_blocks.%d.1.", n);
            if (u->depth_up[l]) unet_transformer(c, u, p, ch, u->depth_up[l]), slot = 2;
            snprintf(p, sizeof p, "output_blocks.%d.%d.conv.", n, slot);
            if (l > 0 && j == r) conv(c, ch, ch, 3, p);
        }
    group_norm(c, mc, u->norm_groups, "out.0.");
    conv(c, u->out_channels, mc, 3, "out.2.");
}

/* ---- whole checkpoint ------------------------------------------------------------------- */

/* Widths the components must agree on (spec §1.1, §1.4). */
static int check_agreement(ctx *c, sdxl_hparams *hp)
{
    sdxl_unet_hparams *u = &hp->unet;
    if (u->context_dim != hp->te1.width + hp->te2.width)
        return fail(c, "UNet context width %d is not CLIP-L %d + OpenCLIP-bigG %d", u->context_dim,
                    hp->te1.width, hp->te2.width);
    if (hp->te1.positions != hp->te2.positions)
        return fail(c, "the text encoders have %d and %d positions", hp->te1.positions, hp->te2.positions);
    u->adm_pooled_dim = hp->te2.projection_dim;
    int rest = u->adm_in_channels - u->adm_pooled_dim;
    if (rest <= 0 || rest % (2 * SDXL_ADM_VALUES))
        return fail(c, "UNet label_emb width %d does not hold the pooled %d plus %d even-width size embeddings",
                    u->adm_in_channels, u->adm_pooled_dim, SDXL_ADM_VALUES);
    u->adm_embed_dim = rest / SDXL_ADM_VALUES;
    if (u->out_channels != hp->vae.z_channels)
        return fail(c, "UNet predicts %d channels but the VAE latent has %d", u->out_channels, hp->vae.z_channels);
    return 0;
}

static void read_prediction(const st_file *f, sdxl_hparams *hp)
{
    hp->prediction = st_find(f, "edm_mean") && st_find(f, "edm_std") ? SDXL_PRED_EDM
                   : st_find(f, "edm_vpred.sigma_max")                  ? SDXL_PRED_EDM_V
                   : st_find(f, "v_pred")                               ? SDXL_PRED_V
                                                                        : SDXL_PRED_EPS;
    hp->ztsnr = st_find(f, "ztsnr") != NULL;
}

int sdxl_read_hparams(const st_file *f, sdxl_hparams *hp, char *err, size_t errlen)
{
    char what[400];
    memset(hp, 0, sizeof *hp);
    if (ckpt_identify(f, what, sizeof what) != CKPT_SDXL) {
        snprintf(err, errlen, "%s: this is %s; the worker needs an SDXL base single-file checkpoint (" UNET "*, "
                 "conditioner.embedders.0/1.*, " VAE "*)", st_label(f), what);
        return -1;
    }
    ctx c = {.f = f, .prefix = "", .err = err, .errlen = errlen};
    read_te1(&c, &hp->te1);
    read_te2(&c, &hp->te2);
    read_vae(&c, VAE, &hp->vae);
    discover_unet(&c, &hp->unet);
    if (!c.failed) {
        c.prefix = UNET;
        check_unet(&c, &hp->unet);
    }
    check_agreement(&c, hp);
    read_prediction(f, hp);
    return c.failed ? -1 : 0;
}

int sdxl_read_vae_hparams(const st_file *f, const char *prefix, sdxl_vae_hparams *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof *v);
    ctx c = {.f = f, .prefix = "", .err = err, .errlen = errlen};
    return read_vae(&c, prefix, v);
}

int sdxl_checkpoint_open(const char *path, st_file **out, sdxl_hparams *hp, char *err, size_t errlen)
{
    struct stat sb;
    *out = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char index[4096];
        snprintf(index, sizeof index, "%s/model_index.json", path);
        if (stat(index, &sb) == 0)
            return snprintf(err, errlen, "%s: this is a diffusers folder (model_index.json); the worker needs "
                            "an SDXL base single-file .safetensors checkpoint", path), -1;
    }
    st_file *f;
    if (st_open(path, &f, err, errlen)) return -1;
    if (sdxl_read_hparams(f, hp, err, errlen)) { st_close(f); return -1; }
    *out = f;
    return 0;
}
