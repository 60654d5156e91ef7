/* The CUDA backend's weight cache: each weight the ops use is uploaded once,
 * converted to the activation dtype of the stage that asks for it (kept in
 * its stored dtype when that is the activations'), and found again by its
 * host bytes in an sd_weight_cache (sd/weight_cache.h), which also drops the
 * copies of host ranges the LoRA stack rebuilt. */
#include "sd/cuda/cuda_backend.h"

#include <stdint.h>
#include <stdlib.h>

static void free_device_copy(void *dev) { cudaFree(dev); }

sd_weight_cache *cuda_weights_new(void) { return sd_weight_cache_new(free_device_copy); }

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
    sd_weight_cache *c = cuda_of(be)->weights;
    int64_t n = sd_weight_numel(w);
    void *dev = sd_weight_cache_find(c, w->data, n, want);
    if (dev) return dev;
    size_t bytes = (size_t)n * sd_dtype_size(want);
    if (sd_weight_cache_reserve(c)) return sd_backend_fail(be, "weight cache: out of memory"), NULL;
    if (cuda_fits(be, bytes, w->name ? w->name : "a weight")) return NULL;
    if (cudaMalloc(&dev, bytes) != cudaSuccess) {
        cudaGetLastError();
        sd_backend_fail(be, "out of memory for the device copy of %s (%.1f MB)", w->name ? w->name : "a weight",
                        bytes / 1048576.0);
        return NULL;
    }
    if (upload(be, w, want, dev)) {
        cudaFree(dev);
        return NULL;
    }
    sd_weight_cache_add(c, w->data, (size_t)n * sd_dtype_size(w->dtype), n, want, dev, bytes);
    sd_backend_note_peak(be);
    return dev;
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
    cudaStreamSynchronize(st->stream); /* no queued op still reads a copy about to go */
    sd_weight_cache_forget(st->weights, data, bytes);
}
