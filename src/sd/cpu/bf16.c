/* The CPU backend's opt-in bf16 GEMMs (SDXL_CPU_PRECISION=bf16, docs/
 * benchmarks.md "bf16 on the CPU"): the linear layers and the Winograd
 * convolutions' GEMMs run as oneDNN's
 * dnnl_gemm_bf16bf16f32 (bf16 inputs, fp32 accumulation and output) on CPUs
 * with AVX-512-BF16. Debian's OpenBLAS 0.3.21 is built without its
 * cblas_sbgemm, so oneDNN (Debian libdnnl2) is the library; it is opened
 * with dlopen when the path is asked for, so the default fp32 build
 * neither links nor needs it.
 *
 * Weights are converted to bf16 (round to nearest even) on first use and
 * kept in an sd_weight_cache (sd/weight_cache.h), keyed by their bytes,
 * until sd_backend_forget_weights says those bytes changed (a LoRA set
 * rebuilt) or the backend is freed: one bf16 copy of every linear weight the engine runs, 2 bytes per
 * parameter (docs/benchmarks.md gives the SDXL figure). Activations are
 * rounded to bf16 per call into scratch. The Winograd convolutions round
 * their transformed kernels and tiles per call and use the same GEMM
 * (winograd.c); attention and the im2col convolutions stay in fp32. */
#include "sd/cpu/cpu.h"
#include "sd/cpu/cpuid.h"
#include "sd/weight_cache.h"

#include <dlfcn.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>

#define DNNL_LIBRARY "libdnnl.so.2"

/* oneDNN's C API (oneapi/dnnl/dnnl.h): row-major C = alpha op(A) op(B) + beta C,
 * dnnl_dim_t is int64_t, bf16 is its bits in a uint16_t; 0 is dnnl_success. */
typedef int (*dnnl_gemm_bf16_fn)(char transa, char transb, int64_t m, int64_t n, int64_t k, float alpha,
                                 const uint16_t *a, int64_t lda, const uint16_t *b, int64_t ldb, float beta,
                                 float *c, int64_t ldc);

struct cpu_bf16 {
    dnnl_gemm_bf16_fn gemm;
    sd_weight_cache *weights;   /* bf16 copies of the weights */
};

const char *cpu_bf16_unsupported(const cpu_info *cpu)
{
    return cpu->features & CPU_AVX512BF16
               ? NULL
               : "SDXL_CPU_PRECISION=bf16 needs a CPU with AVX-512-BF16 (Intel Cooper Lake, Sapphire Rapids or "
                 "later; AMD Zen 4 or later)";
}

cpu_bf16 *cpu_bf16_open(const cpu_info *cpu, char *err, size_t errlen)
{
    const char *no = cpu_bf16_unsupported(cpu);
    if (no) {
        snprintf(err, errlen, "%s, which this %s lacks: unset it to run in fp32", no, cpu->brand);
        return NULL;
    }
    void *lib = dlopen(DNNL_LIBRARY, RTLD_NOW | RTLD_LOCAL);   /* kept open for the process */
    void *gemm = lib ? dlsym(lib, "dnnl_gemm_bf16bf16f32") : NULL;
    if (!gemm) {
        snprintf(err, errlen, "SDXL_CPU_PRECISION=bf16 needs oneDNN (Debian package libdnnl2): %s",
                 lib ? "dnnl_gemm_bf16bf16f32 not found" : dlerror());
        return NULL;
    }
    cpu_bf16 *b = calloc(1, sizeof *b);
    if (!b || !(b->weights = sd_weight_cache_new(free))) {
        free(b);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->gemm = (dnnl_gemm_bf16_fn)gemm;
    return b;
}

size_t cpu_bf16_bytes(const cpu_bf16 *b) { return b ? sd_weight_cache_bytes(b->weights) : 0; }

void cpu_bf16_forget(cpu_bf16 *b, const void *data, size_t bytes)
{
    if (b) sd_weight_cache_forget(b->weights, data, bytes);
}

void cpu_bf16_free(cpu_bf16 *b)
{
    if (b) sd_weight_cache_free(b->weights);
    free(b);
}

/* out[i] = x[i] rounded to bf16, nearest even (VCVTNEPS2BF16: the bf16
 * path runs only on CPUs that have it; sd_f32_to_bf16 rounds the same way). */
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bf16"))) static void round_chunk(const float *x, size_t n, uint16_t *out)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
        memcpy(out + i, &h, sizeof h);
    }
    for (; i < n; i++) out[i] = sd_f32_to_bf16(x[i]);
}
#else
static void round_chunk(const float *x, size_t n, uint16_t *out)
{
    for (size_t i = 0; i < n; i++) out[i] = sd_f32_to_bf16(x[i]);
}
#endif

#define ROUND_CHUNK ((size_t)1 << 15)

void cpu_round_bf16(sd_backend *be, const float *x, size_t n, uint16_t *out)
{
    int64_t chunks = (int64_t)((n + ROUND_CHUNK - 1) / ROUND_CHUNK);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) {
        size_t at = (size_t)c * ROUND_CHUNK;
        round_chunk(x + at, n - at < ROUND_CHUNK ? n - at : ROUND_CHUNK, out + at);
    }
}

/* The weight's bf16 copy, made on first use. NULL on OOM. */
static const uint16_t *weight_bf16(sd_backend *be, cpu_bf16 *b, const sd_weight *w)
{
    int64_t numel = sd_weight_numel(w);
    uint16_t *h = sd_weight_cache_find(b->weights, w->data, numel, SD_BF16);
    if (h) return h;
    const float *f = cpu_weight_f32(be, w, CPU_SCRATCH_WEIGHT);
    if (f && !sd_weight_cache_reserve(b->weights)) h = malloc((size_t)numel * sizeof *h);
    if (!h) {
        if (f) sd_backend_fail(be, "cpu: out of memory for a bf16 weight copy (%.1f MB)", numel * 2 / 1048576.0);
        return NULL;
    }
    cpu_round_bf16(be, f, (size_t)numel, h);
    sd_weight_cache_add(b->weights, w->data, (size_t)numel * sd_dtype_size(w->dtype), numel, SD_BF16, h,
                        (size_t)numel * sizeof *h);
    sd_backend_note_peak(be);
    return h;
}

int cpu_gemm_bf16(sd_backend *be, int trans_b, int64_t m, int64_t n, int64_t k, const uint16_t *a, int64_t lda,
                  const uint16_t *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    int rc = cpu_of(be)->bf16->gemm('N', trans_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
    return rc ? sd_backend_fail(be, "cpu: oneDNN bf16 gemm %lldx%lldx%lld failed (status %d)", (long long)m,
                                (long long)n, (long long)k, rc)
              : 0;
}

int cpu_linear_bf16(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const float *bias,
                    int64_t m, int64_t n, int64_t k, int w_is_kn)
{
    const uint16_t *wh = weight_bf16(be, cpu_of(be)->bf16, w);
    uint16_t *xh = (uint16_t *)cpu_scratch(be, CPU_SCRATCH_COL, (size_t)(m * k + 1) / 2);
    if (!wh || !xh) return -1;
    cpu_round_bf16(be, x->data, (size_t)(m * k), xh);
    return cpu_gemm_bf16(be, !w_is_kn, m, n, k, xh, k, wh, w_is_kn ? n : k, bias ? 1.0f : 0.0f, y->data, n);
}
