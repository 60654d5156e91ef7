/* The LoRA stack on a real-size SDXL checkpoint with nine rank-32 LoRAs
 * (tools/reference/make_bench_loras.py):
 *   bench_lora_merge [CHECKPOINT [LORA_DIR]]
 * defaults tools/reference/big/sdxl_full_random.safetensors and
 * tools/reference/big/loras. The checkpoint's weights are first read once
 * (the state of a warm engine: every page resident), then it prints:
 *   - merging all nine (files opened and mapped, every touched tensor
 *     rebuilt), cold (files read from the page cache for the first time)
 *     and warm (the same set after an empty one);
 *   - the same set again (nothing to do);
 *   - one LoRA's multiplier changed (only its tensors rebuilt), and back;
 *   - merged tensors and bytes, RSS before/after and the peak RSS.
 * The multipliers are the worker's (docs/models.md): 1.5, 1, 0.3, 0.4, 1,
 * 1, 3, 1, 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "sd/checkpoint.h"
#include "sd/lora.h"

static const char *const names[9] = {"full_1", "full_2", "unet_tf", "unet_attn", "te_only",
                                     "tf_te1", "locon",  "attn_te2", "ff_slider"};
static const float scales[9] = {1.5f, 1.0f, 0.3f, 0.4f, 1.0f, 1.0f, 3.0f, 1.0f, 1.0f};

static double rss_gb(void) { return bench_proc_status_kib("VmRSS") * 1024.0 / 1e9; }

/* Reads one byte per page of every tensor: all weights resident. */
static double touch_all(const st_file *f)
{
    volatile unsigned sum = 0;
    long page = sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_get(f, i);
        for (uint64_t o = 0; o < t->nbytes; o += (uint64_t)page) sum += ((const unsigned char *)t->data)[o];
    }
    return (double)sum;
}

static int apply(sd_lora_stack *s, const sd_lora_spec *specs, size_t n, const char *what)
{
    char err[1024];
    sd_lora_report r;
    double t0 = bench_now();
    sd_lora_status st = sd_lora_stack_apply(s, specs, n, &r, err, sizeof err);
    double dt = bench_now() - t0;
    if (st) {
        fprintf(stderr, "%s: %s\n", what, err);
        return -1;
    }
    printf("%-34s %8.2f s  rebuilt %5zu  restored %5zu  merged %5zu (%.2f GB)  RSS %.2f GB\n", what, dt,
           r.tensors_rebuilt, r.tensors_restored, r.tensors_merged, r.merged_bytes / 1e9, rss_gb());
    sd_lora_report_free(&r);
    return 0;
}

int main(int argc, char **argv)
{
    const char *ckpt = argc > 1 ? argv[1] : "tools/reference/big/sdxl_full_random.safetensors";
    const char *dir = argc > 2 ? argv[2] : "tools/reference/big/loras";
    char err[1024], paths[9][4096];
    sdxl_hparams hp;
    st_file *f;
    double t0 = bench_now();
    if (sdxl_checkpoint_open(ckpt, &f, &hp, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    touch_all(f);
    printf("checkpoint %s: opened and read in %.1f s, RSS %.2f GB\n", ckpt, bench_now() - t0, rss_gb());
    sd_lora_spec specs[9];
    for (int i = 0; i < 9; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s.safetensors", dir, names[i]);
        specs[i] = (sd_lora_spec){paths[i], names[i], scales[i], scales[i]};
    }
    sd_lora_stack *s = sd_lora_stack_new(f, &hp, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    int rc = apply(s, specs, 9, "merge nine (cold)") || apply(s, specs, 9, "same set again") ||
             apply(s, NULL, 0, "no LoRA") || apply(s, specs, 9, "merge nine (warm)");
    specs[6].te_multiplier = specs[6].unet_multiplier = 2.0f;
    rc = rc || apply(s, specs, 9, "locon 3.0 -> 2.0");
    specs[6].te_multiplier = specs[6].unet_multiplier = 3.0f;
    rc = rc || apply(s, specs, 9, "locon 2.0 -> 3.0");
    specs[3].te_multiplier = specs[3].unet_multiplier = 0.8f;
    rc = rc || apply(s, specs, 9, "unet_attn 0.4 -> 0.8");
    printf("checkpoint file %.2f GB\npeak_rss_mb %.1f\n", st_file_size(f) / 1e9, bench_peak_rss_mb());
    sd_lora_stack_free(s);
    st_close(f);
    return rc;
}
