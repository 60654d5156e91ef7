/* Element types of stored weights and the read-only weight view that the
 * loader hands to the backends. Weights stay in their stored precision; a
 * backend widens them (per layer, per panel) with the converters below. */
#ifndef SDXL_SD_DTYPE_H
#define SDXL_SD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SD_F32 = 0,
    SD_F16,
    SD_BF16,
    SD_F8_E4M3, /* torch.float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN */
    SD_F8_E5M2, /* torch.float8_e5m2: bias 15, IEEE-style inf/NaN */
    SD_DTYPE_COUNT
} sd_dtype;

#define SD_MAX_DIMS 4

/* A weight tensor as stored: shape in row-major order, data in the mmap. */
typedef struct {
    const char *name;
    sd_dtype dtype;
    int ndim;
    int64_t shape[SD_MAX_DIMS];
    const void *data;
} sd_weight;

size_t sd_dtype_size(sd_dtype t);
const char *sd_dtype_name(sd_dtype t);      /* "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2" */
int sd_dtype_from_name(const char *name, sd_dtype *out); /* safetensors names; 0 on success */
int64_t sd_weight_numel(const sd_weight *w);

float sd_f16_to_f32(uint16_t h);
uint16_t sd_f32_to_f16(float f);  /* round to nearest even, as torch's .half() */
float sd_bf16_to_f32(uint16_t b);
uint16_t sd_f32_to_bf16(float f); /* round to nearest even, as torch's .bfloat16() */
float sd_f8e4m3_to_f32(uint8_t v);
float sd_f8e5m2_to_f32(uint8_t v);

/* Widens n elements starting at element `offset` of a stored array to fp32. */
void sd_widen(sd_dtype t, const void *src, size_t offset, size_t n, float *dst);
/* Narrows n fp32 values into a stored array of type t (F32/F16/BF16 only). */
void sd_narrow(sd_dtype t, const float *src, size_t n, void *dst, size_t offset);

#ifdef __cplusplus
}
#endif

#endif
