/* self_test_kernels.cu: the kernels the emulator's self-test runs, written
 * in the CUDA subset of src/sd/cuda/cuda_common.cuh and launched through
 * SD_LAUNCH, as the backend's kernels are. Compiled by g++ -x c++
 * -DSD_CUDA_EMU; they would compile under nvcc unchanged. */
#include "sd/cuda/cuda_common.cuh"

#include "self_test_kernels.h"

#define FULL_MASK 0xffffffffu

/* ---- launch configuration ---- */

__global__ void flag_kernel(int *flag) { *flag = 1; }

cudaError_t launch_flag(dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, int *flag)
{
    SD_LAUNCH(grid, block, smem_bytes, stream, flag_kernel)(flag);
    return sd_launched();
}

/* ---- grid-stride loop over a 3-D grid ---- */

__device__ unsigned linear_block() { return (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x; }

__global__ void grid_stride_kernel(const float *__restrict__ x, float *__restrict__ y, int *hits, int *order,
                                   int *order_count, int64_t n)
{
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    const unsigned t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const int64_t first = (int64_t)linear_block() * threads + t;
    const int64_t stride = (int64_t)threads * gridDim.x * gridDim.y * gridDim.z;
    atomicAdd(&hits[first], 1);
    if (t == 0)
        order[atomicAdd(order_count, 1)] = (int)linear_block();
    for (int64_t i = first; i < n; i += stride)
        y[i] = 2.0f * x[i] + 1.0f;
}

cudaError_t launch_grid_stride(dim3 grid, dim3 block, const float *x, float *y, int *hits, int *order,
                               int *order_count, int64_t n)
{
    SD_LAUNCH(grid, block, 0, 0, grid_stride_kernel)(x, y, hits, order, order_count, n);
    return sd_launched();
}

/* ---- block reduction in static shared memory ---- */

template <int BLOCK> __global__ void block_sum_kernel(const float *x, float *out, int n)
{
    __shared__ float partial[BLOCK];
    const int i = (int)blockIdx.x * BLOCK + (int)threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int s = BLOCK / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s)
            partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0)
        out[blockIdx.x] = partial[0];
}

cudaError_t launch_block_sum_128(const float *x, float *out, int n)
{
    SD_LAUNCH(sd_blocks_for(n, 128), 128, 0, 0, block_sum_kernel<128>)(x, out, n);
    return sd_launched();
}

__global__ void sync_votes_kernel(const float *x, int *out)
{
    const int positive = x[threadIdx.x] > 0.0f;
    const int count = __syncthreads_count(positive);
    const int all = __syncthreads_and(positive);
    const int any = __syncthreads_or(positive);
    if (threadIdx.x == 0) {
        out[0] = count;
        out[1] = all;
        out[2] = any;
    }
}

cudaError_t launch_sync_votes(const float *x, int *out, unsigned threads)
{
    SD_LAUNCH(1, threads, 0, 0, sync_votes_kernel)(x, out);
    return sd_launched();
}

/* ---- warp shuffles ---- */

template <typename T> __global__ void shuffle_kernel(const T *in, T *out, int kind, int arg, int width)
{
    const unsigned t = threadIdx.x;
    const T v = in[t];
    T r;
    switch (kind) {
    case SHUFFLE_IDX: r = __shfl_sync(FULL_MASK, v, (int)(7 * t) + arg, width); break;
    case SHUFFLE_UP: r = __shfl_up_sync(FULL_MASK, v, (unsigned)arg, width); break;
    case SHUFFLE_DOWN: r = __shfl_down_sync(FULL_MASK, v, (unsigned)arg, width); break;
    default: r = __shfl_xor_sync(FULL_MASK, v, arg, width); break;
    }
    out[t] = r;
}

template <typename T> cudaError_t launch_shuffle(const T *in, T *out, unsigned threads, int kind, int arg, int width)
{
    SD_LAUNCH(1, threads, 0, 0, shuffle_kernel<T>)(in, out, kind, arg, width);
    return sd_launched();
}

cudaError_t launch_shuffle_int(const int *in, int *out, unsigned threads, int kind, int arg, int width)
{
    return launch_shuffle(in, out, threads, kind, arg, width);
}
cudaError_t launch_shuffle_unsigned(const unsigned *in, unsigned *out, unsigned threads, int kind, int arg, int width)
{
    return launch_shuffle(in, out, threads, kind, arg, width);
}
cudaError_t launch_shuffle_float(const float *in, float *out, unsigned threads, int kind, int arg, int width)
{
    return launch_shuffle(in, out, threads, kind, arg, width);
}
cudaError_t launch_shuffle_double(const double *in, double *out, unsigned threads, int kind, int arg, int width)
{
    return launch_shuffle(in, out, threads, kind, arg, width);
}
cudaError_t launch_shuffle_long_long(const long long *in, long long *out, unsigned threads, int kind, int arg,
                                     int width)
{
    return launch_shuffle(in, out, threads, kind, arg, width);
}

__global__ void warp_sums_kernel(const float *in, float *xor_sum, float *down_sum, int width)
{
    const float v = in[threadIdx.x];
    float x = v, d = v;
    for (int offset = width / 2; offset > 0; offset >>= 1) {
        x += __shfl_xor_sync(FULL_MASK, x, offset, width);
        d += __shfl_down_sync(FULL_MASK, d, (unsigned)offset, width);
    }
    xor_sum[threadIdx.x] = x;
    down_sum[threadIdx.x] = d;
}

cudaError_t launch_warp_sums(const float *in, float *xor_sum, float *down_sum, unsigned threads, int width)
{
    SD_LAUNCH(1, threads, 0, 0, warp_sums_kernel)(in, xor_sum, down_sum, width);
    return sd_launched();
}

__global__ void votes_kernel(const int *in, unsigned *out)
{
    const int p = in[threadIdx.x] != 0;
    __syncwarp();
    const unsigned ballot = __ballot_sync(FULL_MASK, p);
    const int any = __any_sync(FULL_MASK, p);
    const int all = __all_sync(FULL_MASK, p);
    if (threadIdx.x % warpSize == 0) {
        const unsigned w = threadIdx.x / warpSize;
        out[3 * w] = ballot;
        out[3 * w + 1] = (unsigned)any;
        out[3 * w + 2] = (unsigned)all;
    }
}

cudaError_t launch_votes(const int *in, unsigned *out, unsigned threads)
{
    SD_LAUNCH(1, threads, 0, 0, votes_kernel)(in, out);
    return sd_launched();
}

/* ---- dynamic shared memory ---- */

__global__ void dynamic_smem_kernel(float *first_read, float *out, int *misaligned, int n)
{
    SD_DYNAMIC_SMEM(float, s);
    const int base = (int)blockIdx.x * n;
    for (int j = (int)threadIdx.x; j < n; j += (int)blockDim.x)
        first_read[base + j] = s[j];
    if (threadIdx.x == 0)
        misaligned[blockIdx.x] = (int)((uintptr_t)s % 128);
    __syncthreads();
    for (int j = (int)threadIdx.x; j < n; j += (int)blockDim.x)
        s[j] = (float)(base + j);
    __syncthreads();
    for (int j = (int)threadIdx.x; j < n; j += (int)blockDim.x)
        out[base + j] = s[n - 1 - j];
}

cudaError_t launch_dynamic_smem(unsigned blocks, unsigned threads, size_t smem_bytes, float *first_read, float *out,
                                int *misaligned)
{
    SD_LAUNCH(blocks, threads, smem_bytes, 0, dynamic_smem_kernel)(first_read, out, misaligned, (int)(smem_bytes / 4));
    return sd_launched();
}

cudaError_t allow_dynamic_smem(int bytes)
{
    return cudaFuncSetAttribute(dynamic_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}

__global__ void racy_neighbour_kernel(float *out)
{
    SD_DYNAMIC_SMEM(float, s);
    s[threadIdx.x] = (float)threadIdx.x;
    /* no __syncthreads(): the race SDXL_CUDA_EMU_SHUFFLE=1 exposes */
    out[threadIdx.x] = threadIdx.x > 0 ? s[threadIdx.x - 1] : 0.0f;
}

cudaError_t launch_racy_neighbour(float *out, unsigned threads)
{
    SD_LAUNCH(1, threads, threads * sizeof(float), 0, racy_neighbour_kernel)(out);
    return sd_launched();
}

/* ---- throughput ---- */

__global__ void add_one_kernel(const float *x, float *y, int n)
{
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < n)
        y[i] = x[i] + 1.0f;
}

cudaError_t launch_add_one(const float *x, float *y, int n)
{
    SD_LAUNCH(sd_blocks_for(n, 256), 256, 0, 0, add_one_kernel)(x, y, n);
    return sd_launched();
}

/* ---- bugs the emulator aborts on ---- */

__global__ void divergent_barrier_kernel(float *out)
{
    if (threadIdx.x >= 16)
        return;
    __syncthreads();
    out[threadIdx.x] = 1.0f;
}

__global__ void shuffle_after_exit_kernel(float *out)
{
    if (threadIdx.x == 5)
        return;
    out[threadIdx.x] = __shfl_xor_sync(FULL_MASK, (float)threadIdx.x, 1);
}

__global__ void mixed_warp_ops_kernel(float *out)
{
    const float v = (float)threadIdx.x;
    out[threadIdx.x] = threadIdx.x < 16 ? __shfl_xor_sync(FULL_MASK, v, 1) : __shfl_down_sync(FULL_MASK, v, 1);
}

__global__ void shuffle_beside_barrier_kernel(float *out)
{
    if (threadIdx.x < 16)
        out[threadIdx.x] = __shfl_xor_sync(FULL_MASK, (float)threadIdx.x, 1);
    else
        __syncthreads();
}

__global__ void partial_mask_shuffle_kernel(float *out)
{
    out[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, (float)threadIdx.x, 1);
}

__noinline__ __device__ int recurse(int depth)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    return depth == 0 ? frame[0] : recurse(depth - 1) + frame[0];
}

__global__ void stack_overflow_kernel(float *out) { out[threadIdx.x] = (float)recurse(1 << 20); }

/* Runs `kernel` on one block of 32 threads with a scratch output. */
static void launch_buggy(void (*kernel)(float *))
{
    float *out = nullptr;
    cudaMalloc(reinterpret_cast<void **>(&out), 32 * sizeof(float));
    SD_LAUNCH(1, 32, 0, 0, kernel)(out);
    cudaFree(out);
}

void launch_divergent_barrier(void) { launch_buggy(divergent_barrier_kernel); }
void launch_shuffle_after_exit(void) { launch_buggy(shuffle_after_exit_kernel); }
void launch_mixed_warp_ops(void) { launch_buggy(mixed_warp_ops_kernel); }
void launch_shuffle_beside_barrier(void) { launch_buggy(shuffle_beside_barrier_kernel); }
void launch_partial_mask_shuffle(void) { launch_buggy(partial_mask_shuffle_kernel); }
void launch_stack_overflow(void) { launch_buggy(stack_overflow_kernel); }
