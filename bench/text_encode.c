/* Checkpoint load and text encoding on a real-size SDXL checkpoint:
 *   bench_text_encode CHECKPOINT [RUNS]
 * Prints the median time of RUNS (default 3) for opening + recognising the
 * checkpoint (hparams from shapes, every tensor checked), binding the text
 * encoders, and encoding one prompt pair (positive + negative, one chunk
 * each; wall and process CPU time) on the backend SDXL_DEVICE and
 * SDXL_CPU_PRECISION choose, then the peak RSS. Run it after the file is in
 * the page cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "sd/checkpoint.h"
#include "sd/text_encoder.h"
#include "sd/tokenizer.h"

/* Prompt and negative through the encoders as one batch, as the engine does. */
static int encode_pair(sd_backend *be, const sd_text_encoders *te, const sd_tokenizer *tok, const char *prompt,
                       const char *negative)
{
    char err[512];
    sd_prompt p[2];
    sd_conditioning c[2];
    const bool zero_if_empty[2] = {false, true};
    if (sd_prompt_prepare(tok, prompt, strlen(prompt), NULL, &p[0], err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    if (sd_prompt_prepare(tok, negative, strlen(negative), NULL, &p[1], err, sizeof err)) return fprintf(stderr, "%s\n", err), -1;
    int rc = sd_encode_prompts(be, te, p, 2, 0, zero_if_empty, c, err, sizeof err);
    if (rc) fprintf(stderr, "%s\n", err);
    else sd_conditioning_free(&c[0]), sd_conditioning_free(&c[1]);
    sd_prompt_free(&p[0]), sd_prompt_free(&p[1]);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fprintf(stderr, "usage: %s CHECKPOINT [RUNS]\n", argv[0]); return 2; }
    int runs = argc > 2 ? atoi(argv[2]) : 3;
    if (runs < 1 || runs > 50) runs = 3;
    double load[50], enc[50], enc_cpu[50];
    char err[512];
    sdxl_hparams hp;
    st_file *f = NULL;
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        if (sdxl_checkpoint_open(argv[1], &f, &hp, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        load[r] = bench_now() - t0;
        if (r + 1 < runs) st_close(f);
    }
    printf("checkpoint: %zu tensors; unet %d ch, %d levels, depths %d/%d/%d, context %d; te1 %dx%d; te2 %dx%d proj %d\n",
           st_count(f), hp.unet.model_channels, hp.unet.num_levels, hp.unet.depth_down[0], hp.unet.depth_down[1],
           hp.unet.depth_down[2], hp.unet.context_dim, hp.te1.layers, hp.te1.width, hp.te2.layers, hp.te2.width,
           hp.te2.projection_dim);
    printf("load_median_s %.3f\n", bench_median(load, runs));

    sd_text_encoders te;
    sd_tokenizer *tok = sd_tokenizer_new();
    sd_backend *be = bench_backend(NULL, SD_F16);   /* SDXL_DEVICE, SDXL_CPU_PRECISION */
    if (sd_text_encoders_bind(&te, f, &hp, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now(), c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID);
        if (encode_pair(be, &te, tok, "a photo of an astronaut riding a horse on mars, highly detailed",
                        "blurry, low quality"))
            return 1;
        enc[r] = bench_now() - t0;
        enc_cpu[r] = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
    }
    printf("encode_pair_median_s %.3f (process CPU %.3f s)\n", bench_median(enc, runs), bench_median(enc_cpu, runs));
    printf("peak_rss_mb %.0f\n", bench_peak_rss_mb());
    sd_text_encoders_release(&te);
    sd_backend_free(be);
    sd_tokenizer_free(tok);
    st_close(f);
    return 0;
}
