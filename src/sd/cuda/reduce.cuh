/* Warp and block reductions in fp32 for the norm and softmax kernels. Every
 * thread of the block must call a block reduction (they synchronise), and
 * every lane of the warp a warp reduction. */
#ifndef SDXL_SD_CUDA_REDUCE_CUH
#define SDXL_SD_CUDA_REDUCE_CUH

#include "sd/cuda/cuda_common.cuh"

#define SD_FULL_WARP 0xffffffffu

__device__ __forceinline__ float warp_sum(float v)
{
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(SD_FULL_WARP, v, off);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(SD_FULL_WARP, v, off));
    return v;
}

/* The sum (or max) of v over the block, returned to every thread. `scratch`
 * holds one float per warp (at most 32) and is reused across calls: the
 * leading barrier keeps a second call from overwriting what the first one's
 * threads are still reading. */
__device__ __forceinline__ float block_reduce(float v, float *scratch, bool is_max)
{
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = lane < warps ? scratch[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? warp_max(r) : warp_sum(r);
}

__device__ __forceinline__ float block_sum(float v, float *scratch) { return block_reduce(v, scratch, false); }
__device__ __forceinline__ float block_max(float v, float *scratch) { return block_reduce(v, scratch, true); }

#endif
