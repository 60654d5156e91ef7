/* Benchmark of the whole txt2img engine on a full-size SDXL checkpoint (the
 * random one from tools/reference/make_small_model.py --full):
 *   1. a 512x512 job of one CFG step (UNet batch 2) + VAE decode;
 *   2. a 1024x1024 job of one CFG step + decode (the issue's <= 10 GB RSS);
 * per job: stage timings, s/step, the UNet's achieved GFLOP/s (sd_unet_flops
 * x 2 for the CFG batch over the denoise time), and peak RSS; plus OpenBLAS
 * sgemm's GFLOP/s measured in the same run as the practical peak.
 *   build/bench_txt2img [MODEL] [threads]
 *   (default MODEL: tools/reference/big/sdxl_full_random.safetensors) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "sd/engine.h"
#include "sd/unet.h"

/* VmRSS / VmHWM of this process in GiB. */
static double proc_status_gib(const char *key) { return bench_proc_status_kib(key) / (1024.0 * 1024.0); }

static int run(sd_engine *e, int size)
{
    sd_txt2img_params p;
    sd_txt2img_params_default(&p);
    p.prompt = "a photograph of a lighthouse on a cliff at dawn, highly detailed";
    p.negative_prompt = "blurry, low quality";
    p.width = p.height = size;
    p.steps = 1;
    p.cfg = 4.5f;
    p.seed = 797935397;
    sd_backend_reset_peak(sd_engine_backend(e));
    sd_image_out out;
    char err[1024];
    sd_status st = sd_txt2img(e, &p, &out, err, sizeof err);
    if (st) {
        fprintf(stderr, "%dx%d: %s\n", size, size, err);
        return 1;
    }
    sd_mem_stats mem;
    sd_backend_mem(sd_engine_backend(e), &mem);
    const sdxl_unet_hparams *hp = &sd_engine_hparams(e)->unet;
    double flops = 2.0 * sd_unet_flops(hp, size / 8, size / 8, 77);
    printf("%4dx%-4d 1 CFG step (%s %s): encode %.2f s, denoise %.2f s/step (%.1f GFLOP/s on %.0f GFLOP), "
           "decode %.2f s, total %.2f s; backend peak %.2f GiB; RSS now %.2f GiB, peak %.2f GiB\n",
           size, size, sd_sampler_label(out.choice.sampler), sd_schedule_label(out.choice.schedule),
           out.t_encode, out.t_denoise, flops / out.t_denoise * 1e-9, flops * 1e-9, out.t_decode, out.t_total,
           mem.peak_bytes / 1073741824.0, proc_status_gib("VmRSS"), proc_status_gib("VmHWM"));
    fflush(stdout);
    sd_image_out_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tools/reference/big/sdxl_full_random.safetensors";
    sd_engine_options opts = {.device.cpu.threads = argc > 2 ? atoi(argv[2]) : 0};
    printf("OpenBLAS sgemm 2048^3: %.1f GFLOP/s\n", bench_sgemm_gflops(2048));
    char err[1024];
    sd_engine *e;
    double t0 = bench_now();
    if (sd_engine_load(path, &opts, &e, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("load %.2f s (%s), RSS %.2f GiB\n", bench_now() - t0, sd_backend_describe(sd_engine_backend(e)),
           proc_status_gib("VmRSS"));
    int rc = run(e, 512) || run(e, 1024);
    printf("peak_rss_mb %.1f\n", bench_peak_rss_mb());
    sd_engine_free(e);
    return rc;
}
