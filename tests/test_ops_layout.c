/* Data-movement ops on the CPU backend against index-by-index references:
 * nearest upsampling (2x, and the odd output sizes of diffusers' output_size
 * path with torch's floor(dst * in/out) rule), concat and slice along every
 * dim, and the NCHW <-> [B, HW, C] transposes (round trip included). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "opsref.h"
#include "sd/backend.h"

static void check_upsample(sd_backend *be, int64_t b, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo)
{
    uint32_t seed = (uint32_t)(h * 31 + w);
    float *x = or_random_new(&seed, (size_t)(b * c * h * w), -1, 1);
    sd_tensor *tx = or_tensor(be, 4, (const int64_t[]){b, c, h, w}, x), *ty = sd_new4(be, b, c, ho, wo);
    assert_int_equal(sd_upsample_nearest(be, ty, tx), 0);
    float *y = or_download(be, ty);
    for (int64_t p = 0; p < b * c; p++)
        for (int64_t oy = 0; oy < ho; oy++)
            for (int64_t ox = 0; ox < wo; ox++) {
                /* torch nearest: src = min(floor(dst * (float)(in / out)), in - 1) */
                int64_t iy = (int64_t)floorf((float)oy * ((float)h / (float)ho));
                int64_t ix = (int64_t)floorf((float)ox * ((float)w / (float)wo));
                iy = iy < h - 1 ? iy : h - 1;
                ix = ix < w - 1 ? ix : w - 1;
                assert_true(y[(p * ho + oy) * wo + ox] == x[(p * h + iy) * w + ix]);
            }
    free(x), free(y);
    sd_tensor_free(be, tx), sd_tensor_free(be, ty);
}

static void test_upsample_nearest(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    check_upsample(be, 2, 3, 5, 7, 10, 14);   /* Upsample2D: exactly 2x */
    check_upsample(be, 1, 2, 1, 1, 2, 2);
    check_upsample(be, 1, 2, 7, 4, 13, 8);    /* latent 13 -> 7 -> back to the skip's 13 */
    check_upsample(be, 1, 1, 3, 3, 3, 3);     /* identity */
    check_upsample(be, 1, 1, 5, 3, 11, 7);
    sd_tensor *x = sd_new4(be, 1, 2, 3, 3), *y = sd_new4(be, 1, 3, 6, 6);
    or_expect_error(be, sd_upsample_nearest(be, y, x), "differ in batch or channels");
    sd_tensor_free(be, x), sd_tensor_free(be, y);
    sd_backend_free(be);
}

/* Element index of coordinates i[4] in a 4-D shape. */
static int64_t at4(const int64_t *s, const int64_t *i) { return ((i[0] * s[1] + i[1]) * s[2] + i[2]) * s[3] + i[3]; }

static void test_concat_and_slice_along_every_dim(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 21;
    for (int dim = 0; dim < 4; dim++) {
        int64_t as[4] = {2, 3, 4, 5}, bs[4] = {2, 3, 4, 5}, ys[4] = {2, 3, 4, 5};
        bs[dim] = 2;
        ys[dim] = as[dim] + bs[dim];
        float *a = or_random_new(&seed, 120, -1, 1), *b = or_random_new(&seed, (size_t)(120 / as[dim] * 2), -1, 1);
        sd_tensor *ta = or_tensor(be, 4, as, a), *tb = or_tensor(be, 4, bs, b), *ty = sd_tensor_new(be, 4, ys);
        assert_int_equal(sd_concat(be, ty, ta, tb, dim), 0);
        float *y = or_download(be, ty);
        int64_t i[4];
        for (i[0] = 0; i[0] < ys[0]; i[0]++)
            for (i[1] = 0; i[1] < ys[1]; i[1]++)
                for (i[2] = 0; i[2] < ys[2]; i[2]++)
                    for (i[3] = 0; i[3] < ys[3]; i[3]++) {
                        int64_t j[4] = {i[0], i[1], i[2], i[3]};
                        float want;
                        if (i[dim] < as[dim]) want = a[at4(as, i)];
                        else j[dim] -= as[dim], want = b[at4(bs, j)];
                        assert_true(y[at4(ys, i)] == want);
                    }
        /* slicing y back at the seam gives b again, at 0 gives a */
        sd_tensor *sb = sd_tensor_new(be, 4, bs), *sa = sd_tensor_new(be, 4, as);
        assert_int_equal(sd_slice(be, sb, ty, dim, as[dim]), 0);
        assert_int_equal(sd_slice(be, sa, ty, dim, 0), 0);
        float *gb = or_download(be, sb), *ga = or_download(be, sa);
        assert_memory_equal(gb, b, (size_t)sd_numel(sb) * sizeof(float));
        assert_memory_equal(ga, a, 120 * sizeof(float));
        or_expect_error(be, sd_slice(be, sb, ty, dim, as[dim] + 1), "cannot give");
        or_expect_error(be, sd_concat(be, ty, ta, tb, (dim + 1) % 4), "is not");
        free(a), free(b), free(y), free(gb), free(ga);
        sd_tensor *all[] = {ta, tb, ty, sa, sb};
        for (int k = 0; k < 5; k++) sd_tensor_free(be, all[k]);
    }
    /* an interior slice of a sequence: tokens 3..8 of [2, 10, 4] */
    float seq[80];
    for (int k = 0; k < 80; k++) seq[k] = (float)k;
    sd_tensor *ts = or_tensor(be, 3, (const int64_t[]){2, 10, 4}, seq), *mid = sd_new3(be, 2, 5, 4);
    assert_int_equal(sd_slice(be, mid, ts, 1, 3), 0);
    float *m = or_download(be, mid);
    for (int bb = 0; bb < 2; bb++)
        for (int t = 0; t < 5; t++)
            for (int c = 0; c < 4; c++) assert_true(m[(bb * 5 + t) * 4 + c] == seq[(bb * 10 + t + 3) * 4 + c]);
    free(m);
    sd_tensor_free(be, ts), sd_tensor_free(be, mid);
    sd_backend_free(be);
}

static void test_tokens_and_image_transposes(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    uint32_t seed = 4;
    const int64_t shapes[][4] = {{2, 5, 3, 7}, {1, 40, 33, 35}, {2, 1, 1, 1}, {1, 64, 1, 70}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t b = shapes[s][0], c = shapes[s][1], hw = shapes[s][2] * shapes[s][3], n = b * c * hw;
        float *x = or_random_new(&seed, (size_t)n, -1, 1);
        sd_tensor *img = or_tensor(be, 4, shapes[s], x), *tok = sd_new3(be, b, hw, c);
        sd_tensor *back = sd_tensor_new(be, 4, shapes[s]);
        assert_int_equal(sd_to_tokens(be, tok, img), 0);
        float *t = or_download(be, tok);
        for (int64_t bb = 0; bb < b; bb++)
            for (int64_t cc = 0; cc < c; cc++)
                for (int64_t p = 0; p < hw; p++) assert_true(t[(bb * hw + p) * c + cc] == x[(bb * c + cc) * hw + p]);
        assert_int_equal(sd_to_image(be, back, tok), 0);
        float *r = or_download(be, back);
        assert_memory_equal(r, x, (size_t)n * sizeof(float));
        free(x), free(t), free(r);
        sd_tensor_free(be, img), sd_tensor_free(be, tok), sd_tensor_free(be, back);
    }
    sd_tensor *img = sd_new4(be, 1, 4, 2, 3), *tok = sd_new3(be, 1, 4, 6);
    or_expect_error(be, sd_to_tokens(be, tok, img), "needs y [1,6,4]");
    or_expect_error(be, sd_to_image(be, img, tok), "needs x [1,6,4]");
    sd_tensor_free(be, img), sd_tensor_free(be, tok);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upsample_nearest),
        cmocka_unit_test(test_concat_and_slice_along_every_dim),
        cmocka_unit_test(test_tokens_and_image_transposes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
