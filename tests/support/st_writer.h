/* Builds safetensors files in tests: tensors and metadata in, bytes out,
 * laid out as the reference writer does (header JSON padded with spaces to
 * a multiple of 8, tensor data contiguous in insertion order). Also raw
 * files from a literal header, for malformed inputs. */
#ifndef SDXL_TEST_ST_WRITER_H
#define SDXL_TEST_ST_WRITER_H

#include <stddef.h>
#include <stdint.h>

typedef struct stw stw;

stw *stw_new(void);
void stw_free(stw *w);
void stw_meta(stw *w, const char *key, const char *value);
/* Adds a tensor of a safetensors dtype ("F16", "I64", ...) with its raw
 * little-endian bytes (numel * element size of them), or zeros when data is
 * NULL. Returns 0, or -1 for an unknown dtype. */
int stw_add(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const void *data);
/* Adds an F32/F16/BF16 tensor from fp32 values (rounded as torch does). */
int stw_add_f32(stw *w, const char *name, const char *dtype, int ndim, const int64_t *shape, const float *values);
/* Drops a tensor, or gives it a new shape (data zeroed). 0, or -1 if absent. */
int stw_remove(stw *w, const char *name);
int stw_reshape(stw *w, const char *name, int ndim, const int64_t *shape);
/* Drops every tensor whose name starts with prefix; returns how many. */
size_t stw_remove_prefix(stw *w, const char *prefix);
size_t stw_count(const stw *w);
/* The file's bytes (malloc'd), or writes them to path (0 on success). */
uint8_t *stw_bytes(const stw *w, size_t *len);
int stw_write(const stw *w, const char *path);

/* u64 LE length of `header` + header + data (malloc'd). */
uint8_t *st_raw(const char *header, const void *data, size_t datalen, size_t *len);
/* st_raw's bytes written to path; 0 on success. */
int st_raw_write(const char *path, const char *header, const void *data, size_t datalen);

#endif
