/* safetensors reader: mmap + strict header validation (spec
 * sdxl-numerics-diffusers.md §1). Owner: the engine's weight loading.
 * (Skeleton header: the declaration below is the contract the model store
 * relies on; the reader's full API is added next to it.) */
#ifndef SDXL_SD_SAFETENSORS_H
#define SDXL_SD_SAFETENSORS_H

#include <stddef.h>

/* Opens `path` and validates it completely as a safetensors file (header
 * length, JSON, dtypes, shapes against byte sizes, offsets inside the file
 * and non-overlapping). Recognises ZIP archives, HTML and JSON error pages
 * and says so. Returns 0 if valid, else -1 with a one-line reason in err. */
int st_validate_file(const char *path, char *err, size_t errlen);

#endif
