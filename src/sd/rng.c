/* Generator front end: seeding, randn dispatch to the cpu (rng_cpu.c) and
 * cuda (rng_philox.c) streams, and the per-image seeding of a batch. */
#include "sd/rng.h"

#include <stdlib.h>
#include <string.h>

void sd_rng_init(sd_rng *g, sd_rng_kind kind, uint64_t seed)
{
    g->kind = kind;
    g->seed = seed;
    g->offset = 0;
    sd_rng_mt_seed(&g->mt, seed);
}

void sd_rng_randn(sd_rng *g, size_t n, float *out)
{
    if (g->kind == SD_RNG_CPU) {
        sd_rng_cpu_randn(&g->mt, n, out);
        return;
    }
    sd_rng_philox_randn(g->seed, g->offset, n, out);
    g->offset++;    /* A1111: one counter step per randn call */
}

uint64_t sd_rng_image_seed(uint64_t seed, int i)
{
    return seed + (uint64_t)i;
}

int sd_batch_rng_init(sd_batch_rng *b, sd_rng_kind kind, uint64_t seed,
                      sd_batch_seeding mode, int batch)
{
    b->gens = NULL;
    if (batch < 1) return -1;
    int ngen = mode == SD_BATCH_SEED_PER_IMAGE ? batch : 1;
    b->gens = malloc((size_t)ngen * sizeof *b->gens);
    if (!b->gens) return -1;
    b->mode = mode;
    b->batch = batch;
    for (int i = 0; i < ngen; i++) sd_rng_init(&b->gens[i], kind, sd_rng_image_seed(seed, i));
    return 0;
}

void sd_batch_rng_randn(sd_batch_rng *b, size_t n_per_image, float *out)
{
    if (b->mode == SD_BATCH_ONE_GENERATOR) {
        sd_rng_randn(&b->gens[0], (size_t)b->batch * n_per_image, out);
        return;
    }
    for (int i = 0; i < b->batch; i++) sd_rng_randn(&b->gens[i], n_per_image, out + (size_t)i * n_per_image);
}

void sd_batch_rng_randn_shared(sd_batch_rng *b, size_t n_per_image, float *out)
{
    if (b->mode == SD_BATCH_SEED_PER_IMAGE) {
        sd_batch_rng_randn(b, n_per_image, out);
        return;
    }
    sd_rng_randn(&b->gens[0], n_per_image, out);
    for (int i = 1; i < b->batch; i++) memcpy(out + (size_t)i * n_per_image, out, sizeof(float) * n_per_image);
}

void sd_batch_rng_free(sd_batch_rng *b)
{
    free(b->gens);
    b->gens = NULL;
}
