/* The C interface of the CUDA backend's kernels: one launcher per kernel,
 * callable from the backend's C files. Each launcher enqueues on `stream`
 * and returns the launch status (cudaSuccess, or the error of a bad
 * configuration); faults surface at the next synchronisation.
 *
 * Pointers are device pointers. `dtype` (SD_F32, SD_F16 or SD_BF16) says how
 * the activations of the call are stored; weights and biases handed to a
 * kernel are already in that dtype (the backend's weight cache converts
 * them once). All arithmetic is fp32. */
#ifndef SDXL_SD_CUDA_KERNELS_H
#define SDXL_SD_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "sd/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- convert.cu ------------------------------------------------------------------- */

/* dst[i] = src[i] for i < n, between F32, F16 and BF16 (fp8 weights are
 * widened on the host first), rounding to nearest even. */
cudaError_t sd_cuda_convert(void *dst, sd_dtype dst_dtype, const void *src, sd_dtype src_dtype, int64_t n,
                            cudaStream_t stream);

/* ---- elementwise.cu ---------------------------------------------------------------- */

/* y = act(x) (act as sd_act). */
cudaError_t sd_cuda_act(sd_dtype dtype, void *y, const void *x, int64_t n, sd_act act, cudaStream_t stream);
/* y[r, i] = x[r, i] * gelu(x[r, f + i]) for rows r < rows, i < f (diffusers GEGLU). */
cudaError_t sd_cuda_geglu(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t f, cudaStream_t stream);
/* y = a (+ or *) b over a's 4-D shape `dim`; b's element at index (i0..i3) is
 * b[sum i_d * b_stride[d]] (stride 0 along broadcast dims). */
cudaError_t sd_cuda_binary(sd_dtype dtype, void *y, const void *a, const void *b, const int64_t dim[4],
                           const int64_t b_stride[4], int multiply, cudaStream_t stream);
/* y = alpha * x. */
cudaError_t sd_cuda_scale(sd_dtype dtype, void *y, const void *x, int64_t n, float alpha, cudaStream_t stream);
/* y[i] = value. */
cudaError_t sd_cuda_fill(sd_dtype dtype, void *y, int64_t n, float value, cudaStream_t stream);
/* y viewed as [outer, channels, inner]: y[o, c, i] += bias[c]. */
cudaError_t sd_cuda_bias(sd_dtype dtype, void *y, const void *bias, int64_t outer, int64_t channels, int64_t inner,
                         cudaStream_t stream);

/* ---- layout.cu --------------------------------------------------------------------- */

/* Nearest resize of planes [planes, h, w] -> [planes, ho, wo], torch's nearest_idx. */
cudaError_t sd_cuda_upsample_nearest(sd_dtype dtype, void *y, const void *x, int64_t planes, int64_t h, int64_t w,
                                     int64_t ho, int64_t wo, cudaStream_t stream);
/* For o < outer: run elements from x + o * x_inner + x_offset to y + o * y_inner + y_offset. */
cudaError_t sd_cuda_copy_block(sd_dtype dtype, void *y, const void *x, int64_t outer, int64_t run, int64_t y_inner,
                               int64_t y_offset, int64_t x_inner, int64_t x_offset, cudaStream_t stream);
/* y[b] = x[b]^T for x [batch, rows, cols]. */
cudaError_t sd_cuda_transpose(sd_dtype dtype, void *y, const void *x, int64_t batch, int64_t rows, int64_t cols,
                              cudaStream_t stream);
/* Zero padding of planes: x [planes, h, w] -> y [planes, h + top + bottom, w + left + right]. */
cudaError_t sd_cuda_pad(sd_dtype dtype, void *y, const void *x, int64_t planes, int64_t h, int64_t w, int top,
                        int bottom, int left, int right, cudaStream_t stream);
/* y[i, :] = table[ids[i], :] for i < n, rows of `cols` elements (ids on the device). */
cudaError_t sd_cuda_gather_rows(sd_dtype dtype, void *y, const void *table, const int32_t *ids, int64_t n,
                                int64_t cols, cudaStream_t stream);

/* ---- norm.cu ----------------------------------------------------------------------- */

/* torch group_norm over x [batch, channels, plane] with `groups` groups,
 * fp32 statistics (two passes), then affine (gamma/beta may be NULL) and act.
 * stats: 2 * batch * groups floats of device scratch. */
cudaError_t sd_cuda_group_norm(sd_dtype dtype, void *y, const void *x, int64_t batch, int64_t channels,
                               int64_t plane, int groups, float eps, const void *gamma, const void *beta, sd_act act,
                               float *stats, cudaStream_t stream);
/* torch layer_norm over the last dim of x [rows, cols]; gamma/beta may be NULL. */
cudaError_t sd_cuda_layer_norm(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t cols, float eps,
                               const void *gamma, const void *beta, cudaStream_t stream);
/* Softmax over the last dim of x [rows, cols]. */
cudaError_t sd_cuda_softmax(sd_dtype dtype, void *y, const void *x, int64_t rows, int64_t cols, cudaStream_t stream);

/* ---- attention.cu ------------------------------------------------------------------ */

/* The most head width sd_cuda_attention takes (the SD VAE's single head is 512). */
#define SD_CUDA_ATTN_MAX_HEAD 512

/* torch scaled_dot_product_attention in the projections' layout:
 * q, k [batch, n, heads * dh], v and out [batch, n, heads * dv]; dh, dv <= SD_CUDA_ATTN_MAX_HEAD.
 * Flash-style: online softmax, fp32 scores and accumulators, no n_q x n_k buffer. */
cudaError_t sd_cuda_attention(sd_dtype dtype, void *out, const void *q, const void *k, const void *v, int64_t batch,
                              int64_t nq, int64_t nk, int heads, int dh, int dv, int causal, cudaStream_t stream);

/* ---- attention_tc.cu ---------------------------------------------------------------- */

/* Whether the tensor-core kernel takes these heads: fp16/bf16, 64 wide. */
int sd_cuda_attention_tc_fits(sd_dtype dtype, int dh, int dv);
/* sd_cuda_attention on tensor cores (WMMA, fp32 accumulation) for heads sd_cuda_attention_tc_fits takes. */
cudaError_t sd_cuda_attention_tc(sd_dtype dtype, void *out, const void *q, const void *k, const void *v,
                                 int64_t batch, int64_t nq, int64_t nk, int heads, int causal, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
