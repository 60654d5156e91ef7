/* Test-side safetensors writer (see st_writer.h). Independent of the
 * reader in src/sd/safetensors.c on purpose: it serialises the format from
 * its definition (huggingface/safetensors README), so reader bugs are not
 * mirrored here. */
#include "st_writer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sd/dtype.h"

typedef struct {
    char *name;
    char dtype[12];
    int ndim;
    int64_t shape[8];
    size_t nbytes;
    uint8_t *data;
} stw_tensor;

struct stw {
    stw_tensor *t;
    size_t n, cap;
    char **meta; /* key, value, key, value, ... */
    size_t nmeta;
};

static const struct { const char *name; size_t size; } sizes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"C64", 8},
    {"I64", 8}, {"U64", 8}, {"I32", 4}, {"U32", 4}, {"I16", 2}, {"U16", 2}, {"I8", 1}, {"U8", 1}, {"BOOL", 1},
};

static size_t elem_size(const char *dtype)
{
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (strcmp(sizes[i].name, dtype) == 0) return sizes[i].size;
    return 0;
}

static size_t numel(int ndim, const int64_t *shape)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

stw *stw_new(void) { return calloc(1, sizeof(stw)); }

void stw_free(stw *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) { free(w->t[i].name); free(w->t[i].data); }
    for (size_t i = 0; i < 2 * w->nmeta; i++) free(w->meta[i]);
    free(w->t);
    free(w->meta);
    free(w);
}

void stw_meta(stw *w, const char *key, const char *value)
{
    w->meta = realloc(w->meta, 2 * (w->nmeta + 1) * sizeof *w->meta);
    w->meta[2 * w->nmeta] = strdup(key);
    w->meta[2 * w->nmeta + 1] = strdup(value);
    w->nmeta++;
}

int stw_add(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data)
{
    size_t es = elem_size(dtype);
    if (!es || ndim > 8) return -1;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = realloc(w->t, w->cap * sizeof *w->t);
    }
    stw_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = numel(ndim, shape) * es;
    t->data = calloc(1, t->nbytes ? t->nbytes : 1);
    if (data) memcpy(t->data, data, t->nbytes);
    return 0;
}

int stw_add_f32(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const float *values)
{
    sd_dtype d;
    if (sd_dtype_from_name(dtype, &d) || (d != SD_F32 && d != SD_F16 && d != SD_BF16)) return -1;
    size_t n = numel(ndim, shape);
    void *buf = calloc(n ? n : 1, sd_dtype_size(d));
    sd_narrow(d, values, n, buf, 0);
    int rc = stw_add(w, name, dtype, ndim, shape, buf);
    free(buf);
    return rc;
}

static stw_tensor *lookup(stw *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return &w->t[i];
    return NULL;
}

int stw_remove(stw *w, const char *name)
{
    stw_tensor *t = lookup(w, name);
    if (!t) return -1;
    free(t->name);
    free(t->data);
    memmove(t, t + 1, (size_t)(w->t + w->n - (t + 1)) * sizeof *t);
    w->n--;
    return 0;
}

size_t stw_remove_prefix(stw *w, const char *prefix)
{
    size_t removed = 0, k = 0, n = strlen(prefix);
    for (size_t i = 0; i < w->n; i++) {
        if (strncmp(w->t[i].name, prefix, n) == 0) {
            free(w->t[i].name);
            free(w->t[i].data);
            removed++;
        } else {
            w->t[k++] = w->t[i];
        }
    }
    w->n = k;
    return removed;
}

int stw_reshape(stw *w, const char *name, int ndim, const int64_t *shape)
{
    stw_tensor *t = lookup(w, name);
    if (!t) return -1;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = numel(ndim, shape) * elem_size(t->dtype);
    free(t->data);
    t->data = calloc(1, t->nbytes ? t->nbytes : 1);
    return 0;
}

size_t stw_count(const stw *w) { return w->n; }

/* Growable string for the header JSON. */
typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)k + 1);
        b->s = realloc(b->s, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void put_json_string(sbuf *b, const char *s)
{
    put(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') put(b, "\\%c", c);
        else if (c < 0x20) put(b, "\\u%04x", c);
        else put(b, "%c", c);
    }
    put(b, "\"");
}

static char *header_json(const stw *w)
{
    sbuf b = {0};
    put(&b, "{");
    if (w->nmeta) {
        put(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) put(&b, ",");
            put_json_string(&b, w->meta[2 * i]);
            put(&b, ":");
            put_json_string(&b, w->meta[2 * i + 1]);
        }
        put(&b, "}");
    }
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const stw_tensor *t = &w->t[i];
        if (i || w->nmeta) put(&b, ",");
        put_json_string(&b, t->name);
        put(&b, ":{\"dtype\":\"%s\",\"shape\":[", t->dtype);
        for (int d = 0; d < t->ndim; d++) put(&b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        put(&b, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        off += t->nbytes;
    }
    put(&b, "}");
    while (b.n % 8) put(&b, " ");
    return b.s;
}

uint8_t *st_raw(const char *header, const void *data, size_t datalen, size_t *len)
{
    size_t hl = strlen(header);
    uint8_t *out = malloc(8 + hl + datalen + 1);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    if (hl) memcpy(out + 8, header, hl);
    if (datalen) memcpy(out + 8 + hl, data, datalen);
    *len = 8 + hl + datalen;
    return out;
}

uint8_t *stw_bytes(const stw *w, size_t *len)
{
    size_t total = 0;
    for (size_t i = 0; i < w->n; i++) total += w->t[i].nbytes;
    uint8_t *data = malloc(total + 1), *p = data;
    for (size_t i = 0; i < w->n; i++) { memcpy(p, w->t[i].data, w->t[i].nbytes); p += w->t[i].nbytes; }
    char *h = header_json(w);
    uint8_t *out = st_raw(h, data, total, len);
    free(h);
    free(data);
    return out;
}

static int write_all(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t put_n = fwrite(b, 1, n, f);
    return (fclose(f) == 0 && put_n == n) ? 0 : -1;
}

int stw_write(const stw *w, const char *path)
{
    size_t n;
    uint8_t *b = stw_bytes(w, &n);
    int rc = write_all(path, b, n);
    free(b);
    return rc;
}

int st_raw_write(const char *path, const char *header, const void *data, size_t datalen)
{
    size_t n;
    uint8_t *b = st_raw(header, data, datalen, &n);
    int rc = write_all(path, b, n);
    free(b);
    return rc;
}
