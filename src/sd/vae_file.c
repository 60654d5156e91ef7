/* Standalone VAE files (see vae_file.h): layout recognition, the renaming
 * of diffusers names to LDM names (the inverse of diffusers'
 * convert_ldm_vae_checkpoint, loaders/single_file_utils.py, diffusers 0.42,
 * with the pre-0.14 attention names of _convert_deprecated_attention_blocks),
 * and the fit with a checkpoint. */
#include "sd/vae_file.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "sd/error.h"

#define LDM_PREFIX "first_stage_model."
#define MAX_UP_LEVELS 64

/* ---- name pieces ---------------------------------------------------------------- */

/* Consumes the literal at *s. */
static int take(const char **s, const char *lit)
{
    size_t n = strlen(lit);
    if (strncmp(*s, lit, n)) return 0;
    *s += n;
    return 1;
}

/* Consumes "<index>." of at most three digits. */
static int take_index(const char **s, int *v)
{
    const char *p = *s;
    int n = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 3; p++, digits++) n = n * 10 + (*p - '0');
    if (!digits || *p != '.') return 0;
    *v = n;
    *s = p + 1;
    return 1;
}

/* out = the formatted name; 0, or -1 when it does not fit. */
static int put(char *out, size_t outlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int put(char *out, size_t outlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, outlen, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* A ResnetBlock2D part (diffusers) -> the LDM ResnetBlock's; NULL if none. */
static const char *resnet_part(const char **s)
{
    static const char *const parts[][2] = {{"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."},
                                           {"conv2.", "conv2."}, {"conv_shortcut.", "nin_shortcut."}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (take(s, parts[i][0])) return parts[i][1];
    return NULL;
}

/* The mid block's Attention (current and pre-0.14 names) -> LDM AttnBlock's. */
static const char *attention_part(const char **s)
{
    static const char *const parts[][2] = {
        {"group_norm.", "norm."}, {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."},
        {"query.", "q."},         {"key.", "k."},  {"value.", "v."}, {"proj_attn.", "proj_out."},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (take(s, parts[i][0])) return parts[i][1];
    return NULL;
}

/* ---- renamings (st_rename_fn) ---------------------------------------------------- */

typedef struct {
    int up_levels; /* decoder.up_blocks.N: N + 1 (diffusers numbers them deepest first) */
} diffusers_names;

/* One side's (encoder./decoder.) blocks: down/up levels, mid block, in/out convs. */
static int side_to_ldm(const char *side, const char *s, const diffusers_names *d, char *out, size_t outlen)
{
    static const char *const ends[][2] = {{"conv_in.", "conv_in."}, {"conv_out.", "conv_out."},
                                          {"conv_norm_out.", "norm_out."}};
    const char *part;
    int l, j;
    for (size_t i = 0; i < sizeof ends / sizeof ends[0]; i++)
        if (take(&s, ends[i][0])) return put(out, outlen, "%s.%s%s", side, ends[i][1], s);
    bool enc = strcmp(side, "encoder") == 0;
    if (enc && take(&s, "down_blocks.") && take_index(&s, &l)) {
        if (take(&s, "resnets.") && take_index(&s, &j) && (part = resnet_part(&s)))
            return put(out, outlen, "encoder.down.%d.block.%d.%s%s", l, j, part, s);
        if (take(&s, "downsamplers.0.conv.")) return put(out, outlen, "encoder.down.%d.downsample.conv.%s", l, s);
        return -1;
    }
    if (!enc && take(&s, "up_blocks.") && take_index(&s, &l)) {
        if (l >= d->up_levels) return -1;
        if (take(&s, "resnets.") && take_index(&s, &j) && (part = resnet_part(&s)))
            return put(out, outlen, "decoder.up.%d.block.%d.%s%s", d->up_levels - 1 - l, j, part, s);
        if (take(&s, "upsamplers.0.conv."))
            return put(out, outlen, "decoder.up.%d.upsample.conv.%s", d->up_levels - 1 - l, s);
        return -1;
    }
    if (take(&s, "mid_block.resnets.") && take_index(&s, &j) && j < 2 && (part = resnet_part(&s)))
        return put(out, outlen, "%s.mid.block_%d.%s%s", side, j + 1, part, s);
    if (take(&s, "mid_block.attentions.0.") && (part = attention_part(&s)))
        return put(out, outlen, "%s.mid.attn_1.%s%s", side, part, s);
    return -1;
}

static int diffusers_to_ldm(const char *name, char *out, size_t outlen, void *ctx)
{
    const char *s = name;
    if (take(&s, "encoder.")) return side_to_ldm("encoder", s, ctx, out, outlen);
    if (take(&s, "decoder.")) return side_to_ldm("decoder", s, ctx, out, outlen);
    if (!strncmp(name, "quant_conv.", 11) || !strncmp(name, "post_quant_conv.", 16))
        return put(out, outlen, "%s", name);
    return -1;
}

/* LDM names, with the given prefix cut off; everything else is left out. */
static int strip_prefix(const char *name, char *out, size_t outlen, void *ctx)
{
    const char *prefix = ctx, *s = name;
    if (!take(&s, prefix)) return -1;
    static const char *const parts[] = {"encoder.", "decoder.", "quant_conv.", "post_quant_conv."};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (!strncmp(s, parts[i], strlen(parts[i]))) return put(out, outlen, "%s", s);
    return -1;
}

/* ---- recognition ------------------------------------------------------------------- */

static int count_up_levels(const st_file *f)
{
    int n = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        const char *s = st_get(f, i)->name;
        int l;
        if (take(&s, "decoder.up_blocks.") && take_index(&s, &l) && l < MAX_UP_LEVELS && l + 1 > n) n = l + 1;
    }
    return n;
}

typedef enum { LAYOUT_NONE = -1, LAYOUT_LDM, LAYOUT_LDM_PREFIXED, LAYOUT_DIFFUSERS } vae_layout;

static const char *const LAYOUT_NAMES[] = {"LDM", "LDM (" LDM_PREFIX ")", "diffusers"};

/* The layout of f, or LAYOUT_NONE with err saying what the file is instead. */
static vae_layout recognise(const st_file *f, const char *path, char *err, size_t errlen)
{
    if (st_find(f, "encoder.down_blocks.0.resnets.0.conv1.weight") ||
        st_find(f, "decoder.up_blocks.0.resnets.0.conv1.weight"))
        return LAYOUT_DIFFUSERS;
    if (st_find(f, "encoder.conv_in.weight") || st_find(f, "decoder.conv_in.weight")) return LAYOUT_LDM;
    char what[400];
    ckpt_kind kind = ckpt_identify(f, what, sizeof what);
    if (kind == CKPT_VAE && (st_find(f, LDM_PREFIX "encoder.conv_in.weight") ||
                             st_find(f, LDM_PREFIX "decoder.conv_in.weight")))
        return LAYOUT_LDM_PREFIXED;
    if (kind == CKPT_LORA)
        sd_error(err, errlen, "%s is a LoRA, not a VAE: list it under \"loras\"", path);
    else
        sd_error(err, errlen, "%s is %s, not a VAE (a VAE file holds encoder.*/decoder.* tensors, in LDM or "
                 "diffusers names)", path, kind == CKPT_VAE ? "a VAE without its encoder.conv_in or decoder.conv_in"
                                                            : what);
    return LAYOUT_NONE;
}

/* The view under bare LDM names. */
static int open_view(sd_vae_file *v, vae_layout layout, char *err, size_t errlen)
{
    diffusers_names d = {count_up_levels(v->file)};
    switch (layout) {
    case LAYOUT_DIFFUSERS: return st_open_renamed(v->file, diffusers_to_ldm, &d, &v->view, err, errlen);
    case LAYOUT_LDM_PREFIXED: return st_open_renamed(v->file, strip_prefix, LDM_PREFIX, &v->view, err, errlen);
    default: return st_open_renamed(v->file, strip_prefix, "", &v->view, err, errlen);
    }
}

int sd_vae_file_open(const char *path, sd_vae_file *out, char *err, size_t errlen)
{
    st_file *f;
    memset(out, 0, sizeof *out);
    return st_open(path, &f, err, errlen) ? -1 : sd_vae_file_from(f, out, err, errlen);
}

int sd_vae_file_from(st_file *f, sd_vae_file *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->file = f;
    const char *path = st_label(f);
    char why[512];
    vae_layout layout = recognise(out->file, path, err, errlen);
    int rc = layout == LAYOUT_NONE ? -1 : open_view(out, layout, err, errlen);
    if (rc == 0) out->layout = LAYOUT_NAMES[layout];
    if (rc == 0 && sdxl_read_vae_hparams(out->view, "", &out->hp, why, sizeof why)) {
        size_t n = strlen(path); /* the checks name the file first: once is enough */
        const char *cause = !strncmp(why, path, n) && !strncmp(why + n, ": ", 2) ? why + n + 2 : why;
        sd_error(err, errlen, "%s is not a usable VAE (%s names): %s", path, out->layout, cause);
        rc = -1;
    }
    if (rc) sd_vae_file_close(out);
    return rc;
}

void sd_vae_file_close(sd_vae_file *v)
{
    st_close(v->view);
    st_close(v->file);
    memset(v, 0, sizeof *v);
}

int sd_vae_file_fits(const sd_vae_file *v, const sdxl_hparams *ckpt, char *err, size_t errlen)
{
    const char *path = st_label(v->file);
    const sdxl_vae_hparams *h = &v->hp;
    if (h->in_channels != 3 || h->out_channels != 3)
        return sd_error(err, errlen, "%s: this VAE takes %d and gives %d image channels; an SDXL VAE works on RGB",
                        path, h->in_channels, h->out_channels);
    if (h->z_channels != ckpt->unet.out_channels || h->z_channels != ckpt->unet.in_channels)
        return sd_error(err, errlen, "%s is a VAE with %d latent channels%s, not an SDXL VAE: this checkpoint's "
                        "UNet works on %d", path, h->z_channels, h->z_channels == 16 ? " (SD3 or Flux)" : "",
                        ckpt->unet.out_channels);
    if (h->num_levels != ckpt->vae.num_levels)
        return sd_error(err, errlen, "%s is a VAE that scales images by %d, not an SDXL VAE: this checkpoint's "
                        "scales by %d", path, 1 << (h->num_levels - 1), 1 << (ckpt->vae.num_levels - 1));
    return 0;
}
