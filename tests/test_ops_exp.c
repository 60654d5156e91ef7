/* The CPU backend's vectorisable e^x (cpu_exp in src/sd/cpu/cpu.h), which
 * softmax, attention, SiLU and quick_gelu use: within 1 ulp of the exact
 * value over its whole normal range (every 1024th float), exact at 0, and
 * the edges: inf above 88.7228, 0 below -87.3 and at -inf, NaN kept. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exp_is_within_one_ulp),
        cmocka_unit_test(test_exp_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
