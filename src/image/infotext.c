/* A1111 infotext builder and parser (see infotext.h). Behaviour follows
 * AUTOMATIC1111 stable-diffusion-webui 1.10: modules/processing.py
 * create_infotext (key order, the "k if k == v" rule, the final strip()),
 * modules/infotext_utils.py quote() and parse_generation_parameters (which
 * line is the parameters line, where the negative prompt starts). */
#include "image/infotext.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/utf8.h"
#include "sd/unicode.h"

/* create_infotext's dict literal, in order; Version and User follow the
 * extra_generation_params. */
static const char *const FIXED_KEYS[] = {
    "Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed", "Face restoration", "Size",
    "Model hash", "Model", "FP8 weight", "Cache FP16 weight for LoRA", "VAE hash", "VAE", "Variation seed",
    "Variation seed strength", "Seed resize from", "Denoising strength", "Conditional mask weight", "Clip skip",
    "ENSD", "Token merging ratio", "Token merging ratio hr", "Init image hash", "RNG", "Tiling",
};
#define N_FIXED (sizeof FIXED_KEYS / sizeof FIXED_KEYS[0])
enum { K_STEPS, K_SAMPLER, K_SCHEDULE, K_CFG, K_SEED = 5, K_SIZE = 7, K_MODEL_HASH, K_MODEL, K_VAE_HASH = 12, K_VAE,
       K_DENOISE = 17, K_CLIP_SKIP = 19, K_RNG = 24 };

static const char NEGATIVE[] = "Negative prompt: ";

/* ---- a growable string ---------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} sb;

static void sb_put(sb *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static char *sb_take(sb *b)
{
    if (b->oom) { free(b->p); return NULL; }
    if (!b->p) sb_put(b, "", 0);
    return b->oom ? NULL : b->p;
}

/* ---- quoting ---------------------------------------------------------------- */

/* json.dumps(s, ensure_ascii=False): escapes '"', '\\' and C0 controls. */
static void json_dump(sb *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        const char *esc = NULL;
        char u[8];
        switch (*p) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (*p < 0x20) { snprintf(u, sizeof u, "\\u%04x", *p); esc = u; }
        }
        if (esc) sb_puts(b, esc);
        else sb_put(b, (const char *)p, 1);
    }
    sb_put(b, "\"", 1);
}

static int needs_quote(const char *s) { return strpbrk(s, ",\n:") != NULL; }

static void put_quoted(sb *b, const char *s)
{
    if (needs_quote(s)) json_dump(b, s);
    else sb_puts(b, s);
}

char *infotext_quote(const char *s)
{
    sb b = {0};
    put_quoted(&b, s);
    return sb_take(&b);
}

/* ---- numbers ---------------------------------------------------------------- */

/* Python's repr(float): the shortest digits that round-trip, positional for
 * decimal exponents -4..15, else d.ddde+XX. */
static void py_float_repr(double v, char buf[32])
{
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, v);
        if (strtod(e, NULL) == v) break;
    }
    char digits[20];
    size_t nd = 0;
    const char *p = e;
    int neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 < -4 || exp10 >= 16) {
        *o++ = digits[0];
        if (nd > 1) { *o++ = '.'; memcpy(o, digits + 1, nd - 1); o += nd - 1; }
        snprintf(o, 8, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10) % 1000); /* doubles stop at e+308 */
    } else if (exp10 < 0) {
        *o++ = '0'; *o++ = '.';
        for (int z = 0; z < -exp10 - 1; z++) *o++ = '0';
        memcpy(o, digits, nd); o += nd; *o = 0;
    } else {
        for (int k = 0; k <= exp10; k++) *o++ = (size_t)k < nd ? digits[k] : '0';
        *o++ = '.';
        if ((size_t)exp10 + 1 < nd) { memcpy(o, digits + exp10 + 1, nd - exp10 - 1); o += nd - exp10 - 1; }
        else *o++ = '0';
        *o = 0;
    }
}

char *infotext_number(double v, char buf[32])
{
    if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0) snprintf(buf, 32, "%.0f", v);
    else if (isnan(v)) snprintf(buf, 32, "nan");
    else if (isinf(v)) snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    else py_float_repr(v, buf);
    if (!strcmp(buf, "-0")) strcpy(buf, "0");
    return buf;
}

/* ---- building --------------------------------------------------------------- */

typedef struct {
    const char *key, *value; /* value NULL: a None in A1111's dict */
    bool verbatim;
} slot;

typedef struct {
    slot *s;
    size_t n;
} slots;

/* dict[key] = value: updates in place or appends. */
static void slot_set(slots *d, const char *key, const char *value, bool verbatim)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->s[i].key, key)) {
            d->s[i].value = value;
            d->s[i].verbatim = verbatim;
            return;
        }
    d->s[d->n++] = (slot){key, value, verbatim};
}

/* The typed fields' text, in A1111's fixed order (nums holds the numbers). */
static void fill_fixed(const a1111_infotext *t, slots *d, char nums[][32])
{
    for (size_t k = 0; k < N_FIXED; k++) d->s[d->n++] = (slot){FIXED_KEYS[k], NULL, false};
    slot *s = d->s;
    if (t->steps != INFOTEXT_NO_INT) s[K_STEPS].value = (snprintf(nums[0], 32, "%d", t->steps), nums[0]);
    s[K_SAMPLER].value = t->sampler;
    s[K_SCHEDULE].value = t->schedule_type;
    if (!isnan(t->cfg_scale)) s[K_CFG].value = infotext_number(t->cfg_scale, nums[1]);
    if (t->seed != INFOTEXT_NO_SEED) s[K_SEED].value = (snprintf(nums[2], 32, "%" PRId64, t->seed), nums[2]);
    if (t->width != INFOTEXT_NO_INT && t->height != INFOTEXT_NO_INT)
        s[K_SIZE].value = (snprintf(nums[3], 32, "%dx%d", t->width, t->height), nums[3]);
    s[K_MODEL_HASH].value = t->model_hash;
    s[K_MODEL].value = t->model;
    s[K_VAE_HASH].value = t->vae_hash;
    s[K_VAE].value = t->vae;
    if (!isnan(t->denoising_strength)) s[K_DENOISE].value = infotext_number(t->denoising_strength, nums[4]);
    if (t->clip_skip > 1 && t->clip_skip != INFOTEXT_NO_INT)
        s[K_CLIP_SKIP].value = (snprintf(nums[5], 32, "%d", t->clip_skip), nums[5]);
    s[K_RNG].value = t->rng;
}

static void put_pair(sb *b, const slot *s, bool *first)
{
    if (!s->value) return;
    if (!*first) sb_puts(b, ", ");
    *first = false;
    sb_puts(b, s->key);
    if (!strcmp(s->key, s->value)) return;
    sb_puts(b, ": ");
    if (s->verbatim) sb_puts(b, s->value);
    else put_quoted(b, s->value);
}

/* Python's str.strip() on UTF-8 text, in place. */
static void py_strip(sb *b)
{
    if (!b->p) return;
    size_t i = 0, j = b->len;
    uint32_t cp;
    while (i < j) {
        size_t k = i;
        if (utf8_next(b->p, j, &k, &cp) != 0 || !uni_py_is_space(cp)) break;
        i = k;
    }
    while (j > i) {
        size_t k = j - 1;
        while (k > i && ((unsigned char)b->p[k] & 0xC0) == 0x80) k--;
        size_t e = k;
        if (utf8_next(b->p, j, &e, &cp) != 0 || e != j || !uni_py_is_space(cp)) break;
        j = k;
    }
    memmove(b->p, b->p + i, j - i);
    b->len = j - i;
    b->p[b->len] = 0;
}

void infotext_init(a1111_infotext *t)
{
    memset(t, 0, sizeof *t);
    t->steps = t->width = t->height = t->clip_skip = INFOTEXT_NO_INT;
    t->seed = INFOTEXT_NO_SEED;
    t->cfg_scale = t->denoising_strength = NAN;
}

char *infotext_build(const a1111_infotext *t)
{
    slots d = {calloc(N_FIXED + t->n_extra + 2, sizeof(slot)), 0};
    if (!d.s) return NULL;
    char nums[6][32];
    fill_fixed(t, &d, nums);
    for (size_t i = 0; i < t->n_extra; i++) slot_set(&d, t->extra[i].key, t->extra[i].value, t->extra[i].verbatim);
    slot_set(&d, "Version", t->version, false);
    slot_set(&d, "User", t->user, false);

    sb b = {0};
    sb_puts(&b, t->prompt ? t->prompt : "");
    if (t->negative_prompt && *t->negative_prompt) {
        sb_puts(&b, "\n");
        sb_puts(&b, NEGATIVE);
        sb_puts(&b, t->negative_prompt);
    }
    sb_puts(&b, "\n");
    bool first = true;
    for (size_t i = 0; i < d.n; i++) put_pair(&b, &d.s[i], &first);
    for (size_t i = 0; i < t->n_appended; i++) {
        slot s = {t->appended[i].key, t->appended[i].value, t->appended[i].verbatim};
        put_pair(&b, &s, &first);
    }
    if (t->trailing && *t->trailing) {
        sb_puts(&b, "\n");
        sb_puts(&b, t->trailing);
    }
    free(d.s);
    py_strip(&b);
    return sb_take(&b);
}

/* ---- parsing ---------------------------------------------------------------- */

/* Parser storage: one arena for every string, and the pair arrays. */
typedef struct {
    char *arena;
    size_t used, cap;
    infotext_param *extra, *appended;
} store;

static char *store_str(store *st, const char *s, size_t n)
{
    char *p = st->arena + st->used; /* cap is sized for the worst case up front */
    memcpy(p, s, n);
    p[n] = 0;
    st->used += n + 1;
    return p;
}

/* Decodes the JSON string at s[*i] == '"' into out; advances *i past the
 * closing quote. -1 when it is not a complete string json.loads accepts
 * (or holds an unpaired surrogate, which UTF-8 cannot carry). */
static int hex4(const char *s, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v << 4 | (uint32_t)d;
    }
    return 0;
}

static int json_str_decode(const char *s, size_t len, size_t *i, sb *out)
{
    size_t p = *i + 1;
    while (p < len && s[p] != '"') {
        unsigned char c = (unsigned char)s[p];
        if (c < 0x20) return -1;
        if (c != '\\') { sb_put(out, s + p, 1); p++; continue; }
        if (p + 1 >= len) return -1;
        char e = s[p + 1], ch = 0;
        switch (e) {
        case '"': ch = '"'; break;
        case '\\': ch = '\\'; break;
        case '/': ch = '/'; break;
        case 'b': ch = '\b'; break;
        case 'f': ch = '\f'; break;
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case 'u': break;
        default: return -1;
        }
        if (e != 'u') { sb_put(out, &ch, 1); p += 2; continue; }
        uint32_t cp, lo;
        if (p + 6 > len || hex4(s + p + 2, &cp) != 0) return -1;
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (p + 6 > len || s[p] != '\\' || s[p + 1] != 'u' || hex4(s + p + 2, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        char u[4];
        sb_put(out, u, utf8_put(cp, u));
    }
    if (p >= len) return -1;
    *i = p + 1;
    return 0;
}

/* End of the balanced JSON object/array at s[i] ('{' or '['), strings
 * respected; 0 when unbalanced. */
static size_t json_balanced_end(const char *s, size_t len, size_t i)
{
    int depth = 0;
    for (size_t p = i; p < len; p++) {
        char c = s[p];
        if (c == '"') {
            for (p++; p < len && s[p] != '"'; p++)
                if (s[p] == '\\') p++;
            if (p >= len) return 0;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (--depth == 0) return p + 1;
        }
    }
    return 0;
}

typedef struct {
    const char *key; size_t key_len;
    const char *raw; size_t raw_len; /* the value as written */
    char *value;                      /* decoded (malloc'd), or NULL: take raw */
    bool bare;                        /* "Key" alone: value == key */
} raw_pair;

/* One "Key: value" at line[*i]; advances past the ", " after it.
 * 0, or -1 when the segment has no key. */
static int read_pair(const char *line, size_t len, size_t *i, raw_pair *rp)
{
    size_t p = *i, k0 = p;
    memset(rp, 0, sizeof *rp);
    while (p < len && line[p] != ':' && line[p] != ',') p++;
    if (p == k0) return -1;
    rp->key = line + k0;
    rp->key_len = p - k0;
    if (p >= len || line[p] == ',') { /* bare key */
        rp->bare = true;
        rp->raw = rp->key;
        rp->raw_len = rp->key_len;
    } else {
        p++;
        while (p < len && line[p] == ' ') p++;
        size_t v0 = p, end = 0;
        if (p < len && line[p] == '"') {
            sb dec = {0};
            size_t q = p;
            if (json_str_decode(line, len, &q, &dec) == 0 && !dec.oom && (q == len || line[q] == ',')) {
                end = q;
                rp->value = sb_take(&dec);
                if (!rp->value) return -1;
            } else {
                free(dec.p);
            }
        } else if (p < len && (line[p] == '{' || line[p] == '[')) {
            size_t q = json_balanced_end(line, len, p);
            if (q && (q == len || line[q] == ',')) end = q;
        }
        if (!end) {
            end = p;
            while (end < len && line[end] != ',') end++;
        }
        rp->raw = line + v0;
        rp->raw_len = end - v0;
        p = end;
    }
    if (p < len) { /* the ',' then A1111's \s* */
        p++;
        while (p < len && line[p] == ' ') p++;
    }
    *i = p;
    return 0;
}

static void free_pairs(raw_pair *rp, size_t n)
{
    for (size_t i = 0; i < n; i++) free(rp[i].value);
    free(rp);
}

/* All pairs of a line; NULL when it does not read as a parameters line
 * (A1111 wants at least three pairs). */
static raw_pair *read_params_line(const char *line, size_t len, size_t *n)
{
    raw_pair *rp = calloc(len / 2 + 2, sizeof *rp);
    *n = 0;
    if (!rp) return NULL;
    size_t i = 0;
    while (i < len) {
        if (read_pair(line, len, &i, &rp[*n]) != 0) { free_pairs(rp, *n); return NULL; }
        (*n)++;
    }
    if (*n < 3) { free_pairs(rp, *n); return NULL; }
    return rp;
}

/* The decoded value, if the builder would write exactly `raw` for it. */
static const char *canonical_text(const raw_pair *rp, store *st)
{
    if (rp->bare) return NULL;
    const char *v = rp->value;
    char *tmp = NULL;
    if (!v) v = tmp = strndup(rp->raw, rp->raw_len);
    char *q = v ? infotext_quote(v) : NULL;
    const char *out = NULL;
    if (q && strlen(q) == rp->raw_len && !memcmp(q, rp->raw, rp->raw_len)) out = store_str(st, v, strlen(v));
    free(q);
    free(tmp);
    return out;
}

static bool canonical_int64(const char *s, int64_t lo, int64_t *v)
{
    if (!s || !*s) return false;
    char *end, buf[32];
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*end || errno || x < lo) return false;
    snprintf(buf, sizeof buf, "%lld", x);
    if (strcmp(buf, s)) return false;
    *v = x;
    return true;
}

static bool canonical_number(const char *s, double *v)
{
    if (!s || !*s) return false;
    char *end, buf[32];
    double x = strtod(s, &end);
    if (*end || !isfinite(x) || strcmp(infotext_number(x, buf), s)) return false;
    *v = x;
    return true;
}

static bool canonical_size(const char *s, int *w, int *h)
{
    int a, b, n = 0;
    char buf[32];
    if (!s || sscanf(s, "%dx%d%n", &a, &b, &n) != 2 || s[n]) return false;
    snprintf(buf, sizeof buf, "%dx%d", a, b);
    if (strcmp(buf, s)) return false;
    *w = a;
    *h = b;
    return true;
}

/* Puts a fixed key's value into its typed field; false when the key has
 * no typed field, is already set, or is not written canonically. */
static bool assign_typed(a1111_infotext *t, const char *key, const char *v)
{
    int64_t x;
    double d;
    const char **str = NULL;
    if (!strcmp(key, "Steps")) {
        if (t->steps != INFOTEXT_NO_INT || !canonical_int64(v, 0, &x) || x > INT32_MAX) return false;
        t->steps = (int)x;
        return true;
    }
    if (!strcmp(key, "Seed")) {
        if (t->seed != INFOTEXT_NO_SEED || !canonical_int64(v, INT64_MIN + 1, &x)) return false;
        t->seed = x;
        return true;
    }
    if (!strcmp(key, "Clip skip")) {
        if (t->clip_skip != INFOTEXT_NO_INT || !canonical_int64(v, 2, &x) || x > INT32_MAX) return false;
        t->clip_skip = (int)x;
        return true;
    }
    if (!strcmp(key, "CFG scale") || !strcmp(key, "Denoising strength")) {
        double *f = key[0] == 'C' ? &t->cfg_scale : &t->denoising_strength;
        if (!isnan(*f) || !canonical_number(v, &d)) return false;
        *f = d;
        return true;
    }
    if (!strcmp(key, "Size"))
        return t->width == INFOTEXT_NO_INT && canonical_size(v, &t->width, &t->height);
    if (!strcmp(key, "Sampler")) str = &t->sampler;
    else if (!strcmp(key, "Schedule type")) str = &t->schedule_type;
    else if (!strcmp(key, "Model hash")) str = &t->model_hash;
    else if (!strcmp(key, "Model")) str = &t->model;
    else if (!strcmp(key, "VAE hash")) str = &t->vae_hash;
    else if (!strcmp(key, "VAE")) str = &t->vae;
    else if (!strcmp(key, "RNG")) str = &t->rng;
    else if (!strcmp(key, "Version")) str = &t->version;
    else if (!strcmp(key, "User")) str = &t->user;
    if (!str || *str || !v) return false;
    *str = v;
    return true;
}

/* Splits the text before the parameters line into prompt and negative. */
static void split_prompts(const char *body, size_t len, a1111_infotext *t, store *st)
{
    size_t nl = sizeof NEGATIVE - 1;
    const char *neg = NULL;
    if (len >= nl && !memcmp(body, NEGATIVE, nl)) {
        neg = body;
    } else {
        for (size_t i = 0; i + 1 + nl <= len; i++)
            if (body[i] == '\n' && !memcmp(body + i + 1, NEGATIVE, nl)) { neg = body + i + 1; break; }
    }
    size_t plen = neg ? (size_t)(neg - body) - (neg > body) : len;
    t->prompt = store_str(st, body, plen);
    t->negative_prompt = neg ? store_str(st, neg + nl, len - (size_t)(neg - body) - nl) : NULL;
}

/* The parameters line: the last line starting with "Steps: " that reads
 * as pairs, else the last line if it does; it is at *line, *line_len long. */
static raw_pair *find_params_line(const char *text, size_t len, const char **line, size_t *line_len, size_t *n)
{
    for (size_t end = len;;) {
        size_t start = end;
        while (start > 0 && text[start - 1] != '\n') start--;
        if (end - start >= 7 && !memcmp(text + start, "Steps: ", 7)) {
            raw_pair *rp = read_params_line(text + start, end - start, n);
            if (rp) {
                *line = text + start;
                *line_len = end - start;
                return rp;
            }
        }
        if (start == 0) break;
        end = start - 1;
    }
    const char *nl = strrchr(text, '\n');
    *line = nl ? nl + 1 : text;
    *line_len = len - (size_t)(*line - text);
    return read_params_line(*line, *line_len, n);
}

int infotext_parse(const char *text, a1111_infotext *t, char *err, size_t errlen)
{
    infotext_init(t);
    size_t len = strlen(text), line_len, n;
    const char *line;
    raw_pair *rp = find_params_line(text, len, &line, &line_len, &n);
    if (!rp) {
        snprintf(err, errlen, "not an A1111 infotext: the last line is not a list of at least 3 'Key: value' pairs");
        return -1;
    }
    store *st = calloc(1, sizeof *st);
    if (st) {
        st->cap = 3 * len + 2 * n + 16;
        st->arena = malloc(st->cap);
        st->extra = calloc(n, sizeof *st->extra);
        st->appended = calloc(n, sizeof *st->appended);
    }
    if (!st || !st->arena || !st->extra || !st->appended) {
        if (st) { free(st->arena); free(st->extra); free(st->appended); }
        free(st);
        free_pairs(rp, n);
        snprintf(err, errlen, "infotext parser: out of memory");
        return -1;
    }
    t->owned = st;
    if (line > text) split_prompts(text, (size_t)(line - text) - 1, t, st);
    if (line + line_len < text + len) t->trailing = store_str(st, line + line_len + 1, len - line_len - (size_t)(line - text) - 1);
    bool after_tail = false;
    size_t n_extra = 0, n_appended = 0;
    for (size_t i = 0; i < n; i++) {
        const char *key = store_str(st, rp[i].key, rp[i].key_len);
        const char *canon = canonical_text(&rp[i], st);
        bool tail = !strcmp(key, "Version") || !strcmp(key, "User");
        if (!after_tail || tail) {
            if (assign_typed(t, key, canon)) { after_tail |= tail; continue; }
        }
        infotext_param p = {key, canon, false};
        if (!canon) p = (infotext_param){key, store_str(st, rp[i].raw, rp[i].raw_len), !rp[i].bare};
        if (after_tail) st->appended[n_appended++] = p;
        else st->extra[n_extra++] = p;
        after_tail |= tail;
    }
    t->extra = st->extra;
    t->n_extra = n_extra;
    t->appended = st->appended;
    t->n_appended = n_appended;
    free_pairs(rp, n);
    return 0;
}

void infotext_free(a1111_infotext *t)
{
    store *st = t->owned;
    if (st) {
        free(st->arena);
        free(st->extra);
        free(st->appended);
        free(st);
    }
    infotext_init(t);
}

/* ---- Lora hashes and model names ------------------------------------------ */

char *infotext_lora_hashes(const char *const *aliases, const char *const *hashes, size_t n)
{
    if (n == 0) return NULL;
    char **clean = calloc(n, sizeof *clean);
    size_t *last = calloc(n, sizeof *last), m = 0; /* per unique alias: index of its last hash */
    sb b = {0};
    if (!clean || !last) goto out;
    for (size_t i = 0; i < n; i++) {
        sb a = {0};
        for (const char *p = aliases[i]; *p; p++)
            if (*p != ':' && *p != ',') sb_put(&a, p, 1);
        char *s = sb_take(&a);
        if (!s) { b.oom = 1; goto out; }
        size_t j = 0;
        while (j < m && strcmp(clean[j], s)) j++;
        if (j == m) clean[m++] = s;
        else free(s);
        last[j] = i;
    }
    for (size_t j = 0; j < m; j++) {
        if (j) sb_puts(&b, ", ");
        sb_puts(&b, clean[j]);
        sb_puts(&b, ": ");
        sb_puts(&b, hashes[last[j]]);
    }
out:
    if (clean)
        for (size_t j = 0; j < m; j++) free(clean[j]);
    free(clean);
    free(last);
    if (!clean || !last) b.oom = 1;
    return sb_take(&b);
}

char *infotext_ti_hashes(const infotext_ti_pass *passes, size_t n)
{
    char *value = NULL;
    for (size_t p = 0; p < n; p++) {
        if (!passes[p].n) continue;
        sb b = {0};
        for (size_t i = 0; i < passes[p].n; i++) {
            if (i) sb_puts(&b, ", ");
            for (const char *c = passes[p].names[i]; *c; c++)
                if (*c != ':' && *c != ',') sb_put(&b, c, 1);
            sb_puts(&b, ": ");
            sb_puts(&b, passes[p].hashes[i]);
        }
        if (value) {
            sb_puts(&b, ", ");
            sb_puts(&b, value);
        }
        free(value);
        if (!(value = sb_take(&b))) return NULL;
    }
    return value;
}

void infotext_loras_free(infotext_lora *l, size_t n)
{
    for (size_t i = 0; l && i < n; i++) {
        free(l[i].alias);
        free(l[i].hash);
    }
    free(l);
}

int infotext_lora_hashes_parse(const char *value, infotext_lora **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    size_t cap = 1;
    for (const char *p = value; *p; p++) cap += *p == ',';
    infotext_lora *l = calloc(cap, sizeof *l);
    if (!l) return -1;
    const char *p = value;
    while (*p) {
        while (*p == ' ') p++;
        const char *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (!colon || colon == p) { infotext_loras_free(l, *n); *n = 0; return -1; }
        const char *h = colon + 1;
        while (h < end && *h == ' ') h++;
        l[*n].alias = strndup(p, (size_t)(colon - p));
        l[*n].hash = strndup(h, (size_t)(end - h));
        (*n)++;
        if (!l[*n - 1].alias || !l[*n - 1].hash) { infotext_loras_free(l, *n); *n = 0; return -1; }
        p = *end ? end + 1 : end;
    }
    *out = l;
    return 0;
}

char *infotext_model_name(const char *path, char *out, size_t outlen)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    const char *p = base;
    while (p < dot && *p == '.') p++;
    size_t n = dot && p < dot ? (size_t)(dot - base) : strlen(base); /* leading dots are not an extension */
    snprintf(out, outlen, "%.*s", (int)n, base);
    return out;
}
