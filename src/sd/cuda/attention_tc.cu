/* Scaled-dot-product attention on tensor cores for 64-wide heads in fp16 or
 * bf16, the width of every head in the SDXL UNet and both text encoders
 * (specs/cuda-backend.md §2.3): the FlashAttention-2 schedule (Dao 2023)
 * written with the WMMA API (16x16x16 tiles, fp32 accumulation).
 *
 * A block of 4 warps owns 64 query rows of one (batch, head), 16 per warp;
 * each warp keeps its Q rows as fragments and its output O (16 x 64, fp32)
 * in accumulator fragments. Per tile of 32 keys, staged in shared memory:
 *   S = Q K^T                     (tensor cores, fp32)
 *   m' = max(m, rowmax(scale S)); P = exp(scale S - m'); c = exp(m - m')
 *   l = l c + rowsum P;  O = O c (only when some c != 1);  O += P V (tensor cores)
 * with P rounded to the activation dtype for the second product (as
 * FlashAttention does); finally out = O / l. Scores, the softmax and every
 * accumulation are fp32. Keys past n_k and, when causal, past the query are
 * masked; rows past n_q are computed but never stored. The per-row steps run
 * on a warp's own 16 x 68 fp32 scratch in shared memory: lanes 2r and 2r+1
 * own row r, half of its columns each. */
#include "sd/cuda/cuda_common.cuh"

#define HEAD 64          /* head width this kernel serves */
#define WARPS 4
#define ROWS (16 * WARPS) /* query rows per block */
#define KEYS 32          /* keys per shared-memory tile */
#define LDT (HEAD + 8)   /* shared row stride of Q/K/V tiles, in elements (multiple of 8) */
#define LDP (KEYS + 8)   /* of a warp's P tile */
#define LDW (HEAD + 4)   /* of a warp's fp32 scratch (multiple of 4) */

using namespace nvcuda;

typedef struct {
    int64_t nq, nk;
    int heads, causal;
    float scale;
} tc_params;

/* The block's shared memory, carved from the dynamic allocation. */
template <typename T>
struct tc_smem {
    T q[ROWS * LDT];
    T k[KEYS * LDT];
    T v[KEYS * LDT];
    T p[WARPS][16 * LDP];
    float w[WARPS][16 * LDW];
    float corr[WARPS][16];
};

/* rows [row0, row0 + n) of one head of x [batch, len, heads * HEAD] into
 * dst (stride LDT), zero past len. 16-byte vector copies. */
template <typename T>
__device__ void stage_rows(T *dst, const T *x, int64_t b, int64_t len, int heads, int h, int64_t row0, int n)
{
    const int vec = 16 / sizeof(T), per_row = HEAD / vec;
    for (int i = threadIdx.x; i < n * per_row; i += blockDim.x) {
        int r = i / per_row, c = i % per_row * vec;
        int64_t row = row0 + r;
        uint4 val = make_uint4(0, 0, 0, 0);
        if (row < len) val = *reinterpret_cast<const uint4 *>(x + ((b * len + row) * heads + h) * HEAD + c);
        *reinterpret_cast<uint4 *>(dst + r * LDT + c) = val;
    }
}

template <typename T>
__global__ void __launch_bounds__(32 * WARPS) flash_tc_kernel(T *__restrict__ out, const T *__restrict__ q,
                                                              const T *__restrict__ k, const T *__restrict__ v,
                                                              tc_params p)
{
    SD_DYNAMIC_SMEM(tc_smem<T>, sm);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, h = blockIdx.y;
    const int64_t b = blockIdx.z, row0 = (int64_t)blockIdx.x * ROWS, wrow0 = row0 + warp * 16;
    const int my_row = lane / 2, half = lane % 2; /* this lane's row of the warp's 16, and its half */
    const int64_t qi = wrow0 + my_row;
    const int64_t last = (row0 + ROWS < p.nq ? row0 + ROWS : p.nq) - 1;
    const int64_t kend = p.causal && last + 1 < p.nk ? last + 1 : p.nk;
    float *w = sm->w[warp];
    T *pt = sm->p[warp];

    stage_rows(sm->q, q, b, p.nq, p.heads, h, row0, ROWS);
    __syncthreads();
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qf[HEAD / 16];
    for (int kk = 0; kk < HEAD / 16; kk++) wmma::load_matrix_sync(qf[kk], sm->q + warp * 16 * LDT + kk * 16, LDT);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> of[HEAD / 16];
    for (int d = 0; d < HEAD / 16; d++) wmma::fill_fragment(of[d], 0.0f);
    float m = -INFINITY, l = 0.0f;

    for (int64_t k0 = 0; k0 < kend; k0 += KEYS) {
        __syncthreads(); /* the previous tile is no longer read */
        stage_rows(sm->k, k, b, p.nk, p.heads, h, k0, KEYS);
        stage_rows(sm->v, v, b, p.nk, p.heads, h, k0, KEYS);
        __syncthreads();

        /* S = Q K^T for this warp's 16 rows and the tile's 32 keys, into w[:, 0:32]. */
        for (int n = 0; n < KEYS / 16; n++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
            wmma::fill_fragment(s, 0.0f);
            for (int kk = 0; kk < HEAD / 16; kk++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kf;
                wmma::load_matrix_sync(kf, sm->k + n * 16 * LDT + kk * 16, LDT);
                wmma::mma_sync(s, qf[kk], kf, s);
            }
            wmma::store_matrix_sync(w + n * 16, s, LDW, wmma::mem_row_major);
        }
        __syncwarp();

        /* The online softmax of this lane's half row. */
        float *srow = w + my_row * LDW + half * (KEYS / 2);
        float tile_max = -INFINITY;
        for (int c = 0; c < KEYS / 2; c++) {
            int64_t key = k0 + half * (KEYS / 2) + c;
            float x = key < p.nk && (!p.causal || key <= qi) ? srow[c] * p.scale : -INFINITY;
            srow[c] = x;
            tile_max = fmaxf(tile_max, x);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
        float m_new = fmaxf(m, tile_max);
        float corr = m_new == -INFINITY ? 1.0f : expf(m - m_new), sum = 0.0f;
        T *prow = pt + my_row * LDP + half * (KEYS / 2);
        for (int c = 0; c < KEYS / 2; c++) {
            float e = m_new == -INFINITY ? 0.0f : expf(srow[c] - m_new);
            sum += e;
            prow[c] = from_f32<T>(e);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        m = m_new;
        if (half == 0) sm->corr[warp][my_row] = corr;
        __syncwarp();

        /* O *= c row by row, through the scratch, when any row's maximum moved. */
        if (__any_sync(0xffffffffu, corr != 1.0f)) {
            for (int d = 0; d < HEAD / 16; d++) wmma::store_matrix_sync(w + d * 16, of[d], LDW, wmma::mem_row_major);
            __syncwarp();
            float *orow = w + my_row * LDW + half * (HEAD / 2);
            for (int c = 0; c < HEAD / 2; c++) orow[c] *= sm->corr[warp][my_row];
            __syncwarp();
            for (int d = 0; d < HEAD / 16; d++) wmma::load_matrix_sync(of[d], w + d * 16, LDW, wmma::mem_row_major);
        }

        /* O += P V. */
        for (int kk = 0; kk < KEYS / 16; kk++) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pf;
            wmma::load_matrix_sync(pf, pt + kk * 16, LDP);
            for (int d = 0; d < HEAD / 16; d++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vf;
                wmma::load_matrix_sync(vf, sm->v + kk * 16 * LDT + d * 16, LDT);
                wmma::mma_sync(of[d], pf, vf, of[d]);
            }
        }
        __syncwarp();
    }

    for (int d = 0; d < HEAD / 16; d++) wmma::store_matrix_sync(w + d * 16, of[d], LDW, wmma::mem_row_major);
    __syncwarp();
    if (qi >= p.nq) return;
    float inv = 1.0f / l;
    const float *orow = w + my_row * LDW + half * (HEAD / 2);
    T *dst = out + ((b * p.nq + qi) * p.heads + h) * HEAD + half * (HEAD / 2);
    for (int c = 0; c < HEAD / 2; c++) dst[c] = from_f32<T>(orow[c] * inv);
}

template <typename T>
static cudaError_t launch(T *out, const T *q, const T *k, const T *v, int64_t batch, const tc_params *p,
                          cudaStream_t stream)
{
    static int opted_in; /* dynamic shared memory above 48 KiB needs the kernel's consent, once */
    size_t smem = sizeof(tc_smem<T>);
    if (smem > 48 * 1024 && !opted_in) {
        cudaError_t e = cudaFuncSetAttribute(flash_tc_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        opted_in = 1;
    }
    dim3 grid((unsigned)((p->nq + ROWS - 1) / ROWS), (unsigned)p->heads, (unsigned)batch);
    SD_LAUNCH(grid, 32 * WARPS, smem, stream, flash_tc_kernel<T>)(out, q, k, v, *p);
    return sd_launched();
}

extern "C" int sd_cuda_attention_tc_fits(sd_dtype dtype, int dh, int dv)
{
    return (dtype == SD_F16 || dtype == SD_BF16) && dh == HEAD && dv == HEAD;
}

extern "C" cudaError_t sd_cuda_attention_tc(sd_dtype dtype, void *out, const void *q, const void *k, const void *v,
                                            int64_t batch, int64_t nq, int64_t nk, int heads, int causal,
                                            cudaStream_t stream)
{
    if (batch > 65535 || heads > 65535 || (nq + ROWS - 1) / ROWS > 0x7fffffff) return cudaErrorInvalidValue;
    tc_params p = {nq, nk, heads, causal != 0, 1.0f / sqrtf((float)HEAD)};
    if (dtype == SD_F16) return launch((__half *)out, (const __half *)q, (const __half *)k, (const __half *)v, batch, &p, stream);
    if (dtype == SD_BF16)
        return launch((__nv_bfloat16 *)out, (const __nv_bfloat16 *)q, (const __nv_bfloat16 *)k,
                      (const __nv_bfloat16 *)v, batch, &p, stream);
    return cudaErrorInvalidValue;
}
