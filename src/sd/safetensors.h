/* safetensors reader: read-only mmap (or a caller's buffer) plus strict
 * validation of the whole header before any tensor is handed out.
 * Owner: the engine's weight loading; the model store uses st_validate_file.
 *
 * Format (huggingface/safetensors, safetensors/src/tensor.rs): 8 bytes
 * little-endian u64 N, then N bytes of UTF-8 JSON, then the data area.
 * The JSON object maps tensor names to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data area) and may hold
 * "__metadata__", a string -> string map.
 *
 * What this reader accepts is what the reference reader (safetensors 0.8,
 * used by diffusers/A1111/ComfyUI) accepts, with these deliberate
 * differences, each rejected with a clear message:
 *   - duplicate tensor names or metadata keys (the reference keeps the last);
 *   - names, keys or values containing a NUL character (C strings);
 *   - more than ST_MAX_DIMS dimensions;
 *   - the sub-byte dtypes F4, F6_E2M3, F6_E3M2 and F8_E8M0.
 * Like the reference: the header is at most 100,000,000 bytes; numbers in
 * shapes and offsets are plain non-negative integers (no sign, fraction or
 * exponent); unknown fields in a tensor entry are ignored (containers nest at
 * most 127 deep, counting the header object, as serde_json allows);
 * the tensors, sorted by offset, cover the data area exactly: no overlap, no
 * gap, and the last one ends at the end of the file.
 * Integer/bool/F64/C64 tensors are accepted and listed (real checkpoints
 * carry I64 position_ids) but are not float weights: st_weight refuses them.
 * Names are exposed in header order; lookups use a hash table (O(1)). */
#ifndef SDXL_SD_SAFETENSORS_H
#define SDXL_SD_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "sd/dtype.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER 100000000ull /* bytes; the reference's MAX_HEADER_SIZE */

typedef struct st_file st_file;

/* One tensor as described by the header. All pointers stay valid until
 * st_close. */
typedef struct {
    const char *name;
    const char *dtype_name; /* as written in the header: "F16", "I64", ... */
    int is_float;           /* 1 when dtype is an sd_dtype (F32/F16/BF16/F8_*) */
    sd_dtype dtype;         /* meaningful only when is_float */
    size_t elem_size;       /* bytes per element */
    int ndim;               /* 0 (scalar) .. ST_MAX_DIMS */
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t offset; /* data_offsets[0]: relative to the start of the data area */
    uint64_t nbytes; /* data_offsets[1] - data_offsets[0] == numel * elem_size */
    const void *data; /* first byte, inside the mapping or the caller's buffer */
} st_tensor;

/* Maps `path` (read-only, MAP_PRIVATE) and validates it completely. On
 * success *out owns the mapping; on failure *out is NULL and err holds one
 * line naming the file and the cause. Returns 0 or -1. */
int st_open(const char *path, st_file **out, char *err, size_t errlen);

/* Same over a caller's buffer, which is not copied and must outlive the
 * st_file. `label` names the source in error messages (may be NULL). */
int st_open_memory(const void *data, size_t size, const char *label, st_file **out,
                   char *err, size_t errlen);

void st_close(st_file *f); /* NULL is fine */

size_t st_count(const st_file *f);
const st_tensor *st_get(const st_file *f, size_t index); /* header order; NULL if out of range */
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */

/* __metadata__ entries, in header order. */
size_t st_metadata_count(const st_file *f);
int st_metadata_at(const st_file *f, size_t index, const char **key, const char **value);
const char *st_metadata(const st_file *f, const char *key); /* NULL if absent */

/* The float-weight view of a tensor (data stays in the mapping). Fails with
 * a message for non-float dtypes, more than SD_MAX_DIMS dims, or data not
 * aligned to its element size (only files from non-standard writers). */
int st_weight(const st_tensor *t, sd_weight *out, char *err, size_t errlen);

/* Byte offset of the data area in the file (8 + header length), and the
 * data area itself: LoRA hashes are the SHA-256 of these bytes. */
uint64_t st_data_offset(const st_file *f);
const uint8_t *st_data(const st_file *f, size_t *len);
uint64_t st_file_size(const st_file *f);
/* Drops this process's mapping of the pages that lie wholly inside tensors
 * whose names start with `prefix` (madvise MADV_DONTNEED on the read-only
 * file mapping): the resident set shrinks, the page cache keeps the data,
 * and the next read faults the pages back in. Returns the bytes dropped; 0
 * for files opened from memory. */
size_t st_release_pages(const st_file *f, const char *prefix);
const char *st_label(const st_file *f); /* path or label given at open */

/* Writes "[1280, 2048]" into buf (truncated to buflen); returns buf. */
char *st_shape_str(const st_tensor *t, char *buf, size_t buflen);

/* A view of `src` under other tensor names, without copying any data: for
 * each tensor of src, rename(name, out, outlen, ctx) writes the view's name
 * into out and returns 0, or returns nonzero to leave the tensor out. The
 * view shares src's data and metadata (src must outlive it), has src's
 * label, drops no pages (st_release_pages gives 0) and is closed with
 * st_close. Returns 0, or -1 with err for two tensors renamed alike or out
 * of memory. Standalone VAE files in diffusers names are read this way. */
typedef int (*st_rename_fn)(const char *name, char *out, size_t outlen, void *ctx);
int st_open_renamed(const st_file *src, st_rename_fn rename, void *ctx, st_file **out, char *err, size_t errlen);

/* Opens `path` and validates it completely as a safetensors file (header
 * length, JSON, dtypes, shapes against byte sizes, offsets inside the file
 * and non-overlapping). Recognises ZIP archives, HTML and JSON error pages
 * and says so. Returns 0 if valid, else -1 with a one-line reason in err. */
int st_validate_file(const char *path, char *err, size_t errlen);

#endif
