/* Conversions between storage dtypes on the device: fp32 host data into
 * fp16/bf16 tensors and back (upload, download), weights from their stored
 * dtype into the activation dtype of the stage that uses them, and an input
 * of another stage's dtype into an op's. Rounding is to nearest even, as
 * torch's .half() / .bfloat16(). */
#include "sd/cuda/cuda_common.cuh"

template <typename D, typename S>
__global__ void convert_kernel(D *__restrict__ dst, const S *__restrict__ src, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<D>(to_f32(src[i]));
}

template <typename D>
static cudaError_t convert_from(D *dst, const void *src, sd_dtype src_dtype, int64_t n, cudaStream_t stream)
{
    const unsigned threads = 256, blocks = sd_blocks_for(n, threads);
    switch (src_dtype) {
    case SD_F32: SD_LAUNCH(blocks, threads, 0, stream, convert_kernel<D, float>)(dst, (const float *)src, n); break;
    case SD_F16: SD_LAUNCH(blocks, threads, 0, stream, convert_kernel<D, __half>)(dst, (const __half *)src, n); break;
    case SD_BF16:
        SD_LAUNCH(blocks, threads, 0, stream, convert_kernel<D, __nv_bfloat16>)(dst, (const __nv_bfloat16 *)src, n);
        break;
    default: return cudaErrorInvalidValue; /* fp8 is widened on the host first */
    }
    return sd_launched();
}

extern "C" cudaError_t sd_cuda_convert(void *dst, sd_dtype dst_dtype, const void *src, sd_dtype src_dtype, int64_t n,
                                       cudaStream_t stream)
{
    if (n <= 0) return cudaSuccess;
    SD_CUDA_DISPATCH(dst_dtype, return convert_from((T *)dst, src, src_dtype, n, stream));
    return cudaSuccess;
}
