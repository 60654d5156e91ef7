/* Elementwise ops on the CPU backend against double references: SiLU, exact
 * (erf) GELU, quick_gelu, diffusers' GEGLU half order, add/mul with numpy
 * broadcasting (residual, per-channel time embedding [B,C,1,1] onto NCHW,
 * position embedding [N,C] onto [B,N,C], a scalar), scale, copy, fill,
 * in place and out of place. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "opsref.h"
#include "sd/backend.h"

#define TOL 1e-6

static double ref_silu(double v) { return v / (1.0 + exp(-v)); }
static double ref_gelu(double v) { return 0.5 * v * (1.0 + erf(v / sqrt(2.0))); }
static double ref_quick_gelu(double v) { return v / (1.0 + exp(-1.702 * v)); }

static void check_act(sd_backend *be, sd_act act, double (*ref_fn)(double), int in_place)
{
    uint32_t seed = 5u + (uint32_t)act;
    int64_t n = 3 * 5 * 7 + 20000;   /* more than one chunk */
    float *x = or_random_new(&seed, (size_t)n, -9, 9);
    x[0] = 0.0f, x[1] = -30.0f, x[2] = 30.0f, x[3] = -100.0f;   /* saturated tails */
    sd_tensor *tx = or_tensor(be, 1, &n, x), *ty = in_place ? tx : sd_new1(be, n);
    assert_int_equal(sd_act_apply(be, ty, tx, act), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t i = 0; i < n; i++) ref[i] = ref_fn(x[i]);
    double err = or_rel_err(got, ref, (size_t)n, 1e-30);
    if (err > TOL) fail_msg("activation %d: rel err %g", (int)act, err);
    for (int i = 0; i < 4; i++) assert_true(isfinite(got[i]));
    free(x), free(got), free(ref);
    sd_tensor_free(be, tx);
    if (!in_place) sd_tensor_free(be, ty);
}

static void test_activations_match_torch_formulas(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    for (int in_place = 0; in_place < 2; in_place++) {
        check_act(be, SD_ACT_SILU, ref_silu, in_place);
        check_act(be, SD_ACT_GELU, ref_gelu, in_place);
        check_act(be, SD_ACT_QUICK_GELU, ref_quick_gelu, in_place);
    }
    /* the inline wrappers dispatch to the same formulas */
    float x[3] = {-1.5f, 0.25f, 2.0f}, y[3];
    sd_tensor *t = or_tensor(be, 1, (const int64_t[]){3}, x), *u = sd_new1(be, 3);
    assert_int_equal(sd_gelu(be, u, t), 0);
    assert_int_equal(sd_tensor_download(be, u, y), 0);
    assert_float_equal(y[0], ref_gelu(-1.5), 1e-6);
    assert_int_equal(sd_silu(be, u, t), 0);
    assert_int_equal(sd_tensor_download(be, u, y), 0);
    assert_float_equal(y[1], ref_silu(0.25), 1e-6);
    assert_int_equal(sd_quick_gelu(be, u, t), 0);
    assert_int_equal(sd_tensor_download(be, u, y), 0);
    assert_float_equal(y[2], ref_quick_gelu(2.0), 1e-6);
    /* GELU is the erf form, not the tanh approximation: they differ by ~2e-4 at x = -1.5 */
    double tanh_form = 0.5 * -1.5 * (1 + tanh(sqrt(2 / M_PI) * (-1.5 + 0.044715 * -3.375)));
    assert_true(fabs(tanh_form - ref_gelu(-1.5)) > 1e-4);
    sd_tensor_free(be, t), sd_tensor_free(be, u);
    sd_backend_free(be);
}

static void test_geglu_multiplies_first_half_by_gelu_of_second(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 3;
    int64_t rows = 2 * 5, f = 13;
    float *x = or_random_new(&seed, (size_t)(rows * 2 * f), -4, 4);
    sd_tensor *tx = or_tensor(be, 3, (const int64_t[]){2, 5, 2 * f}, x), *ty = sd_new3(be, 2, 5, f);
    assert_int_equal(sd_geglu(be, ty, tx), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)(rows * f) * sizeof *ref);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < f; i++) ref[r * f + i] = x[r * 2 * f + i] * ref_gelu(x[r * 2 * f + f + i]);
    assert_true(or_rel_err(got, ref, (size_t)(rows * f), 1e-30) <= TOL);
    sd_tensor *wrong = sd_new3(be, 2, 5, f + 1);
    or_expect_error(be, sd_geglu(be, wrong, tx), "last dim doubled");
    free(x), free(got), free(ref);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty), sd_tensor_free(be, wrong);
    sd_backend_free(be);
}

/* y = a op b with b (shape bshape, bdim dims) broadcast numpy-style to a (4-D). */
static void check_broadcast(sd_backend *be, const int64_t *ashape, int bdim, const int64_t *bshape, int multiply,
                            int in_place, uint32_t seed)
{
    int64_t na = ashape[0] * ashape[1] * ashape[2] * ashape[3], nb = 1, bs[4];
    for (int i = 0; i < 4; i++) bs[i] = i < 4 - bdim ? 1 : bshape[i - (4 - bdim)];
    for (int i = 0; i < 4; i++) nb *= bs[i];
    float *a = or_random_new(&seed, (size_t)na, -2, 2), *b = or_random_new(&seed, (size_t)nb, -2, 2);
    sd_tensor *ta = or_tensor(be, 4, ashape, a), *tb = or_tensor(be, bdim, bshape, b);
    sd_tensor *ty = in_place ? ta : sd_tensor_new(be, 4, ashape);
    assert_int_equal(multiply ? sd_mul(be, ty, ta, tb) : sd_add(be, ty, ta, tb), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)na * sizeof *ref);
    for (int64_t i0 = 0; i0 < ashape[0]; i0++)
        for (int64_t i1 = 0; i1 < ashape[1]; i1++)
            for (int64_t i2 = 0; i2 < ashape[2]; i2++)
                for (int64_t i3 = 0; i3 < ashape[3]; i3++) {
                    int64_t ia = ((i0 * ashape[1] + i1) * ashape[2] + i2) * ashape[3] + i3;
                    int64_t ib = (((bs[0] > 1 ? i0 : 0) * bs[1] + (bs[1] > 1 ? i1 : 0)) * bs[2] +
                                  (bs[2] > 1 ? i2 : 0)) * bs[3] + (bs[3] > 1 ? i3 : 0);
                    ref[ia] = multiply ? (double)a[ia] * b[ib] : (double)a[ia] + b[ib];
                }
    double err = or_rel_err(got, ref, (size_t)na, 1e-30);
    if (err > TOL) fail_msg("broadcast %s (b %d dims): rel err %g", multiply ? "mul" : "add", bdim, err);
    free(a), free(b), free(got), free(ref);
    sd_tensor_free(be, ta), sd_tensor_free(be, tb);
    if (!in_place) sd_tensor_free(be, ty);
}

static void test_add_and_mul_broadcast_like_numpy(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    const int64_t nchw[4] = {2, 5, 3, 7};
    for (int mul = 0; mul < 2; mul++)
        for (int in_place = 0; in_place < 2; in_place++) {
            uint32_t s = 10u + (uint32_t)(mul * 2 + in_place);
            check_broadcast(be, nchw, 4, nchw, mul, in_place, s);                              /* residual */
            check_broadcast(be, nchw, 4, (const int64_t[]){2, 5, 1, 1}, mul, in_place, s);   /* time emb */
            check_broadcast(be, nchw, 1, (const int64_t[]){7}, mul, in_place, s);            /* bias on last dim */
            check_broadcast(be, (const int64_t[]){1, 2, 77, 9}, 2, (const int64_t[]){77, 9}, mul, in_place, s);
            check_broadcast(be, nchw, 1, (const int64_t[]){1}, mul, in_place, s);            /* scalar */
            check_broadcast(be, nchw, 3, (const int64_t[]){5, 1, 7}, mul, in_place, s);      /* inner broadcast */
        }
    sd_tensor *a = sd_new4(be, 2, 5, 3, 7), *b = sd_new2(be, 5, 3), *c = sd_new4(be, 1, 2, 5, 3);
    or_expect_error(be, sd_add(be, a, a, b), "does not broadcast");
    or_expect_error(be, sd_mul(be, a, a, c), "does not broadcast");
    sd_tensor *row = sd_new4(be, 1, 1, 1, 7);
    or_expect_error(be, sd_add(be, row, a, row), "differs");
    sd_tensor *all[] = {a, b, c, row};
    for (int i = 0; i < 4; i++) sd_tensor_free(be, all[i]);
    sd_backend_free(be);
}

static void test_scale_copy_fill(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 8;
    int64_t n = 40000;
    float *x = or_random_new(&seed, (size_t)n, -3, 3);
    sd_tensor *t = or_tensor(be, 1, &n, x), *u = sd_new2(be, 200, 200);
    assert_int_equal(sd_copy(be, u, t), 0);   /* same element count, different shape */
    float *got = or_download(be, u);
    assert_memory_equal(got, x, (size_t)n * sizeof(float));
    free(got);
    assert_int_equal(sd_scale(be, t, t, 1.0f / 0.13025f), 0);
    got = or_download(be, t);
    for (int64_t i = 0; i < n; i++) assert_true(got[i] == (1.0f / 0.13025f) * x[i]);
    free(got);
    assert_int_equal(sd_fill(be, u, -0.5f), 0);
    got = or_download(be, u);
    for (int64_t i = 0; i < n; i++) assert_true(got[i] == -0.5f);
    sd_tensor *small = sd_new1(be, 5);
    or_expect_error(be, sd_copy(be, small, t), "differ in size");
    or_expect_error(be, sd_scale(be, small, t, 2.0f), "differs");
    free(x), free(got);
    sd_tensor_free(be, t), sd_tensor_free(be, u), sd_tensor_free(be, small);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations_match_torch_formulas),
        cmocka_unit_test(test_geglu_multiplies_first_half_by_gelu_of_second),
        cmocka_unit_test(test_add_and_mul_broadcast_like_numpy),
        cmocka_unit_test(test_scale_copy_fill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
