/* The model hashes that A1111 writes into infotexts and Civitai looks up,
 * cached by file identity so that a multi-GB checkpoint is hashed once:
 *   - AutoV2 ("Model hash"): the first 10 hex digits of the SHA-256 of the
 *     whole file (A1111 modules/sd_models.py CheckpointInfo.calculate_shorthash
 *     over modules/hashes.py sha256);
 *   - AutoV3 (a "Lora hashes" entry): for a .safetensors file (by extension,
 *     case-insensitive, as extensions-builtin/Lora/network.py decides), the
 *     first 12 hex digits of the SHA-256 of the bytes after the 8-byte
 *     header length and the JSON header, i.e. from offset 8 + n to the end
 *     (modules/hashes.py addnet_hash_safetensors); unless the header's
 *     __metadata__ has a string `sshs_model_hash`, whose first 12 characters
 *     A1111 uses instead; for other files the full-file SHA-256.
 *
 * Cache: entries are keyed by (st_dev, st_ino, st_size, st_mtime in ns). In
 * memory the whole key must match. The optional cache file (JSON, written
 * atomically with a rename after each new digest) also keeps the path;
 * loading it trusts an entry when path, inode, size and mtime_ns match, but
 * not st_dev, which differs each time a network volume is mounted.
 * Lookups and inserts take a mutex; a file being hashed by one thread is
 * waited for by others instead of being hashed twice. Files are read with
 * pread in 4 MiB blocks (posix_fadvise sequential). */
#ifndef SDXL_IMAGE_HASHES_H
#define SDXL_IMAGE_HASHES_H

#include <stddef.h>
#include <stdint.h>

typedef struct hash_cache hash_cache;

/* A cache backed by `cache_file` (NULL: memory only). A missing or
 * unreadable file starts an empty cache (with a warning in the log when it
 * exists but is not valid). NULL only when out of memory. */
hash_cache *hash_cache_new(const char *cache_file);
void hash_cache_free(hash_cache *c);

/* Full-file SHA-256 / the tensor-data SHA-256 (after the safetensors
 * header), as 64 lower-case hex digits. 0, or -1 with a reason. */
int hash_sha256(hash_cache *c, const char *path, char hex[65], char *err, size_t errlen);
int hash_addnet(hash_cache *c, const char *path, char hex[65], char *err, size_t errlen);

/* AutoV2: 10 hex digits. */
int hash_autov2(hash_cache *c, const char *path, char out[11], char *err, size_t errlen);
/* AutoV3 as A1111 writes it in "Lora hashes": 12 characters (see above;
 * an sshs_model_hash may hold non-ASCII characters, hence the buffer). */
#define HASH_AUTOV3_MAX (12 * 4 + 1)
int hash_autov3(hash_cache *c, const char *path, char out[HASH_AUTOV3_MAX], char *err, size_t errlen);

/* Records a full-file SHA-256 computed elsewhere (the model store verifies
 * every file it fetches) for the file as it is now on disk. 0 or -1. */
int hash_cache_put_sha256(hash_cache *c, const char *path, const char *hex);

/* Bytes of files hashed since the cache was created (tests, logs). */
uint64_t hash_cache_bytes_hashed(const hash_cache *c);

#endif
