/* CPU data-movement ops: nearest upsampling, the block copy behind concat and
 * slice, the [B,C,HW] <-> [B,HW,C] transposes, and embedding-row lookup. */
#include "sd/cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

/* torch's nearest_idx (aten/src/ATen/native/UpSample.h) for F.interpolate
 * without explicit scales: identity, exact 2x (dst >> 1), otherwise
 * min(floor(dst * (float)in / out), in - 1). */
static int64_t nearest_src(int64_t dst, int64_t in, int64_t out)
{
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    int64_t s = (int64_t)floorf((float)dst * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

int cpu_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    int64_t h = x->shape[2], w = x->shape[3], ho = y->shape[2], wo = y->shape[3];
    int64_t planes = x->shape[0] * x->shape[1];
    int64_t *src_col = malloc((size_t)wo * sizeof *src_col);
    if (!src_col) return sd_backend_fail(be, "sd_upsample_nearest: out of memory");
    for (int64_t ox = 0; ox < wo; ox++) src_col[ox] = nearest_src(ox, w, wo);
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t row = 0; row < planes * ho; row++) {
        int64_t p = row / ho, oy = row % ho;
        const float *xr = x->data + (p * h + nearest_src(oy, h, ho)) * w;
        float *yr = y->data + row * wo;
        for (int64_t ox = 0; ox < wo; ox++) yr[ox] = xr[src_col[ox]];
    }
    free(src_col);
    return 0;
}

int cpu_copy_block(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t outer, int64_t y_inner,
                   int64_t x_inner, int64_t offset, int gather)
{
    int64_t run = gather ? y_inner : x_inner;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        float *dst = y->data + o * y_inner + (gather ? 0 : offset);
        const float *src = x->data + o * x_inner + (gather ? offset : 0);
        memcpy(dst, src, (size_t)run * sizeof(float));
    }
    return 0;
}

/* Square tiles keep both the reads and the writes of a transpose in cache. */
#define TILE 32

int cpu_transpose(sd_backend *be, sd_tensor *y, const sd_tensor *x, int64_t batch, int64_t rows, int64_t cols)
{
    int64_t rt = (rows + TILE - 1) / TILE, ct = (cols + TILE - 1) / TILE;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t item = 0; item < batch * rt * ct; item++) {
        int64_t b = item / (rt * ct), r0 = item / ct % rt * TILE, c0 = item % ct * TILE;
        int64_t r1 = r0 + TILE < rows ? r0 + TILE : rows, c1 = c0 + TILE < cols ? c0 + TILE : cols;
        const float *xb = x->data + b * rows * cols;
        float *yb = y->data + b * rows * cols;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t r = r0; r < r1; r++) yb[c * rows + r] = xb[r * cols + c];
    }
    return 0;
}

int cpu_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n)
{
    int64_t c = table->shape[1];
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t i = 0; i < n; i++) sd_widen(table->dtype, table->data, (size_t)(ids[i] * c), (size_t)c, y->data + i * c);
    return 0;
}
