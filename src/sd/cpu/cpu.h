/* Internals shared by the CPU backend's files (backend_cpu.c owns the state):
 * the tunables, the scratch buffers, the per-layer widening of stored weights
 * to fp32 (the one place where a packed-weight cache would plug in), and the
 * scalar activation formulas every fused op uses. */
#ifndef SDXL_SD_CPU_H
#define SDXL_SD_CPU_H

#include <math.h>
#include <stdint.h>

#include "sd/backend_impl.h"

/* Scratch buffers, one per purpose so that an op can hold several at once. */
typedef enum {
    CPU_SCRATCH_WEIGHT,  /* the layer's weight widened to fp32 */
    CPU_SCRATCH_BIAS,    /* bias / gamma widened */
    CPU_SCRATCH_BETA,    /* beta widened */
    CPU_SCRATCH_COL,     /* one im2col row tile */
    CPU_SCRATCH_THREADS, /* per-thread tiles (attention) */
    CPU_SCRATCH_COUNT
} cpu_scratch_slot;

typedef struct {
    int threads;
    size_t conv_tile_bytes;
    int attn_q_block, attn_k_block;
    float *scratch[CPU_SCRATCH_COUNT];
    size_t scratch_floats[CPU_SCRATCH_COUNT];
    char description[256];
} cpu_state;

static inline cpu_state *cpu_of(sd_backend *be) { return (cpu_state *)be->impl; }

/* A scratch buffer of at least n floats (grown, never shrunk until trim);
 * NULL with the error set when out of memory. */
float *cpu_scratch(sd_backend *be, cpu_scratch_slot slot, size_t n);
/* The weight's elements as fp32: the stored data itself for aligned F32,
 * otherwise a widened copy in the given scratch slot. NULL on OOM. */
const float *cpu_weight_f32(sd_backend *be, const sd_weight *w, cpu_scratch_slot slot);
/* Widens n elements of w starting at element offset into dst, threaded. */
void cpu_widen(sd_backend *be, const sd_weight *w, size_t offset, size_t n, float *dst);
/* Fails unless every value fits a BLAS int. */
int cpu_blas_dims(sd_backend *be, const char *op, int n, const int64_t *dims);

static inline float cpu_sigmoid_mul(float x, float k) { return x / (1.0f + expf(-k * x)); }
/* torch: silu x/(1+exp(-x)); gelu x*0.5*(1+erf(x/sqrt2)); quick_gelu x*sigmoid(1.702x). */
static inline float cpu_silu(float x) { return cpu_sigmoid_mul(x, 1.0f); }
static inline float cpu_gelu(float x) { return x * 0.5f * (1.0f + erff(x * (float)M_SQRT1_2)); }
static inline float cpu_quick_gelu(float x) { return cpu_sigmoid_mul(x, 1.702f); }

/* y[i] = act(x[i]) for i < n (y == x allowed). */
void cpu_act_row(sd_act act, float *y, const float *x, int64_t n);

/* The table entries, one file per concern. */
int cpu_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b);
int cpu_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
               const sd_conv_geom *g);
int cpu_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps,
                   const sd_weight *gamma, const sd_weight *beta, sd_act act);
int cpu_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps, const sd_weight *gamma,
                   const sd_weight *beta);
int cpu_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cpu_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                  int heads, int causal);
int cpu_act(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act);
int cpu_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cpu_binary(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t *b_shape,
               int multiply);
int cpu_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha);
int cpu_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cpu_fill(sd_backend *be, sd_tensor *y, float value);
int cpu_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x);
int cpu_copy_block(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t outer, int64_t y_inner,
                   int64_t x_inner, int64_t offset, int gather);
int cpu_transpose(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t batch, int64_t rows, int64_t cols);
int cpu_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n);
int cpu_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w);

#endif
