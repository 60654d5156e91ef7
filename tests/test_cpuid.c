/* CPU detection (src/sd/cpu/cpuid.c) against the kernel's own view of the
 * CPU (/proc/cpuinfo's flags, which Linux clears when it does not enable a
 * feature's register state), the OpenBLAS kernel choice for CPUs of every
 * kind, and the start-up line that names them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sd/backend.h"
#include "sd/cpu/cpuid.h"

/* The "flags" line of /proc/cpuinfo's first CPU, with a space on each side
 * of every flag; empty when there is none (not Linux, not x86). */
static void cpuinfo_flags(char *out, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[8192];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "flags", 5) && strchr(line, ':')) {
            snprintf(out, len, " %s", strchr(line, ':') + 1);
            out[strcspn(out, "\n")] = ' ';
            break;
        }
    if (f) fclose(f);
}

static void test_features_match_the_kernels_view(void **state)
{
    char flags[8192];
    cpuinfo_flags(flags, sizeof flags);
    if (!flags[0]) skip();
    static const char *const names[CPU_FEATURE_COUNT] = {
        "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
        "avx512_fp16", "amx_tile", "amx_bf16"};
    const cpu_info *cpu = cpu_info_get();
#ifdef SDXL_CPU_NO_AVX512   /* the AVX2-only build sees the CPU as having no more */
    unsigned visible = CPU_AVX2 | CPU_FMA | CPU_F16C;
#else
    unsigned visible = ~0u;
#endif
    for (int i = 0; i < CPU_FEATURE_COUNT; i++) {
        char word[32];
        snprintf(word, sizeof word, " %s ", names[i]);
        if (!!(cpu->features & 1u << i) != (!!strstr(flags, word) && (visible & 1u << i))) fail_msg("%s: cpuid and /proc/cpuinfo disagree", names[i]);
    }
    char s[256];
    cpu_features_string(cpu->features, s, sizeof s);
    for (int i = 0; i < CPU_FEATURE_COUNT; i++)   /* the string lists exactly the set bits */
        if (!!(cpu->features & 1u << i) != !!strstr(s, names[i]))
            fail_msg("%s: features string '%s'", names[i], s);
    assert_int_equal(strlen(cpu->vendor), 12);
    assert_true(cpu->family > 0);
    assert_true(cpu->brand[0] != 0 && cpu->brand[0] != ' ');
}

static void test_blas_core_follows_the_features(void **state)
{
    cpu_info amd_avx2 = {"AuthenticAMD", "AMD EPYC 7B13", 25, 1, CPU_AVX2 | CPU_FMA | CPU_F16C};
    cpu_info intel_avx2 = {"GenuineIntel", "Intel(R) Core(TM) i7", 6, 158, CPU_AVX2 | CPU_FMA | CPU_F16C};
    cpu_info avx512 = {"GenuineIntel", "Intel(R) Xeon(R) Gold 6148", 6, 85, CPU_AVX2 | CPU_FMA | CPU_AVX512_CORE};
    cpu_info spr = {"GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+", 6, 143,
                    CPU_AVX2 | CPU_FMA | CPU_AVX512_CORE | CPU_AVX512BF16 | CPU_AVX512FP16 | CPU_AMX_TILE | CPU_AMX_BF16};
    cpu_info no_zmm_state = {"GenuineIntel", "Intel(R) Xeon(R)", 6, 85, CPU_AVX2 | CPU_FMA};   /* OS without AVX-512 */
    cpu_info old = {"GenuineIntel", "Intel(R) Xeon(R) E5", 6, 45, 0};
    assert_string_equal(cpu_blas_core_for(&amd_avx2), "Zen");
    assert_string_equal(cpu_blas_core_for(&intel_avx2), "Haswell");
    assert_string_equal(cpu_blas_core_for(&avx512), "SkylakeX");
    assert_string_equal(cpu_blas_core_for(&spr), "Cooperlake");
    assert_string_equal(cpu_blas_core_for(&no_zmm_state), "Haswell");
    assert_null(cpu_blas_core_for(&old));
}

/* The kernel set OpenBLAS runs is the one chosen for this CPU (unless the
 * user named one), and the start-up line says so. */
static void test_running_core_and_startup_line(void **state)
{
    const cpu_info *cpu = cpu_info_get();
    const char *first, *want = cpu_blas_core_for(cpu), *env = getenv("OPENBLAS_CORETYPE");
    cpu_blas_core_source src = cpu_blas_core_origin(&first);
    if (env) {
        assert_int_equal(src, CPU_BLAS_CORE_ENV);
    } else if (src != CPU_BLAS_CORE_FIXED && want) {
        assert_int_equal(strcasecmp(openblas_get_corename(), want), 0);
        if (src == CPU_BLAS_CORE_CHOSEN) assert_non_null(first);
    }
    sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.threads = 2});
    const char *d = sd_backend_describe(be);
    char core[64];
    snprintf(core, sizeof core, "core %s", openblas_get_corename());
    assert_non_null(strstr(d, cpu->brand));
    assert_non_null(strstr(d, core));
    if (cpu->features & CPU_AVX2) assert_non_null(strstr(d, "avx2"));
    sd_backend_free(be);
}

/* Switching kernel sets at run time (bench_gemm's A/B rounds) keeps
 * results: the same product on two cores agrees to fp32 rounding. */
static void test_switching_cores_keeps_results(void **state)
{
    const char *want = cpu_blas_core_for(cpu_info_get()), *own = openblas_get_corename();
    if (!want || getenv("OPENBLAS_CORETYPE")) skip();
    enum { N = 67 };
    static float a[N * N], b[N * N], c1[N * N], c2[N * N];
    for (int i = 0; i < N * N; i++) a[i] = (float)(i % 13) * 0.25f - 1.5f, b[i] = (float)(i % 7) * 0.5f - 1.0f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c1, N);
    if (cpu_blas_use_core("Prescott")) skip();   /* a fixed-architecture OpenBLAS */
    assert_string_equal(openblas_get_corename(), "Prescott");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c2, N);
    assert_int_equal(cpu_blas_use_core(own), 0);
    assert_string_equal(openblas_get_corename(), own);
    for (int i = 0; i < N * N; i++) assert_float_equal(c1[i], c2[i], 1e-4f * (1.0f + fabsf(c1[i])));
    assert_null(getenv("OPENBLAS_CORETYPE"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features_match_the_kernels_view),
        cmocka_unit_test(test_blas_core_follows_the_features),
        cmocka_unit_test(test_running_core_and_startup_line),
        cmocka_unit_test(test_switching_cores_keeps_results),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
