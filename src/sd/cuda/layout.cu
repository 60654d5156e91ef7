/* Data-movement kernels: nearest upsampling (torch's nearest_idx), the block
 * copy behind concat and slice, batched 2-D transposes through shared-memory
 * tiles ([B,C,HW] <-> [B,HW,C]), zero padding for the convolutions cuDNN's
 * symmetric padding cannot express, and embedding-row gathers. */
#include "sd/cuda/cuda_common.cuh"

#define THREADS 256
#define TILE 32

#define GRID_STRIDE(i, n) \
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* aten/src/ATen/native/UpSample.h nearest_idx without explicit scales:
 * identity, exact 2x (dst >> 1), else min(floor(dst * (float)in / out), in - 1). */
__device__ __forceinline__ int64_t nearest_src(int64_t dst, int64_t in, int64_t out)
{
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    int64_t s = (int64_t)floorf((float)dst * ((float)in / (float)out));
    return s < in - 1 ? s : in - 1;
}

template <typename T>
__global__ void upsample_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t planes, int64_t h, int64_t w,
                                int64_t ho, int64_t wo)
{
    GRID_STRIDE(i, planes * ho * wo)
    {
        int64_t ox = i % wo, oy = i / wo % ho, p = i / (wo * ho);
        y[i] = x[(p * h + nearest_src(oy, h, ho)) * w + nearest_src(ox, w, wo)];
    }
}

extern "C" cudaError_t sd_cuda_upsample_nearest(sd_dtype dtype, void *y, const void *x, int64_t planes, int64_t h,
                                                int64_t w, int64_t ho, int64_t wo, cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(planes * ho * wo, THREADS), THREADS, 0, stream,
                                      upsample_kernel<T>)((T *)y, (const T *)x, planes, h, w, ho, wo));
    return sd_launched();
}

template <typename T>
__global__ void copy_block_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t outer, int64_t run,
                                  int64_t y_inner, int64_t y_offset, int64_t x_inner, int64_t x_offset)
{
    GRID_STRIDE(i, outer * run)
    {
        int64_t o = i / run, c = i % run;
        y[o * y_inner + y_offset + c] = x[o * x_inner + x_offset + c];
    }
}

extern "C" cudaError_t sd_cuda_copy_block(sd_dtype dtype, void *y, const void *x, int64_t outer, int64_t run,
                                          int64_t y_inner, int64_t y_offset, int64_t x_inner, int64_t x_offset,
                                          cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype,
                     SD_LAUNCH(sd_blocks_for(outer * run, THREADS), THREADS, 0, stream, copy_block_kernel<T>)(
                         (T *)y, (const T *)x, outer, run, y_inner, y_offset, x_inner, x_offset));
    return sd_launched();
}

/* One TILE x TILE tile per block of TILE x 8 threads: read rows of x,
 * write rows of y, both coalesced; the +1 column avoids bank conflicts.
 * grid.z runs over batch * (row tiles), grid.x over column tiles. */
template <typename T>
__global__ void transpose_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t rows, int64_t cols,
                                 int64_t row_tiles)
{
    __shared__ float tile[TILE][TILE + 1];
    int64_t b = blockIdx.z / row_tiles, r0 = blockIdx.z % row_tiles * TILE, c0 = (int64_t)blockIdx.x * TILE;
    const T *xb = x + b * rows * cols;
    T *yb = y + b * rows * cols;
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        int64_t r = r0 + k, c = c0 + threadIdx.x;
        if (r < rows && c < cols) tile[k][threadIdx.x] = to_f32(xb[r * cols + c]);
    }
    __syncthreads();
    for (int k = threadIdx.y; k < TILE; k += blockDim.y) {
        int64_t c = c0 + k, r = r0 + threadIdx.x;
        if (r < rows && c < cols) yb[c * rows + r] = from_f32<T>(tile[threadIdx.x][k]);
    }
}

extern "C" cudaError_t sd_cuda_transpose(sd_dtype dtype, void *y, const void *x, int64_t batch, int64_t rows,
                                         int64_t cols, cudaStream_t stream)
{
    int64_t row_tiles = (rows + TILE - 1) / TILE, col_tiles = (cols + TILE - 1) / TILE;
    if (batch * row_tiles > 65535 || col_tiles > 0x7fffffff) return cudaErrorInvalidValue;
    dim3 grid((unsigned)col_tiles, 1, (unsigned)(batch * row_tiles)), block(TILE, 8);
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(grid, block, 0, stream, transpose_kernel<T>)((T *)y, (const T *)x, rows,
                                                                                   cols, row_tiles));
    return sd_launched();
}

template <typename T>
__global__ void pad_kernel(T *__restrict__ y, const T *__restrict__ x, int64_t planes, int64_t h, int64_t w,
                           int top, int left, int64_t hp, int64_t wp)
{
    GRID_STRIDE(i, planes * hp * wp)
    {
        int64_t ox = i % wp, oy = i / wp % hp, p = i / (wp * hp), sy = oy - top, sx = ox - left;
        y[i] = sy >= 0 && sy < h && sx >= 0 && sx < w ? x[(p * h + sy) * w + sx] : from_f32<T>(0.0f);
    }
}

extern "C" cudaError_t sd_cuda_pad(sd_dtype dtype, void *y, const void *x, int64_t planes, int64_t h, int64_t w,
                                   int top, int bottom, int left, int right, cudaStream_t stream)
{
    int64_t hp = h + top + bottom, wp = w + left + right;
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(planes * hp * wp, THREADS), THREADS, 0, stream, pad_kernel<T>)(
                                (T *)y, (const T *)x, planes, h, w, top, left, hp, wp));
    return sd_launched();
}

template <typename T>
__global__ void gather_rows_kernel(T *__restrict__ y, const T *__restrict__ table, const int32_t *__restrict__ ids,
                                   int64_t n, int64_t cols)
{
    GRID_STRIDE(i, n * cols) y[i] = table[(int64_t)ids[i / cols] * cols + i % cols];
}

extern "C" cudaError_t sd_cuda_gather_rows(sd_dtype dtype, void *y, const void *table, const int32_t *ids, int64_t n,
                                           int64_t cols, cudaStream_t stream)
{
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(sd_blocks_for(n * cols, THREADS), THREADS, 0, stream, gather_rows_kernel<T>)(
                                (T *)y, (const T *)table, ids, n, cols));
    return sd_launched();
}
