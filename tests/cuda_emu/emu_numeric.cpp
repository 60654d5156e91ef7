/* emu_numeric.cpp: the element conversions, input roundings and dot product
 * that the math-library emulations share. Conversions to fp16/bf16 are the
 * real headers' round-to-nearest-even host implementations. */
#include "emu_internal.h"

namespace emu {

size_t elem_size(Elem e) { return e == Elem::F32 ? 4 : 2; }

float load_elem(const void *base, size_t i, Elem e)
{
    switch (e) {
    case Elem::F16: return __half2float(static_cast<const __half *>(base)[i]);
    case Elem::BF16: return __bfloat162float(static_cast<const __nv_bfloat16 *>(base)[i]);
    default: return static_cast<const float *>(base)[i];
    }
}

void store_elem(void *base, size_t i, Elem e, float v)
{
    switch (e) {
    case Elem::F16: static_cast<__half *>(base)[i] = __float2half_rn(v); break;
    case Elem::BF16: static_cast<__nv_bfloat16 *>(base)[i] = __float2bfloat16_rn(v); break;
    default: static_cast<float *>(base)[i] = v; break;
    }
}

/* fp32 to TF32 (1 sign, 8 exponent, 10 mantissa bits), rounding to nearest
 * even; infinities and NaNs pass unchanged. */
static float round_tf32(float v)
{
    uint32_t u = emu::from_bits<uint32_t>(emu::to_bits(v));
    if ((u & 0x7f800000u) == 0x7f800000u)
        return v;
    u += 0x0fffu + ((u >> 13) & 1u);
    u &= 0xffffe000u;
    return emu::from_bits<float>(u);
}

float round_input(float v, InputRounding r)
{
    switch (r) {
    case InputRounding::TF32: return round_tf32(v);
    case InputRounding::F16: return __half2float(__float2half_rn(v));
    case InputRounding::BF16: return __bfloat162float(__float2bfloat16_rn(v));
    default: return v;
    }
}

/* Eight independent partial sums (SSE2 keeps them in four registers): the
 * adds' latency, not their number, bounds a single running sum. */
double dot(const float *a, const float *b, size_t n)
{
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += (double)a[i] * b[i];
        s1 += (double)a[i + 1] * b[i + 1];
        s2 += (double)a[i + 2] * b[i + 2];
        s3 += (double)a[i + 3] * b[i + 3];
        s4 += (double)a[i + 4] * b[i + 4];
        s5 += (double)a[i + 5] * b[i + 5];
        s6 += (double)a[i + 6] * b[i + 6];
        s7 += (double)a[i + 7] * b[i + 7];
    }
    for (; i < n; i++)
        s0 += (double)a[i] * b[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
}

} /* namespace emu */
