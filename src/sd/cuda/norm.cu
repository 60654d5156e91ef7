/* Normalisations with fp32 statistics: group norm (+ a fused activation),
 * layer norm and softmax. Statistics are two-pass (the mean, then the
 * biased variance of x - mean), as the CPU backend computes them; the affine
 * parts use torch's formulas: group norm (aten/src/ATen/native/cpu/
 * group_norm_kernel.cpp) y = x s_c + (beta_c - mean s_c) with
 * s_c = rstd gamma_c; layer norm y = (x - mean) rstd gamma + beta;
 * rstd = 1 / sqrt(var + eps). */
#include "sd/cuda/reduce.cuh"

#define THREADS 256
#define STATS_THREADS 512

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* Mean and rstd of n contiguous elements, on every thread of the block. */
template <typename T>
__device__ void moments(const T *x, int64_t n, float eps, float *scratch, float *mean, float *rstd)
{
    float s = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += to_f32(x[i]);
    float m = block_sum(s, scratch) / (float)n;
    float q = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float d = to_f32(x[i]) - m;
        q += d * d;
    }
    float var = block_sum(q, scratch) / (float)n;
    *mean = m;
    *rstd = rsqrtf(var + eps);
}

/* One block per (batch, group): the group is a contiguous run of
 * channels/groups planes. stats[2 item] = mean, stats[2 item + 1] = rstd. */
template <typename T>
__global__ void group_stats_kernel(const T *x, int64_t group_len, float eps, float *stats)
{
    __shared__ float scratch[32];
    float mean, rstd;
    moments(x + blockIdx.x * group_len, group_len, eps, scratch, &mean, &rstd);
    if (threadIdx.x == 0) stats[2 * blockIdx.x] = mean, stats[2 * blockIdx.x + 1] = rstd;
}

/* torch's (x - mean) * rstd written as x * s + shift, then the activation. */
template <typename T>
__global__ void group_apply_kernel(T *y, const T *x, const float *stats, int64_t n, int64_t channels, int64_t plane,
                                   int64_t channels_per_group, const T *gamma, const T *beta, sd_act act)
{
    GRID_STRIDE(i, n)
    {
        int64_t c = i / plane % channels, item = i / (plane * channels_per_group);
        float rstd = stats[2 * item + 1], s = rstd * (gamma ? to_f32(gamma[c]) : 1.0f);
        float shift = (beta ? to_f32(beta[c]) : 0.0f) - stats[2 * item] * s;
        float v = to_f32(x[i]) * s + shift;
        switch (act) {
        case SD_ACT_SILU: v = v / (1.0f + expf(-v)); break;
        case SD_ACT_GELU: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case SD_ACT_QUICK_GELU: v = v / (1.0f + expf(-1.702f * v)); break;
        default: break;
        }
        y[i] = from_f32<T>(v);
    }
}

extern "C" cudaError_t sd_cuda_group_norm(sd_dtype dtype, void *y, const void *x, int64_t batch, int64_t channels,
                                          int64_t plane, int groups, float eps, const void *gamma, const void *beta,
                                          sd_act act, float *stats, cudaStream_t stream)
{
    int64_t cg = channels / groups, n = batch * channels * plane, items = batch * groups;
    if (items > 0x7fffffff) return cudaErrorInvalidValue;
    /* about 16 elements per thread, whole warps, at most STATS_THREADS */
    int64_t want = (cg * plane / 16 + 31) / 32 * 32;
    unsigned stats_threads = (unsigned)(want < 32 ? 32 : want > STATS_THREADS ? STATS_THREADS : want);
    SD_CUDA_DISPATCH(dtype,
        SD_LAUNCH((unsigned)items, stats_threads, 0, stream, group_stats_kernel<T>)((const T *)x, cg * plane, eps,
                                                                                     stats);
        SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, group_apply_kernel<T>)(
            (T *)y, (const T *)x, stats, n, channels, plane, cg, (const T *)gamma, (const T *)beta, act));
    return sd_launched();
}

/* Rows of layer norm and softmax (at most a few thousand wide: CLIP's 1280,
 * the UNet's 640/1280 channels, the attention-free softmax callers) go one
 * warp per row, ROWS_PER_BLOCK rows per block: no block barrier, the
 * reductions are shuffles. */
#define ROWS_PER_BLOCK 8

/* Two-pass mean and rstd of a row, on every lane of the warp. */
template <typename T>
__device__ void row_moments(const T *x, int64_t n, float eps, float *mean, float *rstd)
{
    int lane = threadIdx.x % 32;
    float s = 0.0f;
    for (int64_t i = lane; i < n; i += 32) s += to_f32(x[i]);
    float m = warp_sum(s) / (float)n, q = 0.0f;
    for (int64_t i = lane; i < n; i += 32) {
        float d = to_f32(x[i]) - m;
        q += d * d;
    }
    *mean = m;
    *rstd = rsqrtf(warp_sum(q) / (float)n + eps);
}

template <typename T>
__global__ void layer_norm_kernel(T *y, const T *x, int64_t rows, int64_t cols, float eps, const T *gamma,
                                  const T *beta)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    if (r >= rows) return; /* whole warps leave together */
    const T *xr = x + r * cols;
    T *yr = y + r * cols;
    float mean, rstd;
    row_moments(xr, cols, eps, &mean, &rstd);
    for (int64_t i = threadIdx.x % 32; i < cols; i += 32) {
        float v = (to_f32(xr[i]) - mean) * rstd * (gamma ? to_f32(gamma[i]) : 1.0f) + (beta ? to_f32(beta[i]) : 0.0f);
        yr[i] = from_f32<T>(v);
    }
}

static unsigned row_blocks(int64_t rows) { return (unsigned)((rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK); }

extern "C" cudaError_t sd_cuda_layer_norm(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t cols,
                                          float eps, const void *gamma, const void *beta, cudaStream_t stream)
{
    if (rows > 0x7fffffffLL * ROWS_PER_BLOCK) return cudaErrorInvalidValue;
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(row_blocks(rows), 32 * ROWS_PER_BLOCK, 0, stream, layer_norm_kernel<T>)(
                                (T *)y, (const T *)x, rows, cols, eps, (const T *)gamma, (const T *)beta));
    return sd_launched();
}

/* Max, the sum of exp(x - max), then the quotients. */
template <typename T>
__global__ void softmax_kernel(T *y, const T *x, int64_t rows, int64_t cols)
{
    int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32;
    if (r >= rows) return;
    int lane = threadIdx.x % 32;
    const T *xr = x + r * cols;
    T *yr = y + r * cols;
    float mx = -INFINITY;
    for (int64_t i = lane; i < cols; i += 32) mx = fmaxf(mx, to_f32(xr[i]));
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t i = lane; i < cols; i += 32) s += expf(to_f32(xr[i]) - mx);
    float inv = 1.0f / warp_sum(s);
    for (int64_t i = lane; i < cols; i += 32) yr[i] = from_f32<T>(expf(to_f32(xr[i]) - mx) * inv);
}

extern "C" cudaError_t sd_cuda_softmax(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t cols,
                                       cudaStream_t stream)
{
    if (rows > 0x7fffffffLL * ROWS_PER_BLOCK) return cudaErrorInvalidValue;
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(row_blocks(rows), 32 * ROWS_PER_BLOCK, 0, stream, softmax_kernel<T>)(
                                (T *)y, (const T *)x, rows, cols));
    return sd_launched();
}
