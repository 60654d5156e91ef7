/* CPU 2-D convolution, torch F.conv2d after F.pad (groups 1, dilation 1).
 * Per image: y[Cout, Ho*Wo] = W[Cout, Cin*kh*kw] @ col[Cin*kh*kw, Ho*Wo] + b.
 * The im2col matrix is built one tile of output rows at a time, so its memory
 * is bounded by conv_tile_bytes (a full im2col of a 1024^2 VAE 3x3 conv would
 * be ~9 GB); each tile is one sgemm writing straight into y's rows (ldc =
 * Ho*Wo). 1x1 stride-1 unpadded convs skip im2col: col is x itself.
 * 3x3 stride-1 convs go to Winograd F(2x2, 3x3) (winograd.c) unless the
 * backend was made with direct_conv. */
#include "sd/cpu/cpu.h"

#include <cblas.h>
#include <string.h>

typedef struct {
    int64_t cin, h, w;        /* input image */
    int64_t cout, kh, kw;     /* kernel */
    int64_t ho, wo;           /* output image */
    sd_conv_geom g;
} conv_shape;

/* Output columns ox whose input column ox*stride - pad_left + kx lies in
 * [0, w): the half-open range [*lo, *hi). */
static void valid_cols(const conv_shape *s, int64_t kx, int64_t *lo, int64_t *hi)
{
    int64_t st = s->g.stride, off = kx - s->g.pad_left;   /* ix = ox*st + off */
    *lo = off >= 0 ? 0 : (-off + st - 1) / st;
    *hi = s->w - off <= 0 ? 0 : (s->w - off - 1) / st + 1;
    if (*hi > s->wo) *hi = s->wo;
    if (*lo > *hi) *lo = *hi;
}

/* col[(ci*kh + ky)*kw + kx][r*wo + ox] = x[ci][(r0 + r)*stride - pad_top + ky][ox*stride - pad_left + kx],
 * zero where that falls in the padding; rows r < nr of the tile. */
static void im2col_tile(sd_backend *be, const conv_shape *s, const float *x, int64_t r0, int64_t nr, float *col)
{
    int64_t krows = s->cin * s->kh * s->kw, ncols = nr * s->wo;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t kr = 0; kr < krows; kr++) {
        int64_t kx = kr % s->kw, ky = kr / s->kw % s->kh, ci = kr / (s->kw * s->kh);
        int64_t lo, hi, st = s->g.stride, off = kx - s->g.pad_left;
        valid_cols(s, kx, &lo, &hi);
        for (int64_t r = 0; r < nr; r++) {
            float *d = col + kr * ncols + r * s->wo;
            int64_t iy = (r0 + r) * st - s->g.pad_top + ky;
            if (iy < 0 || iy >= s->h || lo == hi) {
                memset(d, 0, (size_t)s->wo * sizeof(float));
                continue;
            }
            const float *src = x + (ci * s->h + iy) * s->w;
            memset(d, 0, (size_t)lo * sizeof(float));
            for (int64_t ox = lo; ox < hi; ox++) d[ox] = src[ox * st + off];
            memset(d + hi, 0, (size_t)(s->wo - hi) * sizeof(float));
        }
    }
}

/* y[co][0:n] = bias[co] for every output channel of one tile (row stride ldy). */
static void fill_bias(sd_backend *be, float *y, int64_t cout, int64_t n, int64_t ldy, const float *bias)
{
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t co = 0; co < cout; co++)
        for (int64_t j = 0; j < n; j++) y[co * ldy + j] = bias[co];
}

/* y[:, 0:n] (+)= W @ col for one tile; y rows are ldy apart. */
static void gemm_tile(const conv_shape *s, const float *wf, const float *col, int64_t n, float *y, int has_bias)
{
    int64_t k = s->cin * s->kh * s->kw;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)s->cout, (int)n, (int)k, 1.0f, wf, (int)k, col,
                (int)n, has_bias ? 1.0f : 0.0f, y, (int)(s->ho * s->wo));
}

static int is_pointwise(const conv_shape *s)
{
    const sd_conv_geom *g = &s->g;
    return s->kh == 1 && s->kw == 1 && g->stride == 1 && !g->pad_left && !g->pad_right && !g->pad_top &&
           !g->pad_bottom;
}

/* Output rows per im2col tile: as many as fit the tile budget, at least one. */
static int64_t tile_rows(sd_backend *be, const conv_shape *s)
{
    size_t row_bytes = (size_t)(s->cin * s->kh * s->kw * s->wo) * sizeof(float);
    int64_t rows = (int64_t)(cpu_of(be)->conv_tile_bytes / row_bytes);
    return rows < 1 ? 1 : rows > s->ho ? s->ho : rows;
}

int cpu_conv2d(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
               const sd_conv_geom *g)
{
    conv_shape s = {x->shape[1], x->shape[2], x->shape[3], w->shape[0], w->shape[2], w->shape[3],
                    y->shape[2], y->shape[3], *g};
    if (s.kh == 3 && s.kw == 3 && g->stride == 1 && !cpu_of(be)->direct_conv)
        return cpu_conv2d_winograd(be, y, x, w, b, g);
    int pointwise = is_pointwise(&s);
    int64_t k = s.cin * s.kh * s.kw, plane = s.ho * s.wo, rows = pointwise ? s.ho : tile_rows(be, &s);
    if (cpu_blas_dims(be, "sd_conv2d", 3, (const int64_t[]){s.cout, k, plane})) return -1;
    const float *wf = cpu_weight_f32(be, w, CPU_SCRATCH_WEIGHT);
    const float *bias = b ? cpu_weight_f32(be, b, CPU_SCRATCH_BIAS) : NULL;
    float *col = pointwise ? NULL : cpu_scratch(be, CPU_SCRATCH_COL, (size_t)(k * rows * s.wo));
    if (!wf || (b && !bias) || (!pointwise && !col)) return -1;
    for (int64_t n = 0; n < x->shape[0]; n++) {
        const float *xn = x->data + n * s.cin * s.h * s.w;
        float *yn = y->data + n * s.cout * plane;
        for (int64_t r0 = 0; r0 < s.ho; r0 += rows) {
            int64_t nr = s.ho - r0 < rows ? s.ho - r0 : rows;
            if (!pointwise) im2col_tile(be, &s, xn, r0, nr, col);
            if (bias) fill_bias(be, yn + r0 * s.wo, s.cout, nr * s.wo, plane, bias);
            gemm_tile(&s, wf, pointwise ? xn : col, nr * s.wo, yn + r0 * s.wo, bias != NULL);
        }
    }
    return 0;
}
