/* The CUDA backend's weight cache: each weight the ops use is uploaded once,
 * converted to the activation dtype of the stage that asks for it (kept in
 * its stored dtype when that is the activations'), and found again by its
 * host bytes: the address, element count and dtype wanted (a view of the
 * first rows of a tensor has the tensor's address but fewer elements). The
 * LoRA stack rebuilds merged weights in place, so the engine tells the
 * backend which host ranges changed (sd_backend_forget_weights) and their
 * copies are dropped. Open addressing with tombstones; the table stays
 * under 3/4 full. */
#include "sd/cuda/cuda_backend.h"

#include <stdint.h>
#include <stdlib.h>

typedef struct {
    const void *key;   /* host data; NULL: empty; TOMBSTONE: removed */
    int64_t numel;
    sd_dtype dtype;
    void *dev;
    size_t bytes;
} cached_weight;

struct cuda_weight_cache {
    cached_weight *slots;
    size_t cap, used, live; /* used counts tombstones too */
    size_t bytes;
};

static const char tombstone_byte;
#define TOMBSTONE ((const void *)&tombstone_byte)

cuda_weight_cache *cuda_weights_new(void) { return calloc(1, sizeof(cuda_weight_cache)); }

static void release(cuda_weight_cache *c, cached_weight *e)
{
    cudaFree(e->dev);
    c->bytes -= e->bytes;
    c->live--;
    *e = (cached_weight){.key = TOMBSTONE};
}

void cuda_weights_free(cuda_weight_cache *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].key && c->slots[i].key != TOMBSTONE) cudaFree(c->slots[i].dev);
    free(c->slots);
    free(c);
}

size_t cuda_weights_bytes(const cuda_weight_cache *c) { return c->bytes; }

static size_t hash(const void *key, int64_t numel, sd_dtype dtype)
{
    uint64_t h = (uint64_t)(uintptr_t)key * 0x9e3779b97f4a7c15ull ^ (uint64_t)numel * 0xc2b2ae3d27d4eb4full ^ dtype;
    return (size_t)(h ^ h >> 29);
}

static cached_weight *find(cuda_weight_cache *c, const void *key, int64_t numel, sd_dtype dtype)
{
    if (!c->cap) return NULL;
    for (size_t i = hash(key, numel, dtype) & (c->cap - 1);; i = (i + 1) & (c->cap - 1)) {
        cached_weight *e = &c->slots[i];
        if (!e->key) return NULL;
        if (e->key == key && e->numel == numel && e->dtype == dtype) return e;
    }
}

/* Stores e in the first free or removed slot of its chain; 1 when that slot
 * had never been used. */
static int place(cached_weight *slots, size_t cap, const cached_weight *e)
{
    size_t i = hash(e->key, e->numel, e->dtype) & (cap - 1);
    while (slots[i].key && slots[i].key != TOMBSTONE) i = (i + 1) & (cap - 1);
    int fresh = !slots[i].key;
    slots[i] = *e;
    return fresh;
}

/* Room for one more entry: rehashes (dropping tombstones) at 3/4. */
static int reserve(cuda_weight_cache *c)
{
    if ((c->used + 1) * 4 <= c->cap * 3) return 0;
    size_t cap = c->cap ? c->cap : 256;
    while ((c->live + 1) * 2 > cap) cap *= 2;
    cached_weight *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i].key && c->slots[i].key != TOMBSTONE) place(slots, cap, &c->slots[i]);
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
    c->used = c->live;
    return 0;
}

/* Copies w's host bytes into dev as `want`: straight when the dtypes match,
 * else through the staging buffer and a conversion (fp8 widened on the host). */
static int upload(sd_backend *be, const sd_weight *w, sd_dtype want, void *dev)
{
    cuda_state *st = cuda_of(be);
    int64_t n = sd_weight_numel(w);
    if (w->dtype == want)
        return cuda_ok(be, cudaMemcpyAsync(dev, w->data, (size_t)n * sd_dtype_size(want), cudaMemcpyHostToDevice,
                                           st->stream), "weight upload");
    sd_dtype src_dtype = w->dtype == SD_F16 || w->dtype == SD_BF16 ? w->dtype : SD_F32;
    size_t src_bytes = (size_t)n * sd_dtype_size(src_dtype);
    const void *src = w->data;
    float *widened = NULL;
    if (src_dtype != w->dtype) {
        if (!(widened = malloc(src_bytes))) return sd_backend_fail(be, "weight upload: out of memory");
        sd_widen(w->dtype, w->data, 0, (size_t)n, widened);
        src = widened;
    }
    void *stage = cuda_scratch(be, CUDA_SCRATCH_STAGING, src_bytes);
    int rc = !stage || cuda_ok(be, cudaMemcpyAsync(stage, src, src_bytes, cudaMemcpyHostToDevice, st->stream),
                                "weight upload") ? -1 : 0;
    free(widened); /* a pageable source is staged by the time cudaMemcpyAsync returns */
    if (!rc) rc = cuda_ok(be, sd_cuda_convert(dev, want, stage, src_dtype, n, st->stream), "weight upload");
    return rc;
}

const void *cuda_weight(sd_backend *be, const sd_weight *w, sd_dtype want)
{
    cuda_weight_cache *c = cuda_of(be)->weights;
    int64_t n = sd_weight_numel(w);
    cached_weight *hit = find(c, w->data, n, want);
    if (hit) return hit->dev;
    cached_weight e = {.key = w->data, .numel = n, .dtype = want, .bytes = (size_t)n * sd_dtype_size(want)};
    if (reserve(c)) return sd_backend_fail(be, "weight cache: out of memory"), NULL;
    if (cuda_fits(be, e.bytes, w->name ? w->name : "a weight")) return NULL;
    if (cudaMalloc(&e.dev, e.bytes) != cudaSuccess) {
        cudaGetLastError();
        sd_backend_fail(be, "out of memory for the device copy of %s (%.1f MB)", w->name ? w->name : "a weight",
                        e.bytes / 1048576.0);
        return NULL;
    }
    if (upload(be, w, want, e.dev)) {
        cudaFree(e.dev);
        return NULL;
    }
    c->used += place(c->slots, c->cap, &e);
    c->live++;
    c->bytes += e.bytes;
    sd_backend_note_peak(be);
    return e.dev;
}

const void *cuda_weight_opt(sd_backend *be, const sd_weight *w, sd_dtype want, int *failed)
{
    if (!w) return NULL;
    const void *dev = cuda_weight(be, w, want);
    if (!dev) *failed = 1;
    return dev;
}

void cuda_weights_forget(sd_backend *be, const void *data, size_t bytes)
{
    cuda_state *st = cuda_of(be);
    cuda_weight_cache *c = st->weights;
    uintptr_t lo = (uintptr_t)data, hi = lo + bytes;
    cudaStreamSynchronize(st->stream); /* no queued op still reads a copy about to go */
    for (size_t i = 0; i < c->cap; i++) {
        cached_weight *e = &c->slots[i];
        uintptr_t at = (uintptr_t)e->key;
        if (e->key && e->key != TOMBSTONE && at >= lo && at < hi) release(c, e);
    }
}
