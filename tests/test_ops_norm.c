/* sd_group_norm (plain and with fused activations), sd_layer_norm and
 * sd_softmax on the CPU backend against double-precision references of
 * torch's formulas: biased variance, eps inside the sqrt, affine optional,
 * softmax max-subtracted (checked on logits that overflow expf unshifted). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "opsref.h"
#include "sd/backend.h"

#define TOL 1e-5

static double ref_act(sd_act act, double v)
{
    switch (act) {
    case SD_ACT_SILU: return v / (1.0 + exp(-v));
    case SD_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case SD_ACT_QUICK_GELU: return v / (1.0 + exp(-1.702 * v));
    default: return v;
    }
}

/* Normalises x[0..n) (stride 1) in place into y: (x - mean) / sqrt(var + eps). */
static void ref_normalize(const float *x, int64_t n, double eps, double *y)
{
    double mean = 0.0, var = 0.0;
    for (int64_t i = 0; i < n; i++) mean += x[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)n;
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mean) / sqrt(var + eps);
}

/* x uniform in offset +- 2; tolerance scaled by the offset, because torch's
 * y = x * s + (beta - mean * s) cancels in fp32 when |mean| >> std. */
static void check_group_norm(sd_backend *be, int ndim, const int64_t *shape, int groups, float eps, int affine,
                             sd_act act, float offset, uint32_t seed)
{
    sd_tensor *tx = sd_tensor_new(be, ndim, shape);
    int64_t n = sd_numel(tx), c = shape[1], per_c = n / (shape[0] * c), cg = c / groups;
    float *x = or_random_new(&seed, (size_t)n, offset - 2, offset + 2);
    assert_int_equal(sd_tensor_upload(be, tx, x), 0);
    or_weight g = or_weight_random(&seed, SD_F16, 1, &c, 0.5f, 1.5f), b = or_weight_random(&seed, SD_BF16, 1, &c, -1, 1);
    sd_tensor *ty = sd_tensor_new(be, ndim, shape);
    assert_int_equal(sd_group_norm(be, ty, tx, groups, eps, affine ? &g.w : NULL, affine ? &b.w : NULL, act), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t grp = 0; grp < shape[0] * groups; grp++) {
        int64_t off = grp * cg * per_c;
        ref_normalize(x + off, cg * per_c, eps, ref + off);
        for (int64_t i = 0; i < cg * per_c; i++) {
            int64_t ch = grp % groups * cg + i / per_c;
            double v = affine ? ref[off + i] * g.ref[ch] + b.ref[ch] : ref[off + i];
            ref[off + i] = ref_act(act, v);
        }
    }
    double err = or_rel_err(got, ref, (size_t)n, 1e-30);
    if (err > TOL * (1.0 + fabs(offset)))
        fail_msg("group norm %d groups act %d offset %g: rel err %g", groups, (int)act, offset, err);
    free(x), free(got), free(ref);
    or_weight_free(&g), or_weight_free(&b);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static void test_group_norm_matches_torch_formula(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    check_group_norm(be, 4, (const int64_t[]){2, 6, 5, 7}, 3, 1e-5f, 1, SD_ACT_NONE, 0.0f, 1);
    check_group_norm(be, 4, (const int64_t[]){2, 6, 5, 7}, 3, 1e-6f, 1, SD_ACT_SILU, 0.0f, 2);
    check_group_norm(be, 4, (const int64_t[]){1, 12, 1, 1}, 4, 1e-5f, 1, SD_ACT_GELU, 0.0f, 3);   /* 1x1 spatial */
    check_group_norm(be, 4, (const int64_t[]){2, 10, 3, 3}, 5, 1e-6f, 0, SD_ACT_QUICK_GELU, 0.0f, 4);
    check_group_norm(be, 3, (const int64_t[]){2, 4, 77}, 1, 1e-5f, 1, SD_ACT_NONE, 0.0f, 5);     /* [B, C, L] */
    check_group_norm(be, 4, (const int64_t[]){1, 64, 9, 11}, 32, 1e-5f, 1, SD_ACT_SILU, 0.0f, 6);
    /* a large mean: a one-pass E[x^2] - E[x]^2 in float would be off by ~5% */
    check_group_norm(be, 4, (const int64_t[]){1, 4, 16, 16}, 2, 1e-6f, 1, SD_ACT_NONE, 1000.0f, 7);
    assert_null(sd_backend_error(be));
    sd_backend_free(be);
}

static void test_group_norm_eps_is_inside_the_sqrt(void **state)
{
    /* A constant group has variance 0: y = (x - mean) * rsqrt(eps) = 0 exactly,
     * and one with values +-d has y = +-d / sqrt(d^2 + eps). */
    sd_backend *be = sd_backend_cpu_new(NULL);
    float x[8] = {3, 3, 3, 3, 1, -1, 1, -1};
    sd_tensor *tx = or_tensor(be, 3, (const int64_t[]){1, 2, 4}, x), *ty = sd_new3(be, 1, 2, 4);
    assert_int_equal(sd_group_norm(be, ty, tx, 2, 0.25f, NULL, NULL, SD_ACT_NONE), 0);
    float *y = or_download(be, ty);
    for (int i = 0; i < 4; i++) assert_true(y[i] == 0.0f);
    assert_float_equal(y[4], 1.0 / sqrt(1.25), 1e-7);
    assert_float_equal(y[5], -1.0 / sqrt(1.25), 1e-7);
    free(y);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    sd_backend_free(be);
}

static void check_layer_norm(sd_backend *be, int ndim, const int64_t *shape, float eps, int affine, uint32_t seed)
{
    sd_tensor *tx = sd_tensor_new(be, ndim, shape), *ty = sd_tensor_new(be, ndim, shape);
    int64_t n = sd_numel(tx), c = shape[ndim - 1];
    float *x = or_random_new(&seed, (size_t)n, -3, 5);
    assert_int_equal(sd_tensor_upload(be, tx, x), 0);
    or_weight g = or_weight_random(&seed, SD_BF16, 1, &c, 0.5f, 1.5f), b = or_weight_random(&seed, SD_F32, 1, &c, -1, 1);
    assert_int_equal(sd_layer_norm(be, ty, tx, eps, affine ? &g.w : NULL, affine ? &b.w : NULL), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)n * sizeof *ref);
    for (int64_t r = 0; r < n / c; r++) {
        ref_normalize(x + r * c, c, eps, ref + r * c);
        for (int64_t i = 0; affine && i < c; i++) ref[r * c + i] = ref[r * c + i] * g.ref[i] + b.ref[i];
    }
    double err = or_rel_err(got, ref, (size_t)n, 1e-30);
    if (err > TOL) fail_msg("layer norm C=%lld: rel err %g", (long long)c, err);
    free(x), free(got), free(ref);
    or_weight_free(&g), or_weight_free(&b);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static void test_layer_norm_matches_torch_formula(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    check_layer_norm(be, 3, (const int64_t[]){2, 77, 40}, 1e-5f, 1, 1);
    check_layer_norm(be, 3, (const int64_t[]){3, 5, 7}, 1e-5f, 0, 2);
    check_layer_norm(be, 2, (const int64_t[]){1, 1}, 1e-5f, 1, 3);   /* one element: y = beta */
    check_layer_norm(be, 4, (const int64_t[]){2, 1, 3, 129}, 1e-6f, 1, 4);
    assert_null(sd_backend_error(be));
    sd_backend_free(be);
}

static void test_norms_work_in_place_and_check_vectors(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 9;
    float *x = or_random_new(&seed, 24, -1, 1);
    sd_tensor *t = or_tensor(be, 3, (const int64_t[]){2, 3, 4}, x), *ref = or_tensor(be, 3, (const int64_t[]){2, 3, 4}, x);
    sd_tensor *out = sd_new3(be, 2, 3, 4);
    assert_int_equal(sd_layer_norm(be, out, ref, 1e-5f, NULL, NULL), 0);
    assert_int_equal(sd_layer_norm(be, t, t, 1e-5f, NULL, NULL), 0);
    float *a = or_download(be, t), *b = or_download(be, out);
    assert_memory_equal(a, b, 24 * sizeof(float));
    int64_t three = 3;
    or_weight g = or_weight_random(&seed, SD_F16, 1, &three, 0, 1);
    or_expect_error(be, sd_layer_norm(be, t, t, 1e-5f, &g.w, NULL), "must be [4]");
    or_expect_error(be, sd_group_norm(be, t, t, 2, 1e-5f, NULL, NULL, SD_ACT_NONE), "divisible into 2 groups");
    or_expect_error(be, sd_group_norm(be, t, t, 3, 1e-5f, NULL, NULL, (sd_act)42), "unknown activation");
    sd_tensor *wider = sd_new3(be, 2, 3, 5);
    or_expect_error(be, sd_group_norm(be, out, wider, 3, 1e-5f, NULL, NULL, SD_ACT_NONE), "differs");
    free(x), free(a), free(b);
    or_weight_free(&g);
    sd_tensor_free(be, t), sd_tensor_free(be, ref), sd_tensor_free(be, out), sd_tensor_free(be, wider);
    sd_backend_free(be);
}

static void check_softmax(sd_backend *be, int64_t rows, int64_t c, float lo, float hi, uint32_t seed)
{
    float *x = or_random_new(&seed, (size_t)(rows * c), lo, hi);
    sd_tensor *tx = or_tensor(be, 2, (const int64_t[]){rows, c}, x), *ty = sd_new2(be, rows, c);
    assert_int_equal(sd_softmax(be, ty, tx), 0);
    float *got = or_download(be, ty);
    double *ref = malloc((size_t)(rows * c) * sizeof *ref);
    for (int64_t r = 0; r < rows; r++) {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t i = 0; i < c; i++) mx = fmax(mx, x[r * c + i]);
        for (int64_t i = 0; i < c; i++) sum += exp(x[r * c + i] - mx);
        for (int64_t i = 0; i < c; i++) ref[r * c + i] = exp(x[r * c + i] - mx) / sum;
    }
    double err = or_rel_err(got, ref, (size_t)(rows * c), 1e-30);
    if (err > TOL) fail_msg("softmax [%lld,%lld] in [%g,%g): rel err %g", (long long)rows, (long long)c, lo, hi, err);
    free(x), free(got), free(ref);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static void test_softmax_is_max_subtracted(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    check_softmax(be, 7, 77, -5, 5, 1);
    check_softmax(be, 3, 1, -5, 5, 2);          /* one column: all ones */
    check_softmax(be, 4, 1000, 80, 120, 3);     /* expf(x) alone would overflow to inf */
    assert_null(sd_backend_error(be));
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_norm_matches_torch_formula),
        cmocka_unit_test(test_group_norm_eps_is_inside_the_sqrt),
        cmocka_unit_test(test_layer_norm_matches_torch_formula),
        cmocka_unit_test(test_norms_work_in_place_and_check_vectors),
        cmocka_unit_test(test_softmax_is_max_subtracted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
