/* Derived copies of weights kept by a backend (the CUDA backend's device
 * uploads, the CPU backend's bf16 roundings), found again by the host bytes
 * they were made from: the address, element count and dtype of the copy (a
 * view of a tensor's first rows has the tensor's address but fewer
 * elements). The LoRA stack rebuilds merged weights in place and says which
 * host ranges changed (sd_backend_forget_weights); the copies made from
 * bytes overlapping them are dropped. Open addressing with tombstones, kept
 * under 3/4 full. */
#ifndef SDXL_SD_WEIGHT_CACHE_H
#define SDXL_SD_WEIGHT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "sd/dtype.h"

typedef struct sd_weight_cache sd_weight_cache;

/* Frees one copy (cudaFree, free). */
typedef void (*sd_weight_copy_free)(void *copy);

sd_weight_cache *sd_weight_cache_new(sd_weight_copy_free free_copy); /* NULL when out of memory */
void sd_weight_cache_free(sd_weight_cache *c);                        /* frees every copy too */

/* The copy of numel elements in dtype made from host bytes `key`, or NULL. */
void *sd_weight_cache_find(const sd_weight_cache *c, const void *key, int64_t numel, sd_dtype dtype);

/* Room for one more copy; -1 when out of memory. Call before making it. */
int sd_weight_cache_reserve(sd_weight_cache *c);

/* Keeps `copy` (`bytes` long) of the key_bytes host bytes at key, after a
 * successful sd_weight_cache_reserve. */
void sd_weight_cache_add(sd_weight_cache *c, const void *key, size_t key_bytes, int64_t numel, sd_dtype dtype,
                         void *copy, size_t bytes);

/* Frees the copies made from host bytes overlapping [data, data + bytes). */
void sd_weight_cache_forget(sd_weight_cache *c, const void *data, size_t bytes);

/* Bytes of the copies held. */
size_t sd_weight_cache_bytes(const sd_weight_cache *c);

#endif
