/* Time of the initial noise for an SDXL 1024x1024 latent (4x128x128) and a
 * batch of 4, on both streams: it must be negligible next to a UNet step. */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"
#include "sd/rng.h"

static double ms_per_draw(sd_rng_kind kind, size_t n, int reps, float *out)
{
    sd_rng g;
    sd_rng_init(&g, kind, 42);
    double t0 = bench_now();
    for (int r = 0; r < reps; r++) sd_rng_randn(&g, n, out);
    return (bench_now() - t0) * 1e3 / reps;
}

int main(void)
{
    const size_t sizes[2] = {4 * 128 * 128, 4 * 4 * 128 * 128};
    const char *names[2] = {"cpu", "cuda"};
    float *out = malloc(sizes[1] * sizeof *out);
    if (!out) return 1;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 2; k++)
            printf("%-4s n=%-7zu %.3f ms per randn\n", names[k], sizes[s],
                   ms_per_draw((sd_rng_kind)k, sizes[s], 20, out));
    free(out);
    return 0;
}
