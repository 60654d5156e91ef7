/* Reading a LoRA file: each key is split into a module name and a part
 * (the suffix tables of kohya's networks/lora.py, LyCORIS' modules and
 * PEFT's state dicts, as stable-diffusion.cpp's convert_tensor_name and
 * A1111's extensions-builtin/Lora/network_*.py read them), the parts of a
 * module are checked to form one of the known decompositions with
 * consistent shapes, the module is mapped onto a checkpoint layer
 * (lora_names.c) whose shape its delta must have, and its scale is fixed:
 *   the module's "scale" tensor (A1111 network.py calc_scale), else
 *   alpha / rank, alpha from the ".alpha" tensor, or for PEFT files from
 *   __metadata__ "lora_adapter_metadata" ("<component>.lora_alpha",
 *   "<component>.alpha_pattern"; "<component>.use_rslora": alpha/sqrt(rank));
 *   without an alpha 1. LoKr with two full factors and full diffs: 1.
 * Everything that matches nothing is listed; a file in which nothing
 * matches, or whose deltas have other shapes than the layers they name, or
 * whose names are SD 1.x/2.x UNet names, is refused as another model's. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd/lora_impl.h"
#include "sd/strmap.h"

#define MAX_LISTED 10000 /* unmatched names kept per file (the count is exact) */

static const struct {
    const char *suffix;
    lora_part part;
} suffixes[] = {
    {".lora_down.weight", P_DOWN}, {".lora_up.weight", P_UP}, {".lora_mid.weight", P_MID},
    {".lora_A.weight", P_DOWN}, {".lora_B.weight", P_UP},
    {".lora_A.default.weight", P_DOWN}, {".lora_B.default.weight", P_UP},
    {".lora.down.weight", P_DOWN}, {".lora.up.weight", P_UP},
    {"_lora.down.weight", P_DOWN}, {"_lora.up.weight", P_UP},
    {".lora_linear_layer.down.weight", P_DOWN}, {".lora_linear_layer.up.weight", P_UP},
    {".alpha", P_ALPHA}, {".scale", P_SCALE}, {".dora_scale", P_DORA},
    {".lora_magnitude_vector", P_DORA}, {".lora_magnitude_vector.weight", P_DORA},
    {".hada_w1_a", P_HADA_W1A}, {".hada_w1_b", P_HADA_W1B}, {".hada_w2_a", P_HADA_W2A},
    {".hada_w2_b", P_HADA_W2B}, {".hada_t1", P_HADA_T1}, {".hada_t2", P_HADA_T2},
    {".lokr_w1", P_LOKR_W1}, {".lokr_w1_a", P_LOKR_W1A}, {".lokr_w1_b", P_LOKR_W1B},
    {".lokr_w2", P_LOKR_W2}, {".lokr_w2_a", P_LOKR_W2A}, {".lokr_w2_b", P_LOKR_W2B}, {".lokr_t2", P_LOKR_T2},
    {".diff", P_DIFF}, {".diff_b", P_DIFF_B},
};

static const char *const part_names[P_COUNT] = {
    "lora_down", "lora_up", "lora_mid", "alpha", "scale", "dora_scale",
    "hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
    "lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
    "diff", "diff_b",
};

/* Names that exist in SD 1.x/2.x UNets and not in SDXL's: attention at the
 * first level (diffusers down_blocks.0 / up_blocks.3, SGM input_blocks.1-2
 * .1 and output_blocks.9-11). */
static const char *const sd1_markers[] = {
    "down_blocks_0_attentions", "down_blocks.0.attentions", "up_blocks_3_", "up_blocks.3.",
    "input_blocks_1_1_", "input_blocks.1.1.", "input_blocks_2_1_", "input_blocks.2.1.",
    "output_blocks_9_", "output_blocks.9.", "output_blocks_10_", "output_blocks.10.",
    "output_blocks_11_", "output_blocks.11.",
};

static atomic_uint next_uid = 1;

typedef struct {
    const char *name; /* the LoRA, for messages */
    char *err;
    size_t errlen;
    sd_lora_status status;
} parse_ctx;

static sd_lora_status fail(parse_ctx *c, sd_lora_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sd_lora_status fail(parse_ctx *c, sd_lora_status st, const char *fmt, ...)
{
    if (c->status) return c->status; /* the first cause is the one reported */
    int n = snprintf(c->err, c->errlen, "LoRA '%s': ", c->name);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < c->errlen) vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return c->status = st;
}

/* ---- keys -> modules ---------------------------------------------------------------------- */

static int split_key(const char *key, lora_part *part, size_t *module_len)
{
    size_t n = strlen(key), best = 0;
    int found = 0;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i].suffix);
        if (n > k && k > best && strcmp(key + n - k, suffixes[i].suffix) == 0) {
            best = k;
            *part = suffixes[i].part;
            found = 1;
        }
    }
    *module_len = n - best;
    return found ? 0 : -1;
}

static int list_unmatched(lora_file *lf, const char *name)
{
    if (lf->n_unmatched >= MAX_LISTED) return 0;
    char **grown = realloc(lf->unmatched, (lf->n_unmatched + 1) * sizeof *grown);
    if (!grown) return -1;
    lf->unmatched = grown;
    return (lf->unmatched[lf->n_unmatched++] = strdup(name)) ? 0 : -1;
}

static lora_module *module_named(lora_file *lf, sd_strmap *by_name, const char *name, size_t *cap)
{
    void *v = sd_strmap_get(by_name, name);
    if (v) return &lf->mods[(size_t)v - 1];
    if (lf->n_mods == *cap) {
        size_t ncap = *cap ? 2 * *cap : 64;
        lora_module *grown = realloc(lf->mods, ncap * sizeof *grown);
        if (!grown) return NULL;
        lf->mods = grown;
        *cap = ncap;
    }
    lora_module *m = &lf->mods[lf->n_mods];
    memset(m, 0, sizeof *m);
    if (!(m->name = strdup(name)) || sd_strmap_put(by_name, name, (void *)(lf->n_mods + 1))) {
        free(m->name);
        return NULL;
    }
    lf->n_mods++;
    return m;
}

static sd_lora_status collect_modules(parse_ctx *c, lora_file *lf)
{
    sd_strmap *by_name = sd_strmap_new();
    size_t cap = 0;
    if (!by_name) return fail(c, SD_LORA_ENOMEM, "out of memory");
    for (size_t i = 0; i < st_count(lf->f) && !c->status; i++) {
        const st_tensor *t = st_get(lf->f, i);
        lora_part part;
        size_t len;
        if (split_key(t->name, &part, &len)) {
            if (list_unmatched(lf, t->name)) fail(c, SD_LORA_ENOMEM, "out of memory");
            continue;
        }
        char *module = strndup(t->name, len);
        lora_module *m = module ? module_named(lf, by_name, module, &cap) : NULL;
        free(module);
        char msg[256];
        if (!m) fail(c, SD_LORA_ENOMEM, "out of memory");
        else if (m->part[part].data)
            fail(c, SD_LORA_EFILE, "malformed: module %.200s has two %s tensors", m->name, part_names[part]);
        else if (st_weight(t, &m->part[part], msg, sizeof msg))
            fail(c, SD_LORA_EFILE, "malformed: %s", msg);
    }
    sd_strmap_free(by_name);
    return c->status;
}

/* ---- the metadata of PEFT files -------------------------------------------------------------- */

typedef struct {
    const cJSON *root;
} peft_meta;

/* The PEFT component a module name belongs to, and the module's path in it. */
static const char *peft_component(const char *module, const char **path)
{
    static const char *const prefixes[] = {"text_encoder_2.", "text_encoder.", "unet."};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(module, prefixes[i], n) == 0) {
            *path = module + n;
            return prefixes[i];
        }
    }
    return NULL;
}

static const cJSON *meta_field(const peft_meta *pm, const char *component, const char *field)
{
    char key[64];
    snprintf(key, sizeof key, "%s%s", component, field); /* component ends with '.' */
    return pm->root ? cJSON_GetObjectItemCaseSensitive(pm->root, key) : NULL;
}

/* PEFT's get_pattern_key: a pattern names the module itself or a trailing
 * run of its dotted path (patterns are taken literally, not as regexes). */
static int pattern_matches(const char *pattern, const char *path)
{
    size_t n = strlen(path), k = strlen(pattern);
    return n >= k && strcmp(path + n - k, pattern) == 0 && (n == k || path[n - k - 1] == '.');
}

/* The alpha PEFT gives the module, or NAN when the file says nothing. */
static double peft_alpha(const peft_meta *pm, const char *module, int *rslora)
{
    const char *path, *comp = peft_component(module, &path);
    *rslora = 0;
    if (!comp) return NAN;
    *rslora = cJSON_IsTrue(meta_field(pm, comp, "use_rslora"));
    const cJSON *patterns = meta_field(pm, comp, "alpha_pattern"), *p;
    cJSON_ArrayForEach(p, patterns)
        if (p->string && cJSON_IsNumber(p) && pattern_matches(p->string, path)) return p->valuedouble;
    const cJSON *alpha = meta_field(pm, comp, "lora_alpha");
    return cJSON_IsNumber(alpha) ? alpha->valuedouble : NAN;
}

/* ---- one module --------------------------------------------------------------------------------- */

#define HAS(m, p) ((m)->part[p].data != NULL)
#define DIM(m, p, d) ((m)->part[p].shape[d])
#define NDIM(m, p) ((m)->part[p].ndim)

/* The delta's geometry: rows x cols elements, kernel kh x kw when the
 * factors say it (kernel_known), the rank alpha divides by (0: none). */
typedef struct {
    int64_t rows, cols, kh, kw, rank;
    bool kernel_known;
} delta_shape;

static bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
    return a >= 0 && b >= 0 && !__builtin_mul_overflow(a, b, out);
}

static int64_t flat_cols(const sd_weight *w) /* elements per first-axis entry; -1 when it overflows */
{
    int64_t n = 1;
    for (int d = 1; d < w->ndim; d++)
        if (!mul_ok(n, w->shape[d], &n)) return -1;
    return n;
}

/* The name of a part of the module with a zero-size dimension, or NULL.
 * Such a factor is empty: every product over it is a zero-rank product
 * (a division by zero in the merge), and its other dimensions are not
 * bounded by the file's size, so nothing is computed from them. */
static const char *empty_part(const lora_module *m)
{
    for (int p = 0; p < P_COUNT; p++)
        for (int d = 0; HAS(m, p) && d < NDIM(m, p); d++)
            if (DIM(m, p, d) < 1) return part_names[p];
    return NULL;
}

/* The module's type, and how many types its tensors belong to (1 when sane;
 * 0 for a module of only alpha/scale/dora_scale). */
static lora_kind kind_of(const lora_module *m, int *types)
{
    int lora = HAS(m, P_DOWN) || HAS(m, P_UP) || HAS(m, P_MID);
    int loha = 0, lokr = 0, full = HAS(m, P_DIFF) || HAS(m, P_DIFF_B);
    for (int p = P_HADA_W1A; p <= P_HADA_T2; p++) loha |= HAS(m, p);
    for (int p = P_LOKR_W1; p <= P_LOKR_T2; p++) lokr |= HAS(m, p);
    *types = lora + loha + lokr + full;
    return lora ? K_LORA : loha ? K_LOHA : lokr ? K_LOKR : K_FULL;
}

static sd_lora_status shape_lora(parse_ctx *c, const lora_module *m, delta_shape *s)
{
    if (!HAS(m, P_DOWN) || !HAS(m, P_UP))
        return fail(c, SD_LORA_EFILE, "malformed: module %.200s has %s but no %s", m->name,
                    HAS(m, P_DOWN) ? "lora_down" : "lora_up", HAS(m, P_DOWN) ? "lora_up" : "lora_down");
    int dn = NDIM(m, P_DOWN), un = NDIM(m, P_UP);
    int64_t r = DIM(m, P_DOWN, 0);
    bool up_ok = (un == 2 || (un == 4 && DIM(m, P_UP, 2) == 1 && DIM(m, P_UP, 3) == 1)) && DIM(m, P_UP, 1) == r;
    bool down_ok = dn == 2 || dn == 4;
    bool mid_ok = !HAS(m, P_MID) || (NDIM(m, P_MID) == 4 && DIM(m, P_MID, 0) == r && DIM(m, P_MID, 1) == r &&
                                     (dn == 2 || (DIM(m, P_DOWN, 2) == 1 && DIM(m, P_DOWN, 3) == 1)));
    if (!up_ok || !down_ok || !mid_ok || r < 1)
        return fail(c, SD_LORA_EFILE, "malformed: module %.200s: lora_up, lora_down%s have inconsistent shapes",
                    m->name, HAS(m, P_MID) ? " and lora_mid" : "");
    const sd_weight *k = HAS(m, P_MID) ? &m->part[P_MID] : &m->part[P_DOWN];
    s->kh = k->ndim == 4 ? k->shape[2] : 1;
    s->kw = k->ndim == 4 ? k->shape[3] : 1;
    s->rows = DIM(m, P_UP, 0);
    s->rank = r;
    s->kernel_known = true;
    int64_t khw;
    if (!mul_ok(s->kh, s->kw, &khw) || !mul_ok(DIM(m, P_DOWN, 1), khw, &s->cols))
        return fail(c, SD_LORA_EFILE, "malformed: module %.200s has impossible shapes", m->name);
    return SD_LORA_OK;
}

static sd_lora_status shape_loha(parse_ctx *c, const lora_module *m, delta_shape *s)
{
    for (int p = P_HADA_W1A; p <= P_HADA_W2B; p++)
        if (!HAS(m, p)) return fail(c, SD_LORA_EFILE, "malformed: LoHa module %.200s has no %s", m->name, part_names[p]);
    bool tucker = HAS(m, P_HADA_T1) || HAS(m, P_HADA_T2), ok;
    const sd_weight *w1a = &m->part[P_HADA_W1A], *w1b = &m->part[P_HADA_W1B];
    const sd_weight *w2a = &m->part[P_HADA_W2A], *w2b = &m->part[P_HADA_W2B];
    if (tucker) { /* t [r, r, kh, kw], a [r, out], b [r, in] per factor (HadaWeightTucker) */
        const sd_weight *t1 = &m->part[P_HADA_T1], *t2 = &m->part[P_HADA_T2];
        ok = HAS(m, P_HADA_T1) && HAS(m, P_HADA_T2) && t1->ndim == 4 && t2->ndim == 4 && w1a->ndim == 2 &&
             w1b->ndim == 2 && w2a->ndim == 2 && w2b->ndim == 2 && t1->shape[0] == w1a->shape[0] &&
             t1->shape[1] == w1b->shape[0] && t2->shape[0] == w2a->shape[0] && t2->shape[1] == w2b->shape[0] &&
             w1a->shape[1] == w2a->shape[1] && w1b->shape[1] == w2b->shape[1] && t1->shape[2] == t2->shape[2] &&
             t1->shape[3] == t2->shape[3];
        s->rows = w1a->shape[1];
        s->kh = t1->shape[2];
        s->kw = t1->shape[3];
        s->kernel_known = true;
        int64_t khw;
        ok = ok && mul_ok(s->kh, s->kw, &khw) && mul_ok(w1b->shape[1], khw, &s->cols);
    } else { /* a [out, r], b [r, in(*kh*kw)] per factor (HadaWeight) */
        ok = w1a->ndim == 2 && w2a->ndim == 2 && w1b->ndim >= 2 && w2b->ndim >= 2 &&
             w1a->shape[1] == w1b->shape[0] && w2a->shape[1] == w2b->shape[0] && w1a->shape[0] == w2a->shape[0] &&
             flat_cols(w1b) >= 0 && flat_cols(w1b) == flat_cols(w2b);
        s->rows = w1a->shape[0];
        s->cols = flat_cols(w1b);
        s->kernel_known = w1b->ndim == 4;
        s->kh = s->kernel_known ? w1b->shape[2] : 1;
        s->kw = s->kernel_known ? w1b->shape[3] : 1;
    }
    s->rank = w1b->shape[0];
    if (!ok || s->rank < 1)
        return fail(c, SD_LORA_EFILE, "malformed: LoHa module %.200s has inconsistent shapes", m->name);
    return SD_LORA_OK;
}

static sd_lora_status shape_lokr(parse_ctx *c, const lora_module *m, delta_shape *s)
{
    const sd_weight *w1 = &m->part[P_LOKR_W1], *w1a = &m->part[P_LOKR_W1A], *w1b = &m->part[P_LOKR_W1B];
    const sd_weight *w2 = &m->part[P_LOKR_W2], *w2a = &m->part[P_LOKR_W2A], *w2b = &m->part[P_LOKR_W2B];
    const sd_weight *t2 = &m->part[P_LOKR_T2];
    int64_t a, cdim, b, d, kh = 1, kw = 1;
    bool ok = true;
    /* w1 [a, c]: lokr_w1, or lokr_w1_a [a, r] @ lokr_w1_b [r, c] */
    if (HAS(m, P_LOKR_W1)) {
        ok = w1->ndim == 2 && !HAS(m, P_LOKR_W1A) && !HAS(m, P_LOKR_W1B);
        a = w1->shape[0], cdim = w1->shape[1];
    } else {
        ok = HAS(m, P_LOKR_W1A) && HAS(m, P_LOKR_W1B) && w1a->ndim == 2 && w1b->ndim == 2 &&
             w1a->shape[1] == w1b->shape[0];
        a = w1a->shape[0], cdim = w1b->shape[1];
    }
    /* w2 [b, d(, kh, kw)]: lokr_w2; lokr_w2_a [b, r] @ lokr_w2_b [r, d(, kh, kw)];
     * or Tucker lokr_t2 [r, r, kh, kw] with lokr_w2_a [r, b], lokr_w2_b [r, d] */
    if (HAS(m, P_LOKR_W2)) {
        ok = ok && (w2->ndim == 2 || w2->ndim == 4) && !HAS(m, P_LOKR_W2A) && !HAS(m, P_LOKR_W2B) &&
             !HAS(m, P_LOKR_T2);
        b = w2->shape[0], d = w2->shape[1];
        if (w2->ndim == 4) kh = w2->shape[2], kw = w2->shape[3];
    } else if (HAS(m, P_LOKR_T2)) {
        ok = ok && HAS(m, P_LOKR_W2A) && HAS(m, P_LOKR_W2B) && t2->ndim == 4 && w2a->ndim == 2 && w2b->ndim == 2 &&
             t2->shape[0] == w2a->shape[0] && t2->shape[1] == w2b->shape[0];
        b = w2a->shape[1], d = w2b->shape[1], kh = t2->shape[2], kw = t2->shape[3];
    } else {
        ok = ok && HAS(m, P_LOKR_W2A) && HAS(m, P_LOKR_W2B) && w2a->ndim == 2 &&
             (w2b->ndim == 2 || w2b->ndim == 4) && w2a->shape[1] == w2b->shape[0];
        b = w2a->shape[0], d = w2b->shape[1];
        if (ok && w2b->ndim == 4) kh = w2b->shape[2], kw = w2b->shape[3];
    }
    int64_t cd;
    ok = ok && mul_ok(a, b, &s->rows) && mul_ok(cdim, d, &cd) && mul_ok(kh, kw, &s->cols) &&
         mul_ok(cd, s->cols, &s->cols);
    if (!ok) return fail(c, SD_LORA_EFILE, "malformed: LoKr module %.200s has missing or inconsistent factors", m->name);
    s->kh = kh, s->kw = kw, s->kernel_known = true;
    s->rank = HAS(m, P_LOKR_W1B) ? w1b->shape[0] : HAS(m, P_LOKR_W2B) ? w2b->shape[0] : 0;
    return SD_LORA_OK;
}

static sd_lora_status shape_full(parse_ctx *c, const lora_module *m, delta_shape *s)
{
    const sd_weight *diff = &m->part[P_DIFF], *db = &m->part[P_DIFF_B];
    if (HAS(m, P_DIFF)) {
        s->rows = diff->shape[0];
        s->cols = flat_cols(diff);
        s->kernel_known = diff->ndim == 4;
        s->kh = s->kernel_known ? diff->shape[2] : 1;
        s->kw = s->kernel_known ? diff->shape[3] : 1;
        if (diff->ndim < 1 || s->cols < 0 || (HAS(m, P_DIFF_B) && (db->ndim != 1 || db->shape[0] != s->rows)))
            return fail(c, SD_LORA_EFILE, "malformed: module %.200s: diff and diff_b disagree", m->name);
    } else {
        if (db->ndim != 1) return fail(c, SD_LORA_EFILE, "malformed: module %.200s: diff_b is not a vector", m->name);
        s->rows = db->shape[0];
        s->cols = -1; /* only the bias */
    }
    s->rank = 0;
    return SD_LORA_OK;
}

static int read_scalar(const sd_weight *w, double *out)
{
    if (sd_weight_numel(w) != 1) return -1;
    float v;
    sd_widen(w->dtype, w->data, 0, 1, &v);
    *out = v;
    return isfinite(v) ? 0 : -1;
}

/* The module's own factor (see the top of the file). */
static sd_lora_status module_scale(parse_ctx *c, lora_module *m, const delta_shape *s, const peft_meta *pm)
{
    double v, alpha = NAN;
    int rslora = 0;
    if (HAS(m, P_SCALE)) {
        if (read_scalar(&m->part[P_SCALE], &v))
            return fail(c, SD_LORA_EFILE, "malformed: module %.200s: scale is not one finite number", m->name);
        m->scale = (float)v;
        return SD_LORA_OK;
    }
    if (HAS(m, P_ALPHA)) {
        if (read_scalar(&m->part[P_ALPHA], &alpha))
            return fail(c, SD_LORA_EFILE, "malformed: module %.200s: alpha is not one finite number", m->name);
    } else if (m->kind == K_LORA) {
        alpha = peft_alpha(pm, m->name, &rslora);
    }
    if (m->kind == K_FULL || s->rank == 0 || isnan(alpha)) m->scale = 1.0f;
    else m->scale = (float)(rslora ? alpha / sqrt((double)s->rank) : alpha / (double)s->rank);
    return SD_LORA_OK;
}

/* Whether the delta fits the layer; when not, says how. */
static bool fits(const lora_module *m, const delta_shape *s, const lora_target *t, char *why, size_t len)
{
    if (s->cols >= 0 && (s->rows != t->rows || s->cols != t->cols || (s->kernel_known && (s->kh != t->kh || s->kw != t->kw)))) {
        char have[128];
        snprintf(why, len, "%.200s gives a [%lld, %lld] delta (kernel %lldx%lld), but %s is %s%s", m->name,
                 (long long)s->rows, (long long)s->cols, (long long)s->kh, (long long)s->kw, t->weight->name,
                 st_shape_str(t->weight, have, sizeof have), t->rows != t->weight->shape[0] ? " (a row block of it)" : "");
        return false;
    }
    if (HAS(m, P_DIFF_B) && (!t->bias || m->part[P_DIFF_B].shape[0] != t->rows)) {
        snprintf(why, len, "%.200s has a bias delta, but %s has %s", m->name, t->weight->name,
                 t->bias ? "a bias of another length" : "no bias");
        return false;
    }
    if (HAS(m, P_DORA)) {
        const sd_weight *ds = &m->part[P_DORA];
        int64_t n = sd_weight_numel(ds), in = t->weight->ndim >= 2 ? t->weight->shape[1] : 0;
        if (in < 1 || !((ds->ndim >= 1 && ds->shape[0] == t->rows && n == t->rows) || n == in)) {
            snprintf(why, len, "%.200s has a dora_scale of %lld values for %lld rows of %lld inputs", m->name,
                     (long long)n, (long long)t->rows, (long long)in);
            return false;
        }
    }
    return true;
}

/* Checks and maps one module. A delta that does not fit its layer returns
 * SD_LORA_EMISMATCH with the reason in `why` (the file is read to its end
 * first, so that a malformed tensor further on is what gets reported). */
static sd_lora_status check_module(parse_ctx *c, lora_file *lf, lora_module *m, const lora_names *ix,
                                   const peft_meta *pm, char *why, size_t len)
{
    int types;
    m->kind = kind_of(m, &types);
    if (types > 1)
        return fail(c, SD_LORA_EFILE, "malformed: module %.200s mixes tensors of different LoRA types", m->name);
    if (types == 0) /* only alpha/scale/dora_scale: nothing to apply */
        return list_unmatched(lf, m->name) ? fail(c, SD_LORA_ENOMEM, "out of memory") : SD_LORA_OK;
    const char *empty = empty_part(m);
    if (empty) return fail(c, SD_LORA_EFILE, "malformed: module %.200s: %s has a zero-size dimension", m->name, empty);
    delta_shape s = {0};
    sd_lora_status st = m->kind == K_LORA ? shape_lora(c, m, &s) : m->kind == K_LOHA ? shape_loha(c, m, &s)
                      : m->kind == K_LOKR ? shape_lokr(c, m, &s) : shape_full(c, m, &s);
    if (st || (st = module_scale(c, m, &s, pm))) return st;
    const lora_target *t = lora_names_find(ix, m->name);
    if (!t) return list_unmatched(lf, m->name) ? fail(c, SD_LORA_ENOMEM, "out of memory") : SD_LORA_OK;
    if (!fits(m, &s, t, why, len)) return SD_LORA_EMISMATCH;
    m->target = t;
    m->dora_on_out = HAS(m, P_DORA) && m->part[P_DORA].ndim >= 1 && m->part[P_DORA].shape[0] == t->rows &&
                     sd_weight_numel(&m->part[P_DORA]) == t->rows;
    lf->matched++;
    lf->kinds |= 1u << m->kind;
    lf->peft |= strncmp(m->name, "unet.", 5) == 0 || strncmp(m->name, "text_encoder", 12) == 0;
    lf->kohya |= strncmp(m->name, "lora_", 5) == 0;
    lf->locon |= m->kind == K_LORA && t->kh * t->kw > 1;
    lf->dora |= HAS(m, P_DORA);
    lf->tucker |= HAS(m, P_MID) || HAS(m, P_HADA_T1) || HAS(m, P_LOKR_T2);
    return SD_LORA_OK;
}

/* ---- the whole file ------------------------------------------------------------------------------ */

static const char *sd1_marker_in(const lora_file *lf)
{
    for (size_t i = 0; i < lf->n_mods; i++)
        for (size_t k = 0; k < sizeof sd1_markers / sizeof sd1_markers[0]; k++)
            if (strstr(lf->mods[i].name, sd1_markers[k])) return lf->mods[i].name;
    return NULL;
}

static void describe_format(lora_file *lf)
{
    static const char *const kinds[K_COUNT] = {"LoRA", "LyCORIS LoHa", "LyCORIS LoKr", "LyCORIS full diff"};
    char *out = lf->format;
    size_t len = sizeof lf->format, n = 0;
    for (int k = 0; k < K_COUNT; k++) {
        if (!(lf->kinds & (1u << k))) continue;
        const char *style = k != K_LORA ? "" : lf->peft && !lf->kohya ? "diffusers/PEFT " : lf->peft ? "kohya + PEFT " : "kohya ";
        n += (size_t)snprintf(out + n, n < len ? len - n : 0, "%s%s%s", n ? " + " : "", style, kinds[k]);
        if (k == K_LORA && lf->locon) n += (size_t)snprintf(out + n, n < len ? len - n : 0, " + LoCon");
    }
    if (lf->tucker) n += (size_t)snprintf(out + n, n < len ? len - n : 0, " (Tucker)");
    if (lf->dora) snprintf(out + n, n < len ? len - n : 0, " + DoRA");
}

static sd_lora_status refuse_other_models(parse_ctx *c, lora_file *lf)
{
    char what[256];
    ckpt_kind kind = ckpt_identify(lf->f, what, sizeof what);
    if (kind == CKPT_EMPTY) return fail(c, SD_LORA_EFILE, "%s has no tensors: not a LoRA", lf->path);
    if (kind != CKPT_LORA && kind != CKPT_UNKNOWN)
        return fail(c, SD_LORA_EFILE, "%s is %s, not a LoRA", lf->path, what);
    return SD_LORA_OK;
}

static sd_lora_status parse_metadata(parse_ctx *c, const lora_file *lf, cJSON **root)
{
    const char *text = st_metadata(lf->f, "lora_adapter_metadata");
    *root = text ? cJSON_Parse(text) : NULL;
    if (text && !cJSON_IsObject(*root))
        return fail(c, SD_LORA_EFILE, "malformed: its lora_adapter_metadata is not a JSON object");
    return SD_LORA_OK;
}

sd_lora_status lora_file_parse(st_file *f, const char *path, const char *name, const lora_names *ix,
                               lora_file **out, char *err, size_t errlen)
{
    parse_ctx c = {.name = name, .err = err, .errlen = errlen};
    lora_file *lf = calloc(1, sizeof *lf);
    *out = NULL;
    if (!lf || !(lf->path = strdup(path)) || !(lf->name = strdup(name))) {
        st_close(f);
        lora_file_free(lf);
        return fail(&c, SD_LORA_ENOMEM, "out of memory");
    }
    lf->f = f;
    lf->uid = atomic_fetch_add(&next_uid, 1);
    cJSON *meta = NULL;
    char mismatch[640] = "";
    sd_lora_status st = refuse_other_models(&c, lf);
    if (!st) st = parse_metadata(&c, lf, &meta);
    if (!st) st = collect_modules(&c, lf);
    peft_meta pm = {meta};
    for (size_t i = 0; i < lf->n_mods && (!st || st == SD_LORA_EMISMATCH); i++) {
        char why[640];
        sd_lora_status ms = check_module(&c, lf, &lf->mods[i], ix, &pm, why, sizeof why);
        if (ms == SD_LORA_EMISMATCH && !mismatch[0]) snprintf(mismatch, sizeof mismatch, "%s", why);
        if (ms) st = ms;
    }
    cJSON_Delete(meta);
    const char *sd1 = st == SD_LORA_EFILE || st == SD_LORA_ENOMEM ? NULL : sd1_marker_in(lf);
    if (sd1) st = fail(&c, SD_LORA_EMISMATCH, "a LoRA for SD 1.x/2.x, not SDXL (%.200s: SDXL's UNet has no "
                       "attention there)", sd1);
    else if (st == SD_LORA_EMISMATCH) fail(&c, st, "made for another model: %s", mismatch);
    else if (!st && !lf->n_mods) st = fail(&c, SD_LORA_EFILE, "%s holds no LoRA tensors (first key: %.200s)", path,
                                           st_count(f) ? st_get(f, 0)->name : "none");
    else if (!st && !lf->matched)
        st = fail(&c, SD_LORA_EMISMATCH, "none of its %zu modules matches a layer of this SDXL checkpoint "
                  "(first: %.200s)", lf->n_mods, lf->mods[0].name);
    if (st) {
        lora_file_free(lf);
        return st;
    }
    describe_format(lf);
    *out = lf;
    return SD_LORA_OK;
}

sd_lora_status lora_file_load(const char *path, const char *name, const lora_names *ix, lora_file **out,
                              char *err, size_t errlen)
{
    *out = NULL;
    struct stat sb;
    st_file *f;
    char msg[512];
    if (stat(path, &sb) != 0) snprintf(msg, sizeof msg, "%s: %s", path, strerror(errno));
    if (stat(path, &sb) != 0 || st_open(path, &f, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "LoRA '%s': %s", name, msg);
        return SD_LORA_EFILE;
    }
    sd_lora_status st = lora_file_parse(f, path, name, ix, out, err, errlen);
    if (!st) {
        (*out)->mapped = true;
        (*out)->size = (int64_t)sb.st_size;
        (*out)->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    }
    return st;
}

void lora_file_free(lora_file *lf)
{
    if (!lf) return;
    for (size_t i = 0; i < lf->n_mods; i++) free(lf->mods[i].name);
    for (size_t i = 0; i < lf->n_unmatched; i++) free(lf->unmatched[i]);
    free(lf->mods);
    free(lf->unmatched);
    st_close(lf->f);
    free(lf->path);
    free(lf->name);
    free(lf);
}

/* Whether p lies in a mapping of a file (the inode column of
 * /proc/self/maps): only there can pages be dropped and read back. */
bool lora_is_file_mapping(const void *p)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return false;
    char line[4096];
    bool file = false;
    uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, maps)) {
        unsigned long long begin, end, inode;
        if (sscanf(line, "%llx-%llx %*s %*s %*s %llu", &begin, &end, &inode) == 3 && a >= begin && a < end) {
            file = inode != 0;
            break;
        }
    }
    fclose(maps);
    return file;
}

void lora_release_pages(const void *data, size_t len)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t begin = ((uintptr_t)data + page - 1) & ~(page - 1), end = ((uintptr_t)data + len) & ~(page - 1);
    if (end > begin) madvise((void *)begin, end - begin, MADV_DONTNEED);
}
