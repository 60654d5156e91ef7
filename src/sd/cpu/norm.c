/* CPU normalisations: group norm (with an optional fused activation), layer
 * norm and softmax, threaded over groups / rows. Statistics are two-pass in
 * double (mean, then the biased variance of x - mean); the affine part uses
 * torch's formulas: group norm (aten/src/ATen/native/cpu/group_norm_kernel.cpp)
 * y = x * s_c + (beta_c - mean * s_c) with s_c = rstd * gamma_c; layer norm
 * y = (x - mean) * rstd * gamma + beta; rstd = 1 / sqrt(var + eps). */
#include "sd/cpu/cpu.h"

typedef struct { float mean, rstd; } moments;

CPU_VECTOR_CLONES static moments moments_of(const float *x, int64_t n, float eps)
{
    double sum = 0.0, sq = 0.0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; i++) sum += x[i];
    double mean = sum / (double)n;
#pragma omp simd reduction(+ : sq)
    for (int64_t i = 0; i < n; i++) sq += (x[i] - mean) * (x[i] - mean);
    float var = (float)(sq / (double)n);
    return (moments){(float)mean, 1.0f / sqrtf(var + eps)};
}

/* y = x * s + shift over one channel's plane. */
CPU_VECTOR_CLONES static void scale_shift_row(float *y, const float *x, int64_t n, float s, float shift)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * s + shift;
}

/* gamma/beta widened to fp32, or NULL when absent (1 and 0). */
static int affine_f32(sd_backend *be, const sd_weight *gamma, const sd_weight *beta, const float **g, const float **b)
{
    *g = gamma ? cpu_weight_f32(be, gamma, CPU_SCRATCH_BIAS) : NULL;
    *b = beta ? cpu_weight_f32(be, beta, CPU_SCRATCH_BETA) : NULL;
    return (gamma && !*g) || (beta && !*b) ? -1 : 0;
}

int cpu_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps,
                   const sd_weight *gamma, const sd_weight *beta, sd_act act)
{
    const float *g, *b;
    if (affine_f32(be, gamma, beta, &g, &b)) return -1;
    int64_t batch = x->shape[0], c = x->shape[1], plane = sd_numel(x) / (batch * c), cg = c / groups;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(dynamic, 1)
    for (int64_t item = 0; item < batch * groups; item++) {
        int64_t c0 = item % groups * cg, off = (item / groups * c + c0) * plane;
        moments m = moments_of(x->data + off, cg * plane, eps);
        for (int64_t ch = c0; ch < c0 + cg; ch++) {
            float s = m.rstd * (g ? g[ch] : 1.0f), shift = (b ? b[ch] : 0.0f) - m.mean * s;
            const float *xr = x->data + off + (ch - c0) * plane;
            float *yr = y->data + off + (ch - c0) * plane;
            scale_shift_row(yr, xr, plane, s, shift);
            cpu_act_row(act, yr, yr, plane);
        }
    }
    return 0;
}

int cpu_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps, const sd_weight *gamma,
                   const sd_weight *beta)
{
    const float *g, *b;
    if (affine_f32(be, gamma, beta, &g, &b)) return -1;
    int64_t c = x->shape[x->ndim - 1], rows = sd_numel(x) / c;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * c;
        float *yr = y->data + r * c;
        moments m = moments_of(xr, c, eps);
        for (int64_t i = 0; i < c; i++) yr[i] = (xr[i] - m.mean) * m.rstd * (g ? g[i] : 1.0f) + (b ? b[i] : 0.0f);
    }
    return 0;
}

int cpu_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    int64_t c = x->shape[x->ndim - 1], rows = sd_numel(x) / c;
#pragma omp parallel for num_threads(cpu_of(be)->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x->data + r * c;
        float *yr = y->data + r * c, mx = xr[0];
        double sum = 0.0;
#pragma omp simd reduction(max : mx)
        for (int64_t i = 1; i < c; i++) mx = xr[i] > mx ? xr[i] : mx;
#pragma omp simd
        for (int64_t i = 0; i < c; i++) yr[i] = cpu_exp(xr[i] - mx);
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < c; i++) sum += yr[i];
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < c; i++) yr[i] *= inv;
    }
    return 0;
}
