/* Linear layers on cuBLAS: y[M, N] = x[M, K] W^T + b (torch nn.Linear, W
 * [N, K]) or x W + b (W [K, N]), in the output's dtype with fp32
 * accumulation (CUBLAS_COMPUTE_32F, as torch passes to cublasGemmEx; TF32
 * tensor cores for fp32 activations only when allowed), the bias added by
 * a kernel after. Row-major operands are cuBLAS's column-major transposes:
 * y^T [N, M] = op(W) x^T, with op = T for W [N, K] and N for W [K, N]. */
#include "sd/cuda/cuda_backend.h"

#include <limits.h>

static cublasComputeType_t compute_type(const cuda_state *st, sd_dtype t)
{
    return t == SD_F32 && st->allow_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

int cuda_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                int w_is_kn)
{
    cuda_state *st = cuda_of(be);
    sd_dtype t = y->dtype;
    int64_t n = w->shape[w_is_kn ? 1 : 0], k = w->shape[w_is_kn ? 0 : 1], m = sd_numel(x) / k;
    if (n > INT_MAX || k > INT_MAX || m > INT_MAX)
        return sd_backend_fail(be, "sd_linear: [%lld, %lld] x [%lld] is too large for cuBLAS", (long long)m,
                               (long long)k, (long long)n);
    int failed = 0;
    const void *xd = cuda_operand(be, x, t, CUDA_SCRATCH_IN0), *wd = cuda_weight(be, w, t);
    const void *bd = cuda_weight_opt(be, b, t, &failed);
    if (!xd || !wd || failed) return -1;
    const float one = 1.0f, zero = 0.0f;
    cudaDataType_t dt = cuda_blas_type(t);
    if (cublas_ok(be, cublasGemmEx(st->blas, w_is_kn ? CUBLAS_OP_N : CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k,
                                   &one, wd, dt, w_is_kn ? (int)n : (int)k, xd, dt, (int)k, &zero, y->data, dt,
                                   (int)n, compute_type(st, t), CUBLAS_GEMM_DEFAULT),
                  "sd_linear"))
        return -1;
    return bd ? cuda_ok(be, sd_cuda_bias(t, y->data, bd, m, n, 1, st->stream), "sd_linear bias") : 0;
}
