/* The checkpoint's layers under every name a LoRA file may give them.
 * Rather than turning each LoRA key back into a checkpoint name (kohya's
 * '_' -> '.' is ambiguous: transformer_blocks, to_q, ...), every layer of
 * the checkpoint is entered once per spelling and LoRA keys are looked up
 * exactly:
 *   UNet  model.diffusion_model.<sgm>      lora_unet_<sgm with _>
 *                                          lora_unet_<diffusers with _>
 *                                          unet.<diffusers>, <diffusers>
 *                                          diffusion_model.<sgm>, model.diffusion_model.<sgm>
 *   CLIP-L conditioner.embedders.0.transformer.text_model.<m>
 *                                          lora_te1_text_model_<m with _>, lora_te_text_model_<m with _>
 *                                          text_encoder.text_model.<m>, text_encoder.<m>
 *   bigG  conditioner.embedders.1.model.transformer.resblocks.N.{attn.in_proj
 *         rows q|k|v, attn.out_proj, mlp.c_fc, mlp.c_proj} under their
 *         transformers names encoder.layers.N.{self_attn.q/k/v/out_proj, mlp.fc1/fc2}:
 *                                          lora_te2_text_model_<m with _>, text_encoder_2.text_model.<m>,
 *                                          text_encoder_2.<m>
 * SGM -> diffusers UNet names follow diffusers' convert_ldm_unet_checkpoint
 * (loaders/single_file_utils.py, diffusers 0.42; spec
 * sdxl-numerics-diffusers.md §2.4); kohya's prefixes follow its
 * networks/lora.py (LORA_PREFIX_UNET, LORA_PREFIX_TEXT_ENCODER1/2) as read
 * by diffusers' _convert_non_diffusers_lora_to_diffusers. The text encoders'
 * PEFT names come without "text_model." where transformers 5 drops it
 * (CLIPTextModel's state dict: text_encoder.encoder.layers...). Old diffusers
 * attention-processor names (attn1.processor.to_q_lora,
 * self_attn.to_q_lora) are rewritten before the lookup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/lora_impl.h"
#include "sd/strmap.h"

#define UNET "model.diffusion_model."
#define TE1 "conditioner.embedders.0.transformer.text_model."
#define TE2 "conditioner.embedders.1.model."
#define NAME_MAX_LEN 320

struct lora_names {
    sd_strmap *by_alias; /* alias -> lora_target */
    lora_target *targets;
    size_t n, cap;
};

/* ---- SGM -> diffusers UNet names ------------------------------------------------------- */

/* openaimodel ResBlock sub-modules -> diffusers ResnetBlock2D. */
static const char *const resnet_names[][2] = {
    {"in_layers.0", "norm1"},     {"in_layers.2", "conv1"}, {"emb_layers.1", "time_emb_proj"},
    {"out_layers.0", "norm2"},    {"out_layers.3", "conv2"}, {"skip_connection", "conv_shortcut"},
};

static const char *const top_names[][2] = {
    {"time_embed.0", "time_embedding.linear_1"}, {"time_embed.2", "time_embedding.linear_2"},
    {"label_emb.0.0", "add_embedding.linear_1"}, {"label_emb.0.2", "add_embedding.linear_2"},
    {"input_blocks.0.0", "conv_in"}, {"out.0", "conv_norm_out"}, {"out.2", "conv_out"},
};

static int resnet_part(const char *rest, const char **out)
{
    for (size_t i = 0; i < sizeof resnet_names / sizeof resnet_names[0]; i++)
        if (strcmp(rest, resnet_names[i][0]) == 0) return *out = resnet_names[i][1], 0;
    return -1;
}

/* "input_blocks.4.1.proj_in" -> "down_blocks.1.attentions.0.proj_in"; -1 for
 * names without a diffusers counterpart. slots = num_res_blocks + 1. */
static int sgm_to_diffusers(const char *sgm, int slots, char *out, size_t outlen)
{
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (strcmp(sgm, top_names[i][0]) == 0) return snprintf(out, outlen, "%s", top_names[i][1]), 0;
    int n, sub, used = 0;
    const char *res;
    if (sscanf(sgm, "input_blocks.%d.%d.%n", &n, &sub, &used) == 2 && used && n >= 1) {
        int level = (n - 1) / slots, j = (n - 1) % slots;
        const char *rest = sgm + used;
        if (j == slots - 1 && sub == 0 && strcmp(rest, "op") == 0)
            return snprintf(out, outlen, "down_blocks.%d.downsamplers.0.conv", level), 0;
        if (sub == 0 && resnet_part(rest, &res) == 0)
            return snprintf(out, outlen, "down_blocks.%d.resnets.%d.%s", level, j, res), 0;
        if (sub == 1) return snprintf(out, outlen, "down_blocks.%d.attentions.%d.%s", level, j, rest), 0;
        return -1;
    }
    if (sscanf(sgm, "middle_block.%d.%n", &sub, &used) == 1 && used) {
        const char *rest = sgm + used;
        if ((sub == 0 || sub == 2) && resnet_part(rest, &res) == 0)
            return snprintf(out, outlen, "mid_block.resnets.%d.%s", sub / 2, res), 0;
        if (sub == 1) return snprintf(out, outlen, "mid_block.attentions.0.%s", rest), 0;
        return -1;
    }
    if (sscanf(sgm, "output_blocks.%d.%d.%n", &n, &sub, &used) == 2 && used) {
        int level = n / slots, j = n % slots;
        const char *rest = sgm + used;
        if (sub == 0 && resnet_part(rest, &res) == 0)
            return snprintf(out, outlen, "up_blocks.%d.resnets.%d.%s", level, j, res), 0;
        if (sub >= 1 && strcmp(rest, "conv") == 0) /* the upsampler: .1 without attention, .2 after it */
            return snprintf(out, outlen, "up_blocks.%d.upsamplers.0.conv", level), 0;
        if (sub == 1) return snprintf(out, outlen, "up_blocks.%d.attentions.%d.%s", level, j, rest), 0;
    }
    return -1;
}

/* ---- building ---------------------------------------------------------------------------- */

static void underscored(const char *in, char *out, size_t outlen)
{
    size_t i = 0;
    for (; in[i] && i + 1 < outlen; i++) out[i] = in[i] == '.' ? '_' : in[i];
    out[i] = 0;
}

static lora_target *new_target(lora_names *ix, const st_tensor *w, const st_tensor *b, int64_t row0,
                               int64_t rows, lora_net net)
{
    /* Targets are referenced by pointer from the alias table, so the array
     * is sized once (lora_names_build: one per tensor + six per bigG layer). */
    if (ix->n == ix->cap) return NULL;
    lora_target *t = &ix->targets[ix->n++];
    int64_t per_row = 1;
    for (int d = 1; d < w->ndim; d++) per_row *= w->shape[d];
    *t = (lora_target){.weight = w, .bias = b, .row0 = row0, .rows = rows, .cols = per_row,
                       .kh = w->ndim == 4 ? w->shape[2] : 1, .kw = w->ndim == 4 ? w->shape[3] : 1, .net = net};
    return t;
}

/* Enters prefix + name for t (names longer than any checkpoint's are skipped). */
static int alias(lora_names *ix, lora_target *t, const char *prefix, const char *name)
{
    char full[2 * NAME_MAX_LEN];
    int n = snprintf(full, sizeof full, "%s%s", prefix, name);
    return n < 0 || (size_t)n >= sizeof full ? 0 : sd_strmap_put(ix->by_alias, full, t);
}

static const st_tensor *bias_of(const st_file *f, const char *prefix, const char *module)
{
    char name[2 * NAME_MAX_LEN];
    snprintf(name, sizeof name, "%s%s.bias", prefix, module);
    return st_find(f, name);
}

/* Every float tensor "<prefix><module>.weight" with at least one dimension. */
static int module_of(const st_tensor *t, const char *prefix, char *module, size_t len)
{
    size_t plen = strlen(prefix), n = strlen(t->name);
    if (strncmp(t->name, prefix, plen) != 0 || n < plen + 8 || strcmp(t->name + n - 7, ".weight") != 0 ||
        !t->is_float || t->ndim < 1 || n - plen - 7 >= len)
        return -1;
    memcpy(module, t->name + plen, n - plen - 7);
    module[n - plen - 7] = 0;
    return 0;
}

static int add_unet(lora_names *ix, const st_file *f, const st_tensor *t, int slots)
{
    char m[NAME_MAX_LEN], u[NAME_MAX_LEN], d[NAME_MAX_LEN], du[NAME_MAX_LEN];
    if (module_of(t, UNET, m, sizeof m)) return 0;
    lora_target *tg = new_target(ix, t, bias_of(f, UNET, m), 0, t->shape[0], LORA_UNET);
    if (!tg) return -1;
    underscored(m, u, sizeof u);
    int rc = alias(ix, tg, "lora_unet_", u) | alias(ix, tg, "diffusion_model.", m) |
             alias(ix, tg, "model.diffusion_model.", m);
    if (sgm_to_diffusers(m, slots, d, sizeof d) == 0) {
        underscored(d, du, sizeof du);
        rc |= alias(ix, tg, "lora_unet_", du) | alias(ix, tg, "unet.", d) |
              alias(ix, tg, "", d);
    }
    return rc;
}

static int add_te1(lora_names *ix, const st_file *f, const st_tensor *t)
{
    char m[NAME_MAX_LEN], u[NAME_MAX_LEN];
    if (module_of(t, TE1, m, sizeof m)) return 0;
    lora_target *tg = new_target(ix, t, bias_of(f, TE1, m), 0, t->shape[0], LORA_TE1);
    if (!tg) return -1;
    underscored(m, u, sizeof u);
    return alias(ix, tg, "lora_te1_text_model_", u) | alias(ix, tg, "lora_te_text_model_", u) |
           alias(ix, tg, "text_encoder.text_model.", m) | alias(ix, tg, "text_encoder.", m);
}

/* bigG layer i under its transformers names. */
static int add_te2_layer(lora_names *ix, const st_file *f, int i, int64_t width)
{
    static const struct {
        const char *hf, *sgm;
        int qkv; /* row block of in_proj, or -1 */
    } parts[] = {
        {"self_attn.q_proj", "attn.in_proj", 0}, {"self_attn.k_proj", "attn.in_proj", 1},
        {"self_attn.v_proj", "attn.in_proj", 2}, {"self_attn.out_proj", "attn.out_proj", -1},
        {"mlp.fc1", "mlp.c_fc", -1},             {"mlp.fc2", "mlp.c_proj", -1},
    };
    int rc = 0;
    for (size_t p = 0; p < sizeof parts / sizeof parts[0]; p++) {
        char w[NAME_MAX_LEN], b[NAME_MAX_LEN], m[NAME_MAX_LEN], u[NAME_MAX_LEN];
        const char *sep = parts[p].qkv >= 0 ? "_" : ".";
        snprintf(w, sizeof w, TE2 "transformer.resblocks.%d.%s%sweight", i, parts[p].sgm, sep);
        snprintf(b, sizeof b, TE2 "transformer.resblocks.%d.%s%sbias", i, parts[p].sgm, sep);
        const st_tensor *wt = st_find(f, w);
        if (!wt || !wt->is_float || wt->ndim != 2) continue;
        int64_t row0 = parts[p].qkv >= 0 ? parts[p].qkv * width : 0;
        int64_t rows = parts[p].qkv >= 0 ? width : wt->shape[0];
        if (row0 + rows > wt->shape[0]) continue;
        lora_target *tg = new_target(ix, wt, st_find(f, b), row0, rows, LORA_TE2);
        if (!tg) return -1;
        snprintf(m, sizeof m, "encoder.layers.%d.%s", i, parts[p].hf);
        underscored(m, u, sizeof u);
        rc |= alias(ix, tg, "lora_te2_text_model_", u) |
              alias(ix, tg, "text_encoder_2.text_model.", m) | alias(ix, tg, "text_encoder_2.", m);
    }
    return rc;
}

lora_names *lora_names_build(const st_file *ckpt, const sdxl_hparams *hp)
{
    lora_names *ix = calloc(1, sizeof *ix);
    if (!ix) return NULL;
    ix->cap = st_count(ckpt) + 6 * (size_t)hp->te2.layers;
    ix->targets = calloc(ix->cap, sizeof *ix->targets);
    ix->by_alias = sd_strmap_new();
    int rc = !ix->targets || !ix->by_alias;
    for (size_t i = 0; i < st_count(ckpt) && !rc; i++) {
        const st_tensor *t = st_get(ckpt, i);
        rc |= add_unet(ix, ckpt, t, hp->unet.num_res_blocks + 1) | add_te1(ix, ckpt, t);
    }
    for (int i = 0; i < hp->te2.layers && !rc; i++) rc |= add_te2_layer(ix, ckpt, i, hp->te2.width);
    if (rc) {
        lora_names_free(ix);
        return NULL;
    }
    return ix;
}

void lora_names_free(lora_names *ix)
{
    if (!ix) return;
    sd_strmap_free(ix->by_alias);
    free(ix->targets);
    free(ix);
}

/* ---- lookup ------------------------------------------------------------------------------- */

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Old diffusers attention-processor spellings -> module names:
 * "…attn1.processor.to_q_lora" -> "…attn1.to_q", "…to_out_lora" ->
 * "…to_out.0"; in the text encoders "self_attn.to_q_lora" -> "self_attn.q_proj".
 * 0 when something was rewritten. */
static int rewrite_processor_names(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = in; *p && n + 1 < outlen;) {
        if (strncmp(p, ".processor.", 11) == 0) { p += 10; continue; }
        out[n++] = *p++;
    }
    out[n] = 0;
    if (ends_with(out, n, "_lora")) out[n -= 5] = 0;
    static const char *const te[][2] = {{".to_q", ".q_proj"}, {".to_k", ".k_proj"}, {".to_v", ".v_proj"},
                                        {".to_out", ".out_proj"}};
    int text = n >= 12 && memcmp(out, "text_encoder", 12) == 0;
    for (size_t i = 0; text && i < 4; i++)
        if (ends_with(out, n, te[i][0]) && n - strlen(te[i][0]) + strlen(te[i][1]) < outlen) {
            strcpy(out + n - strlen(te[i][0]), te[i][1]);
            n = strlen(out);
        }
    if (!text && ends_with(out, n, ".to_out") && n + 2 < outlen) strcpy(out + n, ".0");
    return strcmp(in, out) != 0 ? 0 : -1;
}

const lora_target *lora_names_find(const lora_names *ix, const char *module)
{
    const lora_target *t = sd_strmap_get(ix->by_alias, module);
    char rewritten[NAME_MAX_LEN];
    if (!t && strlen(module) < sizeof rewritten && rewrite_processor_names(module, rewritten, sizeof rewritten) == 0)
        t = sd_strmap_get(ix->by_alias, rewritten);
    return t;
}
