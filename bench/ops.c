/* Micro-benchmark of the CPU ops on SDXL-shaped work: raw OpenBLAS sgemm (the
 * practical peak), sd_linear with fp16 weights (sgemm + per-layer widening),
 * 3x3 conv via row-tiled im2col, tiled attention, and group norm + SiLU.
 * Prints the median of N runs and GFLOP/s (GB/s for the norm).
 *   build/bench_ops [runs] [threads]        (defaults: 3 runs, OpenMP's threads) */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "sd/backend.h"

typedef void (*bench_fn)(void *ctx);

/* Median seconds of `runs` calls after one warm-up call. */
static double median_time(bench_fn fn, void *ctx, int runs)
{
    double t[64];
    fn(ctx);
    for (int i = 0; i < runs; i++) {
        double t0 = bench_now();
        fn(ctx);
        t[i] = bench_now() - t0;
    }
    return bench_median(t, runs);
}

static void report(const char *what, double seconds, double work, const char *unit)
{
    printf("%-48s %9.2f ms %9.1f %s\n", what, seconds * 1e3, work / seconds * 1e-9, unit);
}

static float *filled(size_t n, float v)
{
    float *p = malloc(n * sizeof *p);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < n; i++) p[i] = v * (float)((i * 2654435761u) % 1000) / 1000.0f;
    return p;
}

static uint16_t *f16_weights(size_t n)
{
    float *f = filled(n, 0.02f);
    uint16_t *h = malloc(n * sizeof *h);
    if (!h) { fprintf(stderr, "out of memory\n"); exit(1); }
    sd_narrow(SD_F16, f, n, h, 0);
    free(f);
    return h;
}

typedef struct { int m, n, k; float *a, *b, *c; } sgemm_ctx;

static void run_sgemm(void *p)
{
    sgemm_ctx *s = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s->m, s->n, s->k, 1.0f, s->a, s->k, s->b, s->k, 0.0f, s->c,
                s->n);
}

static double bench_sgemm(int m, int n, int k, int runs)
{
    sgemm_ctx s = {m, n, k, filled((size_t)m * k, 1), filled((size_t)n * k, 1), filled((size_t)m * n, 0)};
    double t = median_time(run_sgemm, &s, runs);
    char name[96];
    snprintf(name, sizeof name, "sgemm %dx%dx%d (x W^T)", m, n, k);
    report(name, t, 2.0 * m * n * k, "GFLOP/s");
    free(s.a), free(s.b), free(s.c);
    return 2.0 * m * n * k / t * 1e-9;
}

typedef struct {
    sd_backend *be;
    sd_tensor *x, *y, *k, *v;
    sd_weight w, b;
    int heads;
} op_ctx;

static void run_linear(void *p) { op_ctx *c = p; sd_linear(c->be, c->y, c->x, &c->w, &c->b); }
static void run_conv(void *p) { op_ctx *c = p; sd_conv2d(c->be, c->y, c->x, &c->w, &c->b, 1, 1); }
static void run_attention(void *p) { op_ctx *c = p; sd_attention(c->be, c->y, c->x, c->k, c->v, c->heads, 0); }
static void run_group_norm(void *p) { op_ctx *c = p; sd_group_norm(c->be, c->y, c->x, 32, 1e-5f, &c->w, &c->b, SD_ACT_SILU); }

static sd_tensor *tensor(sd_backend *be, int ndim, const int64_t *shape)
{
    sd_tensor *t = sd_tensor_new(be, ndim, shape);
    if (!t || sd_fill(be, t, 0.01f)) { fprintf(stderr, "%s\n", sd_backend_error(be)); exit(1); }
    return t;
}

static void bench_linear(sd_backend *be, int64_t tokens, int64_t cin, int64_t cout, int runs)
{
    uint16_t *w = f16_weights((size_t)(cin * cout)), *b = f16_weights((size_t)cout);
    op_ctx c = {be, tensor(be, 2, (const int64_t[]){tokens, cin}), tensor(be, 2, (const int64_t[]){tokens, cout}),
                NULL, NULL, {"w", SD_F16, 2, {cout, cin}, w}, {"b", SD_F16, 1, {cout}, b}, 0};
    double t = median_time(run_linear, &c, runs);
    char name[96];
    snprintf(name, sizeof name, "sd_linear f16 %lldx%lld -> %lld", (long long)tokens, (long long)cin, (long long)cout);
    report(name, t, 2.0 * tokens * cin * cout, "GFLOP/s");
    sd_tensor_free(be, c.x), sd_tensor_free(be, c.y);
    free(w), free(b);
}

static void bench_conv(sd_backend *be, int64_t batch, int64_t cin, int64_t cout, int64_t hw, int runs)
{
    uint16_t *w = f16_weights((size_t)(cout * cin * 9)), *b = f16_weights((size_t)cout);
    op_ctx c = {be, tensor(be, 4, (const int64_t[]){batch, cin, hw, hw}), tensor(be, 4, (const int64_t[]){batch, cout, hw, hw}),
                NULL, NULL, {"w", SD_F16, 4, {cout, cin, 3, 3}, w}, {"b", SD_F16, 1, {cout}, b}, 0};
    double t = median_time(run_conv, &c, runs);
    char name[96];
    snprintf(name, sizeof name, "sd_conv2d 3x3 f16 [%lld,%lld,%lld,%lld] -> %lld", (long long)batch, (long long)cin,
             (long long)hw, (long long)hw, (long long)cout);
    report(name, t, 2.0 * batch * cout * hw * hw * cin * 9, "GFLOP/s");
    sd_tensor_free(be, c.x), sd_tensor_free(be, c.y);
    free(w), free(b);
}

static void bench_attention(sd_backend *be, int64_t batch, int64_t tokens, int heads, int runs)
{
    int64_t shape[3] = {batch, tokens, heads * 64};
    op_ctx c = {be, tensor(be, 3, shape), tensor(be, 3, shape), tensor(be, 3, shape), tensor(be, 3, shape),
                {0}, {0}, heads};
    double t = median_time(run_attention, &c, runs);
    char name[96];
    snprintf(name, sizeof name, "sd_attention B%lld N%lld H%d D64", (long long)batch, (long long)tokens, heads);
    report(name, t, 4.0 * batch * heads * tokens * tokens * 64, "GFLOP/s");
    sd_tensor_free(be, c.x), sd_tensor_free(be, c.y), sd_tensor_free(be, c.k), sd_tensor_free(be, c.v);
}

static void bench_group_norm(sd_backend *be, int64_t batch, int64_t ch, int64_t hw, int runs)
{
    uint16_t *g = f16_weights((size_t)ch), *b = f16_weights((size_t)ch);
    op_ctx c = {be, tensor(be, 4, (const int64_t[]){batch, ch, hw, hw}), tensor(be, 4, (const int64_t[]){batch, ch, hw, hw}),
                NULL, NULL, {"g", SD_F16, 1, {ch}, g}, {"b", SD_F16, 1, {ch}, b}, 0};
    double t = median_time(run_group_norm, &c, runs);
    char name[96];
    snprintf(name, sizeof name, "sd_group_norm+silu [%lld,%lld,%lld,%lld]", (long long)batch, (long long)ch,
             (long long)hw, (long long)hw);
    report(name, t, 3.0 * 4 * batch * ch * hw * hw, "GB/s (3 passes)");
    sd_tensor_free(be, c.x), sd_tensor_free(be, c.y);
    free(g), free(b);
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 3, threads = argc > 2 ? atoi(argv[2]) : 0;
    if (runs < 1 || runs > 64) runs = 3;
    sd_backend *be = sd_backend_cpu_new(&(sd_cpu_options){.threads = threads});
    if (!be) return 1;
    printf("%s\n", sd_backend_describe(be));
    bench_sgemm(2048, 2048, 2048, runs);
    bench_sgemm(2048, 640, 640, runs);            /* 512^2, 640-wide level, one image: proj_in/out */
    bench_linear(be, 2048, 640, 640, runs);
    bench_linear(be, 2048, 640, 5120, runs);      /* GEGLU proj */
    bench_linear(be, 154, 1280, 5120, runs);      /* bigG MLP on a prompt pair: widening dominates */
    bench_conv(be, 2, 320, 320, 64, runs);        /* 512^2 latent, 320 level, CFG batch */
    bench_conv(be, 1, 128, 128, 256, runs);       /* VAE decoder at 256^2 */
    bench_attention(be, 2, 1024, 10, runs);       /* 512^2, 640 level self-attention, CFG batch */
    bench_attention(be, 1, 4096, 10, runs > 1 ? 1 : runs);   /* 1024^2, 640 level, one image */
    bench_group_norm(be, 2, 320, 64, runs);
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    printf("peak backend memory %.1f MB (scratch %.1f MB)\n", m.peak_bytes / 1048576.0, m.scratch_bytes / 1048576.0);
    const char *err = sd_backend_error(be);
    if (err) fprintf(stderr, "error: %s\n", err);
    sd_backend_free(be);
    return err ? 1 : 0;
}
