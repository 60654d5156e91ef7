/* PNG encode time for a 1024x1024 RGB image (issue: under 0.3 s), at the
 * chosen zlib level and filters, next to PIL's default (level 6, adaptive,
 * which is what A1111 writes).
 *
 *   bench_png_encode [--sweep] [IMAGE]
 *
 * The image is a synthetic photo-like picture (smooth colour fields, some
 * texture and per-pixel noise, like a diffusion model's output), or IMAGE
 * (PNG/JPEG/WebP) mirrored/tiled to 1024x1024. --sweep times every zlib
 * level with every filter choice, for choosing the default. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "image/decode.h"
#include "image/encode.h"

#define SIDE 1024

static uint32_t rng_state = 0x9e3779b9u;
static double uniform(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return (rng_state >> 8) * (1.0 / 16777216.0);
}

static uint8_t clamp8(double v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)lround(v); }

static void synthesize(uint8_t *rgb)
{
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            double u = x / (double)SIDE, v = y / (double)SIDE;
            double noise = (uniform() + uniform() + uniform() - 1.5) * 6.0; /* sigma ~3 */
            double texture = 10 * sin(40 * u + 7 * sin(9 * v)) * cos(33 * v);
            double base[3] = {
                120 + 80 * sin(3.1 * u + 1.3 * v) + 30 * cos(7 * v),
                110 + 70 * cos(2.3 * v - 1.7 * u) + 25 * sin(5 * u * v * 6),
                100 + 90 * sin(1.7 * (u + v)) * cos(2.9 * u),
            };
            for (int c = 0; c < 3; c++) rgb[((size_t)y * SIDE + x) * 3 + c] = clamp8(base[c] + texture + noise);
        }
}

/* IMAGE mirrored to fill SIDE x SIDE. */
static int load_tiled(const char *path, uint8_t *rgb)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return -1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n);
    size_t got = fread(d, 1, (size_t)n, f);
    fclose(f);
    img_limits lim;
    img_limits_default(&lim);
    img_rgb im;
    char err[256];
    int rc = img_decode(d, got, &lim, &im, err, sizeof err);
    free(d);
    if (rc != 0) { fprintf(stderr, "%s: %s\n", path, err); return -1; }
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            int sx = x % (2 * im.width), sy = y % (2 * im.height);
            if (sx >= im.width) sx = 2 * im.width - 1 - sx;
            if (sy >= im.height) sy = 2 * im.height - 1 - sy;
            memcpy(rgb + ((size_t)y * SIDE + x) * 3, im.rgb + ((size_t)sy * im.width + sx) * 3, 3);
        }
    img_rgb_free(&im);
    return 0;
}

/* Best of `runs` encode times (wall clock, and this thread's CPU time,
 * which a busy shared machine disturbs less); *size gets the output size. */
typedef struct {
    double wall, cpu;
} timing;

static timing time_encode(const uint8_t *rgb, int level, img_png_filter filter, int runs, size_t *size)
{
    img_encode_opts o;
    img_encode_opts_default(&o, IMG_PNG);
    o.png_level = level;
    o.png_filter = filter;
    timing best = {1e9, 1e9};
    for (int r = 0; r < runs; r++) {
        img_buf b;
        char err[256];
        double w0 = bench_clock(CLOCK_MONOTONIC), c0 = bench_clock(CLOCK_THREAD_CPUTIME_ID);
        if (img_encode(rgb, SIDE, SIDE, SIDE * 3, &o, &b, err, sizeof err) != 0) {
            fprintf(stderr, "encode failed: %s\n", err);
            exit(1);
        }
        double w = bench_clock(CLOCK_MONOTONIC) - w0, c = bench_clock(CLOCK_THREAD_CPUTIME_ID) - c0;
        if (w < best.wall) best.wall = w;
        if (c < best.cpu) best.cpu = c;
        *size = b.len;
        img_buf_free(&b);
    }
    return best;
}

static const char *const FILTER_NAMES[] = {"adaptive", "none", "sub", "up", "avg", "paeth"};

int main(int argc, char **argv)
{
    int sweep = argc > 1 && !strcmp(argv[1], "--sweep");
    const char *path = argc > 1 + sweep ? argv[1 + sweep] : NULL;
    uint8_t *rgb = malloc((size_t)SIDE * SIDE * 3);
    if (path ? load_tiled(path, rgb) != 0 : (synthesize(rgb), 0)) return 1;
    printf("image: %s, %dx%d RGB (%d bytes raw)\n", path ? path : "synthetic", SIDE, SIDE, SIDE * SIDE * 3);
    size_t size;
    if (sweep) {
        printf("level filter    wall_ms   cpu_ms  size_kB\n");
        for (int level = 0; level <= 9; level++)
            for (int f = 0; f < 6; f++) {
                timing t = time_encode(rgb, level, (img_png_filter)f, 3, &size);
                printf("%5d %-8s %8.1f %8.1f %8.1f\n", level, FILTER_NAMES[f], t.wall * 1e3, t.cpu * 1e3, size / 1024.0);
            }
    } else {
        timing t = time_encode(rgb, IMG_PNG_DEFAULT_LEVEL, IMG_PNG_FILTERS_ADAPTIVE, 5, &size);
        printf("chosen (level %d, adaptive): wall %.1f ms, cpu %.1f ms, %.1f kB\n", IMG_PNG_DEFAULT_LEVEL,
               t.wall * 1e3, t.cpu * 1e3, size / 1024.0);
        t = time_encode(rgb, 6, IMG_PNG_FILTERS_ADAPTIVE, 5, &size);
        printf("PIL default (level 6, adaptive): wall %.1f ms, cpu %.1f ms, %.1f kB\n", t.wall * 1e3, t.cpu * 1e3,
               size / 1024.0);
    }
    free(rgb);
    return 0;
}
