/* self_test_wmma_kernels.cu: the WMMA (nvcuda::wmma) kernels of the emulator's
 * self-test, written as the backend's tensor-core kernels are and launched
 * through SD_LAUNCH: a tiled GEMM for every fragment shape, input type,
 * accumulator type and layout; an attention-like warp (store the scores to
 * shared memory, work on them lane by lane, reload); and kernels with the
 * bugs the emulator must catch. Compiled by g++ -x c++ -DSD_CUDA_EMU; they
 * would compile under nvcc unchanged. */
#include "sd/cuda/cuda_common.cuh"

#include <mma.h> /* empty outside nvcc; included to show it does not clash */

#include "self_test_kernels.h"

using namespace nvcuda;

/* ---- tiled GEMM ---- */

template <typename T> using storage_t = typename wmma::helper_traits<T>::storage_element_type;

template <typename L> __device__ constexpr bool is_col_major() { return std::is_same<L, wmma::col_major>::value; }

/* C = A B + C for m x n x k (multiples of the shape), one warp per M x N
 * tile of C, two warps per block; A, B and C row- or column-major with
 * packed leading dimensions. */
template <int M, int N, int K, typename T, typename LA, typename LB, typename TC>
__global__ void wmma_gemm_kernel(const storage_t<T> *a, const storage_t<T> *b, TC *c, int m, int n, int k,
                                 int c_col_major, int convert_tf32)
{
    const int warp = (int)(blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    const int ti = warp / (n / N), tj = warp % (n / N);
    if (ti * M >= m)
        return; /* the whole warp: a spare warp of the last block */
    const int lda = is_col_major<LA>() ? m : k, ldb = is_col_major<LB>() ? k : n, ldc = c_col_major ? m : n;
    TC *c_tile = c + (c_col_major ? ti * M + tj * N * ldc : ti * M * ldc + tj * N);
    const wmma::layout_t c_layout = c_col_major ? wmma::mem_col_major : wmma::mem_row_major;
    wmma::fragment<wmma::accumulator, M, N, K, TC> acc;
    wmma::load_matrix_sync(acc, c_tile, ldc, c_layout);
    for (int p = 0; p < k; p += K) {
        wmma::fragment<wmma::matrix_a, M, N, K, T, LA> fa;
        wmma::fragment<wmma::matrix_b, M, N, K, T, LB> fb;
        wmma::load_matrix_sync(fa, a + (is_col_major<LA>() ? ti * M + p * lda : ti * M * lda + p), lda);
        wmma::load_matrix_sync(fb, b + (is_col_major<LB>() ? p + tj * N * ldb : p * ldb + tj * N), ldb);
        if (convert_tf32) {
            for (int i = 0; i < fa.num_elements; i++)
                fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
            for (int i = 0; i < fb.num_elements; i++)
                fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
        }
        wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c_tile, acc, ldc, c_layout);
}

template <int M, int N, int K, typename T, typename LA, typename LB, typename TC>
static cudaError_t gemm_with(const WmmaGemmCase &g, const void *a, const void *b, void *c, int m, int n, int k)
{
    const int warps = (m / M) * (n / N);
    SD_LAUNCH((warps + 1) / 2, 64, 0, 0, wmma_gemm_kernel<M, N, K, T, LA, LB, TC>)
    (static_cast<const storage_t<T> *>(a), static_cast<const storage_t<T> *>(b), static_cast<TC *>(c), m, n, k,
     g.c_col_major, g.convert_tf32);
    return sd_launched();
}

template <int M, int N, int K, typename T, typename TC>
static cudaError_t gemm_layouts(const WmmaGemmCase &g, const void *a, const void *b, void *c, int m, int n, int k)
{
    typedef wmma::row_major R;
    typedef wmma::col_major C;
    if (g.a_col_major)
        return g.b_col_major ? gemm_with<M, N, K, T, C, C, TC>(g, a, b, c, m, n, k)
                             : gemm_with<M, N, K, T, C, R, TC>(g, a, b, c, m, n, k);
    return g.b_col_major ? gemm_with<M, N, K, T, R, C, TC>(g, a, b, c, m, n, k)
                         : gemm_with<M, N, K, T, R, R, TC>(g, a, b, c, m, n, k);
}

template <int M, int N, int K>
static cudaError_t gemm_types(const WmmaGemmCase &g, const void *a, const void *b, void *c, int m, int n, int k)
{
    switch (g.input) {
    case WMMA_F16:
        return g.half_accumulator ? gemm_layouts<M, N, K, __half, __half>(g, a, b, c, m, n, k)
                                  : gemm_layouts<M, N, K, __half, float>(g, a, b, c, m, n, k);
    case WMMA_BF16: return gemm_layouts<M, N, K, __nv_bfloat16, float>(g, a, b, c, m, n, k);
    default: return cudaErrorInvalidValue;
    }
}

cudaError_t launch_wmma_gemm(const WmmaGemmCase &g, const void *a, const void *b, void *c, int m, int n, int k)
{
    switch (g.shape) {
    case WMMA_M16N16K16: return gemm_types<16, 16, 16>(g, a, b, c, m, n, k);
    case WMMA_M32N8K16: return gemm_types<32, 8, 16>(g, a, b, c, m, n, k);
    case WMMA_M8N32K16: return gemm_types<8, 32, 16>(g, a, b, c, m, n, k);
    case WMMA_M16N16K8:
        return g.input == WMMA_TF32 ? gemm_layouts<16, 16, 8, wmma::precision::tf32, float>(g, a, b, c, m, n, k)
                                    : cudaErrorInvalidValue;
    default: return cudaErrorInvalidValue;
    }
}

/* ---- an attention-like warp ---- */

#define LDS 24 /* the scratch's row stride: a multiple of 8 (fp16) and 4 (fp32), 32-byte rows */

/* out = softmax(scale q k^T) v for one 16 x 16 head, rows split between lane
 * pairs; the fragments go through shared memory between the two products. */
__global__ void wmma_attention_kernel(const __half *q, const __half *k, const __half *v, float *out, float scale)
{
    __shared__ __align__(32) float s[16 * LDS];
    __shared__ __align__(32) __half p[16 * LDS];
    const int lane = (int)threadIdx.x, row = lane / 2, half = lane % 2;

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> qf;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> kf; /* k row-major is k^T column-major */
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::load_matrix_sync(qf, q, 16);
    wmma::load_matrix_sync(kf, k, 16);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, qf, kf, acc);
    for (int i = 0; i < acc.num_elements; i++)
        acc.x[i] *= scale;
    wmma::store_matrix_sync(s, acc, LDS, wmma::mem_row_major);
    __syncwarp();

    float *srow = s + row * LDS + half * 8, mx = -INFINITY, sum = 0.0f;
    for (int c = 0; c < 8; c++)
        mx = fmaxf(mx, srow[c]);
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    for (int c = 0; c < 8; c++) {
        const __half e = __float2half_rn(expf(srow[c] - mx));
        p[row * LDS + half * 8 + c] = e;
        sum += __half2float(e);
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    __syncwarp();

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> pf;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> vf;
    wmma::load_matrix_sync(pf, p, LDS);
    wmma::load_matrix_sync(vf, v, 16);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, pf, vf, acc);
    wmma::store_matrix_sync(s, acc, LDS, wmma::mem_row_major);
    __syncwarp();
    for (int c = 0; c < 8; c++)
        srow[c] /= sum;
    __syncwarp();
    wmma::load_matrix_sync(acc, s, LDS, wmma::mem_row_major);
    wmma::store_matrix_sync(out, acc, 16, wmma::mem_col_major);
}

cudaError_t launch_wmma_attention(const __half *q, const __half *k, const __half *v, float *out, float scale)
{
    SD_LAUNCH(1, 32, 0, 0, wmma_attention_kernel)(q, k, v, out, scale);
    return sd_launched();
}

/* ---- tf32 inputs as the tensor core sees them ---- */

/* out (16 x 16, row-major) = a (16 x 8) [I 0] (8 x 16): each a element as
 * the product used it, rounded by __float_to_tf32 first when asked. */
__global__ void wmma_tf32_seen_kernel(const float *a, const float *identity, float *out, int convert)
{
    wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
    wmma::load_matrix_sync(fa, a, 8);
    wmma::load_matrix_sync(fb, identity, 16);
    if (convert)
        for (int i = 0; i < fa.num_elements; i++)
            fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, fa, fb, acc);
    wmma::store_matrix_sync(out, acc, 16, wmma::mem_row_major);
}

cudaError_t launch_wmma_tf32_seen(const float *a, const float *identity, float *out, int convert)
{
    SD_LAUNCH(1, 32, 0, 0, wmma_tf32_seen_kernel)(a, identity, out, convert);
    return sd_launched();
}

/* ---- a store read back without __syncwarp ---- */

/* out[lane] = element lane + 1 of a stored accumulator of 1s, read right
 * after store_matrix_sync, with or without the __syncwarp it needs. */
__global__ void wmma_store_then_read_kernel(float *out, int sync)
{
    SD_DYNAMIC_SMEM(float, s);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 1.0f);
    wmma::store_matrix_sync(s, acc, 16, wmma::mem_row_major);
    if (sync)
        __syncwarp();
    out[threadIdx.x] = s[threadIdx.x + 1];
}

cudaError_t launch_wmma_store_then_read(float *out, int sync)
{
    SD_LAUNCH(1, 32, 256 * sizeof(float), 0, wmma_store_then_read_kernel)(out, sync);
    return sd_launched();
}

/* ---- bugs the emulator aborts on ---- */

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a_frag;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> b_frag;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc_frag;

__global__ void wmma_misaligned_kernel(__half *buf) { a_frag f; wmma::load_matrix_sync(f, buf + 4, 16); }

__global__ void wmma_bad_ldm_kernel(__half *buf) { a_frag f; wmma::load_matrix_sync(f, buf, 12); }

__global__ void wmma_partial_warp_kernel(__half *buf) { a_frag f; wmma::load_matrix_sync(f, buf, 16); }

__global__ void wmma_lane_arguments_kernel(__half *buf)
{
    a_frag f;
    wmma::load_matrix_sync(f, threadIdx.x < 16 ? buf : buf + 16, 32);
}

/* Per-element code that depends on the GPU's fragment layout. */
__global__ void wmma_lane_elements_kernel(__half *buf)
{
    acc_frag acc;
    wmma::fill_fragment(acc, 0.0f);
    if (threadIdx.x == 3)
        acc.x[0] = 1.0f;
    wmma::store_matrix_sync(reinterpret_cast<float *>(buf), acc, 16, wmma::mem_row_major);
}

/* Lanes overwrite what the others have not loaded yet (no __syncwarp). */
__global__ void wmma_load_race_kernel(__half *buf)
{
    a_frag fa;
    b_frag fb;
    acc_frag acc;
    wmma::load_matrix_sync(fa, buf, 16);
    buf[threadIdx.x] = __float2half_rn(2.0f);
    wmma::load_matrix_sync(fb, buf + 256, 16);
    wmma::fill_fragment(acc, 0.0f);
    wmma::mma_sync(acc, fa, fb, acc);
}

/* Runs `kernel` on `threads` threads of one block with a zeroed 32-byte
 * aligned scratch of 1024 halves. */
static void launch_wmma_buggy(void (*kernel)(__half *), unsigned threads)
{
    __half *buf = nullptr;
    cudaMalloc(reinterpret_cast<void **>(&buf), 1024 * sizeof(__half));
    cudaMemset(buf, 0, 1024 * sizeof(__half));
    SD_LAUNCH(1, threads, 0, 0, kernel)(buf);
    cudaFree(buf);
}

void launch_wmma_misaligned(void) { launch_wmma_buggy(wmma_misaligned_kernel, 32); }
void launch_wmma_bad_ldm(void) { launch_wmma_buggy(wmma_bad_ldm_kernel, 32); }
void launch_wmma_partial_warp(void) { launch_wmma_buggy(wmma_partial_warp_kernel, 48); }
void launch_wmma_lane_arguments(void) { launch_wmma_buggy(wmma_lane_arguments_kernel, 32); }
void launch_wmma_lane_elements(void) { launch_wmma_buggy(wmma_lane_elements_kernel, 32); }
void launch_wmma_load_race(void) { launch_wmma_buggy(wmma_load_race_kernel, 32); }
