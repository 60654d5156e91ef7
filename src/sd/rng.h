/* Noise generators for latents and sampler noise, reproducing the streams
 * users get from Python for the same seed:
 *   SD_RNG_CPU  - torch.Generator().manual_seed(seed) + torch.randn (fp32, CPU):
 *                 MT19937 and torch's Box-Muller kernels (rng_cpu.c).
 *   SD_RNG_CUDA - torch.Generator("cuda").manual_seed(seed) + torch.randn, as
 *                 A1111 emulates it on the CPU (modules/rng_philox.py):
 *                 Philox4x32-10 and one Box-Muller sine per element (rng_philox.c).
 * A generator keeps its state across calls: calling sd_rng_randn repeatedly
 * gives what the same sequence of torch.randn calls gives (ancestral samplers
 * draw their per-step noise this way). */
#ifndef SDXL_SD_RNG_H
#define SDXL_SD_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SD_RNG_CPU = 0, SD_RNG_CUDA = 1 } sd_rng_kind;

#define SD_MT_N 624

/* State of torch's CPU generator (CPUGeneratorImpl): the mt19937 engine and
 * the cached second output of normal_distribution<double>. */
typedef struct {
    uint32_t state[SD_MT_N];
    int next;              /* index of the next word of state to temper */
    int has_next_normal;   /* normal_distribution<double> cache (numel < 16) */
    double next_normal;
} sd_rng_mt;

typedef struct {
    sd_rng_kind kind;
    uint64_t seed;
    uint64_t offset;       /* cuda: number of randn calls made so far */
    sd_rng_mt mt;          /* cpu */
} sd_rng;

/* Seeds g as manual_seed(seed) does. torch takes the seed as a uint64; a
 * negative Python int is reinterpreted as two's complement (-5 -> 2^64-5,
 * checked against torch 2.15; its docstring's "0xffff_ffff_ffff_ffff + seed"
 * is off by one), so pass (uint64_t)seed for a negative job seed.
 * cpu uses only the low 32 bits (mt19937's seed); cuda uses all 64 (Philox key). */
void sd_rng_init(sd_rng *g, sd_rng_kind kind, uint64_t seed);

/* Fills out[0..n-1] with what torch.randn(shape, generator=g) returns for any
 * shape of n elements (fp32, contiguous), and advances g like torch does. */
void sd_rng_randn(sd_rng *g, size_t n, float *out);

/* How a batch of images gets its noise.
 *   SD_BATCH_SEED_PER_IMAGE: image i has its own generator seeded with seed+i
 *     (mod 2^64), as A1111 (modules/rng.py ImageRNG) and stable-diffusion.cpp do;
 *     image i's noise does not depend on the batch size.
 *   SD_BATCH_ONE_GENERATOR: one generator seeded with seed draws the whole
 *     (B,4,h,w) tensor in one call, as diffusers does with
 *     generator=torch.Generator(...).manual_seed(seed) (and ComfyUI's initial
 *     noise); image 0 equals a batch-1 run, later images do not equal seed+i. */
typedef enum { SD_BATCH_SEED_PER_IMAGE = 0, SD_BATCH_ONE_GENERATOR = 1 } sd_batch_seeding;

typedef struct {
    sd_batch_seeding mode;
    int batch;
    sd_rng *gens;          /* batch generators (per image) or one */
} sd_batch_rng;

/* Seed of image i under SD_BATCH_SEED_PER_IMAGE: seed + i, wrapping at 2^64. */
uint64_t sd_rng_image_seed(uint64_t seed, int i);

/* 0 on success, -1 on a bad batch size or out of memory. */
int sd_batch_rng_init(sd_batch_rng *b, sd_rng_kind kind, uint64_t seed,
                      sd_batch_seeding mode, int batch);
/* Noise for the whole batch: out[i*n .. i*n+n-1] is image i's n values. The
 * first call gives the initial latents, later calls the samplers' noise. */
void sd_batch_rng_randn(sd_batch_rng *b, size_t n_per_image, float *out);
/* A draw for something every image shares (the VAE sample of one init
 * image): one n-value draw per image generator, or under one generator a
 * single draw that every image gets (diffusers encodes the one image once
 * and repeats its latent). out holds batch x n values. */
void sd_batch_rng_randn_shared(sd_batch_rng *b, size_t n_per_image, float *out);
void sd_batch_rng_free(sd_batch_rng *b);

/* The two engines (rng_cpu.c, rng_philox.c), used by sd_rng_randn. */
void sd_rng_mt_seed(sd_rng_mt *mt, uint64_t seed);
uint32_t sd_rng_mt_next(sd_rng_mt *mt);
void sd_rng_cpu_randn(sd_rng_mt *mt, size_t n, float *out);
void sd_rng_philox_randn(uint64_t seed, uint64_t offset, size_t n, float *out);

#endif
