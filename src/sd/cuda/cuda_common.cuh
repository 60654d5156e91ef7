/* What every CUDA kernel file of the backend includes first: the CUDA
 * headers (or, for the host-side kernel emulator that runs these same files
 * in CI, tests/cuda_emu/cuda_emu.h), the launch macro, dynamic shared memory,
 * and the storage types an activation or weight can have on the device with
 * their fp32 conversions. Arithmetic inside kernels is always fp32; only
 * loads and stores touch fp16/bf16 (specs/cuda-backend.md §2.4).
 *
 * Kernel files are written in the subset of CUDA C++ the emulator
 * implements: templates, __global__/__device__ functions, static __shared__
 * arrays, SD_DYNAMIC_SMEM, __syncthreads, __shfl_*_sync and votes over full
 * warps, WMMA fragments (nvcuda::wmma), atomicAdd, the fp32 math functions,
 * and launches through SD_LAUNCH only. */
#ifndef SDXL_SD_CUDA_COMMON_CUH
#define SDXL_SD_CUDA_COMMON_CUH

#ifdef SD_CUDA_EMU
#include "cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

#include <stdint.h>

#include "sd/cuda/cuda_kernels.h"

/* SD_LAUNCH(grid, block, smem_bytes, stream, kernel)(args...): kernel<<<grid, block, smem, stream>>>(args).
 * The kernel goes last so that template arguments with commas need no parentheses. */
#ifdef SD_CUDA_EMU
#define SD_LAUNCH(grid, block, smem, stream, ...) emu_launch((grid), (block), (smem), (stream), __VA_ARGS__)
#define SD_DYNAMIC_SMEM(type, name) type *name = (type *)emu_dynamic_smem()
#else
#define SD_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<(grid), (block), (smem), (stream)>>>
#define SD_DYNAMIC_SMEM(type, name)                           \
    extern __shared__ __align__(128) unsigned char sd_smem_[]; \
    type *name = reinterpret_cast<type *>(sd_smem_)
#endif

/* ---- storage types ---------------------------------------------------------------- */

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* Runs the statements with `T` bound to the storage type of an activation
 * dtype (SD_F32, SD_F16 or SD_BF16); returns cudaErrorInvalidValue for any
 * other. */
#define SD_CUDA_DISPATCH(dtype, ...)                                    \
    switch (dtype) {                                                    \
    case SD_F32: { typedef float T; __VA_ARGS__; break; }               \
    case SD_F16: { typedef __half T; __VA_ARGS__; break; }              \
    case SD_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; break; }      \
    default: return cudaErrorInvalidValue;                              \
    }

/* Blocks of `threads` covering n items, for grid-stride elementwise loops;
 * capped so that the grid's x extent stays legal. */
static inline unsigned sd_blocks_for(int64_t n, unsigned threads)
{
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 65535 * 16 ? 65535 * 16 : b);
}

/* The launch status: configuration errors come back at once, faults at the
 * next synchronisation. */
static inline cudaError_t sd_launched(void) { return cudaGetLastError(); }

#endif
