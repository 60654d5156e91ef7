/* Elementwise kernels: the activations (SiLU, exact GELU, quick_gelu),
 * diffusers' GEGLU, broadcast add/mul, scale, fill and the per-channel bias
 * that follows a GEMM or a convolution. Grid-stride loops; fp32 arithmetic
 * with the formulas torch uses (cpu/cpu.h names them). */
#include "sd/cuda/cuda_common.cuh"

#define THREADS 256

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* torch: silu x/(1+exp(-x)); gelu 0.5x(1+erf(x/sqrt 2)); quick_gelu x*sigmoid(1.702x). */
__device__ __forceinline__ float activate(float x, sd_act act)
{
    switch (act) {
    case SD_ACT_SILU: return x / (1.0f + expf(-x));
    case SD_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case SD_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    default: return x;
    }
}

template <typename T>
__global__ void act_kernel(T *y, const T *x, int64_t n, sd_act act)
{
    GRID_STRIDE(i, n) y[i] = from_f32<T>(activate(to_f32(x[i]), act));
}

extern "C" cudaError_t sd_cuda_act(sd_dtype dtype, void *y, const void *x, int64_t n, sd_act act, cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, act_kernel<T>)(
                                (T *)y, (const T *)x, n, act));
    return sd_launched();
}

/* diffusers GEGLU (models/activations.py): hidden, gate = proj.chunk(2, -1); hidden * gelu(gate). */
template <typename T>
__global__ void geglu_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t rows, int64_t f)
{
    GRID_STRIDE(i, rows * f)
    {
        int64_t r = i / f, c = i % f;
        const T *row = x + r * 2 * f;
        y[i] = from_f32<T>(to_f32(row[c]) * activate(to_f32(row[f + c]), SD_ACT_GELU));
    }
}

extern "C" cudaError_t sd_cuda_geglu(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t f,
                                     cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(rows * f, THREADS), THREADS, 0, stream, geglu_kernel<T>)(
                                (T *)y, (const T *)x, rows, f));
    return sd_launched();
}

typedef struct {
    int64_t dim[4], b_stride[4];
} broadcast_shape;

template <typename T>
__global__ void binary_kernel(T *y, const T *a, const T *b, broadcast_shape s, int multiply)
{
    int64_t n = s.dim[0] * s.dim[1] * s.dim[2] * s.dim[3];
    GRID_STRIDE(i, n)
    {
        int64_t i3 = i % s.dim[3], i2 = i / s.dim[3] % s.dim[2], i1 = i / (s.dim[3] * s.dim[2]) % s.dim[1],
                i0 = i / (s.dim[3] * s.dim[2] * s.dim[1]);
        float bv = to_f32(b[i0 * s.b_stride[0] + i1 * s.b_stride[1] + i2 * s.b_stride[2] + i3 * s.b_stride[3]]);
        float av = to_f32(a[i]);
        y[i] = from_f32<T>(multiply ? av * bv : av + bv);
    }
}

extern "C" cudaError_t sd_cuda_binary(sd_dtype dtype, void *y, const void *a, const void *b, const int64_t dim[4],
                                      const int64_t b_stride[4], int multiply, cudaStream_t stream)
{
    broadcast_shape s;
    for (int d = 0; d < 4; d++) s.dim[d] = dim[d], s.b_stride[d] = b_stride[d];
    int64_t n = dim[0] * dim[1] * dim[2] * dim[3];
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, binary_kernel<T>)(
                                (T *)y, (const T *)a, (const T *)b, s, multiply));
    return sd_launched();
}

template <typename T>
__global__ void scale_kernel(T *y, const T *x, int64_t n, float alpha)
{
    GRID_STRIDE(i, n) y[i] = from_f32<T>(alpha * to_f32(x[i]));
}

extern "C" cudaError_t sd_cuda_scale(sd_dtype dtype, void *y, const void *x, int64_t n, float alpha,
                                     cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, scale_kernel<T>)(
                                (T *)y, (const T *)x, n, alpha));
    return sd_launched();
}

template <typename T>
__global__ void fill_kernel(T *y, int64_t n, float value)
{
    GRID_STRIDE(i, n) y[i] = from_f32<T>(value);
}

extern "C" cudaError_t sd_cuda_fill(sd_dtype dtype, void *y, int64_t n, float value, cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype,
                     SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, fill_kernel<T>)((T *)y, n, value));
    return sd_launched();
}

template <typename T>
__global__ void bias_kernel(T *y, const T *bias, int64_t outer, int64_t channels, int64_t inner)
{
    GRID_STRIDE(i, outer * channels * inner)
    {
        int64_t c = i / inner % channels;
        y[i] = from_f32<T>(to_f32(y[i]) + to_f32(bias[c]));
    }
}

extern "C" cudaError_t sd_cuda_bias(sd_dtype dtype, void *y, const void *bias, int64_t outer, int64_t channels,
                                    int64_t inner, cudaStream_t stream)
{
    int64_t n = outer * channels * inner;
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(n, THREADS), THREADS, 0, stream, bias_kernel<T>)(
                                (T *)y, (const T *)bias, outer, channels, inner));
    return sd_launched();
}
