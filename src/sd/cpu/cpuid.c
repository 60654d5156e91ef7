/* CPU detection (cpuid leaves 0, 1, 7.0, 7.1 and the brand string
 * 0x80000002-4; XCR0 through xgetbv for the OS's register-state support, as
 * the Intel SDM vol. 1 ch. 13-15 prescribe before using AVX, AVX-512 or AMX)
 * and the OpenBLAS kernel choice made from it.
 *
 * Why we choose the kernel: Debian 12's OpenBLAS 0.3.21 (a DYNAMIC_ARCH
 * build) picks its kernel set from a table of CPU family/model numbers, and
 * a CPU newer than that table (an Intel Xeon of 2023, say) falls back to
 * the generic "Prescott" SSE3 kernels: 4-5x slower sgemm on an AVX-512
 * machine. We pick from the features instead, and switch OpenBLAS before
 * the first GEMM: its exported gotoblas_dynamic_quit / gotoblas_dynamic_init
 * (driver/others/dynamic.c) redo its selection, which honours
 * OPENBLAS_CORETYPE. This runs as a constructor, before main and any other
 * thread, because setenv is not thread-safe. A user's own OPENBLAS_CORETYPE
 * always wins, and a core name this table does not know (a newer OpenBLAS's
 * own choice) is kept. */
#include "sd/cpu/cpuid.h"

#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned xcr0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return lo;
}

/* XCR0 bits: SSE|AVX (1, 2); opmask|ZMM_Hi256|Hi16_ZMM (5-7); XTILECFG|XTILEDATA (17, 18). */
#define XSTATE_YMM 0x6u
#define XSTATE_ZMM 0xe0u
#define XSTATE_TILE 0x60000u

static unsigned bit(unsigned reg, int n, unsigned feature) { return reg >> n & 1u ? feature : 0; }

static void detect(cpu_info *c)
{
    unsigned a, b, cx, d, max;
    __cpuid(0, max, b, cx, d);
    memcpy(c->vendor, &b, 4), memcpy(c->vendor + 4, &d, 4), memcpy(c->vendor + 8, &cx, 4);
    __cpuid(1, a, b, cx, d);
    int base_family = a >> 8 & 0xf, base_model = a >> 4 & 0xf;
    c->family = base_family + (base_family == 0xf ? (int)(a >> 20 & 0xff) : 0);
    c->model = base_model | (base_family == 0x6 || base_family == 0xf ? (int)(a >> 16 & 0xf) << 4 : 0);
    unsigned state = cx >> 27 & 1u ? xcr0() : 0;   /* OSXSAVE: the OS manages XCR0 */
    unsigned ymm = (state & XSTATE_YMM) == XSTATE_YMM, zmm = ymm && (state & XSTATE_ZMM) == XSTATE_ZMM;
    unsigned tile = (state & XSTATE_TILE) == XSTATE_TILE;
    unsigned f = ymm ? bit(cx, 12, CPU_FMA) | bit(cx, 29, CPU_F16C) : 0;
    if (max >= 7) {
        unsigned eax7, b7, c7, d7, a71 = 0, b71, c71, d71;
        __cpuid_count(7, 0, eax7, b7, c7, d7);
        if (eax7 >= 1) __cpuid_count(7, 1, a71, b71, c71, d71);
        if (ymm) f |= bit(b7, 5, CPU_AVX2);
        if (zmm)
            f |= bit(b7, 16, CPU_AVX512F) | bit(b7, 17, CPU_AVX512DQ) | bit(b7, 30, CPU_AVX512BW) |
                 bit(b7, 31, CPU_AVX512VL) | bit(c7, 11, CPU_AVX512VNNI) | bit(a71, 5, CPU_AVX512BF16) |
                 bit(d7, 23, CPU_AVX512FP16);
        if (tile) f |= bit(d7, 24, CPU_AMX_TILE) | bit(d7, 22, CPU_AMX_BF16);
    }
#ifdef SDXL_CPU_NO_AVX512   /* an AVX2-only build (cpu.h, CPU_VECTOR_CLONES) */
    f &= CPU_AVX2 | CPU_FMA | CPU_F16C;
#endif
    c->features = f;
    unsigned ext;
    __cpuid(0x80000000, ext, b, cx, d);
    if (ext >= 0x80000004) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002 + i, r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        char raw[49] = {0};
        memcpy(raw, r, 48);
        const char *s = raw;
        while (*s == ' ') s++;
        snprintf(c->brand, sizeof c->brand, "%s", s);
        for (size_t n = strlen(c->brand); n > 0 && c->brand[n - 1] == ' '; n--) c->brand[n - 1] = 0;
    }
}
#else
static void detect(cpu_info *c) { (void)c; }
#endif

const cpu_info *cpu_info_get(void)
{
    static cpu_info info;
    static int done;
    if (!done) {   /* first called from cpu_blas_select below, before main */
        detect(&info);
        if (!info.brand[0]) snprintf(info.brand, sizeof info.brand, "unknown CPU");
        done = 1;
    }
    return &info;
}

void cpu_features_string(unsigned features, char *out, size_t len)
{
    static const char *const names[CPU_FEATURE_COUNT] = {
        "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
        "avx512_fp16", "amx_tile", "amx_bf16"};
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < CPU_FEATURE_COUNT && at < len; i++)
        if (features & 1u << i) at += (size_t)snprintf(out + at, len - at, "%s%s", at ? " " : "", names[i]);
    if (!out[0]) snprintf(out, len, "no AVX2");
}

const char *cpu_blas_core_for(const cpu_info *cpu)
{
    unsigned f = cpu->features;
    if ((f & CPU_AVX512_CORE) == CPU_AVX512_CORE) return f & CPU_AVX512BF16 ? "Cooperlake" : "SkylakeX";
    if ((f & (CPU_AVX2 | CPU_FMA)) == (CPU_AVX2 | CPU_FMA))
        return !strcmp(cpu->vendor, "AuthenticAMD") || !strcmp(cpu->vendor, "HygonGenuine") ? "Zen" : "Haswell";
    return NULL;
}

/* The x86-64 core names of OpenBLAS 0.3.21's DYNAMIC_ARCH build: the ones we
 * may replace. A name outside this list comes from a newer OpenBLAS that
 * knows more than we do. Cooperlake and SkylakeX share their sgemm kernels. */
static int known_core(const char *name)
{
    static const char *const cores[] = {"Prescott", "Core2", "Nehalem", "Sandybridge", "Haswell", "SkylakeX",
                                        "Cooperlake", "Atom", "Barcelona", "Bulldozer", "Piledriver",
                                        "Steamroller", "Excavator", "Zen", "Bobcat", "Nano"};
    for (size_t i = 0; i < sizeof cores / sizeof *cores; i++)
        if (!strcasecmp(name, cores[i])) return 1;
    return 0;
}

static cpu_blas_core_source core_source = CPU_BLAS_CORE_OWN;
static char openblas_first_pick[32];

int cpu_blas_use_core(const char *name)
{
    void (*quit)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit");
    void (*init)(void) = (void (*)(void))dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init");
    if (!quit || !init) return -1;
    const char *user = getenv("OPENBLAS_CORETYPE");
    char saved[64];
    if (user) snprintf(saved, sizeof saved, "%s", user);
    setenv("OPENBLAS_CORETYPE", name, 1);
    quit();
    init();
    if (user) setenv("OPENBLAS_CORETYPE", saved, 1);
    else unsetenv("OPENBLAS_CORETYPE");
    return strcasecmp(openblas_get_corename(), name) ? -1 : 0;
}

__attribute__((constructor)) static void cpu_blas_select(void)
{
    const cpu_info *cpu = cpu_info_get();   /* detected here, before any thread can ask */
    if (getenv("OPENBLAS_CORETYPE")) {
        core_source = CPU_BLAS_CORE_ENV;
        return;
    }
    if (!dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init")) {
        core_source = CPU_BLAS_CORE_FIXED;
        return;
    }
    const char *want = cpu_blas_core_for(cpu), *have = openblas_get_corename();
    if (!want || !have || !strcasecmp(want, have) || !known_core(have)) return;
    snprintf(openblas_first_pick, sizeof openblas_first_pick, "%s", have);
    if (!cpu_blas_use_core(want)) core_source = CPU_BLAS_CORE_CHOSEN;
}

cpu_blas_core_source cpu_blas_core_origin(const char **openblas_pick)
{
    *openblas_pick = core_source == CPU_BLAS_CORE_CHOSEN ? openblas_first_pick : NULL;
    return core_source;
}
