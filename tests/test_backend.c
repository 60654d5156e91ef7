/* The backend API around the ops (sd/backend.h): tensor creation limits and
 * out-of-memory, reshape, upload/download, the sticky error (first message
 * kept, later ops skipped, clear re-arms), memory accounting (live, peak,
 * scratch, trim), the backend's self-description and the op profile. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opsref.h"
#include "sd/backend.h"

/* Under ASan a 4 TB request must come back as NULL, as it does from glibc. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_tensor_shapes_and_out_of_memory(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    assert_string_equal(sd_backend_name(be), "cpu");
    sd_tensor *t = sd_new3(be, 2, 77, 5);
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(sd_numel(t), 770);
    assert_int_equal(t->shape[3], 1);
    sd_tensor_free(be, t);

    assert_null(sd_tensor_new(be, 0, (const int64_t[]){1}));
    or_expect_error(be, -1, "bad shape");
    assert_null(sd_tensor_new(be, 5, (const int64_t[]){1, 1, 1, 1, 1}));
    or_expect_error(be, -1, "5 dims");
    assert_null(sd_new2(be, 3, 0));
    or_expect_error(be, -1, "bad shape [3,0]");
    assert_null(sd_new2(be, -4, 2));
    or_expect_error(be, -1, "bad shape");
    assert_null(sd_new2(be, (int64_t)1 << 21, (int64_t)1 << 20));   /* more than 2^40 elements */
    or_expect_error(be, -1, "bad shape");
    assert_null(sd_new2(be, (int64_t)1 << 20, (int64_t)1 << 20));   /* 4 TB */
    or_expect_error(be, -1, "out of memory for [1048576,1048576]");
    sd_tensor_free(be, NULL);
    sd_backend_free(be);
    sd_backend_free(NULL);
}

static void test_reshape_upload_download(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    float x[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, y[12];
    sd_tensor *t = or_tensor(be, 2, (const int64_t[]){3, 4}, x);
    assert_int_equal(sd_tensor_reshape(be, t, 4, (const int64_t[]){3, 4, 1, 1}), 0);
    assert_int_equal(t->ndim, 4);
    assert_int_equal(t->shape[1], 4);
    or_expect_error(be, sd_tensor_reshape(be, t, 2, (const int64_t[]){5, 2}), "has 12 elements, [5,2] needs 10");
    assert_int_equal(t->ndim, 4);   /* unchanged by the failed reshape */
    assert_int_equal(sd_tensor_download(be, t, y), 0);
    assert_memory_equal(x, y, sizeof x);
    or_expect_error(be, sd_tensor_upload(be, NULL, x), "missing");
    sd_tensor_free(be, t);
    sd_backend_free(be);
}

static void test_errors_are_sticky_until_cleared(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    assert_null(sd_backend_error(be));
    sd_tensor *a = sd_new2(be, 2, 3), *b = sd_new2(be, 3, 2);
    assert_int_equal(sd_fill(be, a, 1.0f), 0);
    assert_int_equal(sd_scale(be, b, a, 2.0f), -1);                 /* shape mismatch */
    const char *first = sd_backend_error(be);
    assert_non_null(first);
    assert_non_null(strstr(first, "sd_scale: output [3,2] differs from input [2,3]"));
    assert_int_equal(sd_fill(be, a, 5.0f), -1);                     /* skipped */
    assert_null(sd_new1(be, 4));                                    /* no allocation either */
    assert_non_null(strstr(sd_backend_error(be), "sd_scale"));     /* first message kept */
    sd_backend_clear_error(be);
    float y[6];
    assert_int_equal(sd_tensor_download(be, a, y), 0);
    for (int i = 0; i < 6; i++) assert_true(y[i] == 1.0f);          /* the skipped fill did nothing */
    assert_int_equal(sd_fill(be, a, 5.0f), 0);
    assert_int_equal(sd_tensor_download(be, a, y), 0);
    assert_true(y[0] == 5.0f);
    /* a NULL input (say, from a failed allocation) is an error, not a crash */
    or_expect_error(be, sd_add(be, a, a, NULL), "tensor argument 2 is missing");
    sd_tensor_free(be, a), sd_tensor_free(be, b);
    sd_backend_free(be);
}

static void test_memory_accounting(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    assert_int_equal(m.live_bytes, 0);
    sd_tensor *x = sd_new4(be, 1, 8, 16, 16), *y = sd_new4(be, 1, 8, 16, 16);
    sd_backend_mem(be, &m);
    assert_int_equal(m.live_bytes, 2 * 8 * 16 * 16 * sizeof(float));
    assert_true(m.peak_bytes >= m.live_bytes);
    uint32_t seed = 2;
    or_weight w = or_weight_random(&seed, SD_F16, 4, (const int64_t[]){8, 8, 3, 3}, -1, 1);
    assert_int_equal(sd_fill(be, x, 1.0f), 0);
    assert_int_equal(sd_conv2d(be, y, x, &w.w, NULL, 1, 1), 0);
    sd_backend_mem(be, &m);
    /* widened weight (576 floats) + one im2col tile (72 x 256 floats at most) */
    assert_true(m.scratch_bytes >= (576 + 72 * 16) * sizeof(float));
    assert_true(m.scratch_bytes <= (576 + 72 * 256 + 64) * sizeof(float));
    assert_true(m.peak_bytes >= m.live_bytes + m.scratch_bytes);
    size_t peak = m.peak_bytes;
    sd_backend_trim(be);
    sd_tensor_free(be, x);
    sd_backend_mem(be, &m);
    assert_int_equal(m.scratch_bytes, 0);
    assert_int_equal(m.live_bytes, 8 * 16 * 16 * sizeof(float));
    assert_int_equal(m.peak_bytes, peak);
    sd_backend_reset_peak(be);
    sd_backend_mem(be, &m);
    assert_int_equal(m.peak_bytes, m.live_bytes);
    or_weight_free(&w);
    sd_tensor_free(be, y);
    sd_backend_free(be);
}

static void test_describe_names_blas_and_threads(void **state)
{
    sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.threads = 2});
    const char *d = sd_backend_describe(be);
    assert_non_null(strstr(d, "OpenBLAS"));
    assert_non_null(strstr(d, "2 threads"));
    sd_backend_free(be);
}

/* The op profile counts each compute op of a kind once per call, only while
 * on, restarts from zero when turned on again, and prints largest first. */
static void test_op_profile_counts_calls_per_kind(void **state)
{
    sd_backend *be = sd_backend_cpu_new(NULL);
    sd_tensor *x = sd_new2(be, 4, 8), *y = sd_new2(be, 4, 8);
    assert_int_equal(sd_fill(be, x, 0.5f), 0);
    assert_int_equal(sd_silu(be, y, x), 0);   /* before profiling: not counted */
    assert_int_equal(sd_backend_profile(be, 1), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(sd_silu(be, y, x), 0);
    assert_int_equal(sd_add(be, y, x, x), 0);
    char buf[1024] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    sd_backend_profile_print(be, f);
    fclose(f);
    assert_non_null(strstr(buf, "op act"));
    assert_non_null(strstr(buf, "3 calls"));
    assert_non_null(strstr(buf, "op add/mul"));
    assert_non_null(strstr(buf, "1 calls"));
    assert_null(strstr(buf, "linear"));   /* kinds never called are not listed */
    assert_int_equal(sd_backend_profile(be, 1), 0);   /* restart */
    memset(buf, 0, sizeof buf);
    f = fmemopen(buf, sizeof buf - 1, "w");
    sd_backend_profile_print(be, f);
    fclose(f);
    assert_string_equal(buf, "");
    assert_int_equal(sd_backend_profile(be, 0), 0);
    sd_tensor_free(be, x), sd_tensor_free(be, y);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tensor_shapes_and_out_of_memory),
        cmocka_unit_test(test_reshape_upload_download),
        cmocka_unit_test(test_errors_are_sticky_until_cleared),
        cmocka_unit_test(test_memory_accounting),
        cmocka_unit_test(test_describe_names_blas_and_threads),
        cmocka_unit_test(test_op_profile_counts_calls_per_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
