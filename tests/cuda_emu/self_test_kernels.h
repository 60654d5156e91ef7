/* self_test_kernels.h: host launchers of the emulator self-test's kernels
 * (self_test_kernels.cu, self_test_wmma_kernels.cu). Each returns the launch
 * status, as the backend's launchers do; pointers are device pointers. */
#ifndef SDXL_CUDA_EMU_SELF_TEST_KERNELS_H
#define SDXL_CUDA_EMU_SELF_TEST_KERNELS_H

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

/* Stores 1 in *flag; for the launch-configuration checks. */
cudaError_t launch_flag(dim3 grid, dim3 block, size_t smem_bytes, cudaStream_t stream, int *flag);

/* y[i] = 2 x[i] + 1 by a grid-stride loop over a 3-D grid of 3-D blocks;
 * hits[t] counts how often global thread t ran (grid * block entries) and
 * order[] receives linear block ids in the order the blocks started. */
cudaError_t launch_grid_stride(dim3 grid, dim3 block, const float *x, float *y, int *hits, int *order,
                               int *order_count, int64_t n);

/* out[b] = sum of x[b * 128 .. b * 128 + 127] (zeros past n), by a tree in
 * static shared memory. */
cudaError_t launch_block_sum_128(const float *x, float *out, int n);

/* One block of `threads`; out[0..2] = __syncthreads_count/_and/_or of x[t] > 0. */
cudaError_t launch_sync_votes(const float *x, int *out, unsigned threads);

/* One block of `threads`: out[t] = the shuffle `kind` (0 idx, 1 up, 2 down,
 * 3 xor) of in[] with `arg` and `width`; for idx each lane asks for lane
 * (7 t + arg). */
enum { SHUFFLE_IDX = 0, SHUFFLE_UP = 1, SHUFFLE_DOWN = 2, SHUFFLE_XOR = 3 };
cudaError_t launch_shuffle_int(const int *in, int *out, unsigned threads, int kind, int arg, int width);
cudaError_t launch_shuffle_unsigned(const unsigned *in, unsigned *out, unsigned threads, int kind, int arg, int width);
cudaError_t launch_shuffle_float(const float *in, float *out, unsigned threads, int kind, int arg, int width);
cudaError_t launch_shuffle_double(const double *in, double *out, unsigned threads, int kind, int arg, int width);
cudaError_t launch_shuffle_long_long(const long long *in, long long *out, unsigned threads, int kind, int arg,
                                     int width);

/* One block of `threads`: xor_sum[t] = the sum over t's width-segment by a
 * butterfly, down_sum[t] = the tree sum __shfl_down_sync leaves (complete
 * at each segment's first lane). */
cudaError_t launch_warp_sums(const float *in, float *xor_sum, float *down_sum, unsigned threads, int width);

/* One block of `threads`: out[3w..3w+2] = __ballot_sync, __any_sync and
 * __all_sync over warp w of in[t] != 0 (after a __syncwarp). */
cudaError_t launch_votes(const int *in, unsigned *out, unsigned threads);

/* `blocks` blocks of `threads` over smem_bytes of dynamic shared memory
 * (n = smem_bytes / 4 floats per block): first_read gets each block's
 * shared memory as first seen, out[b n + j] = b n + (n - 1 - j) after a
 * reversal through shared memory, misaligned[b] = its address % 128. */
cudaError_t launch_dynamic_smem(unsigned blocks, unsigned threads, size_t smem_bytes, float *first_read, float *out,
                                int *misaligned);
cudaError_t allow_dynamic_smem(int bytes);

/* One block of `threads`, a deliberate race: out[t] = what thread t - 1
 * stored in shared memory, read without a barrier. */
cudaError_t launch_racy_neighbour(float *out, unsigned threads);

/* y[i] = x[i] + 1, one thread per element, 256 per block. */
cudaError_t launch_add_one(const float *x, float *y, int n);

/* ---- WMMA (self_test_wmma_kernels.cu) ---- */

enum { WMMA_M16N16K16, WMMA_M32N8K16, WMMA_M8N32K16, WMMA_M16N16K8 };
enum { WMMA_F16, WMMA_BF16, WMMA_TF32 };

/* One tiled-GEMM case: the fragment shape, the input type (WMMA_TF32 with
 * WMMA_M16N16K8 only), fp16 instead of fp32 accumulators (WMMA_F16 only),
 * the layouts of A, B and C, and whether tf32 inputs go through
 * __float_to_tf32. */
struct WmmaGemmCase {
    int shape, input, half_accumulator;
    int a_col_major, b_col_major, c_col_major;
    int convert_tf32;
};

/* c = a b + c (m x k by k x n, multiples of the shape, leading dimensions
 * packed) by a WMMA kernel with one warp per output tile. */
cudaError_t launch_wmma_gemm(const WmmaGemmCase &g, const void *a, const void *b, void *c, int m, int n, int k);

/* out (16 x 16, column-major) = softmax(scale q k^T) v for 16 x 16 row-major
 * q, k, v, by one warp that goes through shared memory between products. */
cudaError_t launch_wmma_attention(const __half *q, const __half *k, const __half *v, float *out, float scale);

/* out (16 x 16) = a (16 x 8 fp32, row-major) times identity (8 x 16), the
 * product on tf32 fragments, a converted with __float_to_tf32 if `convert`. */
cudaError_t launch_wmma_tf32_seen(const float *a, const float *identity, float *out, int convert);

/* out[lane] (32 floats) = element lane + 1 of an accumulator of 1s read right
 * after store_matrix_sync to dynamic shared memory, with or without the
 * __syncwarp it needs. */
cudaError_t launch_wmma_store_then_read(float *out, int sync);

/* Kernels with bugs the emulator must abort on (run them in a child). */
void launch_divergent_barrier(void);
void launch_shuffle_after_exit(void);
void launch_mixed_warp_ops(void);
void launch_shuffle_beside_barrier(void);
void launch_partial_mask_shuffle(void);
void launch_stack_overflow(void);
void launch_wmma_misaligned(void);
void launch_wmma_bad_ldm(void);
void launch_wmma_partial_warp(void);
void launch_wmma_lane_arguments(void);
void launch_wmma_lane_elements(void);
void launch_wmma_load_race(void);

#endif
