/* Internals shared by the CPU backend's files (backend_cpu.c owns the state):
 * the tunables, the scratch buffers, the per-layer widening of stored weights
 * to fp32 (the one place where a packed-weight cache would plug in), and the
 * scalar activation formulas every fused op uses. */
#ifndef SDXL_SD_CPU_H
#define SDXL_SD_CPU_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sd/backend_impl.h"

/* Scratch buffers, one per purpose so that an op can hold several at once. */
typedef enum {
    CPU_SCRATCH_WEIGHT,  /* the layer's weight widened to fp32 (Winograd: transformed) */
    CPU_SCRATCH_BIAS,    /* bias / gamma widened */
    CPU_SCRATCH_BETA,    /* beta widened */
    CPU_SCRATCH_COL,     /* one im2col row tile, or one Winograd band */
    CPU_SCRATCH_THREADS, /* per-thread tiles (attention) */
    CPU_SCRATCH_BF16,    /* bf16 operands: Winograd's kernels and tiles (SDXL_CPU_PRECISION=bf16) */
    CPU_SCRATCH_COUNT
} cpu_scratch_slot;

typedef struct cpu_bf16 cpu_bf16;   /* bf16.c */

typedef struct {
    int threads;
    size_t conv_tile_bytes;
    int direct_conv;
    int attn_q_block, attn_k_block;
    cpu_bf16 *bf16;        /* non-NULL: linear layers and Winograd GEMMs in bf16 (SDXL_CPU_PRECISION=bf16) */
    float *scratch[CPU_SCRATCH_COUNT];
    size_t scratch_floats[CPU_SCRATCH_COUNT];
    char description[640];
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

static inline uint32_t cpu_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static inline float cpu_float(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }
/* mask ? a : b, bitwise (mask is all ones or all zeros). */
static inline uint32_t cpu_select(uint32_t mask, uint32_t a, uint32_t b) { return (mask & a) | (~mask & b); }

/* e^x in fp32 for loops that must vectorise (glibc's expf is a scalar call):
 * x = n ln2 + r with a two-constant (Cody-Waite) ln2, n rounded by the
 * 1.5 * 2^23 shifter, Cephes' degree-6 polynomial for e^r, n added to the
 * exponent bits. Within 1 ulp of e^x (test_ops_exp); inf above 88.7228, 0
 * below -87.3 (where e^x reaches the subnormals), NaN stays NaN. The range
 * cases are integer masks, not branches: with the default -ftrapping-math
 * GCC will not if-convert float compares, and a branch stops vectorisation. */
static inline float cpu_exp(float x)
{
    const float lo = -87.3f, hi = 88.7228f, shifter = 12582912.0f;   /* 1.5 * 2^23 */
    uint32_t ux = cpu_bits(x);
    uint32_t nan = 0u - (uint32_t)((ux & 0x7fffffffu) > 0x7f800000u);
    uint32_t under = 0u - (uint32_t)(ux > cpu_bits(lo));                          /* sign set, |x| > 87.3 */
    uint32_t over = ~nan & (0u - (uint32_t)(ux > cpu_bits(hi) && ux < 0x80000000u));
    float xc = cpu_float(cpu_select(under, cpu_bits(lo), cpu_select(over, cpu_bits(hi), ux)));
    float t = xc * 1.44269504088896341f + shifter, n = t - shifter;   /* t's low mantissa bits hold n */
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t scaled = cpu_bits(p) + ((cpu_bits(t) - cpu_bits(shifter)) << 23);   /* p * 2^n */
    return cpu_float(cpu_select(nan, ux, cpu_select(under, 0u, cpu_select(over, 0x7f800000u, scaled))));
}

/* erf(x) as torch's vectorised CPU kernels compute it for the exact GELU
 * (aten/src/ATen/cpu/vec/vec256/vec256_float.h, Vectorized<float>::erf):
 * Abramowitz & Stegun 7.1.26,
 *   erf(|x|) = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^(-x^2),  t = 1 / (1 + p |x|),
 * absolute error <= 1.5e-7 (test_ops_exp), with x's sign copied on. Branch
 * free, so the loops that call it vectorise (glibc's erff is a scalar call). */
static inline float cpu_erf(float x)
{
    const float p = 0.3275911f, a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f,
                a5 = 1.061405429f;
    float ax = fabsf(x), t = 1.0f / (1.0f + p * ax);
    float poly = (((a5 * t + a4) * t + a3) * t + a2) * t + a1;
    return copysignf(1.0f - poly * t * cpu_exp(-ax * ax), x);
}

static inline float cpu_sigmoid_mul(float x, float k) { return x / (1.0f + cpu_exp(-k * x)); }
/* torch: silu x/(1+exp(-x)); gelu x*0.5*(1+erf(x/sqrt2)); quick_gelu x*sigmoid(1.702x). */
static inline float cpu_silu(float x) { return cpu_sigmoid_mul(x, 1.0f); }
static inline float cpu_gelu(float x) { return x * 0.5f * (1.0f + cpu_erf(x * (float)M_SQRT1_2)); }
static inline float cpu_quick_gelu(float x) { return cpu_sigmoid_mul(x, 1.702f); }

/* Hot loops are compiled three times, for AVX-512 (F), AVX2 and the x86-64
 * baseline, and the loader picks one per CPU (GCC function multiversioning).
 * The arithmetic is the same (no FMA contraction: ISO C mode keeps
 * -ffp-contract=off); only reduction order may differ in the last bit.
 * A build with -DSDXL_CPU_AVX512=OFF (CMake) has no AVX-512 clones and
 * masks AVX-512 out of cpuid.c's detection: the CPU backend then runs here
 * exactly as on an AVX2-only CPU, OpenBLAS kernels included (make test-avx2). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#ifdef SDXL_CPU_NO_AVX512
#define CPU_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CPU_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#else
#define CPU_VECTOR_CLONES
#endif

/* The bf16 GEMM path (bf16.c). */
struct cpu_info;
/* NULL when this CPU can run it, else the reason it cannot. */
const char *cpu_bf16_unsupported(const struct cpu_info *cpu);
/* NULL with err when the CPU lacks AVX-512-BF16 or oneDNN cannot be loaded. */
cpu_bf16 *cpu_bf16_open(const struct cpu_info *cpu, char *err, size_t errlen);
void cpu_bf16_free(cpu_bf16 *b);
void cpu_bf16_forget(cpu_bf16 *b, const void *data, size_t bytes);
size_t cpu_bf16_bytes(const cpu_bf16 *b);   /* of bf16 weight copies held */
/* out[i] = x[i] rounded to bf16 (nearest even), threaded. */
void cpu_round_bf16(sd_backend *be, const float *x, size_t n, uint16_t *out);
/* c[m, n] = a[m, k] op(b) + beta c, op(b) = b^T ([n, k]) with trans_b, else b
 * ([k, n]); bf16 inputs, fp32 accumulation. */
int cpu_gemm_bf16(sd_backend *be, int trans_b, int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                  const uint16_t *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* y[m, n] (+)= x[m, k] W^T (W [n, k], or W [k, n] with w_is_kn) in bf16 with
 * fp32 accumulation; y already holds the bias when bias is non-NULL. */
int cpu_linear_bf16(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const float *bias,
                    int64_t m, int64_t n, int64_t k, int w_is_kn);

/* y[i] = act(x[i]) for i < n (y == x allowed). */
void cpu_act_row(sd_act act, float *y, const float *x, int64_t n);

/* The table entries, one file per concern. */
int cpu_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
               int w_is_kn);
int cpu_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
               const sd_conv_geom *g);
int cpu_conv2d_winograd(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
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
int cpu_binary(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, const int64_t dim[4],
               const int64_t b_stride[4], int multiply);
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
