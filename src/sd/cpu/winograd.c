/* CPU 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR
 * 2016, section 4.1). Every 2x2 output tile Y of output channel co is
 *   Y = A^T [ sum_ci (G g G^T) . (B^T d B) ] A
 * with g the co/ci kernel, d the 4x4 input tile under Y and "." the
 * elementwise product. The sum over input channels is 16 sgemms, one per
 * position k of the 4x4 transformed tile:
 *   M[k] (Cout x T) = U[k] (Cout x Cin) @ V[k] (Cin x T),
 *   U = G g G^T (the kernels, transformed once per call),
 *   V = B^T d B (T input tiles, taken from every image of the batch).
 * That is 16 multiplies per tile and channel pair instead of im2col's 36
 * (2.25x fewer); the transforms are additions. Tiles are processed in bands
 * whose V and M fit conv_tile_bytes; padding is read as zeros, and tiles that
 * overhang an odd output edge drop the outputs that fall outside. With
 * SDXL_CPU_PRECISION=bf16 the 16 GEMMs take U and V rounded to bf16 (bf16.c).
 *
 * The matrices (correlation, as torch's conv2d):
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
 *   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1] */
#include "sd/cpu/cpu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define WINO_K 16   /* positions of the 4x4 transformed tile */

typedef struct {
    int64_t batch, cin, h, w, cout, ho, wo;
    int64_t pad_top, pad_left;
    int64_t tiles_y, tiles_x, tiles;   /* 2x2 output tiles per image, and in the whole batch */
} wino_shape;

/* U[k][co][ci] = (G g G^T)[k] for every kernel. One output channel at a
 * time: its Cin x 9 weights are widened and transposed to 9 rows of Cin, so
 * that every step below is a vector loop over ci. */
static void transform_kernel_row(const wino_shape *s, const sd_weight *w, int64_t co, float *g9, float *rows,
                                 float *u)
{
    int64_t cin = s->cin, plane = s->cout * cin;
    sd_widen(w->dtype, w->data, (size_t)(co * cin * 9), (size_t)cin * 9, g9);
    for (int64_t ci = 0; ci < cin; ci++)
        for (int j = 0; j < 9; j++) rows[j * cin + ci] = g9[ci * 9 + j];
    float *t[3] = {g9, g9 + cin, g9 + 2 * cin};   /* one row of G g at a time (g9 is free now) */
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 3; j++) {   /* row i of G g, column j */
            const float *r0 = rows + j * cin, *r1 = rows + (3 + j) * cin, *r2 = rows + (6 + j) * cin;
#pragma omp simd
            for (int64_t ci = 0; ci < cin; ci++)
                t[j][ci] = i == 0 ? r0[ci] : i == 1 ? 0.5f * (r0[ci] + r1[ci] + r2[ci])
                      : i == 2 ? 0.5f * (r0[ci] - r1[ci] + r2[ci]) : r2[ci];
        }
        float *u0 = u + 4 * i * plane + co * cin, *u1 = u0 + plane, *u2 = u1 + plane, *u3 = u2 + plane;
#pragma omp simd
        for (int64_t ci = 0; ci < cin; ci++) {   /* (G g) G^T */
            u0[ci] = t[0][ci];
            u1[ci] = 0.5f * (t[0][ci] + t[1][ci] + t[2][ci]);
            u2[ci] = 0.5f * (t[0][ci] - t[1][ci] + t[2][ci]);
            u3[ci] = t[2][ci];
        }
    }
}

static int transform_kernels(sd_backend *be, const wino_shape *s, const sd_weight *w, float *u)
{
    int failed = 0;
#pragma omp parallel num_threads(cpu_of(be)->threads) reduction(| : failed)
    {
        float *buf = malloc((size_t)s->cin * 18 * sizeof *buf);
        failed = !buf;
#pragma omp for schedule(static)
        for (int64_t co = 0; co < s->cout; co++)
            if (buf) transform_kernel_row(s, w, co, buf, buf + s->cin * 9, u);
        free(buf);
    }
    return failed ? sd_backend_fail(be, "sd_conv2d: out of memory for a kernel row") : 0;
}

/* The four input rows under tile row `ty` of image n, channel ci, as rows of
 * 2 * tiles_x + 2 values with the padding (and anything past the image) zero. */
static void load_tile_rows(const wino_shape *s, const float *x, int64_t n, int64_t ci, int64_t ty, float *rows)
{
    int64_t width = 2 * s->tiles_x + 2, x0 = -s->pad_left;
    const float *plane = x + (n * s->cin + ci) * s->h * s->w;
    int64_t lo = x0 < 0 ? -x0 : 0, hi = s->w - x0 < width ? s->w - x0 : width;   /* columns inside the image */
    for (int i = 0; i < 4; i++) {
        float *row = rows + i * width;
        int64_t iy = 2 * ty - s->pad_top + i;
        memset(row, 0, (size_t)width * sizeof *row);
        if (iy >= 0 && iy < s->h && hi > lo) memcpy(row + lo, plane + iy * s->w + x0 + lo, (size_t)(hi - lo) * sizeof *row);
    }
}

/* V[k][t] = (B^T d B)[k] for `count` consecutive tiles of one tile row and
 * channel, from its four input rows (the first tile at column 2 * tx0);
 * dst is V[0][0] of the run, positions kstride apart. A vector loop over
 * the tiles (each reads columns 2t .. 2t+3). */
CPU_VECTOR_CLONES static void transform_input_run(const float *rows, int64_t width, int64_t tx0, int64_t count,
                                                  float *dst, int64_t kstride)
{
    const float *r0 = rows + 2 * tx0, *r1 = r0 + width, *r2 = r1 + width, *r3 = r2 + width;
#pragma omp simd
    for (int64_t t = 0; t < count; t++) {
        float b[4][4];
        for (int j = 0; j < 4; j++) {   /* B^T d */
            float d0 = r0[2 * t + j], d1 = r1[2 * t + j], d2 = r2[2 * t + j], d3 = r3[2 * t + j];
            b[0][j] = d0 - d2;
            b[1][j] = d1 + d2;
            b[2][j] = d2 - d1;
            b[3][j] = d1 - d3;
        }
        for (int i = 0; i < 4; i++) {   /* (B^T d) B */
            dst[(4 * i + 0) * kstride + t] = b[i][0] - b[i][2];
            dst[(4 * i + 1) * kstride + t] = b[i][1] + b[i][2];
            dst[(4 * i + 2) * kstride + t] = b[i][2] - b[i][1];
            dst[(4 * i + 3) * kstride + t] = b[i][1] - b[i][3];
        }
    }
}

/* Band tiles t .. t+count-1 (count as many as stay on one tile row and in
 * the band): their image n, tile row ty and first tile column tx0. */
typedef struct { int64_t n, ty, tx0, count; } row_run;

static row_run row_run_at(const wino_shape *s, int64_t t0, int64_t nt, int64_t t)
{
    int64_t tile = t0 + t, per_image = s->tiles_y * s->tiles_x, tx0 = tile % s->tiles_x;
    int64_t count = s->tiles_x - tx0 < nt - t ? s->tiles_x - tx0 : nt - t;
    return (row_run){tile / per_image, tile % per_image / s->tiles_x, tx0, count};
}

/* V[k][ci][t] = (B^T d B)[k] for the band's tiles t0 .. t0+nt-1. */
static void transform_inputs(sd_backend *be, const wino_shape *s, const float *x, int64_t t0, int64_t nt, float *v)
{
    int64_t kstride = s->cin * nt, width = 2 * s->tiles_x + 2;
#pragma omp parallel num_threads(cpu_of(be)->threads)
    {
        float rows[4 * width];
#pragma omp for schedule(static)
        for (int64_t ci = 0; ci < s->cin; ci++)
            for (int64_t t = 0, count; t < nt; t += count) {
                row_run r = row_run_at(s, t0, nt, t);
                count = r.count;
                load_tile_rows(s, x, r.n, ci, r.ty, rows);
                transform_input_run(rows, width, r.tx0, count, v + ci * nt + t, kstride);
            }
    }
}

/* (A^T M)[i][j] of band tile t: rows i of A^T times M's column j. */
static inline void output_rows(const float *src, int64_t kstride, int64_t t, float a[2][4])
{
    for (int j = 0; j < 4; j++) {
        float m0 = src[j * kstride + t], m1 = src[(4 + j) * kstride + t], m2 = src[(8 + j) * kstride + t],
              m3 = src[(12 + j) * kstride + t];
        a[0][j] = m0 + m1 + m2;
        a[1][j] = m1 - m2 - m3;
    }
}

/* y's 2x2 tiles = A^T M A + b0 for `count` consecutive tiles of one tile row
 * of one output channel: `rows` (1 or 2) output rows from y, the first
 * `full` tiles with both columns inside the image, the rest (an odd width's
 * last tile) with the first only. */
CPU_VECTOR_CLONES static void transform_output_run(const float *src, int64_t kstride, int64_t count, int64_t full,
                                                   float *y, int64_t wo, int rows, float b0)
{
#pragma omp simd
    for (int64_t t = 0; t < full; t++) {
        float a[2][4];
        output_rows(src, kstride, t, a);
        for (int i = 0; i < rows; i++) {   /* (A^T M) A */
            y[i * wo + 2 * t] = a[i][0] + a[i][1] + a[i][2] + b0;
            y[i * wo + 2 * t + 1] = a[i][1] - a[i][2] - a[i][3] + b0;
        }
    }
    for (int64_t t = full; t < count; t++) {
        float a[2][4];
        output_rows(src, kstride, t, a);
        for (int i = 0; i < rows; i++) y[i * wo + 2 * t] = a[i][0] + a[i][1] + a[i][2] + b0;
    }
}

/* y's 2x2 tile = A^T M A + bias for every output channel and band tile. */
static void transform_outputs(sd_backend *be, const wino_shape *s, const float *m, const float *bias, int64_t t0,
                              int64_t nt, float *y)
{
    int64_t kstride = s->cout * nt;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t co = 0; co < s->cout; co++)
        for (int64_t t = 0, count; t < nt; t += count) {
            row_run r = row_run_at(s, t0, nt, t);
            count = r.count;
            int64_t oy = 2 * r.ty, full = (s->wo - 2 * r.tx0) / 2 < count ? (s->wo - 2 * r.tx0) / 2 : count;
            float *plane = y + (r.n * s->cout + co) * s->ho * s->wo;
            transform_output_run(m + co * nt + t, kstride, count, full, plane + oy * s->wo + 2 * r.tx0, s->wo,
                                 oy + 1 < s->ho ? 2 : 1, bias ? bias[co] : 0.0f);
        }
}

int cpu_conv2d_winograd(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                        const sd_conv_geom *g)
{
    wino_shape s = {.batch = x->shape[0], .cin = x->shape[1], .h = x->shape[2], .w = x->shape[3],
                    .cout = w->shape[0], .ho = y->shape[2], .wo = y->shape[3], .pad_top = g->pad_top,
                    .pad_left = g->pad_left, .tiles_y = (y->shape[2] + 1) / 2, .tiles_x = (y->shape[3] + 1) / 2};
    s.tiles = s.batch * s.tiles_y * s.tiles_x;
    size_t tile_bytes = (size_t)(WINO_K * (s.cin + s.cout)) * sizeof(float);
    int64_t band = (int64_t)(cpu_of(be)->conv_tile_bytes / tile_bytes);
    band = band < 1 ? 1 : band > s.tiles ? s.tiles : band;
    if (cpu_blas_dims(be, "sd_conv2d", 3, (const int64_t[]){s.cout, s.cin, band})) return -1;
    float *u = cpu_scratch(be, CPU_SCRATCH_WEIGHT, (size_t)(WINO_K * s.cout * s.cin));
    float *v = cpu_scratch(be, CPU_SCRATCH_COL, (size_t)(WINO_K * (s.cin + s.cout) * band));
    const float *bias = b ? cpu_weight_f32(be, b, CPU_SCRATCH_BIAS) : NULL;
    if (!u || !v || (b && !bias) || transform_kernels(be, &s, w, u)) return -1;
    float *m = v + WINO_K * s.cin * band;
    uint16_t *u16 = NULL, *v16 = NULL;   /* bf16 GEMMs: U and the band's V rounded (bf16.c) */
    if (cpu_of(be)->bf16) {
        size_t nu = (size_t)(WINO_K * s.cout * s.cin), nv = (size_t)(WINO_K * s.cin * band);
        if (!(u16 = (uint16_t *)cpu_scratch(be, CPU_SCRATCH_BF16, (nu + nv + 1) / 2))) return -1;
        v16 = u16 + nu;
        cpu_round_bf16(be, u, nu, u16);
    }
    for (int64_t t0 = 0; t0 < s.tiles; t0 += band) {
        int64_t nt = s.tiles - t0 < band ? s.tiles - t0 : band;
        transform_inputs(be, &s, x->data, t0, nt, v);
        if (v16) cpu_round_bf16(be, v, (size_t)(WINO_K * s.cin * nt), v16);
        for (int k = 0; k < WINO_K; k++)
            if (v16)
                cpu_gemm_bf16(be, 0, s.cout, nt, s.cin, u16 + k * s.cout * s.cin, s.cin, v16 + k * s.cin * nt, nt,
                              0.0f, m + k * s.cout * nt, nt);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s.cout, (int)nt, (int)s.cin, 1.0f,
                            u + k * s.cout * s.cin, (int)s.cin, v + k * s.cin * nt, (int)nt, 0.0f,
                            m + k * s.cout * nt, (int)nt);
        transform_outputs(be, &s, m, bias, t0, nt, y->data);
    }
    return sd_backend_error(be) ? -1 : 0;
}
