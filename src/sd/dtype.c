/* Conversions between the stored weight dtypes and fp32 (see dtype.h).
 * Bit layouts follow IEEE 754 binary16, bfloat16 (the top half of binary32)
 * and the OCP FP8 formats as torch implements float8_e4m3fn/float8_e5m2. */
#include "sd/dtype.h"

#include <math.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

static const struct { const char *name; size_t size; } dtype_info[SD_DTYPE_COUNT] = {
    [SD_F32] = {"F32", 4},       [SD_F16] = {"F16", 2},         [SD_BF16] = {"BF16", 2},
    [SD_F8_E4M3] = {"F8_E4M3", 1}, [SD_F8_E5M2] = {"F8_E5M2", 1},
};

size_t sd_dtype_size(sd_dtype t) { return t < SD_DTYPE_COUNT ? dtype_info[t].size : 0; }
const char *sd_dtype_name(sd_dtype t) { return t < SD_DTYPE_COUNT ? dtype_info[t].name : "?"; }

int sd_dtype_from_name(const char *name, sd_dtype *out)
{
    for (int t = 0; t < SD_DTYPE_COUNT; t++)
        if (strcmp(name, dtype_info[t].name) == 0) { *out = (sd_dtype)t; return 0; }
    return -1;
}

int64_t sd_weight_numel(const sd_weight *w)
{
    int64_t n = 1;
    for (int i = 0; i < w->ndim; i++) n *= w->shape[i];
    return n;
}

static float bits_to_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t f32_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float sd_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));      /* inf / NaN */
    if (exp == 0) return (sign ? -1.0f : 1.0f) * ldexpf((float)man, -24);      /* zero / subnormal */
    return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t sd_f32_to_f16(float f)
{
    uint32_t u = f32_to_bits(f), sign = (u >> 16) & 0x8000;
    uint32_t abs = u & 0x7fffffffu;
    if (abs >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0));
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {                                    /* result is subnormal or zero */
        float a = bits_to_f32(abs) * 16777216.0f;               /* scale to units of 2^-24 */
        return (uint16_t)(sign | (uint32_t)nearbyintf(a));      /* default rounding: to even */
    }
    uint32_t rounded = abs + 0xfff + ((abs >> 13) & 1);         /* round to nearest even */
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

float sd_bf16_to_f32(uint16_t b) { return bits_to_f32((uint32_t)b << 16); }

uint16_t sd_f32_to_bf16(float f)
{
    uint32_t u = f32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

float sd_f8e4m3_to_f32(uint8_t v)
{
    float sign = (v & 0x80) ? -1.0f : 1.0f;
    int exp = (v >> 3) & 0xf, man = v & 7;
    if (exp == 0xf && man == 7) return NAN;
    if (exp == 0) return sign * ldexpf((float)man, -9);
    return sign * ldexpf(1.0f + man / 8.0f, exp - 7);
}

float sd_f8e5m2_to_f32(uint8_t v) { return sd_f16_to_f32((uint16_t)v << 8); }

static void widen_f16_scalar(const uint16_t *s, size_t n, float *dst)
{
    for (size_t i = 0; i < n; i++) dst[i] = sd_f16_to_f32(s[i]);
}

#if defined(__x86_64__)
/* The x86 F16C instruction converts 8 halves at once, exactly (only a
 * signalling NaN comes out quieted, which weights never hold). */
__attribute__((target("avx,f16c"))) static void widen_f16_f16c(const uint16_t *s, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    widen_f16_scalar(s + i, n - i, dst + i);
}

static void widen_f16(const uint16_t *s, size_t n, float *dst)
{
    static int has_f16c = -1;
    if (has_f16c < 0) {
        unsigned a, b, c, d;
        has_f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && __builtin_cpu_supports("avx");
    }
    if (has_f16c) widen_f16_f16c(s, n, dst);
    else widen_f16_scalar(s, n, dst);
}
#else
#define widen_f16 widen_f16_scalar
#endif

void sd_widen(sd_dtype t, const void *src, size_t offset, size_t n, float *dst)
{
    switch (t) {
    case SD_F32: memcpy(dst, (const float *)src + offset, n * sizeof(float)); break;
    case SD_F16: widen_f16((const uint16_t *)src + offset, n, dst); break;
    case SD_BF16: { const uint16_t *s = (const uint16_t *)src + offset;
                    for (size_t i = 0; i < n; i++) dst[i] = sd_bf16_to_f32(s[i]); } break;
    case SD_F8_E4M3: { const uint8_t *s = (const uint8_t *)src + offset;
                       for (size_t i = 0; i < n; i++) dst[i] = sd_f8e4m3_to_f32(s[i]); } break;
    case SD_F8_E5M2: { const uint8_t *s = (const uint8_t *)src + offset;
                       for (size_t i = 0; i < n; i++) dst[i] = sd_f8e5m2_to_f32(s[i]); } break;
    default: memset(dst, 0, n * sizeof(float)); break;
    }
}

void sd_narrow(sd_dtype t, const float *src, size_t n, void *dst, size_t offset)
{
    switch (t) {
    case SD_F32: memcpy((float *)dst + offset, src, n * sizeof(float)); break;
    case SD_F16: { uint16_t *d = (uint16_t *)dst + offset;
                   for (size_t i = 0; i < n; i++) d[i] = sd_f32_to_f16(src[i]); } break;
    case SD_BF16: { uint16_t *d = (uint16_t *)dst + offset;
                    for (size_t i = 0; i < n; i++) d[i] = sd_f32_to_bf16(src[i]); } break;
    default: break;
    }
}
