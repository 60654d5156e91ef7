/* torch's CPU random normal stream: torch.Generator().manual_seed(s) followed
 * by torch.randn calls in fp32, reproduced bit for bit as x86-64 PyTorch wheels
 * (the AVX2 kernel) compute it. Sources matched (PyTorch 2.15 headers):
 *   ATen/core/MT19937RNGEngine.h        mt19937 seeding, twist, tempering
 *   ATen/core/TransformationHelper.h    uniform_real: low 24 bits * 2^-24
 *   ATen/core/DistributionsHelper.h     normal_distribution<double> + its cache
 *   ATen/native/cpu/DistributionTemplates.h  normal_fill (16-value blocks)
 *   ATen/native/cpu/avx_mathfun.h       log256_ps, sincos256_ps (Cephes)
 * The AVX2 polynomials are evaluated here one lane at a time, in float, with
 * the multiply-adds that the compiler fused in the PyTorch build fused here
 * with fmaf (found by comparing against dumped torch.randn output). */
#include "sd/rng.h"

#include <math.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- mt19937 (MT19937RNGEngine.h; the reference genrand_int32) ---------- */

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UPPER 0x80000000u
#define MT_LOWER 0x7fffffffu

void sd_rng_mt_seed(sd_rng_mt *mt, uint64_t seed)
{
    mt->state[0] = (uint32_t)(seed & 0xffffffffu);
    for (int j = 1; j < SD_MT_N; j++) {
        uint32_t prev = mt->state[j - 1];
        mt->state[j] = 1812433253u * (prev ^ (prev >> 30)) + (uint32_t)j;
    }
    mt->next = SD_MT_N;        /* torch: left_ = 1, so the first draw twists */
    mt->has_next_normal = 0;   /* manual_seed resets the cached normals */
    mt->next_normal = 0.0;
}

static uint32_t mt_twist_word(uint32_t a, uint32_t b, uint32_t m)
{
    uint32_t y = (a & MT_UPPER) | (b & MT_LOWER);
    return m ^ (y >> 1) ^ ((b & 1u) ? MT_MATRIX_A : 0u);
}

static void mt_twist(uint32_t *s)
{
    for (int k = 0; k < SD_MT_N; k++)
        s[k] = mt_twist_word(s[k], s[(k + 1) % SD_MT_N], s[(k + MT_M) % SD_MT_N]);
}

/* One 32-bit output: CPUGeneratorImpl::random(). */
uint32_t sd_rng_mt_next(sd_rng_mt *mt)
{
    if (mt->next == SD_MT_N) {
        mt_twist(mt->state);
        mt->next = 0;
    }
    uint32_t y = mt->state[mt->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* CPUGeneratorImpl::random64(): first draw is the high word. */
static uint64_t mt_next64(sd_rng_mt *mt)
{
    uint64_t hi = sd_rng_mt_next(mt);
    return (hi << 32) | sd_rng_mt_next(mt);
}

/* uniform_real<float>: (r & (2^24-1)) * 2^-24, exact, in [0, 1). */
static float uniform_float(sd_rng_mt *mt)
{
    return (float)(sd_rng_mt_next(mt) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* uniform_real<double>: (r64 & (2^53-1)) * 2^-53. */
static double uniform_double(sd_rng_mt *mt)
{
    return (double)(mt_next64(mt) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* ---- avx_mathfun.h, one lane ------------------------------------------- */

static float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* The constants are double literals converted to float, as in the header. */
static const float cephes_SQRTHF = 0.707106781186547524;
static const float cephes_log_p[9] = {
    7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1,
    1.4249322787E-1, -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1,
    3.3333331174E-1};
static const float cephes_log_q1 = -2.12194440e-4;
static const float cephes_log_q2 = 0.693359375;

/* log256_ps: natural log of x > 0 (here x = 1 - u in (0, 1]). */
static float cephes_logf(float x)
{
    if (x < 1.17549435e-38f) x = 1.17549435e-38f;          /* min_norm_pos */
    int32_t imm0 = (int32_t)(bits_of(x) >> 23);
    x = f_of((bits_of(x) & ~0x7f800000u) | bits_of(0.5f));  /* mantissa in [0.5, 1) */
    float e = (float)(imm0 - 0x7f) + 1.0f;
    int small = x < cephes_SQRTHF;
    float tmp = small ? x : 0.0f;
    x = x - 1.0f;
    e = e - (small ? 1.0f : 0.0f);
    x = x + tmp;
    float z = x * x;
    float y = cephes_log_p[0];
    for (int k = 1; k < 9; k++) y = fmaf(y, x, cephes_log_p[k]);
    y = y * x;
    y = fmaf(y, z, e * cephes_log_q1);
    y = fmaf(-z, 0.5f, y);
    x = fmaf(e, cephes_log_q2, x + y);
    return x;
}

static const float minus_cephes_DP1 = -0.78515625;
static const float minus_cephes_DP2 = -2.4187564849853515625e-4;
static const float minus_cephes_DP3 = -3.77489497744594108e-8;
static const float sincof_p0 = -1.9515295891E-4;
static const float sincof_p1 = 8.3321608736E-3;
static const float sincof_p2 = -1.6666654611E-1;
static const float coscof_p0 = 2.443315711809948E-005;
static const float coscof_p1 = -1.388731625493765E-003;
static const float coscof_p2 = 4.166664568298827E-002;
static const float cephes_FOPI = 1.27323954473516; /* 4/pi */

/* sincos256_ps: octant j from x*4/pi, Cody-Waite reduction by pi/4 in three
 * parts, then the cos and sin polynomials on the reduced argument. */
static void cephes_sincosf(float x, float *s, float *c)
{
    uint32_t sign_sin = bits_of(x) & 0x80000000u;
    x = fabsf(x);
    int32_t j = (int32_t)(x * cephes_FOPI);   /* cvttps: truncation */
    j = (j + 1) & ~1;
    float y = (float)j;
    sign_sin ^= (uint32_t)(j & 4) << 29;
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;
    int sin_poly = (j & 2) == 0;              /* poly_mask */

    x = fmaf(y, minus_cephes_DP1, x);
    x = fmaf(y, minus_cephes_DP2, x);
    x = fmaf(y, minus_cephes_DP3, x);

    float z = x * x;
    float yc = coscof_p0;
    yc = fmaf(yc, z, coscof_p1);
    yc = fmaf(yc, z, coscof_p2);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;

    float ys = sincof_p0;
    ys = fmaf(ys, z, sincof_p1);
    ys = fmaf(ys, z, sincof_p2);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    /* The header selects with masks and subtractions; replayed literally. */
    float ysin2 = sin_poly ? ys : 0.0f;
    float ysin1 = sin_poly ? 0.0f : yc;
    ys = ys - ysin2;
    yc = yc - ysin1;
    *s = f_of(bits_of(ysin1 + ysin2) ^ sign_sin);
    *c = f_of(bits_of(yc + ys) ^ sign_cos);
}

/* ---- normal_fill: 16-value Box-Muller blocks ----------------------------- */

/* NormalFill16 (AVX2): d[0..15] hold uniforms; pair j uses u1 = 1 - d[j] and
 * u2 = d[j+8]; r = sqrt(-2 ln u1), theta = 2pi*u2 (float), d[j] = r cos theta,
 * d[j+8] = r sin theta. The final fmadd(n, std=1, mean=0) turns -0 into +0. */
static void normal_fill_16(float *d)
{
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * cephes_logf(u1));
        float theta = two_pi * u2;
        float sn, cs;
        cephes_sincosf(theta, &sn, &cs);
        d[j] = radius * cs + 0.0f;
        d[j + 8] = radius * sn + 0.0f;
    }
}

/* normal_fill for n >= 16: all n uniforms first, Box-Muller per full block,
 * and if n % 16 != 0 a fresh block of 16 uniforms over the last 16 values. */
static void normal_fill(sd_rng_mt *mt, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = uniform_float(mt);
    for (size_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = uniform_float(mt);
        normal_fill_16(tail);
    }
}

/* normal_distribution<double> (numel < 16): Box-Muller in double from two
 * 53-bit uniforms, returning r cos theta and caching r sin theta in the
 * generator for the next call, which may be a later randn. */
static double normal_double(sd_rng_mt *mt)
{
    if (mt->has_next_normal) {
        mt->has_next_normal = 0;
        return mt->next_normal * 1.0 + 0.0;
    }
    double u1 = uniform_double(mt);
    double u2 = uniform_double(mt);
    double r = sqrt(-2.0 * log1p(-u2));
    double theta = 2.0 * 3.14159265358979323846 * u1;
    mt->next_normal = r * sin(theta);
    mt->has_next_normal = 1;
    return r * cos(theta) * 1.0 + 0.0;
}

void sd_rng_cpu_randn(sd_rng_mt *mt, size_t n, float *out)
{
    if (n >= 16) {
        normal_fill(mt, n, out);
        return;
    }
    for (size_t i = 0; i < n; i++) out[i] = (float)normal_double(mt);
}
