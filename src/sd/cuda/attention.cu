/* Scaled-dot-product attention in the FlashAttention form (Dao et al. 2022:
 * tiles of keys and values in shared memory, an online softmax, no n_q x n_k
 * buffer), on CUDA cores with fp32 scores and accumulators, for any head
 * width up to SD_CUDA_ATTN_MAX_HEAD: the UNet's and CLIP's 64-wide heads and
 * the VAE's single 512-wide one take the same kernel.
 *
 * Layout: a query row is owned by a group of G lanes (G a power of two
 * dividing 32); lane s of the group holds the dims d = i G + s of the row's
 * q and output (at most SLICE each), so consecutive lanes read consecutive
 * shared-memory words and groups read the same key at the same time
 * (broadcast). Per key j, with the dot reduced across the group by xor
 * shuffles:
 *   x = scale q.k_j;  if x > m: c = exp(m - x); l = l c + 1; o = o c + v_j; m = x
 *                     else:     p = exp(x - m); l = l + p;   o = o + p v_j
 * and finally out = o / l (the recurrence of torch's CPU flash kernel,
 * aten/src/ATen/native/cpu/FlashAttentionKernel.cpp, one key at a time).
 * Every lane runs every key, valid or not, so the shuffles always see the
 * whole warp; masked keys (causal) and rows past n_q change nothing. */
#include "sd/cuda/cuda_common.cuh"

#define THREADS 128
#define SLICE 16        /* dims per lane: G = 32 covers SD_CUDA_ATTN_MAX_HEAD */
#define TILE_FLOATS 8192 /* keys * (dh + dv) per shared-memory tile: 32 KiB */

typedef struct {
    int64_t nq, nk;
    int heads, dh, dv, group, rows, tile;
    int causal;
    float scale;
} attn_params;

template <typename T>
__global__ void __launch_bounds__(THREADS) flash_kernel(T *__restrict__ out, const T *__restrict__ q,
                                                         const T *__restrict__ k, const T *__restrict__ v, attn_params p)
{
    SD_DYNAMIC_SMEM(float, ks);
    float *vs = ks + (size_t)p.tile * p.dh;
    const int G = p.group, s = threadIdx.x % G, h = blockIdx.y;
    const int64_t b = blockIdx.z, row0 = (int64_t)blockIdx.x * p.rows, qi = row0 + threadIdx.x / G;
    const bool row_ok = qi < p.nq;
    const int64_t last_row = (row0 + p.rows < p.nq ? row0 + p.rows : p.nq) - 1;
    const int64_t kend = p.causal && last_row + 1 < p.nk ? last_row + 1 : p.nk;

    float qr[SLICE], acc[SLICE];
#pragma unroll
    for (int i = 0; i < SLICE; i++) {
        int d = i * G + s;
        qr[i] = row_ok && d < p.dh ? to_f32(q[((b * p.nq + qi) * p.heads + h) * p.dh + d]) : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;

    for (int64_t k0 = 0; k0 < kend; k0 += p.tile) {
        int nt = (int)(kend - k0 < p.tile ? kend - k0 : p.tile);
        __syncthreads(); /* the previous tile is no longer read */
        for (int idx = threadIdx.x; idx < nt * p.dh; idx += blockDim.x) {
            int j = idx / p.dh, d = idx % p.dh;
            ks[idx] = to_f32(k[((b * p.nk + k0 + j) * p.heads + h) * p.dh + d]);
        }
        for (int idx = threadIdx.x; idx < nt * p.dv; idx += blockDim.x) {
            int j = idx / p.dv, d = idx % p.dv;
            vs[idx] = to_f32(v[((b * p.nk + k0 + j) * p.heads + h) * p.dv + d]);
        }
        __syncthreads();
        for (int j = 0; j < nt; j++) {
            const float *kj = ks + (size_t)j * p.dh, *vj = vs + (size_t)j * p.dv;
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < SLICE; i++) {
                int d = i * G + s;
                if (d < p.dh) dot += qr[i] * kj[d];
            }
            for (int off = G / 2; off > 0; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
            float x = dot * p.scale;
            if (!row_ok || (p.causal && k0 + j > qi)) continue;
            float c = 1.0f, pj = 1.0f;
            if (x > m) {
                c = expf(m - x);
                m = x;
            } else {
                pj = expf(x - m);
            }
            l = l * c + pj;
#pragma unroll
            for (int i = 0; i < SLICE; i++) {
                int d = i * G + s;
                if (d < p.dv) acc[i] = acc[i] * c + pj * vj[d];
            }
        }
    }
    if (!row_ok) return;
    float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < SLICE; i++) {
        int d = i * G + s;
        if (d < p.dv) out[((b * p.nq + qi) * p.heads + h) * p.dv + d] = from_f32<T>(acc[i] * inv);
    }
}

/* The smallest power of two g with ceil(width / g) <= SLICE. */
static int lanes_per_row(int width)
{
    int g = 1;
    while (g < 32 && (width + g - 1) / g > SLICE) g *= 2;
    return g;
}

extern "C" cudaError_t sd_cuda_attention(sd_dtype dtype, void *out, const void *q, const void *k, const void *v,
                                         int64_t batch, int64_t nq, int64_t nk, int heads, int dh, int dv, int causal,
                                         cudaStream_t stream)
{
    if (dh < 1 || dv < 1 || dh > SD_CUDA_ATTN_MAX_HEAD || dv > SD_CUDA_ATTN_MAX_HEAD || batch > 65535 ||
        heads > 65535)
        return cudaErrorInvalidValue;
    attn_params p = {nq, nk, heads, dh, dv, lanes_per_row(dh > dv ? dh : dv), 0, 0, causal != 0,
                     1.0f / sqrtf((float)dh)};
    p.rows = THREADS / p.group;
    p.tile = TILE_FLOATS / (dh + dv);
    if (p.tile > 64) p.tile = 64;
    if (p.tile < 1) p.tile = 1;
    int64_t row_blocks = (nq + p.rows - 1) / p.rows;
    if (row_blocks > 0x7fffffff) return cudaErrorInvalidValue;
    dim3 grid((unsigned)row_blocks, (unsigned)heads, (unsigned)batch);
    size_t smem = (size_t)p.tile * (dh + dv) * sizeof(float);
    SD_CUDA_DISPATCH(dtype, SD_LAUNCH(grid, THREADS, smem, stream, flash_kernel<T>)(
                                (T *)out, (const T *)q, (const T *)k, (const T *)v, p));
    return sd_launched();
}
