/* Timing and machine measures shared by the benchmark programs (every bench/<name>.c,
 * each built as its own bench_<name>, so the helpers are static inline here):
 * clocks, the median of a run's times, peak RSS and OpenBLAS sgemm's GFLOP/s
 * (the machine's practical fp32 peak, printed next to the ops' own rates). */
#ifndef SDXL_BENCH_H
#define SDXL_BENCH_H

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "sd/device.h"

/* Seconds on clock `id` (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, ...). */
static inline double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Wall-clock seconds (monotonic). */
static inline double bench_now(void) { return bench_clock(CLOCK_MONOTONIC); }

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (the mean of the middle two when n is even); sorts v. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* n uniform values in [-1, 1) from a fixed LCG (exits when out of memory). */
static inline float *bench_noise(size_t n, unsigned seed)
{
    float *p = malloc(n * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 8388608.0f - 1.0f;
    }
    return p;
}

/* Peak resident set size of this process so far, in MiB (getrusage). */
static inline double bench_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024.0;
}

/* A kB field of /proc/self/status ("VmRSS", "VmHWM"); 0 if absent. */
static inline double bench_proc_status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') kib = atof(line + n + 1);
    if (f) fclose(f);
    return kib;
}

/* GFLOP/s of an n x n x n OpenBLAS sgemm: best of 3 after a warm-up call;
 * 0 when the matrices cannot be allocated. */
static inline double bench_sgemm_gflops(int n)
{
    size_t nn = (size_t)n * n;
    float *a = malloc(sizeof(float) * nn), *b = malloc(sizeof(float) * nn), *c = malloc(sizeof(float) * nn);
    int ok = a && b && c;
    double best = 1e30;
    if (ok) {
        for (size_t i = 0; i < nn; i++) a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
        for (int r = -1; r < 3; r++) {
            double t0 = bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double t = bench_now() - t0;
            if (r >= 0 && t < best) best = t;
        }
    }
    free(a), free(b), free(c);
    return ok ? 2.0 * n * n * n / best * 1e-9 : 0;
}

/* The backend SDXL_DEVICE and SDXL_CUDA_PRECISION choose (the CPU with
 * `cpu` unless they name the GPU), its line printed; exits on failure. A
 * timed region on it must end with sd_backend_sync (the GPU's ops run
 * asynchronously). */
static inline sd_backend *bench_backend(const sd_cpu_options *cpu, sd_dtype weights)
{
    char line[1024], err[1024];
    sd_device_options o = {.cpu = cpu ? *cpu : (sd_cpu_options){0}};
    sd_backend *be = sd_backend_open(&o, weights, line, sizeof line, err, sizeof err);
    if (!be) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    printf("backend: %s\n", line);
    return be;
}

#endif
