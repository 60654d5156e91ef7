/* The CPU backend's opt-in bf16 linear layers (SDXL_CPU_PRECISION=bf16,
 * src/sd/cpu/bf16.c): the product equals the fp32 product of the inputs
 * rounded to bf16 (so the GEMM accumulates in fp32 and rounds nothing else),
 * the bf16 weight copy is kept, counted and dropped when its bytes change,
 * and a CPU without AVX-512-BF16 is refused with the reason. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "opsref.h"
#include "sd/cpu/cpu.h"
#include "sd/cpu/cpuid.h"
#include "sd/device.h"

/* Under `make sanitize`, LeakSanitizer's tracer crashes at exit reading the
 * thread-local storage of a thread of the libraries oneDNN loads (libdnnl
 * 2.6 on Debian 12); leaks are still looked for from every other root. */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "use_tls=0"; }

/* A bf16 backend, or NULL (the test then checks the refusal instead). */
static sd_backend *bf16_backend(char *err, size_t errlen)
{
    return sd_backend_cpu_open(&(sd_cpu_options){.threads = 2, .bf16 = 1}, err, errlen);
}

static double bf16_round(float x) { return sd_bf16_to_f32(sd_f32_to_bf16(x)); }

static void test_cpus_without_bf16_are_refused(void **state)
{
    cpu_info avx2 = {"AuthenticAMD", "AMD EPYC 7B13", 25, 1, CPU_AVX2 | CPU_FMA | CPU_F16C};
    cpu_info avx512 = {"GenuineIntel", "Intel(R) Xeon(R) Gold 6148", 6, 85, CPU_AVX2 | CPU_FMA | CPU_AVX512_CORE};
    cpu_info zen4 = {"AuthenticAMD", "AMD EPYC 9654", 25, 17, CPU_AVX2 | CPU_FMA | CPU_AVX512_CORE | CPU_AVX512BF16};
    char err[512];
    assert_null(cpu_bf16_open(&avx2, err, sizeof err));
    assert_non_null(strstr(err, "AVX-512-BF16"));
    assert_non_null(strstr(err, "AMD EPYC 7B13"));
    assert_non_null(cpu_bf16_unsupported(&avx512));
    assert_null(cpu_bf16_unsupported(&zen4));

    sd_backend *be = bf16_backend(err, sizeof err);   /* this machine: refused exactly when it lacks BF16 */
    if (cpu_info_get()->features & CPU_AVX512BF16) {
        if (!be) assert_non_null(strstr(err, "oneDNN"));   /* only libdnnl2 missing may stop it */
    } else {
        assert_null(be);
        assert_non_null(strstr(err, "AVX-512-BF16"));
    }
    sd_backend_free(be);
}

static void test_environment_selects_bf16_or_refuses(void **state)
{
    char line[1024], err[1024];
    setenv("SDXL_DEVICE", "cpu", 1);
    setenv("SDXL_CPU_PRECISION", "fp8", 1);
    assert_null(sd_backend_open(NULL, SD_F16, line, sizeof line, err, sizeof err));
    assert_non_null(strstr(err, "SDXL_CPU_PRECISION 'fp8' is not fp32 or bf16"));
    setenv("SDXL_CPU_PRECISION", "bf16", 1);
    sd_backend *be = sd_backend_open(NULL, SD_F16, line, sizeof line, err, sizeof err);
    if (be) assert_non_null(strstr(line, "bf16"));
    else assert_true(strstr(err, "AVX-512-BF16") || strstr(err, "oneDNN"));
    sd_backend_free(be);
    setenv("SDXL_CPU_PRECISION", "fp32", 1);
    be = sd_backend_open(NULL, SD_F16, line, sizeof line, err, sizeof err);
    assert_non_null(be);
    assert_null(strstr(line, "bf16 ("));
    sd_backend_free(be);
    unsetenv("SDXL_CPU_PRECISION");
    unsetenv("SDXL_DEVICE");
}

/* y = x W^T + b against the double product of the bf16-rounded x and W. */
static void check_linear(sd_backend *be, int64_t m, int64_t n, int64_t k, sd_dtype wtype, uint32_t seed)
{
    uint32_t rng = seed;
    float *x = or_random_new(&rng, (size_t)(m * k), -1.0f, 1.0f);
    or_weight w = or_weight_random(&rng, wtype, 2, (const int64_t[]){n, k}, -0.5f, 0.5f);
    or_weight b = or_weight_random(&rng, wtype, 1, (const int64_t[]){n}, -0.5f, 0.5f);
    sd_tensor *xt = or_tensor(be, 2, (const int64_t[]){m, k}, x), *yt = sd_new2(be, m, n);
    assert_int_equal(sd_linear(be, yt, xt, &w.w, &b.w), 0);
    float *y = or_download(be, yt);
    double *ref = malloc(sizeof *ref * (size_t)(m * n));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = b.ref[j];
            for (int64_t p = 0; p < k; p++) s += bf16_round(x[i * k + p]) * bf16_round(w.ref[j * k + p]);
            ref[i * n + j] = s;
        }
    assert_true(or_rel_err(y, ref, (size_t)(m * n), 1.0) < 2e-6 * sqrt((double)k));
    sd_mem_stats mem;
    sd_backend_mem(be, &mem);
    assert_true(mem.weight_bytes >= (size_t)(n * k) * 2);   /* the bf16 copy is kept and counted */
    free(ref), free(y), free(x);
    sd_tensor_free(be, xt), sd_tensor_free(be, yt);
    or_weight_free(&w), or_weight_free(&b);
}

static void test_linear_is_the_product_of_bf16_inputs(void **state)
{
    char err[512];
    sd_backend *be = bf16_backend(err, sizeof err);
    if (!be) skip();   /* refused: test_cpus_without_bf16_are_refused checked why */
    check_linear(be, 77, 96, 130, SD_F16, 5);      /* odd sizes, fp16 weights as checkpoints store them */
    check_linear(be, 256, 320, 640, SD_F32, 9);
    check_linear(be, 1, 33, 17, SD_BF16, 13);
    assert_null(sd_backend_error(be));
    sd_backend_free(be);
}

/* Winograd's GEMMs take bf16 operands: a 3x3 conv stays within bf16's
 * precision of the fp32 backend's (the transforms round U and V, not the
 * inputs, so the measure is relative to the output's scale). */
static void test_winograd_conv_within_bf16_precision(void **state)
{
    char err[512];
    sd_backend *be = bf16_backend(err, sizeof err);
    if (!be) skip();
    sd_backend *ref = sd_backend_cpu_new(&(sd_cpu_options){.threads = 2});
    uint32_t rng = 33;
    int64_t xs[4] = {2, 24, 9, 11}, ys[4] = {2, 16, 9, 11};
    float *x = or_random_new(&rng, 2 * 24 * 9 * 11, -1.0f, 1.0f);
    or_weight w = or_weight_random(&rng, SD_F16, 4, (const int64_t[]){16, 24, 3, 3}, -0.3f, 0.3f);
    or_weight b = or_weight_random(&rng, SD_F16, 1, (const int64_t[]){16}, -0.3f, 0.3f);
    float *got[2];
    sd_backend *both[2] = {be, ref};
    for (int i = 0; i < 2; i++) {
        sd_tensor *xt = or_tensor(both[i], 4, xs, x), *yt = sd_tensor_new(both[i], 4, ys);
        assert_int_equal(sd_conv2d(both[i], yt, xt, &w.w, &b.w, 1, 1), 0);
        got[i] = or_download(both[i], yt);
        sd_tensor_free(both[i], xt), sd_tensor_free(both[i], yt);
    }
    size_t n = 2 * 16 * 9 * 11;
    double *r = malloc(n * sizeof *r), diff = 0;
    for (size_t i = 0; i < n; i++) r[i] = got[1][i], diff += fabs(got[0][i] - got[1][i]);
    assert_true(or_rel_err(got[0], r, n, 1.0) < 1e-2);
    assert_true(diff > 0);   /* the bf16 path ran: fp32 would agree to the last bit */
    free(r), free(got[0]), free(got[1]), free(x);
    or_weight_free(&w), or_weight_free(&b);
    sd_backend_free(be), sd_backend_free(ref);
}

/* A weight rebuilt in place (a LoRA set changed) is read again once the
 * engine says its bytes changed; the copy's memory goes with it. */
static void test_forgotten_weights_are_read_again(void **state)
{
    char err[512];
    sd_backend *be = bf16_backend(err, sizeof err);
    if (!be) skip();
    uint32_t rng = 21;
    float x[4 * 8];
    or_random(&rng, x, 32, -1.0f, 1.0f);
    or_weight w = or_weight_random(&rng, SD_F32, 2, (const int64_t[]){3, 8}, -1.0f, 1.0f);
    sd_tensor *xt = or_tensor(be, 2, (const int64_t[]){4, 8}, x), *yt = sd_new2(be, 4, 3);
    assert_int_equal(sd_linear(be, yt, xt, &w.w, NULL), 0);
    float *w32 = w.bytes;   /* the weight's own storage (F32: w.w.data) */
    for (int i = 0; i < 24; i++) w32[i] = 0.0f;   /* the weight's bytes change */
    w32[0] = 1.0f;                                /* y[:, 0] = x[:, 0], the rest 0 */
    sd_backend_forget_weights(be, w.w.data, 24 * sizeof(float));
    sd_mem_stats mem;
    sd_backend_mem(be, &mem);
    assert_int_equal(mem.weight_bytes, 0);
    assert_int_equal(sd_linear(be, yt, xt, &w.w, NULL), 0);
    float *y = or_download(be, yt);
    for (int i = 0; i < 4; i++) {
        assert_float_equal(y[i * 3], bf16_round(x[i * 8]), 0.0f);
        assert_float_equal(y[i * 3 + 1], 0.0f, 0.0f);
    }
    free(y);
    sd_tensor_free(be, xt), sd_tensor_free(be, yt);
    or_weight_free(&w);
    sd_backend_free(be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpus_without_bf16_are_refused),
        cmocka_unit_test(test_environment_selects_bf16_or_refuses),
        cmocka_unit_test(test_linear_is_the_product_of_bf16_inputs),
        cmocka_unit_test(test_winograd_conv_within_bf16_precision),
        cmocka_unit_test(test_forgotten_weights_are_read_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
