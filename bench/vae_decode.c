/* VAE decode on a real-size SDXL checkpoint:
 *   bench_vae_decode CHECKPOINT LATENT_H LATENT_W [TILE [RUNS [THREADS [COMPARE]]]]
 * TILE 0 (default) decodes the whole image with sd_vae_decode; TILE > 0
 * uses sd_vae_decode_tiled with tiles of TILE latent pixels. Decodes one
 * image of N(0,1) latents (cpu generator, seed 0) divided by the scaling
 * factor, RUNS times (default 1), and prints the median seconds, the
 * backend's peak (tensors + scratch), the process's peak RSS, and the rgb8
 * image's mean byte (a checksum that the work was done). COMPARE 1 (tiled
 * only) then decodes untiled too, after the peaks are printed, and prints
 * the largest rgb8 difference between the two. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "sd/checkpoint.h"
#include "sd/rng.h"
#include "sd/vae.h"

/* Decodes once; the rgb8 of the result goes to rgb. */
static int decode_once(sd_backend *be, const sd_vae *v, const float *z_host, int h, int w, int tile, uint8_t *rgb)
{
    char err[512];
    sd_tensor *z = sd_new4(be, 1, 4, h, w), *img = sd_new4(be, 1, 3, 8 * h, 8 * w);
    int rc = z && img ? sd_tensor_upload(be, z, z_host) : -1;
    if (!rc) rc = tile ? sd_vae_decode_tiled(be, v, z, img, tile, err, sizeof err)
                       : sd_vae_decode(be, v, z, img, err, sizeof err);
    else snprintf(err, sizeof err, "%s", sd_backend_error(be) ? sd_backend_error(be) : "out of memory");
    float *chw = rc ? NULL : malloc(sizeof(float) * 3 * 64 * (size_t)h * (size_t)w);
    if (!rc && (!chw || sd_tensor_download(be, img, chw))) rc = -1, snprintf(err, sizeof err, "download failed");
    if (!rc) sd_vae_to_rgb8(chw, 8 * h, 8 * w, rgb);
    if (rc) fprintf(stderr, "%s\n", err);
    free(chw);
    sd_tensor_free(be, z);
    sd_tensor_free(be, img);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s CHECKPOINT LATENT_H LATENT_W [TILE [RUNS [THREADS]]]\n", argv[0]);
        return 2;
    }
    int h = atoi(argv[2]), w = atoi(argv[3]), tile = argc > 4 ? atoi(argv[4]) : 0;
    int runs = argc > 5 ? atoi(argv[5]) : 1, threads = argc > 6 ? atoi(argv[6]) : 0;
    int compare = argc > 7 && atoi(argv[7]) && tile;
    if (h < 1 || w < 1 || h > 1024 || w > 1024 || tile < 0 || runs < 1 || runs > 50) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    char err[512];
    st_file *f;
    sdxl_hparams hp;
    sd_vae *v;
    if (sdxl_checkpoint_open(argv[1], &f, &hp, err, sizeof err) || sd_vae_bind(&v, f, &hp.vae, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sd_backend *be = bench_backend(&(sd_cpu_options){.threads = threads}, SD_F16);
    size_t n = 4 * (size_t)h * (size_t)w, npix = 3 * 64 * (size_t)h * (size_t)w;
    float *z = malloc(n * sizeof *z);
    uint8_t *rgb = malloc(npix), *ref = malloc(npix);
    if (!be || !z || !rgb || !ref) return fprintf(stderr, "out of memory\n"), 1;
    sd_rng g;
    sd_rng_init(&g, SD_RNG_CPU, 0);
    sd_rng_randn(&g, n, z);
    for (size_t i = 0; i < n; i++) z[i] /= SD_VAE_SCALING_FACTOR;

    double t[50];
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        if (decode_once(be, v, z, h, w, tile, rgb)) return 1;
        t[r] = bench_now() - t0;
    }
    double median = bench_median(t, runs);
    double sum = 0;
    for (size_t i = 0; i < npix; i++) sum += rgb[i];
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    printf("vae decode %dx%d px (latent %dx%d), %s, %s\n", 8 * h, 8 * w, h, w,
           tile ? "tiled" : "untiled", sd_backend_describe(be));
    if (tile) printf("tile %d latent px\n", tile);
    printf("median %.3f s over %d run(s); backend peak %.1f MB; mean byte %.3f\npeak_rss_mb %.1f\n", median, runs,
           m.peak_bytes / 1048576.0, sum / (double)npix, bench_peak_rss_mb());
    if (compare) {
        fflush(stdout);
        if (decode_once(be, v, z, h, w, 0, ref)) return 1;
        int levels = 0;
        size_t differing = 0;
        for (size_t i = 0; i < npix; i++) {
            int d = abs((int)rgb[i] - (int)ref[i]);
            levels = d > levels ? d : levels;
            differing += d != 0;
        }
        printf("tiled vs untiled rgb8: max %d level(s) off in %zu of %zu values\n", levels, differing, npix);
    }
    free(z);
    free(rgb);
    free(ref);
    sd_vae_free(v);
    sd_backend_free(be);
    st_close(f);
    return 0;
}
