/* The GEMM libraries a CPU build could use, on the shapes of an SDXL CFG
 * UNet step (issue 19): OpenBLAS with each of its kernel sets (switched in
 * this process, cpu_blas_use_core), BLIS 0.9 (Debian libblis4-openmp, its
 * runtime config detection) and oneDNN 2.6 (Debian libdnnl2: dnnl_sgemm, and
 * dnnl_gemm_bf16bf16f32 on inputs already in bf16). BLIS and oneDNN are
 * opened with dlopen, so the program builds without them and reports them
 * missing. Variants alternate within each round (A B C A B C ...), so a
 * machine whose clock or load drifts treats them alike; each figure is the
 * median over the rounds, with the min-max spread.
 *   bench_gemm [--rounds N] [--sizes 512|1024|all] VARIANT...
 *   bench_gemm --describe      (the CPU backend's start-up line: CPU, features, BLAS kernel)
 *   VARIANT: openblas (as the worker runs it) | openblas:CORE (Haswell,
 *            SkylakeX, Cooperlake, Zen, Prescott, ...) | blis | dnnl | dnnl-bf16 */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "sd/cpu/cpuid.h"

#define MAX_VARIANTS 8
#define MAX_ROUNDS 15

typedef struct { int m, n, k, trans_b; const char *what; } shape;

/* Rows m = tokens of the CFG batch of 2; x W^T for the linear layers, and
 * Winograd's U[k] (Cout x Cin) @ V[k] (Cin x band tiles) for the 3x3 convs. */
static const shape shapes512[] = {
    {2048, 2048, 2048, 0, "2048^3 (reference)"},
    {2048, 640, 640, 1, "512: 640-level q/k/v/out, proj_in/out"},
    {2048, 5120, 640, 1, "512: 640-level GEGLU proj"},
    {2048, 640, 2560, 1, "512: 640-level FF out"},
    {512, 1280, 1280, 1, "512: 1280-level q/k/v/out"},
    {512, 10240, 1280, 1, "512: 1280-level GEGLU proj"},
    {512, 1280, 5120, 1, "512: 1280-level FF out"},
    {154, 1280, 2048, 1, "cross-attention K/V (77 x 2 tokens)"},
    {320, 1638, 320, 0, "512: Winograd 320 (band)"},
    {640, 512, 640, 0, "512: Winograd 640"},
    {1280, 128, 1280, 0, "512: Winograd 1280"},
};
static const shape shapes1024[] = {
    {8192, 640, 640, 1, "1024: 640-level q/k/v/out, proj_in/out"},
    {8192, 5120, 640, 1, "1024: 640-level GEGLU proj"},
    {8192, 640, 2560, 1, "1024: 640-level FF out"},
    {2048, 1280, 1280, 1, "1024: 1280-level q/k/v/out"},
    {2048, 10240, 1280, 1, "1024: 1280-level GEGLU proj"},
    {2048, 1280, 5120, 1, "1024: 1280-level FF out"},
    {640, 819, 640, 0, "1024: Winograd 640 (band)"},
    {1280, 409, 1280, 0, "1024: Winograd 1280 (band)"},
};

typedef struct {
    const float *a, *b;
    const uint16_t *a16, *b16;
    float *c;
} operands;

typedef struct variant variant;
struct variant {
    char name[48];
    const char *core;   /* openblas:CORE */
    void (*run)(const variant *v, const shape *s, const operands *o);
    void *fn;           /* the dlsym'd entry point */
};

static void run_openblas(const variant *v, const shape *s, const operands *o)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, s->m, s->n, s->k, 1.0f, o->a,
                s->k, o->b, s->trans_b ? s->k : s->n, 0.0f, o->c, s->n);
}

/* BLIS's typed API takes row and column strides, so B^T is a stride swap. */
typedef void (*bli_sgemm_fn)(int, int, int64_t, int64_t, int64_t, const float *, const float *, int64_t, int64_t,
                             const float *, int64_t, int64_t, const float *, float *, int64_t, int64_t);
static void run_blis(const variant *v, const shape *s, const operands *o)
{
    const float one = 1.0f, zero = 0.0f;
    int64_t rsb = s->trans_b ? 1 : s->n, csb = s->trans_b ? s->k : 1;
    ((bli_sgemm_fn)v->fn)(0, 0, s->m, s->n, s->k, &one, o->a, s->k, 1, o->b, rsb, csb, &zero, o->c, s->n, 1);
}

typedef int (*dnnl_sgemm_fn)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                             int64_t, float, float *, int64_t);
typedef int (*dnnl_bf16_fn)(char, char, int64_t, int64_t, int64_t, float, const uint16_t *, int64_t,
                            const uint16_t *, int64_t, float, float *, int64_t);
static void run_dnnl(const variant *v, const shape *s, const operands *o)
{
    ((dnnl_sgemm_fn)v->fn)('N', s->trans_b ? 'T' : 'N', s->m, s->n, s->k, 1.0f, o->a, s->k, o->b,
                           s->trans_b ? s->k : s->n, 0.0f, o->c, s->n);
}
static void run_dnnl_bf16(const variant *v, const shape *s, const operands *o)
{
    ((dnnl_bf16_fn)v->fn)('N', s->trans_b ? 'T' : 'N', s->m, s->n, s->k, 1.0f, o->a16, s->k, o->b16,
                          s->trans_b ? s->k : s->n, 0.0f, o->c, s->n);
}

static void *symbol(const char *lib, const char *name)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    void *f = h ? dlsym(h, name) : NULL;
    if (!f) fprintf(stderr, "skipped: %s from %s: %s\n", name, lib, h ? "no such symbol" : dlerror());
    return f;
}

static int make_variant(const char *arg, variant *v)
{
    memset(v, 0, sizeof *v);
    snprintf(v->name, sizeof v->name, "%s", arg);
    v->run = run_openblas;
    if (!strcmp(arg, "openblas")) return 0;
    if (!strncmp(arg, "openblas:", 9)) return v->core = arg + 9, 0;
    if (!strcmp(arg, "blis")) v->run = run_blis, v->fn = symbol("libblis.so.4", "bli_sgemm");
    else if (!strcmp(arg, "dnnl")) v->run = run_dnnl, v->fn = symbol("libdnnl.so.2", "dnnl_sgemm");
    else if (!strcmp(arg, "dnnl-bf16")) v->run = run_dnnl_bf16, v->fn = symbol("libdnnl.so.2", "dnnl_gemm_bf16bf16f32");
    else return fprintf(stderr, "unknown variant %s\n", arg), -1;
    return v->fn ? 0 : -1;
}

static uint16_t *to_bf16(const float *x, size_t n)
{
    uint16_t *p = malloc(n * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    sd_narrow(SD_BF16, x, n, p, 0);
    return p;
}

int main(int argc, char **argv)
{
    int rounds = 5, nv = 0, first = 1;
    const char *sizes = "all";
    if (argc == 2 && !strcmp(argv[1], "--describe")) {
        sd_backend *be = sd_backend_cpu_new(NULL);
        printf("%s\n", be ? sd_backend_describe(be) : "out of memory");
        sd_backend_free(be);
        return be ? 0 : 1;
    }
    for (; first < argc && argv[first][0] == '-' && first + 1 < argc; first += 2) {
        if (!strcmp(argv[first], "--rounds")) rounds = atoi(argv[first + 1]);
        else if (!strcmp(argv[first], "--sizes")) sizes = argv[first + 1];
    }
    if (rounds < 1 || rounds > MAX_ROUNDS || first >= argc) {
        fprintf(stderr, "usage: %s [--rounds 1..%d] [--sizes 512|1024|all] VARIANT...\n", argv[0], MAX_ROUNDS);
        return 2;
    }
    variant vs[MAX_VARIANTS];
    for (int i = first; i < argc && nv < MAX_VARIANTS; i++)
        if (!make_variant(argv[i], &vs[nv])) nv++;
    const char *own = openblas_get_corename();
    char features[256];
    const cpu_info *cpu = cpu_info_get();
    cpu_features_string(cpu->features, features, sizeof features);
    printf("cpu: %s (%s family %d model %d: %s)\nopenblas: %s, core %s\n", cpu->brand, cpu->vendor, cpu->family,
           cpu->model, features, openblas_get_config(), own);
    const shape *list[32];
    int ns = 0;
    for (size_t i = 0; strcmp(sizes, "1024") && i < sizeof shapes512 / sizeof *shapes512; i++) list[ns++] = &shapes512[i];
    for (size_t i = 0; strcmp(sizes, "512") && i < sizeof shapes1024 / sizeof *shapes1024; i++) list[ns++] = &shapes1024[i];
    size_t most = 0;
    for (int s = 0; s < ns; s++) {
        size_t a = (size_t)list[s]->m * list[s]->k, b = (size_t)list[s]->n * list[s]->k, c = (size_t)list[s]->m * list[s]->n;
        most = a > most ? a : most, most = b > most ? b : most, most = c > most ? c : most;
    }
    float *a = bench_noise(most, 1), *b = bench_noise(most, 2);
    operands o = {a, b, to_bf16(a, most), to_bf16(b, most), bench_noise(most, 3)};
    static double t[MAX_VARIANTS][32][MAX_ROUNDS];
    for (int r = -1; r < rounds; r++)   /* round -1 warms every variant up */
        for (int v = 0; v < nv; v++) {
            if (cpu_blas_use_core(vs[v].core ? vs[v].core : own))
                fprintf(stderr, "openblas cannot switch to core %s\n", vs[v].core ? vs[v].core : own);
            for (int s = 0; s < ns; s++) {
                double t0 = bench_now();
                vs[v].run(&vs[v], list[s], &o);
                if (r >= 0) t[v][s][r] = bench_now() - t0;
            }
        }
    cpu_blas_use_core(own);
    printf("%-42s %-20s %10s %9s %s\n", "shape (m x n x k)", "variant", "median ms", "GFLOP/s", "spread GFLOP/s");
    for (int s = 0; s < ns; s++)
        for (int v = 0; v < nv; v++) {
            double flop = 2.0 * list[s]->m * list[s]->n * list[s]->k, lo = 1e30, hi = 0;
            for (int r = 0; r < rounds; r++) lo = t[v][s][r] < lo ? t[v][s][r] : lo, hi = t[v][s][r] > hi ? t[v][s][r] : hi;
            double med = bench_median(t[v][s], rounds);
            char dims[64];
            snprintf(dims, sizeof dims, "%dx%dx%d%s", list[s]->m, list[s]->n, list[s]->k, list[s]->trans_b ? " (B^T)" : "");
            printf("%-42s %-20s %10.2f %9.1f %.1f-%.1f   %s\n", v ? "" : dims, vs[v].name, med * 1e3, flop / med * 1e-9,
                   flop / hi * 1e-9, flop / lo * 1e-9, v ? "" : list[s]->what);
        }
    return 0;
}
