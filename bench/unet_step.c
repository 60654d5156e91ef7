/* One UNet evaluation on a real-size SDXL checkpoint, as a sampler step runs it:
 *   bench_unet_step CHECKPOINT [LATENT_H LATENT_W BATCH RUNS [direct]]
 *   (defaults 64 64 2 1: a 512^2 CFG step; 128 128 1 1 is one 1024^2 pass;
 *   "direct" runs 3x3 convs as im2col + sgemm instead of Winograd)
 * Prints the time of each pass and the median s/pass, the wall time per op
 * kind (sd_backend_profile), the achieved GFLOP/s
 * (sd_unet_flops x batch, 77 context tokens), the backend's peak of live
 * activations + scratch, OpenBLAS sgemm's GFLOP/s measured in the same run
 * (2048^3, the practical peak), and the process's peak RSS (the mmap'd fp16
 * weights count as they are touched). Fixed pseudo-random inputs. The
 * backend is the one SDXL_DEVICE chooses (on a GPU the first pass also
 * uploads the weights; the median leaves it out from 3 runs on). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "sd/checkpoint.h"
#include "sd/unet.h"

#define CONTEXT_TOKENS 77
#define MAX_RUNS 50
#define SGEMM_N 2048

static sd_tensor *uploaded(sd_backend *be, int ndim, const int64_t *shape, float *host)
{
    sd_tensor *t = sd_tensor_new(be, ndim, shape);
    sd_tensor_upload(be, t, host);
    free(host);
    return t;
}

/* y rows: random pooled vector, original = target = the image size, crop 0. */
static sd_tensor *adm_input(sd_backend *be, const sdxl_unet_hparams *hp, int64_t batch, int64_t h, int64_t w)
{
    float *y = malloc(sizeof(float) * (size_t)(batch * hp->adm_in_channels));
    float *pooled = bench_noise((size_t)hp->adm_pooled_dim, 7);
    const float sizes[SDXL_ADM_VALUES] = {8.0f * h, 8.0f * w, 0, 0, 8.0f * h, 8.0f * w};
    if (!y) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t b = 0; b < batch; b++) sd_unet_adm_vector(hp, pooled, sizes, y + b * hp->adm_in_channels);
    free(pooled);
    return uploaded(be, 2, (const int64_t[]){batch, hp->adm_in_channels}, y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CHECKPOINT [LATENT_H LATENT_W BATCH RUNS]\n", argv[0]);
        return 2;
    }
    int64_t h = argc > 2 ? atoi(argv[2]) : 64, w = argc > 3 ? atoi(argv[3]) : 64;
    int64_t batch = argc > 4 ? atoi(argv[4]) : 2;
    int runs = argc > 5 ? atoi(argv[5]) : 1;
    if (h < 1 || w < 1 || batch < 1 || runs < 1 || runs > MAX_RUNS) {
        fprintf(stderr, "bad sizes: latent %lldx%lld, batch %lld, runs %d (1..%d)\n", (long long)h, (long long)w,
                (long long)batch, runs, MAX_RUNS);
        return 2;
    }
    char err[512];
    sdxl_hparams hp;
    st_file *f = NULL;
    sd_unet *u = NULL;
    double t0 = bench_now();
    if (sdxl_checkpoint_open(argv[1], &f, &hp, err, sizeof err) || sd_unet_bind(&u, f, &hp.unet, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("open + bind: %.2f s\n", bench_now() - t0);
    sd_backend *be = bench_backend(&(sd_cpu_options){.direct_conv = argc > 6 && !strcmp(argv[6], "direct")},
                                   sd_unet_weight_dtype(u));
    const sdxl_unet_hparams *uh = &hp.unet;
    sd_tensor *x = uploaded(be, 4, (const int64_t[]){batch, uh->in_channels, h, w},
                            bench_noise((size_t)(batch * uh->in_channels * h * w), 11));
    sd_tensor *ctx = uploaded(be, 3, (const int64_t[]){batch, CONTEXT_TOKENS, uh->context_dim},
                              bench_noise((size_t)(batch * CONTEXT_TOKENS * uh->context_dim), 13));
    sd_tensor *y = adm_input(be, uh, batch, h, w);
    sd_tensor *eps = sd_new4(be, batch, uh->out_channels, h, w);
    double times[MAX_RUNS];
    for (int r = 0; r <= runs; r++) {
        /* the timed passes, then one more with the op profile on (it waits
         * for each op on a GPU, so it is never one of the timed ones) */
        if (r == runs) sd_backend_profile(be, 1);
        t0 = bench_now();
        if (sd_unet_forward(be, u, x, 500.0f, ctx, y, eps, err, sizeof err) || sd_backend_sync(be)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        if (r == runs) break;
        times[r] = bench_now() - t0;
        printf("pass %d: %.3f s\n", r + 1, times[r]);
    }
    double med = bench_median(times, runs);
    double flops = sd_unet_flops(uh, (int)h, (int)w, CONTEXT_TOKENS) * (double)batch;
    sd_mem_stats mem;
    sd_backend_mem(be, &mem);
    printf("latent %lldx%lld (image %lldx%lld), batch %lld: median %.4f s/pass, %.1f TFLOP, %.1f GFLOP/s\n",
           (long long)h, (long long)w, (long long)h * 8, (long long)w * 8, (long long)batch, med, flops * 1e-12,
           flops / med * 1e-9);
    printf("unet_flop %.0f\nop profile of one more pass:\n", flops);
    sd_backend_profile_print(be, stdout);
    printf("backend peak (activations + scratch + device weights): %.1f MB\n", mem.peak_bytes / 1048576.0);
    if (mem.device_used_peak) printf("device memory in use at its peak: %.1f MB\n", mem.device_used_peak / 1048576.0);
    printf("OpenBLAS sgemm %d^3: %.1f GFLOP/s\n", SGEMM_N, bench_sgemm_gflops(SGEMM_N));
    printf("peak_rss_mb %.1f\n", bench_peak_rss_mb());
    sd_tensor_free(be, x), sd_tensor_free(be, ctx), sd_tensor_free(be, y), sd_tensor_free(be, eps);
    sd_backend_free(be);
    sd_unet_free(u);
    st_close(f);
    return 0;
}
