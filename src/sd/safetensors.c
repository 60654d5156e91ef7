/* safetensors reader (see safetensors.h for the accepted format).
 * Owns: the mapping, a strict hand-written parser for the header JSON (exact
 * u64 integers, UTF-8 and duplicate checks, bounded nesting, never reads
 * past the header), the layout checks, the name hash tables, and the
 * "what is this file really" diagnostics for files that are not safetensors.
 * Acceptance matches huggingface/safetensors safetensors/src/tensor.rs
 * (SafeTensors::read_metadata, Metadata::validate) except where the header
 * comment says otherwise. */
#include "sd/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sd/error.h"

/* Deepest container nesting, counting the header object as 1: serde_json's
 * recursion limit, as the reference reader (safetensors 0.8) applies it. */
#define MAX_NESTING 127

/* Open-addressing hash table over the names of an array of records: slot
 * holds index + 1, 0 is empty. Names are found at base + i*stride. */
typedef struct {
    uint32_t *slots;
    size_t mask;
} name_index;

typedef struct {
    const char *key, *value;
} st_meta;

struct st_file {
    const uint8_t *base; /* whole file */
    size_t size;
    int mapped; /* base comes from mmap */
    char *label;
    uint64_t header_len;
    const uint8_t *data; /* data area */
    uint64_t data_len;
    st_tensor *tensors;
    size_t count, cap;
    st_meta *meta;
    size_t meta_count, meta_cap;
    int have_metadata;
    name_index tensor_index, meta_index;
    char *arena; /* unescaped strings; never larger than the header */
    size_t arena_used;
};

typedef struct {
    st_file *f;
    const uint8_t *start, *p, *end; /* header JSON */
    char *err;
    size_t errlen;
} parser;

/* ---- errors ------------------------------------------------------------ */

/* "<label>: header JSON at byte N: <msg>" */
static int parse_fail(parser *ps, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sd_error(ps->err, ps->errlen, "%s: invalid safetensors header JSON at byte %zu: %s", ps->f->label,
             (size_t)(ps->p - ps->start), msg);
    return -1;
}

/* Copies up to `max` bytes as printable ASCII ('?' for anything else). */
static void printable_excerpt(const uint8_t *b, size_t n, size_t max, char *out)
{
    size_t i;
    for (i = 0; i < n && i < max; i++) out[i] = (b[i] >= 0x20 && b[i] < 0x7f) ? (char)b[i] : '?';
    out[i] = 0;
}

/* ---- what a non-safetensors file is --------------------------------------- */

static int starts_with_ci(const uint8_t *b, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++) {
        uint8_t c = b[i];
        if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + 32);
        if (c != (uint8_t)lit[i]) return 0;
    }
    return 1;
}

static int utf8_check(const uint8_t *s, size_t n, size_t *bad);

/* No control characters and valid UTF-8 (but for a character cut at the end). */
static int looks_like_text(const uint8_t *b, size_t n)
{
    size_t k = n < 64 ? n : 64, bad;
    for (size_t i = 0; i < k; i++)
        if (b[i] < 0x09 || (b[i] > 0x0d && b[i] < 0x20) || b[i] == 0x7f) return 0;
    return k > 0 && (utf8_check(b, k, &bad) == 0 || bad + 4 > k);
}

/* Names the kind of file when its first bytes are a known foreign format;
 * only called when the header length is unusable, because a real header
 * length can begin with any byte. Returns 0 if nothing was recognised. */
static int describe_foreign(const uint8_t *b, size_t n, char *out, size_t outlen)
{
    if (n >= 4 && b[0] == 'P' && b[1] == 'K' && (b[2] == 3 || b[2] == 5 || b[2] == 7))
        return snprintf(out, outlen, "this is a ZIP archive (a PyTorch .ckpt/.pt or a zipped "
                                     "download), not safetensors"), 1;
    if (n >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5)
        return snprintf(out, outlen, "this is a Python pickle (an old PyTorch .ckpt/.pt/.bin), "
                                     "not safetensors"), 1;
    if (n >= 4 && memcmp(b, "GGUF", 4) == 0)
        return snprintf(out, outlen, "this is a GGUF file, not safetensors"), 1;
    size_t i = 0;
    if (n >= 3 && b[0] == 0xef && b[1] == 0xbb && b[2] == 0xbf) i = 3; /* UTF-8 BOM */
    while (i < n && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) i++;
    char excerpt[64];
    printable_excerpt(b + i, n - i, 48, excerpt);
    if (starts_with_ci(b + i, n - i, "<!doctype") || starts_with_ci(b + i, n - i, "<html"))
        return snprintf(out, outlen, "this is an HTML page (e.g. a login or error page saved in "
                                     "place of the model: check the URL and the API key), not "
                                     "safetensors"), 1;
    if (i < n && b[i] == '<')
        return snprintf(out, outlen, "this is an XML/HTML document (e.g. a storage error "
                                     "response: \"%s\"), not safetensors", excerpt), 1;
    if (i < n && (b[i] == '{' || b[i] == '['))
        return snprintf(out, outlen, "this is a JSON document (e.g. an API error body: \"%s\"), "
                                     "not safetensors", excerpt), 1;
    if (starts_with_ci(b, n, "version https://git-lfs"))
        return snprintf(out, outlen, "this is a Git LFS pointer file, not the model it points "
                                     "to"), 1;
    if (looks_like_text(b, n))
        return snprintf(out, outlen, "this is a text file (\"%s\"), not safetensors", excerpt), 1;
    return 0;
}

/* ---- name hash tables ----------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static const char *name_at(const void *base, size_t stride, size_t i)
{
    return *(const char *const *)((const char *)base + i * stride);
}

static long index_lookup(const name_index *ix, const void *base, size_t stride, const char *name)
{
    if (!ix->slots) return -1;
    for (size_t s = hash_name(name) & ix->mask;; s = (s + 1) & ix->mask) {
        uint32_t v = ix->slots[s];
        if (v == 0) return -1;
        if (strcmp(name_at(base, stride, v - 1), name) == 0) return (long)(v - 1);
    }
}

/* Builds the table; on a duplicate name returns -1 with *dup = its index. */
static int index_build(name_index *ix, const void *base, size_t stride, size_t n, size_t *dup)
{
    size_t cap = 8;
    while (cap < 2 * n) cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots) return -2;
    ix->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        const char *name = name_at(base, stride, i);
        size_t s = hash_name(name) & ix->mask;
        for (; ix->slots[s]; s = (s + 1) & ix->mask)
            if (strcmp(name_at(base, stride, ix->slots[s] - 1), name) == 0) { *dup = i; return -1; }
        ix->slots[s] = (uint32_t)(i + 1);
    }
    return 0;
}

/* ---- UTF-8 (as Rust's str::from_utf8: no overlongs, surrogates, > U+10FFFF) */

static int utf8_check(const uint8_t *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) { len = 3; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { len = 4; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        else { *bad = i; return -1; }
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) { *bad = i; return -1; }
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) { *bad = i; return -1; }
        i += len;
    }
    return 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static int expect(parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return parse_fail(ps, "unexpected end of header, expected '%c'", c);
    if (*ps->p != (uint8_t)c) return parse_fail(ps, "expected '%c'", c);
    ps->p++;
    return 0;
}

/* After an element of an object or array: 1 if another follows, 0 at the
 * closing bracket, -1 on error. */
static int next_element(parser *ps, char close)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return parse_fail(ps, "unexpected end of header, expected ',' or '%c'", close);
    if (*ps->p == ',') { ps->p++; return 1; }
    if (*ps->p == (uint8_t)close) { ps->p++; return 0; }
    return parse_fail(ps, "expected ',' or '%c'", close);
}

/* 1 if the container is empty (and consumes its closing bracket). */
static int container_empty(parser *ps, char close)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (uint8_t)close) { ps->p++; return 1; }
    return 0;
}

static int hex4(parser *ps, const uint8_t *q, unsigned *out)
{
    unsigned v = 0;
    if (ps->end - q < 4) return parse_fail(ps, "truncated \\u escape");
    for (int i = 0; i < 4; i++) {
        uint8_t c = q[i];
        unsigned d = (c >= '0' && c <= '9') ? c - '0' + 0u : (c >= 'a' && c <= 'f') ? c - 'a' + 10u
                   : (c >= 'A' && c <= 'F') ? c - 'A' + 10u : 16u;
        if (d == 16) return parse_fail(ps, "bad hex digit in \\u escape");
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xc0 | cp >> 6); *o++ = (char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        *o++ = (char)(0xe0 | cp >> 12); *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *o++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *o++ = (char)(0xf0 | cp >> 18); *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3f)); *o++ = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

/* Decodes one \uXXXX (or a surrogate pair) at ps->p (just after the 'u'). */
static int unicode_escape(parser *ps, unsigned *cp)
{
    unsigned hi, lo;
    if (hex4(ps, ps->p, &hi)) return -1;
    ps->p += 4;
    if (hi >= 0xdc00 && hi <= 0xdfff) return parse_fail(ps, "lone low surrogate in \\u escape");
    if (hi < 0xd800 || hi > 0xdbff) { *cp = hi; return 0; }
    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
        return parse_fail(ps, "lone high surrogate in \\u escape");
    if (hex4(ps, ps->p + 2, &lo)) return -1;
    if (lo < 0xdc00 || lo > 0xdfff) return parse_fail(ps, "invalid surrogate pair in \\u escape");
    ps->p += 6;
    *cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
    return 0;
}

/* Parses a JSON string into the arena; *out is NUL-terminated. A decoded
 * string is always shorter than its quoted form, so the arena (header size
 * + 1) cannot overflow. NUL characters are refused (C strings). */
static int parse_string(parser *ps, char **out)
{
    if (expect(ps, '"')) return -1;
    char *s = ps->f->arena + ps->f->arena_used, *o = s;
    for (;;) {
        if (ps->p >= ps->end) return parse_fail(ps, "unterminated string");
        uint8_t c = *ps->p++;
        if (c == '"') break;
        if (c < 0x20) { ps->p--; return parse_fail(ps, "control character in string"); }
        if (c != '\\') { *o++ = (char)c; continue; }
        if (ps->p >= ps->end) return parse_fail(ps, "unterminated string");
        unsigned cp = 0;
        switch (*ps->p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            if (unicode_escape(ps, &cp)) return -1;
            if (cp == 0) return parse_fail(ps, "NUL character (\\u0000) in a string is not supported");
            o = put_utf8(o, cp);
            break;
        default: ps->p--; return parse_fail(ps, "invalid escape in string");
        }
    }
    *o++ = 0;
    ps->f->arena_used += (size_t)(o - s);
    *out = s;
    return 0;
}

/* A plain non-negative integer that fits in u64 (what serde accepts for
 * usize): no sign, fraction or exponent, no leading zeros. */
static int parse_uint(parser *ps, uint64_t *out)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return parse_fail(ps, "unexpected end of header, expected an integer");
    if (*ps->p == '-') return parse_fail(ps, "negative number where a size or offset is expected");
    if (*ps->p < '0' || *ps->p > '9') return parse_fail(ps, "expected a non-negative integer");
    uint64_t v = 0;
    const uint8_t *first = ps->p;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > (UINT64_MAX - d) / 10) return parse_fail(ps, "integer too large");
        v = v * 10 + d;
        ps->p++;
    }
    if (*first == '0' && ps->p - first > 1) return parse_fail(ps, "integer with a leading zero");
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
        return parse_fail(ps, "expected an integer, found a floating-point number");
    *out = v;
    return 0;
}

static int skip_value(parser *ps, int depth);

/* `depth`: nesting level of this container (the header object is 1). */
static int skip_container(parser *ps, int depth, char close)
{
    if (depth > MAX_NESTING) return parse_fail(ps, "nesting deeper than %d", MAX_NESTING);
    ps->p++;
    if (container_empty(ps, close)) return 0;
    for (;;) {
        if (close == '}') {
            char *key;
            size_t mark = ps->f->arena_used;
            if (parse_string(ps, &key) || expect(ps, ':')) return -1;
            ps->f->arena_used = mark;
        }
        if (skip_value(ps, depth + 1)) return -1;
        int more = next_element(ps, close);
        if (more <= 0) return more;
    }
}

static int skip_literal(parser *ps, const char *lit)
{
    size_t k = strlen(lit);
    if ((size_t)(ps->end - ps->p) < k || memcmp(ps->p, lit, k) != 0) return parse_fail(ps, "invalid value");
    ps->p += k;
    return 0;
}

/* JSON number grammar (RFC 8259 §6). */
static int skip_number(parser *ps)
{
    const uint8_t *p = ps->p, *e = ps->end;
    if (p < e && *p == '-') p++;
    if (p >= e || *p < '0' || *p > '9') return parse_fail(ps, "invalid number");
    if (*p == '0') p++;
    else while (p < e && *p >= '0' && *p <= '9') p++;
    if (p < e && *p == '.') {
        p++;
        if (p >= e || *p < '0' || *p > '9') return parse_fail(ps, "invalid number");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < e && (*p == '+' || *p == '-')) p++;
        if (p >= e || *p < '0' || *p > '9') return parse_fail(ps, "invalid number");
        while (p < e && *p >= '0' && *p <= '9') p++;
    }
    ps->p = p;
    return 0;
}

static int skip_value(parser *ps, int depth)
{
    skip_ws(ps);
    if (ps->p >= ps->end) return parse_fail(ps, "unexpected end of header, expected a value");
    switch (*ps->p) {
    case '{': return skip_container(ps, depth, '}');
    case '[': return skip_container(ps, depth, ']');
    case '"': {
        char *s;
        size_t mark = ps->f->arena_used;
        int rc = parse_string(ps, &s);
        ps->f->arena_used = mark;
        return rc;
    }
    case 't': return skip_literal(ps, "true");
    case 'f': return skip_literal(ps, "false");
    case 'n': return skip_literal(ps, "null");
    default: return skip_number(ps);
    }
}

/* ---- tensor entries --------------------------------------------------------- */

static const struct { const char *name; size_t size; } other_dtypes[] = {
    {"F64", 8}, {"C64", 8}, {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4},
    {"I16", 2}, {"U16", 2}, {"I8", 1},  {"U8", 1},  {"BOOL", 1},
};

static int set_dtype(parser *ps, st_tensor *t, const char *s)
{
    sd_dtype d;
    if (sd_dtype_from_name(s, &d) == 0) {
        t->is_float = 1; t->dtype = d;
        t->dtype_name = sd_dtype_name(d); t->elem_size = sd_dtype_size(d);
        return 0;
    }
    for (size_t i = 0; i < sizeof other_dtypes / sizeof other_dtypes[0]; i++)
        if (strcmp(s, other_dtypes[i].name) == 0) {
            t->dtype_name = other_dtypes[i].name; t->elem_size = other_dtypes[i].size;
            return 0;
        }
    if (!strcmp(s, "F4") || !strcmp(s, "F6_E2M3") || !strcmp(s, "F6_E3M2") || !strcmp(s, "F8_E8M0"))
        return parse_fail(ps, "tensor \"%.80s\": dtype %s (sub-byte/microscaling) is not supported",
                          t->name, s);
    return parse_fail(ps, "tensor \"%.80s\": unknown dtype \"%.40s\"", t->name, s);
}

/* [n, n, ...] with at most `max` elements (exactly `max` when `exact`). */
static int parse_uint_array(parser *ps, uint64_t *vals, int max, int exact, int *n, const char *what,
                            const char *tensor)
{
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '[')
        return parse_fail(ps, "tensor \"%.80s\": %s is not an array", tensor, what);
    ps->p++;
    *n = 0;
    if (!container_empty(ps, ']'))
        for (;;) {
            if (*n == max)
                return parse_fail(ps, "tensor \"%.80s\": %s has more than %d elements", tensor, what, max);
            if (parse_uint(ps, &vals[(*n)++])) return -1;
            int more = next_element(ps, ']');
            if (more < 0) return -1;
            if (!more) break;
        }
    if (exact && *n != max)
        return parse_fail(ps, "tensor \"%.80s\": %s has %d elements, expected %d", tensor, what, *n, max);
    return 0;
}

static st_tensor *new_tensor(st_file *f)
{
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 64;
        st_tensor *t = realloc(f->tensors, cap * sizeof *t);
        if (!t) return NULL;
        f->tensors = t; f->cap = cap;
    }
    st_tensor *t = &f->tensors[f->count++];
    memset(t, 0, sizeof *t);
    return t;
}

static int parse_tensor(parser *ps, const char *name)
{
    st_tensor *t = new_tensor(ps->f);
    if (!t) return parse_fail(ps, "out of memory");
    t->name = name;
    int seen_dtype = 0, seen_shape = 0, seen_offsets = 0;
    uint64_t shape[ST_MAX_DIMS] = {0}, offs[2] = {0};
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '{')
        return parse_fail(ps, "tensor \"%.80s\": entry is not an object", name);
    ps->p++;
    if (!container_empty(ps, '}'))
        for (;;) {
            char *field;
            size_t mark = ps->f->arena_used;
            if (parse_string(ps, &field) || expect(ps, ':')) return -1;
            int *seen = !strcmp(field, "dtype") ? &seen_dtype : !strcmp(field, "shape") ? &seen_shape
                      : !strcmp(field, "data_offsets") ? &seen_offsets : NULL;
            if (seen && *seen) return parse_fail(ps, "tensor \"%.80s\": field \"%s\" appears twice", name, field);
            if (seen) *seen = 1;
            if (seen == &seen_dtype) {
                char *d;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != '"')
                    return parse_fail(ps, "tensor \"%.80s\": dtype is not a string", name);
                if (parse_string(ps, &d) || set_dtype(ps, t, d)) return -1;
            } else if (seen == &seen_shape) {
                if (parse_uint_array(ps, shape, ST_MAX_DIMS, 0, &t->ndim, "shape", name)) return -1;
            } else if (seen == &seen_offsets) {
                int n;
                if (parse_uint_array(ps, offs, 2, 1, &n, "data_offsets", name)) return -1;
            } else if (skip_value(ps, 3)) { /* inside the header and the entry objects */
                return -1;
            }
            ps->f->arena_used = mark; /* field names and dtype strings are not kept */
            int more = next_element(ps, '}');
            if (more < 0) return -1;
            if (!more) break;
        }
    if (!seen_dtype || !seen_shape || !seen_offsets)
        return parse_fail(ps, "tensor \"%.80s\": missing field \"%s\"", name,
                          !seen_dtype ? "dtype" : !seen_shape ? "shape" : "data_offsets");
    for (int i = 0; i < t->ndim; i++) {
        if (shape[i] > INT64_MAX) return parse_fail(ps, "tensor \"%.80s\": dimension too large", name);
        t->shape[i] = (int64_t)shape[i];
    }
    if (offs[1] < offs[0])
        return parse_fail(ps, "tensor \"%.80s\": data_offsets end %llu is before begin %llu", name,
                          (unsigned long long)offs[1], (unsigned long long)offs[0]);
    t->offset = offs[0];
    t->nbytes = offs[1] - offs[0];
    return 0;
}

static int parse_metadata(parser *ps)
{
    st_file *f = ps->f;
    if (f->have_metadata) return parse_fail(ps, "\"__metadata__\" appears twice");
    f->have_metadata = 1;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == 'n') return skip_literal(ps, "null");
    if (ps->p >= ps->end || *ps->p != '{')
        return parse_fail(ps, "\"__metadata__\" is not an object of strings");
    ps->p++;
    if (container_empty(ps, '}')) return 0;
    for (;;) {
        char *key, *value;
        if (parse_string(ps, &key) || expect(ps, ':')) return -1;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return parse_fail(ps, "\"__metadata__\" value of \"%.80s\" is not a string", key);
        if (parse_string(ps, &value)) return -1;
        if (f->meta_count == f->meta_cap) {
            size_t cap = f->meta_cap ? f->meta_cap * 2 : 16;
            st_meta *m = realloc(f->meta, cap * sizeof *m);
            if (!m) return parse_fail(ps, "out of memory");
            f->meta = m; f->meta_cap = cap;
        }
        f->meta[f->meta_count++] = (st_meta){key, value};
        int more = next_element(ps, '}');
        if (more <= 0) return more;
    }
}

static int parse_header(parser *ps)
{
    size_t bad;
    if (utf8_check(ps->start, (size_t)(ps->end - ps->start), &bad))
        return sd_error(ps->err, ps->errlen, "%s: safetensors header is not valid UTF-8 (byte %zu)",
                       ps->f->label, bad);
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != '{') {
        char excerpt[32];
        printable_excerpt(ps->p, (size_t)(ps->end - ps->p), 16, excerpt);
        return parse_fail(ps, "the header is not a JSON object (starts with \"%s\")", excerpt);
    }
    ps->p++;
    if (!container_empty(ps, '}'))
        for (;;) {
            char *key;
            if (parse_string(ps, &key) || expect(ps, ':')) return -1;
            int rc = strcmp(key, "__metadata__") == 0 ? parse_metadata(ps) : parse_tensor(ps, key);
            if (rc) return -1;
            int more = next_element(ps, '}');
            if (more < 0) return -1;
            if (!more) break;
        }
    skip_ws(ps);
    if (ps->p != ps->end) return parse_fail(ps, "unexpected bytes after the header object");
    return 0;
}

/* ---- layout checks ---------------------------------------------------------- */

static int check_sizes(st_file *f, char *err, size_t errlen)
{
    for (size_t i = 0; i < f->count; i++) {
        st_tensor *t = &f->tensors[i];
        uint64_t n = 1, bytes = 0;
        int overflow = 0;
        for (int d = 0; d < t->ndim; d++) overflow |= __builtin_mul_overflow(n, (uint64_t)t->shape[d], &n);
        overflow |= n > INT64_MAX || __builtin_mul_overflow(n, (uint64_t)t->elem_size, &bytes);
        char shape[128];
        if (overflow)
            return sd_error(err, errlen, "%s: tensor \"%.80s\": shape %s overflows", f->label, t->name,
                           st_shape_str(t, shape, sizeof shape));
        t->numel = (int64_t)n;
        if (bytes != t->nbytes)
            return sd_error(err, errlen, "%s: tensor \"%.80s\": shape %s of %s needs %llu bytes but its "
                           "data_offsets span %llu", f->label, t->name, st_shape_str(t, shape, sizeof shape),
                           t->dtype_name, (unsigned long long)bytes, (unsigned long long)t->nbytes);
    }
    return 0;
}

typedef struct {
    uint64_t begin, end;
    size_t index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Sorted by offset, the tensors must tile [0, data_len) exactly. */
static int check_layout(st_file *f, char *err, size_t errlen)
{
    span *s = malloc((f->count ? f->count : 1) * sizeof *s);
    if (!s) return sd_error(err, errlen, "%s: out of memory", f->label);
    for (size_t i = 0; i < f->count; i++)
        s[i] = (span){f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].nbytes, i};
    qsort(s, f->count, sizeof *s, span_cmp);
    uint64_t pos = 0;
    int rc = 0;
    for (size_t i = 0; i < f->count && rc == 0; i++) {
        const char *name = f->tensors[s[i].index].name;
        if (s[i].begin < pos)
            rc = sd_error(err, errlen, "%s: tensors \"%.80s\" and \"%.80s\" overlap in the data area",
                         f->label, f->tensors[s[i - 1].index].name, name);
        else if (s[i].begin > pos)
            rc = sd_error(err, errlen, "%s: no tensor covers data bytes %llu..%llu (before \"%.80s\")",
                         f->label, (unsigned long long)pos, (unsigned long long)s[i].begin, name);
        pos = s[i].end;
    }
    free(s);
    if (rc) return rc;
    if (pos > f->data_len)
        return sd_error(err, errlen, "%s: file is truncated: the tensors need %llu bytes of data after "
                       "the header but only %llu are present (incomplete download?)", f->label,
                       (unsigned long long)pos, (unsigned long long)f->data_len);
    if (pos < f->data_len)
        return sd_error(err, errlen, "%s: %llu unexpected bytes after the last tensor's data", f->label,
                       (unsigned long long)(f->data_len - pos));
    return 0;
}

static int build_indexes(st_file *f, char *err, size_t errlen)
{
    size_t dup;
    int rc = index_build(&f->tensor_index, f->tensors, sizeof *f->tensors, f->count, &dup);
    if (rc == -1) return sd_error(err, errlen, "%s: duplicate tensor name \"%.80s\"", f->label, f->tensors[dup].name);
    if (rc == 0) rc = index_build(&f->meta_index, f->meta, sizeof *f->meta, f->meta_count, &dup);
    if (rc == -1) return sd_error(err, errlen, "%s: duplicate \"__metadata__\" key \"%.80s\"", f->label, f->meta[dup].key);
    if (rc) return sd_error(err, errlen, "%s: out of memory", f->label);
    return 0;
}

/* ---- opening -------------------------------------------------------------------- */

static uint64_t read_u64_le(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

/* The 8-byte length prefix: sane, and the header inside the file. A length
 * up to ST_MAX_HEADER has its top five bytes zero, which no text, ZIP or
 * pickle file has, so foreign formats are only sniffed when the length is
 * unusable for that reason; a sane length past the end means truncation. */
static int check_prefix(st_file *f, char *err, size_t errlen)
{
    char msg[200];
    if (f->size == 0) return sd_error(err, errlen, "%s: empty file (0 bytes): the download probably failed", f->label);
    uint64_t n = f->size >= 8 ? read_u64_le(f->base) : 0;
    if (f->size >= 8 && n <= ST_MAX_HEADER && n <= f->size - 8) { f->header_len = n; return 0; }
    if (f->size < 8 || n > ST_MAX_HEADER) {
        if (describe_foreign(f->base, f->size, msg, sizeof msg))
            return sd_error(err, errlen, "%s: %s", f->label, msg);
        if (f->size < 8)
            return sd_error(err, errlen, "%s: file too short (%zu bytes) to be safetensors", f->label, f->size);
        return sd_error(err, errlen, "%s: not a safetensors file: header length %llu exceeds the %llu-byte "
                       "limit (first bytes %02x %02x %02x %02x)", f->label, (unsigned long long)n,
                       ST_MAX_HEADER, f->base[0], f->base[1], f->base[2], f->base[3]);
    }
    return sd_error(err, errlen, "%s: file is truncated: the header needs %llu bytes but only %zu follow "
                   "the 8-byte length (incomplete download?)", f->label, (unsigned long long)n, f->size - 8);
}

static int parse_file(st_file *f, char *err, size_t errlen)
{
    if (check_prefix(f, err, errlen)) return -1;
    f->data = f->base + 8 + f->header_len;
    f->data_len = f->size - 8 - f->header_len;
    f->arena = malloc(f->header_len + 1);
    if (!f->arena) return sd_error(err, errlen, "%s: out of memory", f->label);
    parser ps = {f, f->base + 8, f->base + 8, f->base + 8 + f->header_len, err, errlen};
    if (parse_header(&ps) || check_sizes(f, err, errlen) || check_layout(f, err, errlen) ||
        build_indexes(f, err, errlen))
        return -1;
    for (size_t i = 0; i < f->count; i++) f->tensors[i].data = f->data + f->tensors[i].offset;
    return 0;
}

static st_file *new_file(const char *label)
{
    st_file *f = calloc(1, sizeof *f);
    if (f && !(f->label = strdup(label))) { free(f); f = NULL; }
    return f;
}

int st_open_memory(const void *data, size_t size, const char *label, st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    st_file *f = new_file(label ? label : "safetensors buffer");
    if (!f) return sd_error(err, errlen, "out of memory");
    f->base = data;
    f->size = size;
    if (parse_file(f, err, errlen)) { st_close(f); return -1; }
    *out = f;
    return 0;
}

int st_open(const char *path, st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block us */
    if (fd < 0) return sd_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return sd_error(err, errlen, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return sd_error(err, errlen, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory, not a safetensors file"
                                                                         : "not a regular file");
    }
    st_file *f = new_file(path);
    if (!f) { close(fd); return sd_error(err, errlen, "%s: out of memory", path); }
    f->size = (size_t)sb.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd); st_close(f);
            return sd_error(err, errlen, "%s: cannot map: %s", path, strerror(e));
        }
        f->base = m;
        f->mapped = 1;
    }
    close(fd);
    if (parse_file(f, err, errlen)) { st_close(f); return -1; }
    *out = f;
    return 0;
}

/* The view's names, in header order, packed into one arena. */
static int rename_tensors(st_file *v, const st_file *src, st_rename_fn rename, void *ctx)
{
    char name[1024];
    size_t total = 0;
    for (size_t i = 0; i < src->count; i++)
        if (!rename(src->tensors[i].name, name, sizeof name, ctx)) total += strlen(name) + 1;
    v->arena = malloc(total + 1);
    v->tensors = malloc((src->count + 1) * sizeof *v->tensors);
    if (!v->arena || !v->tensors) return -1;
    for (size_t i = 0; i < src->count; i++) {
        if (rename(src->tensors[i].name, name, sizeof name, ctx)) continue;
        size_t n = strlen(name) + 1;
        if (v->arena_used + n > total) return -1; /* rename answered differently the second time */
        memcpy(v->arena + v->arena_used, name, n);
        v->tensors[v->count] = src->tensors[i];
        v->tensors[v->count++].name = v->arena + v->arena_used;
        v->arena_used += n;
    }
    return 0;
}

int st_open_renamed(const st_file *src, st_rename_fn rename, void *ctx, st_file **out, char *err, size_t errlen)
{
    *out = NULL;
    st_file *v = new_file(src->label);
    if (!v) return sd_error(err, errlen, "%s: out of memory", src->label);
    v->base = src->base, v->size = src->size, v->header_len = src->header_len;
    v->data = src->data, v->data_len = src->data_len;
    v->meta = malloc((src->meta_count + 1) * sizeof *v->meta);
    if (v->meta) {
        memcpy(v->meta, src->meta, src->meta_count * sizeof *v->meta);
        v->meta_count = src->meta_count;
    }
    if (!v->meta || rename_tensors(v, src, rename, ctx)) {
        st_close(v);
        return sd_error(err, errlen, "%s: out of memory", src->label);
    }
    if (build_indexes(v, err, errlen)) {
        st_close(v);
        return -1;
    }
    *out = v;
    return 0;
}

size_t st_release_pages(const st_file *f, const char *prefix)
{
    if (!f->mapped) return 0;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), dropped = 0;
    size_t plen = strlen(prefix);
    for (size_t i = 0; i < f->count; i++) {
        const st_tensor *t = &f->tensors[i];
        if (strncmp(t->name, prefix, plen)) continue;
        uintptr_t lo = ((uintptr_t)t->data + page - 1) / page * page, hi = ((uintptr_t)t->data + t->nbytes) / page * page;
        if (hi > lo && madvise((void *)lo, hi - lo, MADV_DONTNEED) == 0) dropped += hi - lo;
    }
    return dropped;
}

void st_close(st_file *f)
{
    if (!f) return;
    if (f->mapped) munmap((void *)f->base, f->size);
    free(f->tensor_index.slots);
    free(f->meta_index.slots);
    free(f->tensors);
    free(f->meta);
    free(f->arena);
    free(f->label);
    free(f);
}

int st_validate_file(const char *path, char *err, size_t errlen)
{
    st_file *f;
    if (st_open(path, &f, err, errlen)) return -1;
    st_close(f);
    return 0;
}

/* ---- queries ------------------------------------------------------------------------- */

size_t st_count(const st_file *f) { return f->count; }

const st_tensor *st_get(const st_file *f, size_t index)
{
    return index < f->count ? &f->tensors[index] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    long i = index_lookup(&f->tensor_index, f->tensors, sizeof *f->tensors, name);
    return i < 0 ? NULL : &f->tensors[i];
}

size_t st_metadata_count(const st_file *f) { return f->meta_count; }

int st_metadata_at(const st_file *f, size_t index, const char **key, const char **value)
{
    if (index >= f->meta_count) return -1;
    *key = f->meta[index].key;
    *value = f->meta[index].value;
    return 0;
}

const char *st_metadata(const st_file *f, const char *key)
{
    long i = index_lookup(&f->meta_index, f->meta, sizeof *f->meta, key);
    return i < 0 ? NULL : f->meta[i].value;
}

int st_weight(const st_tensor *t, sd_weight *out, char *err, size_t errlen)
{
    if (!t->is_float)
        return sd_error(err, errlen, "tensor \"%.80s\" has dtype %s, not a float weight", t->name, t->dtype_name);
    if (t->ndim > SD_MAX_DIMS)
        return sd_error(err, errlen, "tensor \"%.80s\" has %d dimensions (at most %d supported)", t->name,
                       t->ndim, SD_MAX_DIMS);
    if ((uintptr_t)t->data % t->elem_size != 0)
        return sd_error(err, errlen, "tensor \"%.80s\": data is not aligned to its %zu-byte elements "
                       "(file written by a non-standard tool)", t->name, t->elem_size);
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) out->shape[i] = t->shape[i];
    out->data = t->data;
    return 0;
}

uint64_t st_data_offset(const st_file *f) { return 8 + f->header_len; }

const uint8_t *st_data(const st_file *f, size_t *len)
{
    *len = (size_t)f->data_len;
    return f->data;
}

uint64_t st_file_size(const st_file *f) { return f->size; }
const char *st_label(const st_file *f) { return f->label; }

char *st_shape_str(const st_tensor *t, char *buf, size_t buflen)
{
    size_t n = (size_t)snprintf(buf, buflen, "[");
    for (int i = 0; i < t->ndim && n < buflen; i++)
        n += (size_t)snprintf(buf + n, buflen - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < buflen) snprintf(buf + n, buflen - n, "]");
    return buf;
}
