/* sd_linear, sd_matmul, sd_conv2d, sd_load_weight and sd_embedding on the CPU backend
 * against naive double-accumulating references written here, on odd shapes
 * and with weights stored as F32 (aligned and not), F16, BF16 and F8. Conv is
 * also run with tiny im2col tiles so that every tiling path (one row per
 * tile, tiles that do not divide the height) meets the reference. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "opsref.h"
#include "sd/backend.h"

#define TOL 1e-5

static const sd_dtype all_dtypes[] = {SD_F32, SD_F16, SD_BF16, SD_F8_E4M3};

/* y[m][n] = sum_k x[m][k] w[n][k] + b[n] */
static double *ref_linear(const float *x, const float *w, const float *b, int64_t m, int64_t n, int64_t k)
{
    double *y = calloc((size_t)(m * n), sizeof *y);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double acc = b ? b[j] : 0.0;
            for (int64_t t = 0; t < k; t++) acc += (double)x[i * k + t] * w[j * k + t];
            y[i * n + j] = acc;
        }
    return y;
}

/* Runs sd_linear on x [lead..., k] with W [n, k] (or [n, k, 1, 1]) and checks it. */
static void check_linear(sd_backend *be, int xdim, const int64_t *xshape, int64_t n, sd_dtype dt, int bias,
                         int kernel4d, uint32_t seed)
{
    int64_t k = xshape[xdim - 1], m = 1, yshape[4];
    for (int i = 0; i < xdim - 1; i++) m *= xshape[i], yshape[i] = xshape[i];
    yshape[xdim - 1] = n;
    float *x = or_random_new(&seed, (size_t)(m * k), -1, 1);
    or_weight w = or_weight_random(&seed, dt, kernel4d ? 4 : 2, (const int64_t[]){n, k, 1, 1}, -0.5f, 0.5f);
    or_weight b = or_weight_random(&seed, dt, 1, (const int64_t[]){n}, -1, 1);
    sd_tensor *tx = or_tensor(be, xdim, xshape, x), *ty = sd_tensor_new(be, xdim, yshape);
    assert_int_equal(sd_linear(be, ty, tx, &w.w, bias ? &b.w : NULL), 0);
    float *got = or_download(be, ty);
    double *ref = ref_linear(x, w.ref, bias ? b.ref : NULL, m, n, k);
    double err = or_rel_err(got, ref, (size_t)(m * n), 1e-30);
    if (err > TOL) fail_msg("linear m=%lld n=%lld k=%lld dtype %s: rel err %g", (long long)m, (long long)n,
                            (long long)k, sd_dtype_name(dt), err);
    free(x), free(got), free(ref);
    or_weight_free(&w), or_weight_free(&b);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static void test_linear_matches_reference_in_every_dtype(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    for (size_t d = 0; d < sizeof all_dtypes / sizeof *all_dtypes; d++) {
        sd_dtype dt = all_dtypes[d];
        check_linear(be, 3, (const int64_t[]){3, 5, 7}, 11, dt, 1, 0, 1u + (uint32_t)d);
        check_linear(be, 3, (const int64_t[]){2, 77, 37}, 45, dt, 0, 0, 7u + (uint32_t)d);
        check_linear(be, 2, (const int64_t[]){1, 1}, 1, dt, 1, 0, 9u);
        check_linear(be, 4, (const int64_t[]){2, 3, 1, 13}, 6, dt, 1, 1, 11u);   /* [N,K,1,1] kernel */
    }
    check_linear(be, 2, (const int64_t[]){130, 300}, 129, SD_F16, 1, 0, 5u);
    assert_null(sd_backend_error(be));
    sd_backend_free(be);
}

static void test_matmul_uses_the_kn_orientation(void **state)
{
    /* OpenCLIP's text_projection P [K, N] is applied as x @ P: sd_matmul must
     * equal sd_linear on P^T, and differ from sd_linear on P itself. */
    sd_backend *be = sd_backend_cpu_new(NULL);
    for (size_t d = 0; d < sizeof all_dtypes / sizeof *all_dtypes; d++) {
        uint32_t seed = 40u + (uint32_t)d;
        int64_t m = 3, k = 9, n = 5;
        float *x = or_random_new(&seed, (size_t)(m * k), -1, 1);
        or_weight p = or_weight_random(&seed, all_dtypes[d], 2, (const int64_t[]){k, n}, -1, 1);
        or_weight b = or_weight_random(&seed, all_dtypes[d], 1, (const int64_t[]){n}, -1, 1);
        float *pt = malloc((size_t)(n * k) * sizeof *pt);   /* P^T, [N, K] */
        for (int64_t i = 0; i < k; i++)
            for (int64_t j = 0; j < n; j++) pt[j * k + i] = p.ref[i * n + j];
        sd_tensor *tx = or_tensor(be, 2, (const int64_t[]){m, k}, x), *ty = sd_new2(be, m, n);
        assert_int_equal(sd_matmul(be, ty, tx, &p.w, &b.w), 0);
        float *got = or_download(be, ty);
        double *ref = ref_linear(x, pt, b.ref, m, n, k);
        assert_true(or_rel_err(got, ref, (size_t)(m * n), 1e-30) <= TOL);
        or_expect_error(be, sd_linear(be, ty, tx, &p.w, NULL), "do not match");
        free(x), free(pt), free(got), free(ref);
        or_weight_free(&p), or_weight_free(&b);
        sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    }
    sd_backend_free(be);
}

static void test_linear_rejects_mismatched_shapes(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 6;
    or_weight w = or_weight_random(&seed, SD_F16, 2, (const int64_t[]){4, 6}, -1, 1);
    or_weight k3 = or_weight_random(&seed, SD_F16, 4, (const int64_t[]){4, 6, 3, 3}, -1, 1);
    or_weight b = or_weight_random(&seed, SD_F16, 1, (const int64_t[]){6}, -1, 1);
    sd_tensor *x = sd_new3(be, 2, 3, 6), *y = sd_new3(be, 2, 3, 4), *y2 = sd_new3(be, 3, 2, 4);
    assert_int_equal(sd_fill(be, x, 1.0f), 0);
    or_expect_error(be, sd_linear(be, y2, x, &w.w, NULL), "x [2,3,6], test.weight [4,6] and y [3,2,4] do not match");
    or_expect_error(be, sd_linear(be, y, x, &k3.w, NULL), "is not a 2-D weight");
    or_expect_error(be, sd_linear(be, y, x, &w.w, &b.w), "must be [4]");
    or_expect_error(be, sd_linear(be, x, x, &w.w, NULL), "alias");
    sd_weight bad = w.w;
    bad.dtype = (sd_dtype)99;
    or_expect_error(be, sd_linear(be, y, x, &bad, NULL), "unknown dtype");
    bad = w.w;
    bad.data = NULL;
    or_expect_error(be, sd_linear(be, y, x, &bad, NULL), "weight missing");
    assert_int_equal(sd_linear(be, y, x, &w.w, NULL), 0);
    or_weight_free(&w), or_weight_free(&k3), or_weight_free(&b);
    sd_tensor_free(be, x), sd_tensor_free(be, y), sd_tensor_free(be, y2);
    sd_backend_free(be);
}

static void test_linear_reads_unaligned_f32_weights(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 3;
    int64_t m = 4, n = 5, k = 6;
    float *x = or_random_new(&seed, (size_t)(m * k), -1, 1), *w = or_random_new(&seed, (size_t)(n * k), -1, 1);
    char *raw = malloc((size_t)(n * k) * sizeof(float) + 2);
    memcpy(raw + 2, w, (size_t)(n * k) * sizeof(float));   /* a safetensors offset need not be 4-aligned */
    sd_weight sw = {.name = "unaligned", .dtype = SD_F32, .ndim = 2, .shape = {n, k}, .data = raw + 2};
    sd_tensor *tx = or_tensor(be, 2, (const int64_t[]){m, k}, x), *ty = sd_new2(be, m, n);
    assert_int_equal(sd_linear(be, ty, tx, &sw, NULL), 0);
    float *got = or_download(be, ty);
    double *ref = ref_linear(x, w, NULL, m, n, k);
    assert_true(or_rel_err(got, ref, (size_t)(m * n), 1e-30) <= TOL);
    free(x), free(w), free(raw), free(got), free(ref);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
    sd_backend_free(be);
}

typedef struct {
    int64_t b, cin, h, w, cout, kh, kw;
    int stride, left, right, top, bottom;
} conv_case;

static int64_t out_size(int64_t in, int64_t k, int lo, int hi, int stride) { return (in + lo + hi - k) / stride + 1; }

/* torch F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride) */
static double *ref_conv(const conv_case *c, const float *x, const float *w, const float *b, int64_t ho, int64_t wo)
{
    double *y = calloc((size_t)(c->b * c->cout * ho * wo), sizeof *y);
    for (int64_t n = 0; n < c->b; n++)
        for (int64_t co = 0; co < c->cout; co++)
            for (int64_t oy = 0; oy < ho; oy++)
                for (int64_t ox = 0; ox < wo; ox++) {
                    double acc = b ? b[co] : 0.0;
                    for (int64_t ci = 0; ci < c->cin; ci++)
                        for (int64_t ky = 0; ky < c->kh; ky++)
                            for (int64_t kx = 0; kx < c->kw; kx++) {
                                int64_t iy = oy * c->stride - c->top + ky, ix = ox * c->stride - c->left + kx;
                                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                                acc += (double)x[((n * c->cin + ci) * c->h + iy) * c->w + ix] *
                                       w[((co * c->cin + ci) * c->kh + ky) * c->kw + kx];
                            }
                    y[((n * c->cout + co) * ho + oy) * wo + ox] = acc;
                }
    return y;
}

static void check_conv(sd_backend *be, const conv_case *c, sd_dtype dt, int bias, uint32_t seed)
{
    int64_t ho = out_size(c->h, c->kh, c->top, c->bottom, c->stride);
    int64_t wo = out_size(c->w, c->kw, c->left, c->right, c->stride);
    size_t nx = (size_t)(c->b * c->cin * c->h * c->w), ny = (size_t)(c->b * c->cout * ho * wo);
    float *x = or_random_new(&seed, nx, -1, 1);
    or_weight w = or_weight_random(&seed, dt, 4, (const int64_t[]){c->cout, c->cin, c->kh, c->kw}, -0.5f, 0.5f);
    or_weight b = or_weight_random(&seed, dt, 1, (const int64_t[]){c->cout}, -1, 1);
    sd_tensor *tx = or_tensor(be, 4, (const int64_t[]){c->b, c->cin, c->h, c->w}, x);
    sd_tensor *ty = sd_new4(be, c->b, c->cout, ho, wo);
    assert_int_equal(sd_conv2d_pad(be, ty, tx, &w.w, bias ? &b.w : NULL, c->stride, c->left, c->right, c->top,
                                   c->bottom), 0);
    float *got = or_download(be, ty);
    double *ref = ref_conv(c, x, w.ref, bias ? b.ref : NULL, ho, wo);
    double err = or_rel_err(got, ref, ny, 1e-30);
    if (err > TOL)
        fail_msg("conv [%lld,%lld,%lld,%lld] k%lldx%lld s%d pad(%d,%d,%d,%d) %s: rel err %g", (long long)c->b,
                 (long long)c->cin, (long long)c->h, (long long)c->w, (long long)c->kh, (long long)c->kw, c->stride,
                 c->left, c->right, c->top, c->bottom, sd_dtype_name(dt), err);
    free(x), free(got), free(ref);
    or_weight_free(&w), or_weight_free(&b);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static const conv_case conv_cases[] = {
    {2, 5, 7, 9, 3, 3, 3, 1, 1, 1, 1, 1},     /* 3x3 same, batch 2, odd everything */
    {1, 6, 9, 8, 4, 3, 3, 2, 1, 1, 1, 1},     /* 3x3 stride 2 (Downsample2D), odd height */
    {2, 13, 5, 3, 7, 1, 1, 1, 0, 0, 0, 0},    /* 1x1 pointwise (conv_shortcut) */
    {2, 4, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1},     /* 1x1 spatial input, 3x3 kernel */
    {1, 3, 8, 6, 4, 3, 3, 2, 0, 1, 0, 1},     /* VAE encoder downsample: F.pad (0,1,0,1), stride 2 */
    {1, 3, 7, 5, 2, 1, 1, 2, 0, 0, 0, 0},     /* 1x1 stride 2 (im2col path) */
    {1, 2, 10, 12, 3, 3, 3, 1, 1, 1, 1, 1},   /* several row tiles under the small-tile backends */
    {1, 9, 4, 4, 33, 3, 3, 1, 2, 2, 2, 2},    /* padding wider than the kernel's reach */
    {2, 24, 11, 13, 20, 3, 3, 1, 1, 1, 1, 1}, /* Winograd: odd output edges, bands across the batch */
    {1, 5, 6, 7, 3, 3, 3, 1, 0, 2, 1, 0},     /* Winograd: asymmetric padding */
};

static void run_conv_cases(sd_backend *be)
{
    for (size_t i = 0; i < sizeof conv_cases / sizeof *conv_cases; i++)
        for (size_t d = 0; d < sizeof all_dtypes / sizeof *all_dtypes; d++)
            check_conv(be, &conv_cases[i], all_dtypes[d], (int)((i + d) % 2), 100u + (uint32_t)(i * 7 + d));
    assert_null(sd_backend_error(be));
}

static void test_conv2d_matches_reference(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    run_conv_cases(be);
    sd_backend_free(be);
}

static void test_conv2d_row_tiles_match_reference(void **state)
{
    /* 1 byte: one output row per tile. 3 rows of the 2x3x3 kernel on a
     * 12-wide output: the 10-row case runs as tiles of 3, 3, 3, 1 rows. */
    const size_t budgets[] = {1, 18 * 12 * 4 * 3};
    for (size_t i = 0; i < sizeof budgets / sizeof *budgets; i++) {
        sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.conv_tile_bytes = budgets[i]});
        run_conv_cases(be);
        sd_backend_free(be);
    }
}

/* 3x3 stride-1 convs run Winograd F(2x2, 3x3) by default; direct_conv
 * forces im2col + sgemm for them too. Both match the reference, and a 1-byte
 * band budget (one tile per band) and a 7-tile band still do. */
static void test_conv2d_winograd_and_direct_match_reference(void **state)
{
    const sd_cpu_options opts[] = {{.direct_conv = 1}, {.conv_tile_bytes = 1},
                                   {.conv_tile_bytes = 7 * 16 * (24 + 20) * sizeof(float)}};
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        sd_backend *be = sd_backend_cpu_new(&opts[i]);
        run_conv_cases(be);
        sd_backend_free(be);
    }
}

static void test_conv2d_rejects_mismatched_shapes(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 1;
    or_weight w = or_weight_random(&seed, SD_F16, 4, (const int64_t[]){4, 3, 3, 3}, -1, 1);
    sd_tensor *x = sd_new4(be, 1, 3, 8, 8), *y = sd_new4(be, 1, 4, 8, 8), *bad = sd_new4(be, 1, 4, 4, 4);
    or_expect_error(be, sd_conv2d(be, bad, x, &w.w, NULL, 1, 1), "gives [1,4,8,8], not y [1,4,4,4]");
    or_expect_error(be, sd_conv2d(be, y, y, &w.w, NULL, 1, 1), "alias");
    or_expect_error(be, sd_conv2d(be, y, x, &w.w, NULL, 0, 1), "stride");
    or_weight b = or_weight_random(&seed, SD_F16, 1, (const int64_t[]){5}, -1, 1);
    or_expect_error(be, sd_conv2d(be, y, x, &w.w, &b.w, 1, 1), "must be [4]");
    assert_int_equal(sd_conv2d(be, y, x, &w.w, NULL, 1, 1), 0);
    or_weight_free(&w), or_weight_free(&b);
    sd_tensor_free(be, x), sd_tensor_free(be, y), sd_tensor_free(be, bad);
    sd_backend_free(be);
}

static void test_load_weight_and_embedding(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 77;
    or_weight table = or_weight_random(&seed, SD_BF16, 2, (const int64_t[]){10, 6}, -2, 2);
    const int32_t ids[] = {3, 0, 9, 3};
    sd_tensor *y = sd_new3(be, 2, 2, 6);
    assert_int_equal(sd_embedding(be, y, &table.w, ids, 4), 0);
    float *got = or_download(be, y);
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 6; c++) assert_true(got[i * 6 + c] == table.ref[ids[i] * 6 + c]);
    const int32_t bad_ids[] = {3, 10, 0, 1};
    or_expect_error(be, sd_embedding(be, y, &table.w, bad_ids, 4), "id 10 at 1 is outside");
    or_expect_error(be, sd_embedding(be, y, &table.w, ids, 3), "do not fill");

    sd_tensor *flat = sd_new1(be, 60);
    assert_int_equal(sd_load_weight(be, flat, &table.w), 0);
    float *all = or_download(be, flat);
    assert_memory_equal(all, table.ref, 60 * sizeof(float));
    or_expect_error(be, sd_load_weight(be, y, &table.w), "does not fit");
    free(got), free(all);
    or_weight_free(&table);
    sd_tensor_free(be, y), sd_tensor_free(be, flat);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_matches_reference_in_every_dtype),
        cmocka_unit_test(test_matmul_uses_the_kn_orientation),
        cmocka_unit_test(test_linear_rejects_mismatched_shapes),
        cmocka_unit_test(test_linear_reads_unaligned_f32_weights),
        cmocka_unit_test(test_conv2d_matches_reference),
        cmocka_unit_test(test_conv2d_row_tiles_match_reference),
        cmocka_unit_test(test_conv2d_winograd_and_direct_match_reference),
        cmocka_unit_test(test_conv2d_rejects_mismatched_shapes),
        cmocka_unit_test(test_load_weight_and_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
