/* The "cuda" noise stream: torch.randn on a CUDA generator as A1111 emulates
 * it on the CPU (AUTOMATIC1111/stable-diffusion-webui modules/rng_philox.py,
 * "RNG imitating torch cuda randn on CPU"). Element i of the k-th randn call
 * on a generator is
 *   (x0, x1, x2, x3) = Philox4x32-10(counter = {k, 0, i, 0}, key = {seed lo, seed hi})
 *   u = x0 * 2^-32 + 2^-33,  v = x1 * c + c/2  with c = float32(2^-32 * 2pi)
 *   out[i] = float32(sqrt(-2 ln u) * sin v)
 * where A1111 computes u, v and the result in double (numpy promotes the
 * uint32 * float32 products to float64); this file does the same. */
#include "sd/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* One Philox4x32 round (Salmon et al. 2011, "Parallel random numbers: as
 * easy as 1, 2, 3"): two 32x32->64 multiplies, then xor with the other words
 * and the key. */
static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)c[0] * PHILOX_M0;
    uint64_t p1 = (uint64_t)c[2] * PHILOX_M1;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k[0];
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = (uint32_t)p1;
    c[2] = n2;
    c[3] = (uint32_t)p0;
}

/* Philox4x32-10: ten rounds, the key bumped by the Weyl constants between them. */
static void philox4x32_10(uint32_t c[4], uint64_t seed)
{
    uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int r = 0; r < 9; r++) {
        philox_round(c, k);
        k[0] += PHILOX_W0;
        k[1] += PHILOX_W1;
    }
    philox_round(c, k);
}

/* A1111's box_muller: only the sine of the first pair is kept. Its constants
 * are float32 arrays: 2.3283064e-10 (exactly 2^-32) and 2.3283064e-10 * 6.2831855. */
static float box_muller_sin(uint32_t x, uint32_t y)
{
    const double inv32 = (float)2.3283064e-10;
    const double inv32_2pi = (float)(2.3283064e-10 * 6.2831855);
    double u = (double)x * inv32 + inv32 / 2;        /* halves are exact */
    double v = (double)y * inv32_2pi + inv32_2pi / 2;
    double s = sqrt(-2.0 * log(u));
    return (float)(s * sin(v));
}

/* The offset-th randn call of n elements. As in A1111, the element index is
 * the 32-bit counter word 2, so a call holds at most 2^32 elements. */
void sd_rng_philox_randn(uint64_t seed, uint64_t offset, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c[4] = {(uint32_t)offset, 0, (uint32_t)i, 0};
        philox4x32_10(c, seed);
        out[i] = box_muller_sin(c[0], c[1]);
    }
}
