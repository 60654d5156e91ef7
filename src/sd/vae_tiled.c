/* Tiled VAE decoding in bounded memory that reproduces the whole-image
 * decode instead of approximating it tile by tile (sd_vae_decode_tiled).
 *
 * Why not diffusers' AutoencoderKL.tiled_decode: each of its tiles runs the
 * whole decoder alone, so GroupNorm uses per-tile statistics and the mid-block
 * attention sees only the tile; linear blending over the overlap hides the
 * seam lines but not the tone shifts between tiles. On the small test model
 * (tile_latent_min_size 8) it lands up to 165/255 levels from its own untiled
 * decode (tests/data/small/goldens_vae.json, case "tile").
 *
 * Here:
 *  1. The latent-resolution half (post_quant_conv, conv_in, the mid block with
 *     its image-wide attention) runs on the whole latent: exact, and small
 *     (1/scale^2 of the image's pixels).
 *  2. The up path runs per cell of T x T latent pixels, on the cell plus
 *     VAE_TILE_HALO latent pixels of context on each side (clipped at the
 *     border, where the whole-image pass zero-pads as well). Only the cell's
 *     pixels are kept, so tiles need no blending. The halo is shorter than the
 *     up path's receptive field (about 12 latent pixels for SDXL's layout);
 *     on the small model, with exact statistics, a halo of 4 leaves at most
 *     3e-3 (0.4/255) of difference and 8 leaves 3e-6: 4 is the cheaper
 *     choice at the precision the statistics reach anyway.
 *  3. GroupNorm in the up path needs image-wide statistics, found by a
 *     fixed-point iteration over passes: pass 0 normalises each tile by its
 *     own statistics and sums every up-path GroupNorm input (x and x^2, per
 *     image and group, over the cells only); each later pass normalises with
 *     the previous pass's statistics, writes the output and sums again. It
 *     stops when no statistic moves by more than VAE_TILE_TOL of its std,
 *     when the change stops shrinking (near-constant groups, e.g. a flat
 *     latent, make GroupNorm ill-conditioned for any implementation), or
 *     after VAE_TILE_MAX_PASSES passes. On random latents of the small model
 *     it takes 4-5 passes and lands within 3.5e-3 of the untiled decode.
 *     Each pass costs about one decode times the halo overhead
 *     ((T + 2 halo)^2 / T^2: 1.27 at the default T = 64).
 * Memory: the latent-resolution activations, one tile's up-path activations,
 * a host copy of the output image, and one GroupNorm group of a tile. */
#include "sd/vae_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VAE_TILE_DEFAULT 64       /* latent pixels per tile edge (512 image pixels) */
#define VAE_TILE_HALO 4           /* latent pixels of context on each side of a tile */
#define VAE_TILE_MAX_PASSES 5
#define VAE_TILE_TOL 2e-3         /* statistics' change that ends the iteration, in stds */

typedef struct {
    int layers, batch, groups;   /* GroupNorms in the up path (norm_out included) */
    double *acc;                 /* this pass: [layers][batch][groups][2] sums of x and x^2 */
    double *count;               /* [layers]: values summed per (image, group) */
    double *mean, *var;          /* [layers][batch][groups]: statistics in use once have_stats */
    int have_stats;
    int layer;                   /* the current tile's next GroupNorm */
    int64_t tile_h;              /* latent rows of the current tile, halo included */
    int64_t cy0, cy1, cx0, cx1;  /* its cell, in latent pixels relative to the tile */
    float *buf;                  /* host staging */
    size_t buf_len;
    int oom;
} tile_state;

static int tile_state_init(tile_state *t, const sd_vae *v, int64_t batch)
{
    memset(t, 0, sizeof *t);
    t->layers = 1;
    for (int i = 0; i < v->hp.num_levels; i++) t->layers += 2 * v->dec[i].n_blocks;
    t->batch = (int)batch;
    t->groups = v->hp.norm_groups;
    size_t n = (size_t)t->layers * (size_t)batch * (size_t)t->groups;
    t->acc = calloc(2 * n, sizeof *t->acc);
    t->count = calloc((size_t)t->layers, sizeof *t->count);
    t->mean = calloc(n, sizeof *t->mean);
    t->var = calloc(n, sizeof *t->var);
    return t->acc && t->count && t->mean && t->var ? 0 : -1;
}

static void tile_state_free(tile_state *t)
{
    free(t->acc);
    free(t->count);
    free(t->mean);
    free(t->var);
    free(t->buf);
}

static float *staging(tile_state *t, size_t n)
{
    if (n > t->buf_len) {
        float *p = realloc(t->buf, n * sizeof *p);
        if (!p) {
            t->oom = 1;
            return NULL;
        }
        t->buf = p;
        t->buf_len = n;
    }
    return t->buf;
}

/* Adds the cell's part of GroupNorm input x (layer k) to the sums, one group
 * of channels at a time (sd_slice along C, then a download). */
static void accumulate(vae_ctx *c, tile_state *t, int k, const sd_tensor *x)
{
    int64_t B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], G = t->groups;
    if (C % G || H % t->tile_h) return;   /* the norm op reports the bad shape */
    int64_t cpg = C / G, s = H / t->tile_h;
    int64_t r0 = t->cy0 * s, r1 = t->cy1 * s, c0 = t->cx0 * s, c1 = t->cx1 * s;
    sd_tensor *chunk = sd_new4(c->be, B, cpg, H, W);
    float *host = staging(t, (size_t)(B * cpg * H * W));
    for (int64_t g = 0; g < G && chunk && host; g++) {
        sd_slice(c->be, chunk, x, 1, g * cpg);
        if (sd_tensor_download(c->be, chunk, host)) break;
        for (int64_t b = 0; b < B; b++) {
            double s1 = 0.0, s2 = 0.0;
            for (int64_t ch = 0; ch < cpg; ch++)
                for (int64_t r = r0; r < r1; r++) {
                    const float *row = host + ((b * cpg + ch) * H + r) * W;
                    for (int64_t col = c0; col < c1; col++) {
                        s1 += row[col];
                        s2 += (double)row[col] * row[col];
                    }
                }
            double *a = t->acc + (((size_t)k * (size_t)B + (size_t)b) * (size_t)G + (size_t)g) * 2;
            a[0] += s1;
            a[1] += s2;
        }
    }
    t->count[k] += (double)(cpg * (r1 - r0) * (c1 - c0));
    sd_tensor_free(c->be, chunk);
}

/* y = act(x * a + b) with a = gamma / sqrt(var + eps), b = beta - mean * a per
 * (image, channel): GroupNorm with the stored statistics of layer k. */
static void apply_stats(vae_ctx *c, tile_state *t, int k, sd_tensor *y, const sd_tensor *x, const vae_affine *n,
                        sd_act act)
{
    int64_t B = x->shape[0], C = x->shape[1], G = t->groups, cpg = C / G;
    float *host = staging(t, (size_t)(2 * C + 2 * B * C));
    if (!host) return;
    float *gamma = host, *beta = host + C, *scale = host + 2 * C, *shift = scale + B * C;
    sd_widen(n->w.dtype, n->w.data, 0, (size_t)C, gamma);
    sd_widen(n->b.dtype, n->b.data, 0, (size_t)C, beta);
    for (int64_t b = 0; b < B; b++)
        for (int64_t ch = 0; ch < C; ch++) {
            size_t i = ((size_t)k * (size_t)B + (size_t)b) * (size_t)G + (size_t)(ch / cpg);
            double a = gamma[ch] / sqrt(t->var[i] + VAE_GN_EPS);
            scale[b * C + ch] = (float)a;
            shift[b * C + ch] = (float)(beta[ch] - t->mean[i] * a);
        }
    sd_tensor *sa = sd_new4(c->be, B, C, 1, 1), *sb = sd_new4(c->be, B, C, 1, 1);
    sd_tensor_upload(c->be, sa, scale);
    sd_tensor_upload(c->be, sb, shift);
    sd_mul(c->be, y, x, sa);
    sd_add(c->be, y, y, sb);
    if (act != SD_ACT_NONE) sd_act_apply(c->be, y, y, act);
    sd_tensor_free(c->be, sa);
    sd_tensor_free(c->be, sb);
}

/* The tiled pass's GroupNorm hook: record the cell's statistics, normalise
 * with the image-wide ones once a pass has produced them. */
static void tiled_norm(vae_ctx *c, sd_tensor *y, const sd_tensor *x, const vae_affine *n, sd_act act)
{
    tile_state *t = c->state;
    int k = t->layer++;
    int usable = x && y && !sd_backend_error(c->be) && x->ndim == 4 && x->shape[0] == t->batch &&
                 sd_weight_numel(&n->w) == x->shape[1] && sd_weight_numel(&n->b) == x->shape[1];
    if (!usable || k >= t->layers) {   /* k < layers by construction; a bad x fails in the plain op */
        vae_norm_plain(c, y, x, n, act);
        return;
    }
    accumulate(c, t, k, x);
    if (t->have_stats) apply_stats(c, t, k, y, x, n, act);
    else vae_norm_plain(c, y, x, n, act);
}

/* Turns this pass's sums into statistics; returns the largest change from the
 * previous ones in stds (INFINITY after the first pass). */
static double finish_pass(tile_state *t)
{
    double delta = t->have_stats ? 0.0 : INFINITY;
    size_t per = (size_t)t->batch * (size_t)t->groups;
    for (int k = 0; k < t->layers; k++)
        for (size_t i = (size_t)k * per; i < (size_t)(k + 1) * per; i++) {
            double n = t->count[k] > 0 ? t->count[k] : 1.0;
            double m = t->acc[2 * i] / n, var = fmax(t->acc[2 * i + 1] / n - m * m, 0.0);
            if (t->have_stats) {
                double sd_old = sqrt(t->var[i] + VAE_GN_EPS);
                delta = fmax(delta, fabs(m - t->mean[i]) / sd_old);
                delta = fmax(delta, fabs(sqrt(var + VAE_GN_EPS) / sd_old - 1.0));
            }
            t->mean[i] = m;
            t->var[i] = var;
        }
    t->have_stats = 1;
    memset(t->acc, 0, 2 * per * (size_t)t->layers * sizeof *t->acc);
    memset(t->count, 0, (size_t)t->layers * sizeof *t->count);
    return delta;
}

/* Copies the cell's pixels of a decoded tile into the host image out [B, OC, H, W]. */
static void paste(vae_ctx *c, tile_state *t, const sd_tensor *img, float *out, int64_t y0, int64_t x0,
                  const sd_tensor *image)
{
    int64_t B = img->shape[0], OC = img->shape[1], th = img->shape[2], tw = img->shape[3];
    int64_t H = image->shape[2], W = image->shape[3], s = c->v->scale;
    float *host = staging(t, (size_t)(B * OC * th * tw));
    if (!host || sd_tensor_download(c->be, img, host)) return;
    int64_t rows = (t->cy1 - t->cy0) * s, cols = (t->cx1 - t->cx0) * s;
    for (int64_t p = 0; p < B * OC; p++)
        for (int64_t r = 0; r < rows; r++)
            memcpy(out + (p * H + y0 * s + r) * W + x0 * s, host + (p * th + t->cy0 * s + r) * tw + t->cx0 * s,
                   (size_t)cols * sizeof(float));
}

/* Decodes the cell [y0, y0+T) x [x0, x0+T) of the latent-resolution
 * activations h0 with its halo; pastes it into out when out is not NULL. */
static void decode_tile(vae_ctx *c, tile_state *t, const sd_tensor *h0, int64_t y0, int64_t x0, int64_t T,
                        float *out, const sd_tensor *image)
{
    sd_backend *be = c->be;
    int64_t B = h0->shape[0], C = h0->shape[1], H = h0->shape[2], W = h0->shape[3], s = c->v->scale;
    int64_t y1 = y0 + T < H ? y0 + T : H, x1 = x0 + T < W ? x0 + T : W;
    int64_t ty0 = y0 > VAE_TILE_HALO ? y0 - VAE_TILE_HALO : 0, ty1 = y1 + VAE_TILE_HALO < H ? y1 + VAE_TILE_HALO : H;
    int64_t tx0 = x0 > VAE_TILE_HALO ? x0 - VAE_TILE_HALO : 0, tx1 = x1 + VAE_TILE_HALO < W ? x1 + VAE_TILE_HALO : W;
    t->tile_h = ty1 - ty0;
    t->cy0 = y0 - ty0, t->cy1 = y1 - ty0, t->cx0 = x0 - tx0, t->cx1 = x1 - tx0;
    t->layer = 0;
    sd_tensor *band = sd_new4(be, B, C, ty1 - ty0, W), *tile = sd_new4(be, B, C, ty1 - ty0, tx1 - tx0);
    sd_slice(be, band, h0, 2, ty0);
    sd_slice(be, tile, band, 3, tx0);
    sd_tensor_free(be, band);
    sd_tensor *img = sd_new4(be, B, c->v->hp.out_channels, (ty1 - ty0) * s, (tx1 - tx0) * s);
    vae_decode_high(c, tile, img);
    if (out && img && !sd_backend_error(be)) paste(c, t, img, out, y0, x0, image);
    sd_tensor_free(be, img);
}

int sd_vae_decode_tiled(sd_backend *be, const sd_vae *v, const sd_tensor *z, sd_tensor *image, int tile_latent,
                        char *err, size_t errlen)
{
    if (vae_check_decode_args("sd_vae_decode_tiled", be, v, z, image, err, errlen)) return -1;
    sd_backend_set_stage(be, SD_STAGE_VAE);
    if (tile_latent < 0) {
        sd_error(err, errlen, "sd_vae_decode_tiled: tile size %d latent pixels is negative (0 means %d)",
                  tile_latent, VAE_TILE_DEFAULT);
        return -1;
    }
    int64_t T = tile_latent ? tile_latent : VAE_TILE_DEFAULT, h = z->shape[2], w = z->shape[3];
    if (h <= T && w <= T) return sd_vae_decode(be, v, z, image, err, errlen);

    tile_state t;
    float *out = malloc((size_t)sd_numel(image) * sizeof *out);
    if (tile_state_init(&t, v, z->shape[0]) || !out) {
        tile_state_free(&t);
        free(out);
        sd_error(err, errlen, "sd_vae_decode_tiled: out of memory");
        return -1;
    }
    vae_ctx low = {.be = be, .v = v, .norm = vae_norm_plain};
    sd_tensor *h0 = vae_decode_low(&low, z);
    vae_ctx c = {.be = be, .v = v, .norm = tiled_norm, .state = &t};
    double prev = INFINITY;
    for (int pass = 0; pass < VAE_TILE_MAX_PASSES && h0; pass++) {
        for (int64_t y0 = 0; y0 < h; y0 += T)
            for (int64_t x0 = 0; x0 < w; x0 += T) decode_tile(&c, &t, h0, y0, x0, T, pass ? out : NULL, image);
        if (sd_backend_error(be) || t.oom) break;
        double delta = finish_pass(&t);
        if (delta < VAE_TILE_TOL || (pass > 1 && delta >= prev)) break;   /* converged, or no longer converging */
        prev = delta;
    }
    sd_tensor_free(be, h0);
    if (!t.oom) sd_tensor_upload(be, image, out);
    int oom = t.oom;
    tile_state_free(&t);
    free(out);
    if (vae_backend_status(be, "VAE tiled decode", err, errlen)) return -1;
    if (oom) {
        sd_error(err, errlen, "sd_vae_decode_tiled: out of memory");
        return -1;
    }
    return 0;
}
