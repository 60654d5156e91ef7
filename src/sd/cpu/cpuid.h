/* What the CPU the worker runs on can do (cpuid and the OS's XSAVE state),
 * and the OpenBLAS kernel chosen for it. Owner: the CPU backend; cpuid.c. */
#ifndef SDXL_SD_CPU_CPUID_H
#define SDXL_SD_CPU_CPUID_H

#include <stddef.h>

/* Instruction-set features, each set only when the CPU has it AND the OS
 * saves the register state it needs (XCR0: ymm for AVX*, opmask + zmm for
 * AVX-512, tile config + data for AMX). */
typedef enum {
    CPU_AVX2 = 1u << 0,
    CPU_FMA = 1u << 1,
    CPU_F16C = 1u << 2,
    CPU_AVX512F = 1u << 3,
    CPU_AVX512DQ = 1u << 4,
    CPU_AVX512BW = 1u << 5,
    CPU_AVX512VL = 1u << 6,
    CPU_AVX512VNNI = 1u << 7,
    CPU_AVX512BF16 = 1u << 8,
    CPU_AVX512FP16 = 1u << 9,
    CPU_AMX_TILE = 1u << 10,
    CPU_AMX_BF16 = 1u << 11,
    CPU_FEATURE_COUNT = 12
} cpu_feature;

/* AVX-512 as OpenBLAS's SkylakeX kernels and our clones need it. */
#define CPU_AVX512_CORE (CPU_AVX512F | CPU_AVX512DQ | CPU_AVX512BW | CPU_AVX512VL)

typedef struct cpu_info {
    char vendor[13];      /* "GenuineIntel", "AuthenticAMD", ... */
    char brand[49];       /* the brand string, trimmed ("AMD EPYC", "Intel(R) Xeon(R) ...") */
    int family, model;    /* display family and model (base + extended, as lscpu prints them) */
    unsigned features;    /* cpu_feature bits */
} cpu_info;

/* This machine, read once (cpuid on x86-64; nothing elsewhere). */
const cpu_info *cpu_info_get(void);
/* "avx2 fma f16c avx512f ..." for the set bits, in cpu_feature order. */
void cpu_features_string(unsigned features, char *out, size_t len);

/* The OpenBLAS core type (OPENBLAS_CORETYPE name) whose sgemm is fastest on
 * this CPU as far as we have measured, or NULL to keep OpenBLAS's own
 * choice: "SkylakeX" for AVX-512, "Haswell" / "Zen" for AVX2 + FMA
 * (docs/benchmarks.md, "Choosing the GEMM kernel"). */
const char *cpu_blas_core_for(const cpu_info *cpu);

typedef enum {
    CPU_BLAS_CORE_OWN,       /* OpenBLAS's own detection was kept */
    CPU_BLAS_CORE_CHOSEN,    /* we switched it to cpu_blas_core_for() */
    CPU_BLAS_CORE_ENV,       /* OPENBLAS_CORETYPE was set by the user */
    CPU_BLAS_CORE_FIXED,     /* not a DYNAMIC_ARCH build: one kernel set */
} cpu_blas_core_source;

/* Switches OpenBLAS (a DYNAMIC_ARCH build) to the named core's kernels;
 * -1 when it cannot (fixed build, unknown name). Only while no other thread
 * runs (setenv) and no GEMM is in flight: the constructor, benchmarks. */
int cpu_blas_use_core(const char *name);

/* How the running OpenBLAS kernel came to be chosen, and the core OpenBLAS
 * itself had picked before we switched (NULL unless CHOSEN). */
cpu_blas_core_source cpu_blas_core_origin(const char **openblas_pick);

#endif
