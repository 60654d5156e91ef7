/* The weight-copy cache of the backends (see weight_cache.h). */
#include "sd/weight_cache.h"

#include <stdlib.h>

typedef struct {
    const void *key;   /* host data; NULL: empty; TOMBSTONE: removed */
    size_t key_bytes;
    int64_t numel;
    sd_dtype dtype;
    void *copy;
    size_t bytes;
} entry;

struct sd_weight_cache {
    sd_weight_copy_free free_copy;
    entry *slots;
    size_t cap, used, live; /* used counts tombstones too */
    size_t bytes;
};

static const char tombstone_byte;
#define TOMBSTONE ((const void *)&tombstone_byte)

static int is_live(const entry *e) { return e->key && e->key != TOMBSTONE; }

sd_weight_cache *sd_weight_cache_new(sd_weight_copy_free free_copy)
{
    sd_weight_cache *c = calloc(1, sizeof *c);
    if (c) c->free_copy = free_copy;
    return c;
}

void sd_weight_cache_free(sd_weight_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (is_live(&c->slots[i])) c->free_copy(c->slots[i].copy);
    free(c->slots);
    free(c);
}

size_t sd_weight_cache_bytes(const sd_weight_cache *c) { return c ? c->bytes : 0; }

static size_t hash(const void *key, int64_t numel, sd_dtype dtype)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull ^ (uint64_t)numel * 0xc2b2ae3d27d4eb4full ^ dtype;
    return (size_t)(h ^ h >> 29);
}

void *sd_weight_cache_find(const sd_weight_cache *c, const void *key, int64_t numel, sd_dtype dtype)
{
    if (!c->cap) return NULL;
    for (size_t i = hash(key, numel, dtype) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        const entry *e = &c->slots[i];
        if (!e->key) return NULL;
        if (e->key == key && e->numel == numel && e->dtype == dtype) return e->copy;
    }
}

/* Stores e in the first free or removed slot of its chain; 1 when that slot
 * had never been used. */
static int place(entry *slots, size_t cap, const entry *e)
{
    size_t i = hash(e->key, e->numel, e->dtype) & (cap - 1);
    while (is_live(&slots[i])) i = (i + 1) & (cap - 1);
    int fresh = !slots[i].key;
    slots[i] = *e;
    return fresh;
}

int sd_weight_cache_reserve(sd_weight_cache *c)
{
    if ((c->used + 1) * 4 <= c->cap * 3) return 0;
    size_t cap = c->cap ? c->cap : 256;
    while ((c->live + 1) * 2 > cap) cap *= 2;
    entry *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < c->cap; i++)
        if (is_live(&c->slots[i])) place(slots, cap, &c->slots[i]);
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    c->used = c->live;
    return 0;
}

void sd_weight_cache_add(sd_weight_cache *c, const void *key, size_t key_bytes, int64_t numel, sd_dtype dtype,
                         void *copy, size_t bytes)
{
    entry e = {key, key_bytes, numel, dtype, copy, bytes};
    c->used += place(c->slots, c->cap, &e);
    c->live++;
    c->bytes += bytes;
}

void sd_weight_cache_forget(sd_weight_cache *c, const void *data, size_t bytes)
{
    uintptr_t lo = (uintptr_t)data, hi = lo + bytes;
    for (size_t i = 0; c && i < c->cap; i++) {
        entry *e = &c->slots[i];
        uintptr_t at = (uintptr_t)e->key;
        if (!is_live(e) || at >= hi || at + e->key_bytes <= lo) continue;
        c->free_copy(e->copy);
        c->bytes -= e->bytes;
        c->live--;
        *e = (entry){.key = TOMBSTONE};
    }
}
